"""Exact per-column contributions of LightGBM pipelines (``features/_contributions.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from flywheel.core.errors import ExplanationError
from flywheel.core.spec import ColumnFeatureSpec, FeaturesSpec, Task
from flywheel.data import DataSchema, infer_schema
from flywheel.features import build_feature_pipeline, contribution_explainer

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CHURN = EXAMPLES / "churn" / "mlc_churn.parquet"
DIAMONDS = EXAMPLES / "diamonds" / "diamonds.parquet"
DEFAULTS = FeaturesSpec()
ENCODINGS = FeaturesSpec(columns={"state": ColumnFeatureSpec(encoding="target"),
                                  "international_plan": ColumnFeatureSpec(encoding="one_hot")})


def _fit(frame: pd.DataFrame, target: str, task: Task, spec: FeaturesSpec = DEFAULTS,
         estimator: Any = None) -> tuple[Pipeline, DataSchema]:
    schema = infer_schema(frame, target)
    if task == "binary":
        y: Any = (frame[target].astype(str) == "yes").to_numpy(int)
    elif task == "multiclass":
        y = pd.Categorical(frame[target]).codes.astype(np.int64)
    else:
        y = frame[target].to_numpy(float)
    if estimator is None:
        kind = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
        estimator = kind(n_estimators=40, verbosity=-1, n_jobs=1, random_state=0)
    model = Pipeline([("features", build_feature_pipeline(schema, spec, task=task)),
                      ("model", estimator)])
    return model.fit(frame[schema.feature_columns], y), schema


def _holdout(path: Path, rows: int, train: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_parquet(path).sample(rows, random_state=0)
    return frame.iloc[:train], frame.iloc[train:]


@pytest.mark.parametrize(("path", "target", "task"), [(CHURN, "churn", "binary"),
                                                      (DIAMONDS, "price", "regression")])
def test_contributions_sum_to_the_raw_score_within_1e_6_on_every_holdout_row(
        path: Path, target: str, task: Task) -> None:
    train, holdout = _holdout(path, 5000, 3000)
    model, schema = _fit(train, target, task)
    explainer = contribution_explainer(model, schema, task=task)
    x = holdout[schema.feature_columns]
    raw = explainer.raw_scores(np.asarray(model[0].transform(x), dtype=np.float64))
    if task == "binary":  # the raw score is the log-odds of the probability served
        proba = model.predict_proba(x)[:, 1]
        np.testing.assert_allclose(1 / (1 + np.exp(-raw[:, 0])), proba, rtol=1e-12)
    else:
        np.testing.assert_allclose(raw[:, 0], model.predict(x), rtol=1e-12)
    batch = explainer.explain_columns({c: x[c] for c in x.columns}, len(x))
    assert len(holdout) == 2000 and batch.values.shape == (2000, 1, len(schema.feature_columns))
    assert np.abs(batch.raw - raw).max() <= 1e-6
    records = x.to_dict(orient="records")
    single = np.array([explainer.explain_records([r]).raw[0] for r in records[:200]])
    assert np.abs(single - raw[:200]).max() <= 1e-6


def test_one_hot_and_target_encoded_columns_fold_back_to_their_source_column() -> None:
    train, holdout = _holdout(CHURN, 2400, 2000)
    model, schema = _fit(train, "churn", "binary", ENCODINGS)
    explainer = contribution_explainer(model, schema, task="binary")
    assert explainer.columns == schema.feature_columns  # one contribution per raw column
    x = holdout[schema.feature_columns]
    encoded = np.asarray(model[0].transform(x), dtype=np.float64)
    names = list(model[0].get_feature_names_out())
    plan_features = [n for n in names if n.startswith("international_plan_")]
    assert len(plan_features) == 2
    per_feature = model[-1].booster_.predict(encoded, pred_contrib=True)
    got = explainer.explain_matrix(encoded)
    plan = explainer.columns.index("international_plan")
    expected = per_feature[:, [names.index(n) for n in plan_features]].sum(axis=1)
    np.testing.assert_allclose(got.values[:, 0, plan], expected, atol=1e-12)
    state = explainer.columns.index("state")
    np.testing.assert_allclose(got.values[:, 0, state], per_feature[:, names.index("state")],
                               atol=1e-12)
    assert np.abs(got.values[:, 0, plan]).max() > 0  # the column is used, so it is explained


def test_a_multiclass_model_gets_one_sum_per_class_with_target_encoding_folded() -> None:
    train, holdout = _holdout(DIAMONDS, 3000, 2500)
    spec = FeaturesSpec(columns={"color": ColumnFeatureSpec(encoding="target")})
    model, schema = _fit(train, "cut", "multiclass", spec)
    explainer = contribution_explainer(model, schema, task="multiclass")
    x = holdout[schema.feature_columns]
    encoded = np.asarray(model[0].transform(x), dtype=np.float64)
    assert encoded.shape[1] > len(schema.feature_columns)  # color: one column per class
    got = explainer.explain_columns({c: x[c] for c in x.columns}, len(x))
    assert got.values.shape == (500, 5, len(schema.feature_columns))
    assert np.abs(got.raw - explainer.raw_scores(encoded)).max() <= 1e-6
    one = explainer.explain_records([x.iloc[0].to_dict()])
    assert np.abs(one.raw[0] - got.raw[0]).max() <= 1e-6


def test_global_importance_ranks_columns_by_mean_absolute_contribution() -> None:
    train, holdout = _holdout(CHURN, 2400, 2000)
    model, schema = _fit(train, "churn", "binary")
    explainer = contribution_explainer(model, schema, task="binary")
    x = holdout[schema.feature_columns]
    parts = explainer.explain_columns({c: x[c] for c in x.columns}, len(x))
    importance = parts.mean_abs()
    assert list(importance) == sorted(importance, key=lambda c: -importance[c])
    assert set(importance) == set(schema.feature_columns)
    column = next(iter(importance))
    index = parts.columns.index(column)
    assert importance[column] == pytest.approx(np.abs(parts.values[:, 0, index]).mean())


def test_a_model_without_tree_contributions_is_refused_naming_its_estimator() -> None:
    train, _ = _holdout(CHURN, 600, 600)
    spec = FeaturesSpec()
    model, schema = _fit(train, "churn", "binary", spec, LogisticRegression(max_iter=1000))
    with pytest.raises(ExplanationError, match="LogisticRegression.*no exact tree"):
        contribution_explainer(model, schema, task="binary", version="version 3")


def test_datetime_parts_and_missing_indicators_are_traced_to_their_source_column() -> None:
    from flywheel.features import source_columns
    from flywheel.features._compiled_encoder import compile_encoder
    from tests.conftest import make_mixed

    frame = make_mixed(600)
    frame.loc[::7, "x"] = np.nan  # nullable: x gets a missing-value indicator
    model, schema = _fit(frame, "label", "binary",
                         estimator=lgb.LGBMClassifier(n_estimators=10, verbosity=-1))
    names = [str(n) for n in model[0].get_feature_names_out()]
    sources = dict(zip(names, source_columns(compile_encoder(model[0])), strict=True))
    assert sources["missingindicator_x"] == "x"
    assert {sources[n] for n in names if n.startswith("when_")} == {"when"}
    explainer = contribution_explainer(model, schema, task="binary")
    assert set(explainer.columns) == set(sources.values())
    x = frame[schema.feature_columns]
    parts = explainer.explain_columns({c: x[c] for c in x.columns}, len(x))
    raw = explainer.raw_scores(np.asarray(model[0].transform(x), dtype=np.float64))
    assert np.abs(parts.raw - raw).max() <= 1e-6


@pytest.mark.parametrize("objective", ["poisson", "tweedie"])
def test_a_log_link_regressor_explains_the_log_of_its_prediction_to_1e_6(objective: str) -> None:
    train, holdout = _holdout(DIAMONDS, 3000, 2000)
    model, schema = _fit(train, "price", "regression", estimator=lgb.LGBMRegressor(
        objective=objective, n_estimators=40, verbosity=-1, n_jobs=1, random_state=0))
    explainer = contribution_explainer(model, schema, task="regression")
    x = holdout[schema.feature_columns]
    batch = explainer.explain_columns({c: x[c] for c in x.columns}, len(x))
    assert explainer.log_link
    assert np.abs(batch.raw[:, 0] - np.log(model.predict(x))).max() <= 1e-6
    plain, _ = _fit(train, "price", "regression")
    assert not contribution_explainer(plain, schema, task="regression").log_link
