"""Serving: the ASGI prediction service, its models, batching, rollout routing, prediction log
and metrics."""

from __future__ import annotations

from flywheel.predlog import INPUT_PREFIX, PredictionLog, read_feedback, read_predictions
from flywheel.serving._models import FULL_READ_SECONDS, ModelStore, ServedModel
from flywheel.serving._predictor import LoadedModel, PipelinePredictor, build_loaded_model
from flywheel.serving._router import RoutePlan, Router
from flywheel.serving._shadow import ShadowRunner
from flywheel.serving.app import ServingApp

__all__ = [
    "FULL_READ_SECONDS",
    "INPUT_PREFIX",
    "LoadedModel",
    "ModelStore",
    "PipelinePredictor",
    "PredictionLog",
    "RoutePlan",
    "Router",
    "ServedModel",
    "ServingApp",
    "ShadowRunner",
    "build_loaded_model",
    "read_feedback",
    "read_predictions",
]
