"""Shared by every test: the example data sets, small projects and registered versions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
import yaml

if TYPE_CHECKING:
    from flywheel import Project
    from flywheel.pipelines._context import ProjectContext

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CHURN = EXAMPLES / "churn" / "mlc_churn.parquet"
FLIGHTS = REPO / "src" / "flywheel" / "demo" / "data" / "nycflights13_flights.parquet"
DIAMONDS = EXAMPLES / "diamonds" / "diamonds.parquet"


FAST = {"cv_folds": 3, "search": {"trials": 4, "seed": 0}}
"""Training settings that keep a test's search to seconds."""
FAILED_TAGS = {"flywheel.gates.passed": "false",
               "flywheel.gates.summary": "1 of 4 gates failed: latency",
               "flywheel.gates.latency": "fail: single-row p99 25.00 ms; budget p99 10 ms"}
PASSED_TAGS = {"flywheel.gates.passed": "true", "flywheel.gates.summary": "all 4 gates passed",
               "flywheel.gates.champion": "pass: roc_auc gain +0.0010, 95 % CI [-0.004, +0.006]"}


@pytest.fixture(scope="session")
def churn() -> pd.DataFrame:
    return pd.read_parquet(CHURN)


def make_project(root: Path, *, data: Path = CHURN, target: str = "churn",
                 training: dict[str, object] | None = None, frame: pd.DataFrame | None = None
                 ) -> Project:
    """A project at ``root`` on a copy of ``data`` (or ``frame``), with ``FAST`` training."""
    from flywheel import Project

    root.mkdir(parents=True, exist_ok=True)
    path = root / (data.stem + ".parquet")
    if frame is not None:
        frame.to_parquet(path)
    else:
        shutil.copy(data, path)
    Project.init(path, target, directory=root)
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["training"] = {**raw["training"], **FAST, **(training or {})}
    spec_path.write_text(yaml.safe_dump(raw))
    return Project.load(spec_path)


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, pd.DataFrame]:
    """A small churn model, fitted once; the tests register it as many versions as they need."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from flywheel.core.spec import FeaturesSpec
    from flywheel.data import infer_schema
    from flywheel.features import build_feature_pipeline

    frame = pd.read_parquet(CHURN).head(800)
    schema = infer_schema(frame, "churn")
    x = frame[schema.feature_columns]
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(), task="binary",
                                                          scale_numeric=True)),
                      ("model", LogisticRegression(max_iter=300))])
    return model.fit(x, (frame["churn"] == "yes").to_numpy(int)), x


def add_version(project: ProjectContext, fitted: tuple[Any, pd.DataFrame], *, passed: bool = True
                ) -> str:
    """Register the fitted model as a new version with recorded gate results."""
    from flywheel.features import FEATURE_TRUSTED_TYPES

    model, x = fitted
    registry = project.registry()
    with registry.parent_run("test") as run_id:
        logged = registry.log_model(run_id, model, input_example=x.head(3),
                                    extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                    pyfunc_predict_fn="predict_proba")
        return registry.register(logged, tags=PASSED_TAGS if passed else FAILED_TAGS).version


def aliases(project: ProjectContext) -> dict[str, str]:
    """Where each alias points: alias -> version number."""
    return {a: v.version for v in project.registry().versions() for a in v.aliases}


def make_mixed(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A small mixed table: numeric, integer, categorical, boolean, datetime, id, binary target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "x": x,
        "count": rng.integers(0, 50, size=n),
        "colour": colour,
        "flag": rng.random(n) < 0.3,
        "when": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "constant": "same",
    })
    logit = 1.5 * x + (colour == "red") - 0.5
    frame["label"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return frame


@pytest.fixture
def mixed() -> pd.DataFrame:
    return make_mixed()
