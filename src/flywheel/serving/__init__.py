"""Serving: the ASGI prediction service, its models, batching, rollout routing, prediction log
and metrics."""

from __future__ import annotations

from flywheel.predlog import INPUT_PREFIX, PredictionLog, read_feedback, read_predictions
from flywheel.serving._auth import ClientLimiter, TokenCheck
from flywheel.serving._dashboard import DashboardApp, DashboardRoutes
from flywheel.serving._inputs import InputProblems
from flywheel.serving._models import FULL_READ_SECONDS, ModelStore, ServedModel
from flywheel.serving._onnx import (
    ONNX_ARTIFACT,
    ONNX_REPORT_ARTIFACT,
    ONNX_VERIFIED_TAG,
    RUNTIMES,
    load_onnx_form,
)
from flywheel.serving._predictor import LoadedModel, PipelinePredictor, build_loaded_model
from flywheel.serving._router import RoutePlan, Router
from flywheel.serving._shadow import ShadowRunner
from flywheel.serving.app import ServingApp

__all__ = [
    "ClientLimiter",
    "DashboardApp",
    "DashboardRoutes",
    "FULL_READ_SECONDS",
    "INPUT_PREFIX",
    "InputProblems",
    "ONNX_ARTIFACT",
    "ONNX_REPORT_ARTIFACT",
    "ONNX_VERIFIED_TAG",
    "RUNTIMES",
    "LoadedModel",
    "ModelStore",
    "PipelinePredictor",
    "PredictionLog",
    "RoutePlan",
    "Router",
    "ServedModel",
    "ServingApp",
    "ShadowRunner",
    "TokenCheck",
    "build_loaded_model",
    "load_onnx_form",
    "read_feedback",
    "read_predictions",
]
