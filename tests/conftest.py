"""Shared by every test: the example data sets, small projects and registered versions."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel.core.openmp import share_cores

# The suite trains in this process beside the servers, Ray nodes and load generators it starts
# on the same cores: the shared-cores case (flywheel/core/openmp.py). Set before any test
# imports LightGBM.
share_cores()

if TYPE_CHECKING:
    from flywheel import Project
    from flywheel.core.spec import ProjectSpec
    from flywheel.pipelines._context import ProjectContext
    from flywheel.testing import MlflowServer, PostgresCluster, S3Server
    from flywheel.training import SearchProblem

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


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session (initdb/pg_ctl in a tmp folder)."""
    from flywheel.testing import PostgresCluster, require_postgres

    require_postgres()
    with PostgresCluster(tmp_path_factory.mktemp("postgres")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on a loopback port, with a ``flywheel`` bucket."""
    from flywheel.testing import S3Server

    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
def pg_mlflow_server(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster,
                     s3: S3Server) -> Iterator[MlflowServer]:
    """`mlflow server` whose backend store is PostgreSQL, artifacts proxied to the S3 store."""
    from flywheel.testing import MlflowServer

    url = postgres.create_database("mlflow_server")
    with MlflowServer(tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=url,
                      artifacts_destination="s3://flywheel/mlartifacts",
                      env=s3.env()) as server:
        yield server


def register_lightgbm(project: ProjectContext, *, train_rows: int, seed: int = 0,
                      trees: int = 40) -> tuple[str, Any, pd.DataFrame]:
    """A LightGBM pipeline on the first ``train_rows`` rows of the project's data, registered
    as training registers one (schema.yaml, train_rows.json, profile.json, task and class
    tags); returns the version, the fitted model and the rows it did not train on."""
    import lightgbm as lgb
    from sklearn.pipeline import Pipeline

    from flywheel.core.spec import FeaturesSpec
    from flywheel.data import profile_frame
    from flywheel.features import FEATURE_TRUSTED_TYPES, build_feature_pipeline
    from flywheel.pipelines._gating import TRAIN_ROWS_ARTIFACT, train_rows_record

    schema = project.schema
    frame = project.load_data()
    x, y = frame[schema.feature_columns], (frame[schema.target] == "yes").to_numpy(int)
    booster = lgb.LGBMClassifier(n_estimators=trees, verbosity=-1, n_jobs=1, random_state=seed)
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(),
                                                          task="binary")), ("model", booster)])
    model.fit(x.head(train_rows), y[:train_rows])
    registry = project.registry()
    with registry.parent_run("test") as run_id:
        registry.log_artifact_text(run_id, "schema.yaml", schema.to_yaml())
        registry.log_artifact_text(run_id, TRAIN_ROWS_ARTIFACT,
                                   train_rows_record(x.head(train_rows), schema.feature_columns))
        registry.log_artifact_text(run_id, "profile.json",
                                   profile_frame(frame.head(train_rows), schema).to_json())
        logged = registry.log_model(run_id, model, input_example=x.head(3),
                                    extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                    pyfunc_predict_fn="predict_proba")
        tags = {**PASSED_TAGS, "flywheel.task": "binary", "flywheel.classes": '["no", "yes"]'}
        version = registry.register(logged, tags=tags).version
    return version, model, x.iloc[train_rows:]


def search_problem(tmp_path: Path, spec: ProjectSpec, *, rows: int = 200) -> SearchProblem:
    """A binary search problem on two normal columns (``y`` follows ``x`` with noise), three
    seeded folds and an Optuna study in ``tmp_path``, for tests that run a search directly."""
    from flywheel.data import infer_schema
    from flywheel.training import SearchProblem, cv_folds, encode_target

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "z": rng.normal(size=rows)})
    frame["y"] = np.where(frame["x"] + rng.normal(scale=0.5, size=rows) > 0, "yes", "no")
    y, _ = encode_target(frame["y"], spec.target)
    return SearchProblem(frame=frame[["x", "z"]], y=y,
                         folds=cv_folds(y, task="binary", k=3, seed=0),
                         schema=infer_schema(frame, "y"), spec=spec, metric_name="roc_auc",
                         storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="t-1",
                         n_jobs=1)


def require_learner(module: str) -> Any:
    """Import an optional learner's package (``xgboost``, ``catboost``), or skip the test,
    naming the extra that installs it; under CI=true a missing package fails instead."""
    import importlib

    from flywheel.testing import under_ci

    try:
        return importlib.import_module(module)
    except ImportError:
        message = f'needs the {module} package; install it with `pip install "flywheel[{module}]"`'
        if under_ci():
            pytest.fail(f"{message} (CI=true: a missing engine fails instead of skipping)")
        pytest.skip(message)
