"""The ONNX form of a model pipeline: conversion, verification, refusals that name the step."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from flywheel.core.errors import OnnxExportError
from flywheel.core.spec import FeaturesSpec, Task
from flywheel.data import DataSchema, infer_schema
from flywheel.features import (
    ONNX_TOLERANCE,
    OnnxPredictor,
    build_feature_pipeline,
    compile_predictor,
    convert_to_onnx,
    onnx_predictor,
    verify_onnx,
)
from tests.conftest import CHURN, make_mixed
from tests.estimators import FlakyClassifier


def _fit(frame: pd.DataFrame, target: str, y: np.ndarray, estimator: Any, *,
         task: Task = "binary") -> tuple[Pipeline, DataSchema, pd.DataFrame]:
    schema = infer_schema(frame, target)
    x = frame[schema.feature_columns]
    features = build_feature_pipeline(schema, FeaturesSpec(), task=task)
    estimator.fit(features.fit_transform(x, y), y)
    return Pipeline([("features", features), ("model", estimator)]), schema, x


def _booster(**params: Any) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(n_estimators=60, num_leaves=31, verbosity=-1, n_jobs=1,
                              random_state=0, **params)


@pytest.fixture(scope="module")
def churn_model() -> tuple[Pipeline, DataSchema, pd.DataFrame]:
    frame = pd.read_parquet(CHURN)
    y = (frame["churn"] == "yes").to_numpy(int)
    return _fit(frame.head(4000), "churn", y[:4000], _booster())


def test_the_churn_graph_agrees_with_the_pipeline_on_every_label(
        churn_model: tuple[Pipeline, DataSchema, pd.DataFrame]) -> None:
    model, schema, x = churn_model
    holdout = pd.read_parquet(CHURN).iloc[4000:][schema.feature_columns]
    report = verify_onnx(onnx_predictor(model, schema, task="binary"), model, holdout)
    assert report.verified and report.rows == 1000
    assert report.label_agreement == 1.0
    assert report.max_abs_diff <= ONNX_TOLERANCE
    assert report.to_tags()["flywheel.onnx.verified"] == "true"


def test_thresholds_stay_exact_where_a_value_rounds_onto_a_split() -> None:
    # LightGBM splits churn's total_eve_minutes at 265.30000000000007; 265.3 goes left. With
    # float32 thresholds onnxruntime sent it right and a probability moved by 0.016.
    frame = pd.read_parquet(CHURN)
    y = (frame["churn"] == "yes").to_numpy(int)
    model, schema, x = _fit(frame, "churn", y, _booster(colsample_bytree=0.7))
    report = verify_onnx(onnx_predictor(model, schema, task="binary"), model, x)
    assert report.max_abs_diff < 1e-6, report.summary()


def test_a_graph_covers_datetime_missing_indicator_and_target_encoding() -> None:
    # The flights model's steps (the benchmark checks the flights model itself): a datetime,
    # a numeric column with nulls, a categorical one with more categories than one-hot takes.
    frame = make_mixed(3000)
    rng = np.random.default_rng(1)
    frame["x"] = frame["x"].mask(rng.random(len(frame)) < 0.1)
    frame["city"] = [f"city{i}" for i in rng.integers(0, 40, size=len(frame))]
    model, schema, x = _fit(frame.head(2000), "label",
                            (frame["label"].head(2000) == "yes").to_numpy(int), _booster())
    steps = {name for name, _, _ in model[0].transformers_}
    assert {"datetime", "missing", "target", "one_hot", "boolean"} <= steps
    predictor = onnx_predictor(model, schema, task="binary")
    report = verify_onnx(predictor, model, frame.tail(1000)[schema.feature_columns])
    assert report.verified and report.label_agreement == 1.0, report.summary()
    assert predictor.reads["when"] == "datetime" and predictor.reads["flag"] == "bool"


def test_raw_values_are_read_like_the_compiled_path_reads_them(
        churn_model: tuple[Pipeline, DataSchema, pd.DataFrame]) -> None:
    model, schema, x = churn_model
    predictor = onnx_predictor(model, schema, task="binary")
    compiled = compile_predictor(model, schema, task="binary")
    records: list[dict[str, Any]] = [
        {},
        {"state": None, "account_length": "not a number", "area_code": 415},
        {**x.iloc[0].to_dict(), "total_day_minutes": "12.5", "unexpected": "ignored"},
    ]
    np.testing.assert_allclose(predictor.predict_records(records),
                               compiled.predict_records(records), atol=ONNX_TOLERANCE)
    assert predictor.predict_records([]).shape == (0, 2)


def test_a_saved_graph_loads_with_its_inputs_and_task(
        churn_model: tuple[Pipeline, DataSchema, pd.DataFrame]) -> None:
    model, schema, x = churn_model
    loaded = OnnxPredictor(convert_to_onnx(model, schema, task="binary"))
    assert loaded.task == "binary" and loaded.reads["state"] == "category"
    assert loaded.reads["account_length"] == "float"
    np.testing.assert_allclose(loaded.predict_records(x.head(5).to_dict(orient="records")),
                               model.predict_proba(x.head(5)), atol=ONNX_TOLERANCE)


def test_a_regression_graph_predicts_values(churn_model: tuple[Pipeline, DataSchema,
                                                                  pd.DataFrame]) -> None:
    frame = pd.read_parquet(CHURN).head(2000)
    y = frame["total_day_charge"].to_numpy(float)
    frame = frame.drop(columns=["total_day_charge", "churn"]).assign(
        total_day_charge=y)
    regressor = lgb.LGBMRegressor(n_estimators=40, verbosity=-1, n_jobs=1)
    model, schema, x = _fit(frame, "total_day_charge", y, regressor, task="regression")
    report = verify_onnx(onnx_predictor(model, schema, task="regression"), model, x)
    assert report.label_agreement is None
    # float32 leaf sums in onnxruntime: within 1e-4 of charges around 30.
    assert report.max_abs_diff < 1e-4, report.summary()


def test_a_custom_learner_is_refused_naming_the_model_step(
        churn_model: tuple[Pipeline, DataSchema, pd.DataFrame]) -> None:
    _, schema, x = churn_model
    frame = pd.read_parquet(CHURN).head(500)
    model, schema, _ = _fit(frame, "churn", (frame["churn"] == "yes").to_numpy(int),
                            FlakyClassifier())
    with pytest.raises(OnnxExportError) as caught:
        convert_to_onnx(model, schema, task="binary")
    assert caught.value.step == "model" and caught.value.estimator == "FlakyClassifier"
    assert "no ONNX converter" in str(caught.value)


def test_a_feature_step_without_a_converter_is_refused_naming_it(
        churn_model: tuple[Pipeline, DataSchema, pd.DataFrame]) -> None:
    model, schema, x = churn_model
    features = model[0]
    name, branch, columns = features.transformers_[0]
    branch.steps[0] = ("to_float", FunctionTransformer(np.log1p))
    try:
        with pytest.raises(OnnxExportError) as caught:
            convert_to_onnx(model, schema, task="binary")
    finally:
        branch.steps[0] = ("to_float", build_feature_pipeline(
            schema, FeaturesSpec(), task="binary").transformers[0][1].steps[0][1])
    assert caught.value.step == f"features/{name}"
    assert "conversion steps" in str(caught.value)


def test_a_graph_that_disagrees_is_not_verified(
        churn_model: tuple[Pipeline, DataSchema, pd.DataFrame]) -> None:
    model, schema, x = churn_model
    frame = pd.read_parquet(CHURN).head(1000)
    wrong, _, _ = _fit(frame, "churn", (frame["churn"] == "yes").to_numpy(int),
                       lgb.LGBMClassifier(n_estimators=3, verbosity=-1))
    report = verify_onnx(onnx_predictor(model, schema, task="binary"), wrong, x.head(500))
    assert not report.verified
    assert report.to_tags()["flywheel.onnx.verified"] == "false"
    assert report.max_abs_diff > ONNX_TOLERANCE
