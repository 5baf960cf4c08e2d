"""Data quality of a window against the schema."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel.data import infer_schema
from flywheel.monitoring import check_quality


def test_rates_are_measured_for_every_feature_and_violations_come_from_the_gate(
        mixed: pd.DataFrame) -> None:
    schema = infer_schema(mixed, "label")
    window = mixed.drop(columns=["label"]).head(100).copy()
    window.loc[:9, "x"] = np.nan
    window.loc[:4, "colour"] = "purple"
    window.loc[:1, "count"] = 10_000
    report = check_quality(window, schema)
    by_name = {c.column: c for c in report.columns}
    assert by_name["x"].null_rate == 0.10
    assert by_name["colour"].unseen_rate == 0.05 and by_name["colour"].unseen_examples == (
        "purple",)
    assert by_name["count"].out_of_range_rate == 0.02
    checks = {(v["column"], v["check"]) for v in report.violations}
    assert ("colour", "unseen_category") in checks and ("count", "out_of_range") in checks
    metrics = report.metrics()
    assert metrics["unseen_category_rate_max"] == 0.05 and metrics["schema_violations"] >= 2


def test_a_feature_missing_from_the_window_is_reported_not_raised(mixed: pd.DataFrame) -> None:
    schema = infer_schema(mixed, "label")
    report = check_quality(mixed.drop(columns=["label", "colour"]).head(50), schema)
    assert report.missing == ["colour"] and report.metrics()["missing_columns"] == 1
    assert any(v["check"] == "missing_column" for v in report.violations)


def test_prediction_and_label_columns_of_the_window_are_not_extra_columns(
        mixed: pd.DataFrame) -> None:
    schema = infer_schema(mixed, "label")
    window = mixed.head(50).assign(**{"prediction.score": 0.5})
    assert not [v for v in check_quality(window, schema).violations
                if v["check"] == "extra_column"]


def test_id_and_constant_columns_of_the_training_data_are_not_expected_in_production(
        mixed: pd.DataFrame) -> None:
    schema = infer_schema(mixed, "label")
    features = schema.feature_columns
    report = check_quality(mixed[features].head(50), schema)
    assert report.violations == () and report.missing == []
