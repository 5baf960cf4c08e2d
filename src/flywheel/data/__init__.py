"""Data: loading, schema inference and validation, fingerprints, reference profiles."""

from __future__ import annotations

from flywheel.data._fingerprint import fingerprint_frame
from flywheel.data._infer import (
    category_strings,
    infer_positive_class,
    infer_schema,
    infer_task,
    leakage_score,
)
from flywheel.data._load import detect_format, load_table, sniff_delimiter
from flywheel.data._profile import ColumnProfile, ReferenceProfile, profile_frame
from flywheel.data._schema import ColumnSchema, DataSchema, load_schema
from flywheel.data._validate import CheckFailure, ValidationReport, validate_frame

__all__ = [
    "CheckFailure",
    "ColumnProfile",
    "ColumnSchema",
    "DataSchema",
    "ReferenceProfile",
    "ValidationReport",
    "category_strings",
    "detect_format",
    "fingerprint_frame",
    "infer_positive_class",
    "infer_schema",
    "infer_task",
    "leakage_score",
    "load_schema",
    "load_table",
    "profile_frame",
    "sniff_delimiter",
    "validate_frame",
]
