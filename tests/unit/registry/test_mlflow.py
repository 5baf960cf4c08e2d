from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from lightgbm import LGBMClassifier
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from flywheel.core.errors import (
    FlywheelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelSerializationError,
    RegistryError,
    TrackingUnreachableError,
)
from flywheel.core.spec import parse_spec
from flywheel.core.workspace import Workspace
from flywheel.demo import free_port
from flywheel.registry import LoggedModel, MlflowRegistry, ModelVersionInfo
from flywheel.registry._retry import is_contention, retry_on_contention
from flywheel.registry._server import ServerLimits, apply_limits

EXPERIMENT = "flywheel-tests"
FINGERPRINT = "sha256:" + "ab12" * 16


# Fixtures: one SQLite store per module (MLflow's first start runs its migrations, ~seconds).

@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def make_registry(store: tuple[str, str], model_name: str) -> MlflowRegistry:
    uri, artifacts = store
    return MlflowRegistry(uri, artifact_location=artifacts, experiment=EXPERIMENT,
                          model_name=model_name)


@pytest.fixture(scope="module")
def reg(store: tuple[str, str]) -> MlflowRegistry:
    return make_registry(store, "churn")


@pytest.fixture(scope="module")
def client(store: tuple[str, str], reg: MlflowRegistry) -> MlflowClient:
    return MlflowClient(tracking_uri=store[0], registry_uri=store[0])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 240
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    return pd.DataFrame({
        "x": x,
        "z": rng.normal(size=n),
        "count": rng.integers(0, 20, size=n).astype(float),
        "colour": colour,
        "label": ((x + (colour == "red") + rng.normal(scale=0.5, size=n)) > 0.5).astype(int),
    })


@pytest.fixture(scope="module")
def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="label")


@pytest.fixture(scope="module")
def linear(frame: pd.DataFrame) -> Pipeline:
    numeric = frame[["x", "z", "count"]]
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(
        numeric, frame["label"])


@pytest.fixture(scope="module")
def lgbm(frame: pd.DataFrame, features: pd.DataFrame) -> Pipeline:
    prep = ColumnTransformer([("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"])],
                             remainder="passthrough")
    model = LGBMClassifier(n_estimators=20, num_leaves=7, min_child_samples=5, verbose=-1)
    return Pipeline([("prep", prep), ("model", model)]).fit(features, frame["label"])


@pytest.fixture(scope="module")
def run_id(reg: MlflowRegistry) -> str:
    with reg.parent_run("train-fixture", tags={"flywheel.test": "yes"},
                        params={"metric": "roc_auc"}) as rid:
        pass
    return rid


@pytest.fixture(scope="module")
def logged_linear(reg: MlflowRegistry, run_id: str, linear: Pipeline,
                  frame: pd.DataFrame) -> LoggedModel:
    return reg.log_model(run_id, linear, input_example=frame[["x", "z", "count"]].head(5))


@pytest.fixture(scope="module")
def logged_lgbm(reg: MlflowRegistry, run_id: str, lgbm: Pipeline,
                features: pd.DataFrame) -> LoggedModel:
    return reg.log_model(run_id, lgbm, input_example=features.head(5),
                         pyfunc_predict_fn="predict_proba")


def double(values: Any) -> Any:
    return values * 2


# Surface and construction.

def spec_with(tmp_path: Path, tracking: dict[str, Any] | None = None) -> Any:
    raw = {"name": "churn", "data": {"path": "data.csv"},
           "target": {"column": "label", "task": "binary"}}
    if tracking is not None:
        raw["tracking"] = tracking
    spec = parse_spec(raw)
    spec._root = tmp_path
    return spec


def test_for_project_defaults_to_sqlite_and_artifacts_inside_the_workspace(
        tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    reg = MlflowRegistry.for_project(spec_with(tmp_path), workspace)
    assert not workspace.root.exists()  # nothing is opened until first use
    assert reg.tracking_uri == f"sqlite:///{tmp_path.resolve() / '.flywheel' / 'mlflow.db'}"
    assert reg.tracking_uri.startswith("sqlite:////")
    assert reg.artifact_location == (tmp_path.resolve() / ".flywheel" / "artifacts").as_uri()
    assert (reg.experiment, reg.model_name) == ("churn", "churn")


def test_for_project_follows_the_tracking_section_and_resolves_relative_paths(
        tmp_path: Path) -> None:
    spec = spec_with(tmp_path, {"tracking_uri": "sqlite:///db/runs.db",
                                "artifact_location": "store", "experiment": "exp",
                                "model_name": "churn-model"})
    reg = MlflowRegistry.for_project(spec, Workspace(tmp_path))
    assert reg.tracking_uri == f"sqlite:///{tmp_path / 'db' / 'runs.db'}"
    assert reg.artifact_location == (tmp_path / "store").as_uri()
    assert (reg.experiment, reg.model_name) == ("exp", "churn-model")
    remote = spec_with(tmp_path, {"tracking_uri": "http://mlflow:5000",
                                  "artifact_location": "s3://bucket/flywheel"})
    reg = MlflowRegistry.for_project(remote, Workspace(tmp_path))
    assert (reg.tracking_uri, reg.artifact_location) == ("http://mlflow:5000",
                                                         "s3://bucket/flywheel")


# Runs, trials, datasets.

def test_parent_run_ends_finished_with_its_tags_and_params(
        reg: MlflowRegistry, client: MlflowClient, run_id: str) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "train-fixture"
    assert run.data.tags["flywheel.test"] == "yes"
    assert run.data.params == {"metric": "roc_auc"}


def test_parent_run_ends_failed_and_the_error_propagates(
        reg: MlflowRegistry, client: MlflowClient) -> None:
    with pytest.raises(ValueError, match="boom"), \
            reg.parent_run("train-fails", tags={}, params={"search": {"trials": 3}}) as rid:
        raise ValueError("boom")
    run = client.get_run(rid)
    assert run.info.status == "FAILED"
    assert run.data.tags["flywheel.error"] == "ValueError: boom"
    assert run.data.params == {"search.trials": "3"}


def test_parent_run_ends_killed_on_keyboard_interrupt(
        reg: MlflowRegistry, client: MlflowClient) -> None:
    with pytest.raises(KeyboardInterrupt), \
            reg.parent_run("train-interrupted", tags={}, params={}) as rid:
        raise KeyboardInterrupt
    assert client.get_run(rid).info.status == "KILLED"


def test_trials_are_child_runs_nested_under_the_parent(
        reg: MlflowRegistry, client: MlflowClient) -> None:
    with reg.parent_run("train-trials", tags={}, params={}) as parent:
        done = reg.log_trial(parent, 0, params={"learner": "lightgbm", "num_leaves": 31},
                             metrics={"cv_roc_auc": 0.81}, state="complete", duration_s=2.5)
        pruned = reg.log_trial(parent, 1, params={"learner": "linear", "C": 0.1},
                               metrics={"cv_partial": 0.6}, state="pruned", duration_s=0.5)
        failed = reg.log_trial(parent, 2, params={"learner": "linear", "C": None},
                               metrics={}, state="fail", duration_s=0.1,
                               error="ValueError: bad C")
    runs = {r.info.run_id: r for r in client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'")}
    assert set(runs) == {done, pruned, failed}
    first = runs[done]
    assert first.info.run_name == "trial-0"
    assert first.info.status == "FINISHED"
    assert first.data.params == {"learner": "lightgbm", "num_leaves": "31"}
    assert first.data.metrics == {"cv_roc_auc": 0.81, "duration_s": 2.5}
    assert first.info.end_time - first.info.start_time == 2500
    assert runs[pruned].info.status == "KILLED"
    assert runs[pruned].data.tags["flywheel.trial_state"] == "pruned"
    assert runs[failed].info.status == "FAILED"
    assert runs[failed].data.tags["flywheel.error"] == "ValueError: bad C"


def test_dataset_input_digest_is_our_fingerprint(
        reg: MlflowRegistry, client: MlflowClient, frame: pd.DataFrame) -> None:
    with reg.parent_run("train-dataset", tags={}, params={}) as rid:
        reg.log_dataset(rid, frame, name="churn.parquet", fingerprint=FINGERPRINT)
    (dataset_input,) = client.get_run(rid).inputs.dataset_inputs
    dataset = dataset_input.dataset
    # MLflow caps digests at 36 characters: the digest is our fingerprint's prefix.
    assert dataset.digest == FINGERPRINT[:36]
    assert FINGERPRINT.startswith(dataset.digest)
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags == {"mlflow.data.context": "training", "flywheel.fingerprint": FINGERPRINT}
    assert dataset.name == "churn.parquet"
    assert json.loads(dataset.profile)["num_rows"] == len(frame)
    schema_names = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
    assert schema_names == list(frame.columns)


def test_metrics_tags_and_text_artifacts_land_on_the_run(
        reg: MlflowRegistry, client: MlflowClient, tmp_path: Path) -> None:
    with reg.parent_run("train-logging", tags={}, params={}) as rid:
        reg.log_metrics(rid, {"holdout_roc_auc": 0.9, "cv_roc_auc": 0.88})
        reg.set_tags(rid, {"flywheel.learner": "lightgbm", "long": "x" * 9000})
        reg.log_artifact_text(rid, "meta/schema.yaml", "columns: []\n")
    run = client.get_run(rid)
    assert run.data.metrics == {"holdout_roc_auc": 0.9, "cv_roc_auc": 0.88}
    assert run.data.tags["flywheel.learner"] == "lightgbm"
    assert len(run.data.tags["long"]) == 8000
    path = client.download_artifacts(rid, "meta/schema.yaml", str(tmp_path))
    assert Path(path).read_text() == "columns: []\n"


# Logging and loading models.

def test_linear_pipeline_loads_back_from_the_registry_predicting_the_same(
        reg: MlflowRegistry, logged_linear: LoggedModel, linear: Pipeline,
        frame: pd.DataFrame) -> None:
    version = reg.register(logged_linear, tags={"flywheel.data_fingerprint": FINGERPRINT})
    loaded = reg.load_model(version.version)
    numeric = frame[["x", "z", "count"]]
    np.testing.assert_array_equal(loaded.predict(numeric), linear.predict(numeric))
    np.testing.assert_array_equal(loaded.predict_proba(numeric), linear.predict_proba(numeric))
    assert logged_linear.serialization == "skops"
    assert logged_linear.model_uri == f"models:/{logged_linear.model_id}"
    assert logged_linear.checksum.startswith("sha256:") and len(logged_linear.checksum) == 71


def test_lightgbm_pipeline_round_trips_trusting_exactly_its_recorded_types(
        reg: MlflowRegistry, client: MlflowClient, logged_lgbm: LoggedModel, lgbm: Pipeline,
        features: pd.DataFrame, tmp_path: Path) -> None:
    assert "lightgbm.basic.Booster" in logged_lgbm.trusted_types
    assert "lightgbm.sklearn.LGBMClassifier" in logged_lgbm.trusted_types
    assert list(logged_lgbm.trusted_types) == sorted(logged_lgbm.trusted_types)
    version = reg.register(logged_lgbm, tags={})
    loaded = reg.load_model(f"v{version.version}")
    np.testing.assert_array_equal(loaded.predict_proba(features), lgbm.predict_proba(features))
    # Recorded on the version, on the run (tag and JSON artifact) and in MLmodel alike.
    recorded = json.loads(version.tags["flywheel.trusted_types"])
    assert recorded == list(logged_lgbm.trusted_types)
    model_tags = client.get_logged_model(logged_lgbm.model_id).tags
    assert json.loads(model_tags["flywheel.trusted_types"]) == recorded
    path = client.download_artifacts(
        logged_lgbm.run_id, f"flywheel/{logged_lgbm.model_id}/trusted_types.json", str(tmp_path))
    assert json.loads(Path(path).read_text())["trusted_types"] == recorded
    mlmodel = yaml.safe_load((artifact_dir(logged_lgbm) / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["skops_trusted_types"] == recorded
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert mlmodel["flavors"]["python_function"]["predict_fn"] == "predict_proba"
    assert mlmodel["signature"]["inputs"]
    assert (artifact_dir(logged_lgbm) / "input_example.json").is_file()


def test_model_files_carry_a_checksum_on_the_run_and_in_a_manifest(
        client: MlflowClient, logged_linear: LoggedModel, tmp_path: Path) -> None:
    assert client.get_logged_model(logged_linear.model_id).tags["flywheel.checksum"] == \
        logged_linear.checksum
    path = client.download_artifacts(
        logged_linear.run_id, f"flywheel/{logged_linear.model_id}/checksums.sha256",
        str(tmp_path))
    manifest = Path(path).read_text()
    assert "sha256:" + hashlib.sha256(manifest.encode()).hexdigest() == logged_linear.checksum
    folder = artifact_dir(logged_linear)
    for line in manifest.splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert {line.split("  ")[1] for line in manifest.splitlines()} >= {"MLmodel", "model.skops"}


def artifact_dir(logged: LoggedModel) -> Path:
    return Path(logged.artifact_uri.removeprefix("file://"))


def test_a_tampered_model_file_is_refused(
        reg: MlflowRegistry, run_id: str, linear: Pipeline, frame: pd.DataFrame) -> None:
    logged = reg.log_model(run_id, linear, input_example=frame[["x", "z", "count"]].head(5))
    version = reg.register(logged, tags={})
    model_file = artifact_dir(logged) / "model.skops"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match=r"changed: model\.skops") as info:
        reg.load_model(version.version)
    assert info.value.version == version.version
    assert "flywheel train" in str(info.value)


def test_widening_the_trusted_types_in_mlmodel_is_refused(
        reg: MlflowRegistry, run_id: str, linear: Pipeline, frame: pd.DataFrame) -> None:
    logged = reg.log_model(run_id, linear, input_example=frame[["x", "z", "count"]].head(5))
    version = reg.register(logged, tags={})
    mlmodel = artifact_dir(logged) / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("skops_trusted_types: []",
                                                   "skops_trusted_types: [builtins.eval]"))
    with pytest.raises(ModelIntegrityError, match="changed: MLmodel"):
        reg.load_model(version.version)


def test_a_model_skops_cannot_serialize_is_refused_without_allow_pickle(
        reg: MlflowRegistry, run_id: str, frame: pd.DataFrame) -> None:
    numeric = frame[["x", "z", "count"]]
    model = Pipeline([("double", FunctionTransformer(lambda v: v * 2)),
                      ("model", LogisticRegression())]).fit(numeric, frame["label"])
    with pytest.raises(ModelSerializationError, match=r"set training\.allow_pickle: true") as info:
        reg.log_model(run_id, model, input_example=numeric.head(5))
    assert "FunctionTransformer" in str(info.value)
    assert "<lambda>" in str(info.value)


def test_a_model_skops_cannot_serialize_is_logged_with_pickle_when_allowed(
        reg: MlflowRegistry, client: MlflowClient, run_id: str, frame: pd.DataFrame) -> None:
    numeric = frame[["x", "z", "count"]]
    model = Pipeline([("double", FunctionTransformer(lambda v: v * 2)),
                      ("model", LogisticRegression())]).fit(numeric, frame["label"])
    logged = reg.log_model(run_id, model, input_example=numeric.head(5), allow_pickle=True)
    assert (logged.serialization, logged.trusted_types) == ("pickle", ())
    mlmodel = yaml.safe_load((artifact_dir(logged) / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    version = reg.register(logged, tags={})
    assert version.tags["flywheel.serialization"] == "pickle"
    with pytest.raises(ModelSerializationError, match="runs code on load"):
        reg.load_model(version.version)
    loaded = reg.load_model(version.version, allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict_proba(numeric), model.predict_proba(numeric))


def test_a_module_level_function_is_saved_with_skops_trusting_it(
        reg: MlflowRegistry, run_id: str, frame: pd.DataFrame) -> None:
    numeric = frame[["x", "z", "count"]]
    model = Pipeline([("double", FunctionTransformer(double)),
                      ("model", LogisticRegression())]).fit(numeric, frame["label"])
    logged = reg.log_model(run_id, model, input_example=numeric.head(5),
                           extra_trusted_types=["numpy.log1p"])
    assert logged.serialization == "skops"
    assert logged.trusted_types == ("numpy.log1p", f"{__name__}.double")


# Registration, aliases, lookups.

def test_first_version_is_champion_and_later_ones_challenger(
        store: tuple[str, str], logged_linear: LoggedModel) -> None:
    reg = make_registry(store, "aliases")
    first = reg.register(logged_linear, tags={})
    assert (first.version, first.aliases) == ("1", ("champion",))
    second = reg.register(logged_linear, tags={})
    assert (second.version, second.aliases) == ("2", ("challenger",))
    third = reg.register(logged_linear, tags={})
    assert third.aliases == ("challenger",)
    assert reg.alias_version("champion") == "1"
    assert reg.alias_version("challenger") == "3"
    assert [v.aliases for v in reg.versions()] == [("challenger",), (), ("champion",)]


def test_versions_are_newest_first_with_tags_run_and_creation_time(
        store: tuple[str, str], logged_linear: LoggedModel) -> None:
    reg = make_registry(store, "listing")
    assert reg.versions() == []
    before = time.time()
    reg.register(logged_linear, tags={"flywheel.data_fingerprint": FINGERPRINT,
                                      "flywheel.holdout_roc_auc": "0.91"})
    reg.register(logged_linear, tags={"flywheel.spec_hash": "abc"})
    versions = reg.versions()
    assert [v.version for v in versions] == ["2", "1"]
    assert all(isinstance(v, ModelVersionInfo) for v in versions)
    oldest = versions[1]
    assert oldest.tags["flywheel.data_fingerprint"] == FINGERPRINT
    assert oldest.tags["flywheel.holdout_roc_auc"] == "0.91"
    assert oldest.tags["flywheel.checksum"] == logged_linear.checksum
    assert oldest.run_id == logged_linear.run_id
    assert oldest.status == "READY"
    assert oldest.created.tzinfo is not None
    assert before - 1 <= oldest.created.timestamp() <= time.time() + 1


def test_set_alias_moves_the_alias_to_the_given_version(
        store: tuple[str, str], logged_linear: LoggedModel) -> None:
    reg = make_registry(store, "promotion")
    reg.register(logged_linear, tags={})
    reg.register(logged_linear, tags={})
    reg.set_alias("champion", "2")
    assert reg.alias_version("champion") == "2"
    assert reg.versions()[1].aliases == ()
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        reg.set_alias("champion", "7")


def test_an_unknown_alias_raises_model_not_found_naming_what_exists(
        store: tuple[str, str], logged_linear: LoggedModel) -> None:
    reg = make_registry(store, "lookups")
    reg.register(logged_linear, tags={})
    with pytest.raises(ModelNotFoundError) as info:
        reg.load_model("production")
    message = str(info.value)
    assert "no alias 'production'" in message
    assert "version(s) 1" in message and "champion = 1" in message
    assert "`flywheel models` lists versions" in message
    assert isinstance(info.value, LookupError) and isinstance(info.value, RegistryError)
    assert info.value.exit_code == 2
    assert reg.alias_version("production") is None
    with pytest.raises(ModelNotFoundError, match="no version 9"):
        reg.load_model("9")


def test_a_model_with_no_versions_says_how_to_register_one(store: tuple[str, str]) -> None:
    reg = make_registry(store, "never-registered")
    with pytest.raises(ModelNotFoundError, match="`flywheel train` registers the first one"):
        reg.load_model("champion")
    assert reg.alias_version("champion") is None


def test_reading_a_store_that_does_not_exist_yet_does_not_create_it(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    reg = MlflowRegistry(f"sqlite:///{db}", artifact_location=None, experiment="e",
                         model_name="new")
    assert reg.versions() == []
    assert reg.alias_version("champion") is None
    with pytest.raises(ModelNotFoundError, match="no versions yet"):
        reg.load_model("1")
    assert not db.exists()


def test_register_refuses_a_logged_model_whose_checksum_disagrees_with_the_store(
        store: tuple[str, str], logged_linear: LoggedModel) -> None:
    reg = make_registry(store, "forged")
    forged = dataclasses.replace(logged_linear, checksum="sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="Log the model again"):
        reg.register(forged, tags={})
    assert reg.versions() == []


def test_registry_errors_are_flywheel_errors() -> None:
    for cls in (RegistryError, ModelNotFoundError, ModelIntegrityError,
                ModelSerializationError):
        assert issubclass(cls, FlywheelError)


def test_mlflow_prints_no_links_or_progress_bars(
        capsys: pytest.CaptureFixture[str], store: tuple[str, str], reg: MlflowRegistry,
        linear: Pipeline, frame: pd.DataFrame) -> None:
    capsys.readouterr()
    with reg.parent_run("train-quiet", tags={}, params={"a": 1}) as rid:
        reg.log_trial(rid, 0, params={"a": 1}, metrics={"m": 1.0}, state="complete",
                      duration_s=0.1)
        logged = reg.log_model(rid, linear, input_example=frame[["x", "z", "count"]].head(5))
    quiet = make_registry(store, "quiet")
    quiet.load_model(quiet.register(logged, tags={}).version)
    out, err = capsys.readouterr()
    assert out == ""
    assert "Downloading artifacts" not in err


# Contention.

class Locked(Exception):
    pass


def test_retry_on_contention_retries_a_locked_database_then_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Locked("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry_on_contention(flaky, first_delay=0.001) == "ok"
    assert len(calls) == 3


def test_retry_on_contention_does_not_retry_other_errors() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("no such table")

    with pytest.raises(ValueError):
        retry_on_contention(broken, first_delay=0.001)
    assert len(calls) == 1
    assert is_contention(RuntimeError("x")) is False


def register_many(store: tuple[str, str], model_name: str, logged: LoggedModel, count: int,
                  barrier: Any, results: Any) -> None:
    reg = make_registry(store, model_name)
    barrier.wait(timeout=120)
    results.put([reg.register(logged, tags={}).version for _ in range(count)])


@pytest.mark.slow
def test_concurrent_registrations_get_distinct_versions_and_consistent_aliases(
        store: tuple[str, str], logged_linear: LoggedModel) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    count = 4
    workers = [context.Process(target=register_many,
                               args=(store, "concurrent", logged_linear, count, barrier,
                                     results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    versions = sorted(int(v) for batch in got for v in batch)
    assert versions == list(range(1, 2 * count + 1))
    reg = make_registry(store, "concurrent")
    assert reg.alias_version("champion") == "1"
    assert reg.alias_version("challenger") == str(2 * count)
    listed = reg.versions()
    assert [v.version for v in listed] == [str(n) for n in range(2 * count, 0, -1)]
    assert sum(len(v.aliases) for v in listed) == 2


def test_the_store_stamp_changes_when_an_alias_moves_and_not_when_only_read(
        store: tuple[str, str], logged_linear: LoggedModel) -> None:
    reg = make_registry(store, "stamped")
    reg.register(logged_linear, tags={})
    reg.register(logged_linear, tags={})
    reg.set_alias("champion", "1")
    before = reg.store_stamp()
    assert before is not None
    reg.aliases_and_tags()
    assert reg.store_stamp() == before
    reg.set_alias("champion", "2")
    assert reg.store_stamp() != before


def test_a_server_store_has_no_stamp_and_is_always_read() -> None:
    reg = MlflowRegistry("http://127.0.0.1:1", artifact_location=None, experiment="e",
                         model_name="m")
    assert reg.store_stamp() is None


# An unreachable tracking server.

def closed_port() -> int:
    """A loopback port nothing listens on: bound for a moment, then released."""
    return free_port()


@pytest.fixture
def mlflow_http_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # The registry sets MLflow's variables from its limits; monkeypatch restores them after.
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_closed_tracking_port_fails_within_seconds_with_a_clear_error(
        mlflow_http_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    reg = MlflowRegistry(uri, artifact_location=None, experiment="e", model_name="m",
                         limits=ServerLimits(retries=2, backoff_s=1))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="flywheel.registry"), \
            pytest.raises(TrackingUnreachableError) as caught:
        reg.versions()
    elapsed = time.monotonic() - started
    assert elapsed < 5.0  # MLflow's own defaults: about 250 s
    assert caught.value.exit_code == 2 and isinstance(caught.value, RegistryError)
    message = str(caught.value)
    assert uri in message and "connection refused" in message
    assert "after 3 attempt(s)" in message and "tracking.tracking_uri" in message
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "retrying 2 more time(s)" in warned[0]


def test_a_server_that_accepts_but_never_answers_times_out_within_the_limits(
        mlflow_http_env: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:  # the kernel completes connections it never accepts
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        reg = MlflowRegistry(uri, artifact_location=None, experiment="e", model_name="m",
                             limits=ServerLimits(request_timeout_s=1, retries=1, backoff_s=0))
        started = time.monotonic()
        with pytest.raises(TrackingUnreachableError, match="timed out|connection failed"):
            reg.versions()
        assert time.monotonic() - started < 10.0  # 2 attempts of 1 s, not 8 of 120 s
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"


def test_mlflow_http_variables_set_by_the_user_win_over_the_spec(
        mlflow_http_env: pytest.MonkeyPatch) -> None:
    mlflow_http_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    apply_limits(ServerLimits(retries=1, request_timeout_s=7, backoff_s=3))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    apply_limits(ServerLimits(retries=1, request_timeout_s=9, backoff_s=3))  # a later registry
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "9"


def test_for_project_takes_the_server_limits_from_the_tracking_section(tmp_path: Path) -> None:
    spec = spec_with(tmp_path, {"tracking_uri": "http://mlflow:5000", "retries": 4,
                                "backoff_seconds": 0, "connect_timeout_seconds": 0.5,
                                "request_timeout_seconds": 12})
    reg = MlflowRegistry.for_project(spec, Workspace(tmp_path))
    assert reg.limits == ServerLimits(connect_timeout_s=0.5, request_timeout_s=12, retries=4,
                                      backoff_s=0)


def open_new_store(store: tuple[str, str], barrier: Any, results: Any) -> None:
    reg = make_registry(store, "first-open")
    barrier.wait(timeout=120)
    try:
        with reg.parent_run("first-open") as run_id:
            reg.log_metrics(run_id, {"opened": 1.0})
        results.put(("ok", ""))
    except Exception as exc:  # reported to the test, which names it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_store_at_once_all_open_it(tmp_path: Path) -> None:
    """Without the lock, MLflow's migrations in two processes collide on a new store
    (alembic's "expected to match one row ... 0 found", "_alembic_tmp_params already exists")."""
    store = (f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}", str(tmp_path / "artifacts"))
    context = multiprocessing.get_context("spawn")
    count = 4
    barrier, results = context.Barrier(count), context.Queue()
    workers = [context.Process(target=open_new_store, args=(store, barrier, results))
               for _ in range(count)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert got == [("ok", "")] * count
    assert len(make_registry(store, "first-open").find_runs("metrics.opened = 1")) == count
