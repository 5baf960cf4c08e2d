"""CompiledEnsemble: members whose feature steps learned the same state share one encoding."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from flywheel.core.spec import FeaturesSpec, Task
from flywheel.data import DataSchema, infer_schema
from flywheel.features import build_feature_pipeline, compile_predictor
from flywheel.features._compiled import CompiledEnsemble
from flywheel.features._compiled_encoder import FeatureEncoder
from flywheel.training import EnsembleModel
from tests.conftest import CHURN, DIAMONDS

TOL = 1e-9


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    with threadpool_limits(limits=1):
        yield


def _member(schema: DataSchema, estimator: Any, task: Task, *, scale: bool = False) -> Pipeline:
    features = build_feature_pipeline(schema, FeaturesSpec(), task=task, scale_numeric=scale)
    return Pipeline([("features", features), ("model", estimator)])


def _lgbm(cls: type, **params: Any) -> Any:
    return cls(**{"n_estimators": 30, "num_leaves": 15, "verbosity": -1, "n_jobs": 1,
                  "random_state": 0, **params})


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame, DataSchema]:
    frame = pd.read_parquet(CHURN).sample(frac=1.0, random_state=0).reset_index(drop=True)
    return frame.iloc[:2500], frame.iloc[2500:2800].reset_index(drop=True), \
        infer_schema(frame, "churn")


@pytest.fixture(scope="module")
def mixed_ensemble(churn: Any) -> tuple[EnsembleModel, CompiledEnsemble, pd.DataFrame]:
    """Two LightGBM members and a HistGradientBoosting one on the same feature step, and a
    logistic regression on scaled features (another feature step)."""
    train, holdout, schema = churn
    y = (train["churn"] == "yes").to_numpy(dtype=int)
    members = [_member(schema, _lgbm(lgb.LGBMClassifier), "binary"),
               _member(schema, _lgbm(lgb.LGBMClassifier, num_leaves=7), "binary"),
               _member(schema, HistGradientBoostingClassifier(max_iter=30, random_state=0),
                       "binary"),
               _member(schema, LogisticRegression(max_iter=2000), "binary", scale=True)]
    model = EnsembleModel(members, [0.4, 0.3, 0.2, 0.1], task="binary").fit(
        train[schema.feature_columns], y)
    compiled = compile_predictor(model, schema, task="binary")
    assert isinstance(compiled, CompiledEnsemble)
    return model, compiled, holdout[schema.feature_columns]


def test_members_with_equal_feature_steps_share_one_encoding(mixed_ensemble: Any) -> None:
    _, compiled, _ = mixed_ensemble
    assert [m.kind for m in compiled.members] == ["lightgbm", "lightgbm",
                                                  "hist_gradient_boosting", "logistic"]
    assert compiled.groups == [(0, 1, 2), (3,)]


def test_an_ensemble_of_members_with_equal_feature_steps_encodes_each_request_once(
        mixed_ensemble: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, compiled, holdout = mixed_ensemble
    calls: list[int] = []
    encode = FeatureEncoder.encode_record

    def counted(self: FeatureEncoder, record: Any) -> list[float]:
        calls.append(id(self))
        return encode(self, record)

    monkeypatch.setattr(FeatureEncoder, "encode_record", counted)
    compiled.predict_records(holdout.head(1).to_dict(orient="records"))
    assert len(calls) == 2  # one per distinct feature step, not one per member (4)


def test_a_mixed_compiled_ensemble_equals_the_ensemble_model(mixed_ensemble: Any) -> None:
    model, compiled, holdout = mixed_ensemble
    expected = model.predict_proba(holdout)
    given = {c: holdout[c] for c in compiled.feature_columns}
    np.testing.assert_allclose(compiled.predict_columns(given), expected, rtol=0, atol=TOL)
    for i, record in enumerate(holdout.head(30).to_dict(orient="records")):
        np.testing.assert_allclose(compiled.predict_records([record]), expected[i:i + 1],
                                   rtol=0, atol=TOL)


def test_a_regression_ensemble_of_hgb_and_ridge_equals_the_ensemble_model() -> None:
    frame = pd.read_parquet(DIAMONDS).sample(n=1500, random_state=0).reset_index(drop=True)
    schema = infer_schema(frame, "price")
    train, holdout = frame.iloc[:1200], frame.iloc[1200:][schema.feature_columns]
    members = [_member(schema, HistGradientBoostingRegressor(max_iter=30, random_state=0),
                       "regression"),
               _member(schema, _lgbm(lgb.LGBMRegressor), "regression"),
               _member(schema, Ridge(), "regression", scale=True)]
    model = EnsembleModel(members, [0.5, 0.3, 0.2], task="regression").fit(
        train[schema.feature_columns], train["price"].to_numpy(dtype=float))
    compiled = compile_predictor(model, schema, task="regression")
    assert isinstance(compiled, CompiledEnsemble) and compiled.groups == [(0, 1), (2,)]
    expected = model.predict(holdout)
    records = holdout.to_dict(orient="records")
    np.testing.assert_allclose(compiled.predict_records(records), expected, rtol=0,
                               atol=TOL * np.abs(expected).max())
    np.testing.assert_allclose(compiled.predict_records(records[:1]), expected[:1], rtol=0,
                               atol=TOL * np.abs(expected).max())
