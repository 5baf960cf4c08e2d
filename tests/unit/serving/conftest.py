"""A real model for the serving tests: a LightGBM pipeline fitted on 600 churn rows, served
through its pipeline (``build_loaded_model``), as a server holds it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from flywheel.core.spec import FeaturesSpec
from flywheel.data import DataSchema, infer_schema
from flywheel.features import build_feature_pipeline
from flywheel.serving import ServedModel, build_loaded_model

CHURN = Path(__file__).resolve().parents[3] / "examples" / "churn" / "mlc_churn.parquet"


@dataclasses.dataclass(frozen=True)
class ChurnModel:
    pipeline: Pipeline
    schema: DataSchema
    served: ServedModel
    records: list[dict[str, Any]]
    """Forty rows the model did not see, as JSON clients send them."""
    expected: np.ndarray
    """The pipeline's probabilities for ``records``."""


@pytest.fixture(scope="session")
def churn() -> ChurnModel:
    frame = pd.read_parquet(CHURN)
    train, unseen = frame.head(600), frame.iloc[1000:1040]
    schema = infer_schema(train, "churn")
    features = build_feature_pipeline(schema, FeaturesSpec(), task="binary")
    y = (train["churn"] == "yes").to_numpy()
    model = lgb.LGBMClassifier(n_estimators=20, verbosity=-1, n_jobs=1, random_state=0)
    model.fit(features.fit_transform(train, y), y)
    pipeline = Pipeline([("features", features), ("model", model)])
    tags = {"flywheel.task": "binary", "flywheel.classes": '["no", "yes"]'}
    served = ServedModel(build_loaded_model("churn", "1", pipeline, schema, tags))
    records = json.loads(unseen[schema.feature_columns].to_json(orient="records"))
    return ChurnModel(pipeline, schema, served, records,
                      pipeline.predict_proba(unseen[schema.feature_columns]))
