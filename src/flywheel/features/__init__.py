"""Features: the transformer from raw schema columns to a model's numeric input, and the
compiled fast path that replays a fitted model pipeline on raw request values."""

from __future__ import annotations

from flywheel.features._compiled import (
    CompiledPredictor,
    CompileReport,
    compile_predictor,
    verify_compiled,
)
from flywheel.features._contributions import (
    ContributionExplainer,
    Contributions,
    contribution_explainer,
    contribution_importance,
    source_columns,
)
from flywheel.features._onnx import (
    ONNX_TOLERANCE,
    OnnxPredictor,
    OnnxReport,
    onnx_predictor,
    verify_onnx,
)
from flywheel.features._onnx_convert import convert_to_onnx
from flywheel.features._pipeline import FEATURE_TRUSTED_TYPES, build_feature_pipeline

__all__ = [
    "FEATURE_TRUSTED_TYPES",
    "ONNX_TOLERANCE",
    "CompileReport",
    "CompiledPredictor",
    "ContributionExplainer",
    "Contributions",
    "OnnxPredictor",
    "OnnxReport",
    "build_feature_pipeline",
    "compile_predictor",
    "contribution_explainer",
    "contribution_importance",
    "convert_to_onnx",
    "onnx_predictor",
    "source_columns",
    "verify_onnx",
    "verify_compiled",
]
