"""XGBoost and CatBoost pipelines in the serving fast path (``features/_compiled_xgboost.py``)
and their exact contributions (``features/_contributions_xgboost.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from flywheel.core.spec import ColumnFeatureSpec, FeaturesSpec, Task
from flywheel.data import DataSchema, infer_schema
from flywheel.features import (
    build_feature_pipeline,
    compile_predictor,
    contribution_explainer,
    verify_compiled,
)
from flywheel.training import BUILTIN_LEARNERS
from tests.conftest import CHURN, DIAMONDS, require_learner

ENCODINGS = FeaturesSpec(columns={"state": ColumnFeatureSpec(encoding="target"),
                                  "international_plan": ColumnFeatureSpec(encoding="one_hot")})
CASES = [(CHURN, "churn", "binary"), (CHURN, "area_code", "multiclass"),
         (DIAMONDS, "price", "regression")]
LEARNERS = ("xgboost", "catboost")


def _fit(learner: str, path: Path, target: str, task: Task, *, rows: int = 2400,
         train: int = 1600) -> tuple[Pipeline, DataSchema, pd.DataFrame]:
    require_learner(learner)
    frame = pd.read_parquet(path).sample(rows, random_state=0)
    if target == "area_code":
        frame = frame.drop(columns=["churn"])
    schema = infer_schema(frame, target)
    if task == "binary":
        y: Any = (frame[target].astype(str) == "yes").to_numpy(int)
    elif task == "multiclass":
        y = pd.Categorical(frame[target]).codes.astype(np.int64)
    else:
        y = frame[target].to_numpy(float)
    estimator = BUILTIN_LEARNERS[learner].build({"n_estimators": 60, "subsample": 0.8}, task,
                                                0, 1)
    features = build_feature_pipeline(schema, ENCODINGS if path == CHURN else FeaturesSpec(),
                                      task=task)
    model = Pipeline([("features", features), ("model", estimator)])
    x = frame[schema.feature_columns]
    model.fit(x.iloc[:train], y[:train])
    return model, schema, x.iloc[train:]


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize(("path", "target", "task"), CASES)
def test_the_compiled_form_equals_the_pipeline_within_1e_6_in_batches_and_single_records(
        learner: str, path: Path, target: str, task: Task) -> None:
    model, schema, holdout = _fit(learner, path, target, task)
    compiled = compile_predictor(model, schema, task=task)
    assert compiled.kind == learner
    report = verify_compiled(compiled, model, holdout)  # all rows batched, 200 one at a time
    assert report.rows == len(holdout) and report.verified, report
    assert report.max_abs_diff <= 1e-6


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize(("path", "target", "task"), CASES)
def test_contributions_per_raw_column_sum_to_the_raw_score_within_1e_6(
        learner: str, path: Path, target: str, task: Task) -> None:
    model, schema, holdout = _fit(learner, path, target, task)
    explainer = contribution_explainer(model, schema, task=task)
    assert explainer.columns == schema.feature_columns  # one contribution per raw column
    encoded = np.asarray(model[0].transform(holdout), dtype=np.float64)
    raw = explainer.raw_scores(encoded)
    # The raw score is what the served prediction comes from.
    if task == "binary":
        np.testing.assert_allclose(1 / (1 + np.exp(-raw[:, 0])),
                                   model.predict_proba(holdout)[:, 1], atol=1e-6)
    elif task == "multiclass":
        soft = np.exp(raw - raw.max(axis=1, keepdims=True))
        np.testing.assert_allclose(soft / soft.sum(axis=1, keepdims=True),
                                   model.predict_proba(holdout), atol=1e-6)
    else:
        np.testing.assert_allclose(raw[:, 0], model.predict(holdout), rtol=1e-6)
    batch = explainer.explain_columns({c: holdout[c] for c in holdout.columns}, len(holdout))
    outputs = 3 if task == "multiclass" else 1
    assert batch.values.shape == (len(holdout), outputs, len(schema.feature_columns))
    assert np.abs(batch.raw - raw).max() <= 1e-6
    records = holdout.head(50).to_dict(orient="records")
    single = np.array([explainer.explain_records([r]).raw[0] for r in records])
    assert np.abs(single - raw[:50]).max() <= 1e-6


@pytest.mark.parametrize("learner", LEARNERS)
def test_xgboost_and_catboost_contributions_of_one_hot_and_target_encoded_columns_fold_back(
        learner: str) -> None:
    model, schema, holdout = _fit(learner, CHURN, "churn", "binary")
    explainer = contribution_explainer(model, schema, task="binary")
    encoded = np.asarray(model[0].transform(holdout), dtype=np.float64)
    names = list(model[0].get_feature_names_out())
    per_feature = explainer._trees.contributions(encoded)[:, 0, :-1]
    folded = explainer.explain_matrix(encoded).values[:, 0, :]
    for column in ("international_plan", "state"):
        positions = [i for i, n in enumerate(names) if n.split("__")[-1].startswith(column)]
        assert len(positions) >= 1
        np.testing.assert_allclose(folded[:, schema.feature_columns.index(column)],
                                   per_feature[:, positions].sum(axis=1), atol=1e-9)


@pytest.mark.parametrize("learner", LEARNERS)
def test_onnx_export_of_an_xgboost_or_catboost_model_is_refused_naming_the_model_step(
        learner: str) -> None:
    pytest.importorskip("skl2onnx", reason='needs the onnx extra: pip install "flywheel[onnx]"')
    from flywheel.core.errors import OnnxExportError
    from flywheel.features._onnx_convert import convert_to_onnx

    model, schema, _ = _fit(learner, CHURN, "churn", "binary", rows=600, train=500)
    with pytest.raises(OnnxExportError, match="Cannot export step 'model' .*no ONNX converter"):
        convert_to_onnx(model, schema, task="binary")
