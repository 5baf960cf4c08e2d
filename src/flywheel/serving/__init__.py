"""Serving: the ASGI prediction service, its models, batching, prediction log and metrics."""

from __future__ import annotations

from flywheel.serving._log import PredictionLog, read_feedback, read_predictions
from flywheel.serving._models import ModelStore, ServedModel
from flywheel.serving._predictor import LoadedModel, PipelinePredictor, build_loaded_model
from flywheel.serving.app import ServingApp

__all__ = [
    "LoadedModel",
    "ModelStore",
    "PipelinePredictor",
    "PredictionLog",
    "ServedModel",
    "ServingApp",
    "build_loaded_model",
    "read_feedback",
    "read_predictions",
]
