"""Features: the transformer from raw schema columns to a model's numeric input, and the
compiled fast path that replays a fitted model pipeline on raw request values."""

from __future__ import annotations

from flywheel.features._compiled import (
    CompiledPredictor,
    CompileReport,
    compile_predictor,
    verify_compiled,
)
from flywheel.features._pipeline import FEATURE_TRUSTED_TYPES, build_feature_pipeline

__all__ = [
    "FEATURE_TRUSTED_TYPES",
    "CompileReport",
    "CompiledPredictor",
    "build_feature_pipeline",
    "compile_predictor",
    "verify_compiled",
]
