"""Features: the transformer from raw schema columns to a model's numeric input."""

from __future__ import annotations

from flywheel.features._pipeline import FEATURE_TRUSTED_TYPES, build_feature_pipeline

__all__ = ["FEATURE_TRUSTED_TYPES", "build_feature_pipeline"]
