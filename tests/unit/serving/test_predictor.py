from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from flywheel.core.spec import FeaturesSpec
from flywheel.data import infer_schema
from flywheel.features import build_feature_pipeline
from flywheel.serving import build_loaded_model
from flywheel.training import EnsembleModel

CHURN = Path(__file__).resolve().parents[3] / "examples" / "churn" / "mlc_churn.parquet"


def _fitted() -> tuple[Pipeline, pd.DataFrame, object]:
    frame = pd.read_parquet(CHURN).head(600)
    schema = infer_schema(frame, "churn")
    features = build_feature_pipeline(schema, FeaturesSpec(), task="binary")
    y = (frame["churn"] == "yes").to_numpy()
    model = lgb.LGBMClassifier(n_estimators=20, verbosity=-1, n_jobs=1, random_state=0)
    model.fit(features.fit_transform(frame, y), y)
    return Pipeline([("features", features), ("model", model)]), frame, schema


def test_an_unverified_version_serves_through_its_pipeline_with_the_same_answers() -> None:
    pipeline, frame, schema = _fitted()
    tags = {"flywheel.task": "binary", "flywheel.classes": '["no", "yes"]'}
    slow = build_loaded_model("m", "1", pipeline, schema, tags)
    fast = build_loaded_model("m", "2", pipeline, schema,
                              {**tags, "flywheel.compiled.verified": "true"})
    assert (slow.fast, fast.fast) == (False, True)
    records = frame[schema.feature_columns].head(20).to_dict(orient="records")
    labels, proba = slow.answer(records)
    assert labels == fast.answer(records)[0]
    np.testing.assert_allclose(proba, fast.answer(records)[1], atol=1e-9)
    np.testing.assert_allclose(np.asarray(proba), pipeline.predict_proba(frame.head(20)),
                               atol=1e-12)


def test_an_ensembles_lightgbm_members_serve_single_threaded() -> None:
    pipeline, frame, schema = _fitted()
    y = (frame["churn"] == "yes").to_numpy(dtype=int)
    members = [clone(pipeline).set_params(model__n_jobs=-1) for _ in range(2)]
    ensemble = EnsembleModel(members, [0.5, 0.5], task="binary").fit(
        frame[schema.feature_columns], y)
    assert [m[-1].n_jobs for m in ensemble.members_] == [-1, -1]
    tags = {"flywheel.task": "binary", "flywheel.classes": '["no", "yes"]',
            "flywheel.compiled.verified": "true"}
    loaded = build_loaded_model("m", "1", ensemble, schema, tags)
    assert [m[-1].n_jobs for m in ensemble.members_] == [1, 1]
    assert loaded.form == "compiled"
