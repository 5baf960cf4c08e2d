"""The behaviour every registry back end must have, as a test class to subclass.

After Optuna's ``StorageTestCase``: a back end's tests subclass :class:`RegistryContract` and
provide three fixtures; every test here then runs against that back end.

    class TestMlflowOnSqlite(RegistryContract):
        @pytest.fixture(scope="class")
        def factory(self, tmp_path_factory):
            root = tmp_path_factory.mktemp("store")
            return functools.partial(MlflowRegistry, f"sqlite:///{root}/mlflow.db",
                                     artifact_location=(root / "a").as_uri(), experiment="e")

        @pytest.fixture
        def unreachable(self, tmp_path): ...      # a registry whose store cannot be reached

        def tamper(self, registry, version): ...  # change one byte of the version's model

``factory(model_name=...)`` must build a registry of the same store, picklable, so that
concurrent registration runs it in fresh processes.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from flywheel.core.errors import ModelIntegrityError, ModelNotFoundError, RegistryError
from flywheel.registry import CHALLENGER, CHAMPION, LoggedModel, ModelVersionInfo
from flywheel.registry.base import ModelStore, Registry, Tracker

__all__ = ["RegistryContract", "RegistryFactory"]

RegistryFactory = Callable[..., Registry]

_FINGERPRINT = "sha256:" + "cd34" * 16


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["label"] = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return frame


def _register_in_a_new_process(factory: RegistryFactory, model_name: str, logged: LoggedModel,
                               count: int, barrier: Any, results: Any) -> None:
    registry = factory(model_name=model_name)
    barrier.wait(timeout=120)
    results.put([registry.register(logged, tags={}).version for _ in range(count)])


class RegistryContract:
    """Subclass with fixtures ``factory`` and ``unreachable`` and a ``tamper`` method."""

    # What a back end provides --------------------------------------------------------

    @pytest.fixture(scope="class")
    def factory(self) -> RegistryFactory:
        raise NotImplementedError("a back end's test class provides the `factory` fixture")

    @pytest.fixture
    def unreachable(self) -> Registry:
        raise NotImplementedError("a back end's test class provides the `unreachable` fixture")

    def tamper(self, registry: Registry, version: ModelVersionInfo) -> None:
        """Change one byte of the stored model files of ``version``."""
        raise NotImplementedError

    # Shared fixtures -----------------------------------------------------------------

    @pytest.fixture
    def registry(self, factory: RegistryFactory) -> Registry:
        return factory(model_name=f"contract-{uuid.uuid4().hex[:10]}")

    @pytest.fixture(scope="class")
    def frame(self) -> pd.DataFrame:
        return _frame()

    @pytest.fixture(scope="class")
    def model(self, frame: pd.DataFrame) -> Pipeline:
        return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(
            frame[["a", "b", "c"]], frame["label"])

    @pytest.fixture(scope="class")
    def logged(self, factory: RegistryFactory, model: Pipeline,
               frame: pd.DataFrame) -> LoggedModel:
        registry = factory(model_name="contract-logged")
        with registry.parent_run("contract-fixture") as run_id:
            return registry.log_model(run_id, model, input_example=frame[["a", "b", "c"]].head(5),
                                      pyfunc_predict_fn="predict_proba")

    # The contract ----------------------------------------------------------------------

    def test_the_back_end_implements_both_protocols(self, registry: Registry) -> None:
        assert isinstance(registry, Tracker) and isinstance(registry, ModelStore)
        assert isinstance(registry, Registry)

    def test_a_new_model_has_no_versions_aliases_or_tags(self, registry: Registry) -> None:
        assert registry.versions() == []
        assert registry.aliases_and_tags() == ({}, {})
        assert registry.alias_version(CHAMPION) is None

    def test_the_first_version_is_champion_and_later_ones_challenger(
            self, registry: Registry, logged: LoggedModel) -> None:
        first = registry.register(logged, tags={"flywheel.data_fingerprint": _FINGERPRINT})
        second = registry.register(logged, tags={})
        third = registry.register(logged, tags={})
        assert (first.version, second.version, third.version) == ("1", "2", "3")
        assert first.aliases == (CHAMPION,)
        assert registry.alias_version(CHAMPION) == "1"
        assert registry.alias_version(CHALLENGER) == "3"
        assert first.tags["flywheel.data_fingerprint"] == _FINGERPRINT
        assert first.status == "READY"

    def test_versions_are_found_by_number_by_v_number_and_by_alias_newest_first(
            self, registry: Registry, logged: LoggedModel) -> None:
        for _ in range(3):
            registry.register(logged, tags={})
        assert [v.version for v in registry.versions()] == ["3", "2", "1"]
        assert registry.version_info("2").version == "2"
        assert registry.version_info("v2").version == "2"
        assert registry.version_info(CHAMPION).version == "1"
        assert registry.version_info(CHALLENGER).aliases == (CHALLENGER,)

    def test_an_unknown_version_or_alias_is_model_not_found_naming_what_exists(
            self, registry: Registry, logged: LoggedModel) -> None:
        registry.register(logged, tags={})
        with pytest.raises(ModelNotFoundError) as info:
            registry.version_info("99")
        assert "1" in str(info.value)
        with pytest.raises(ModelNotFoundError):
            registry.version_info("no-such-alias")

    def test_aliases_move_and_are_removed(self, registry: Registry, logged: LoggedModel) -> None:
        registry.register(logged, tags={})
        registry.register(logged, tags={})
        registry.set_alias(CHAMPION, "2")
        assert registry.alias_version(CHAMPION) == "2"
        assert registry.version_info("1").aliases == ()
        registry.delete_alias(CHALLENGER)
        registry.delete_alias(CHALLENGER)  # nothing held it: no error
        assert registry.aliases_and_tags()[0] == {CHAMPION: "2"}
        with pytest.raises(ModelNotFoundError):
            registry.set_alias(CHAMPION, "7")
        assert registry.alias_version(CHAMPION) == "2"

    def test_model_tags_and_version_tags_are_stored_and_removed(
            self, registry: Registry, logged: LoggedModel) -> None:
        registry.register(logged, tags={})
        registry.set_model_tag("flywheel.rollout", '{"kind": "canary"}')
        registry.set_version_tags("1", {"flywheel.gates.passed": "true"})
        aliases, tags = registry.aliases_and_tags()
        assert tags == {"flywheel.rollout": '{"kind": "canary"}'}
        assert registry.version_info("1").tags["flywheel.gates.passed"] == "true"
        registry.delete_model_tag("flywheel.rollout")
        registry.delete_model_tag("flywheel.rollout")
        assert registry.aliases_and_tags()[1] == {}
        with pytest.raises(RegistryError):
            registry.set_model_tag("too-long", "x" * 100_001)

    def test_a_version_loads_back_predicting_what_was_logged(
            self, registry: Registry, logged: LoggedModel, model: Pipeline,
            frame: pd.DataFrame) -> None:
        registry.register(logged, tags={})
        loaded = registry.load_model(CHAMPION)
        features = frame[["a", "b", "c"]]
        np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))

    def test_a_model_whose_files_changed_is_refused(
            self, factory: RegistryFactory, model: Pipeline, frame: pd.DataFrame) -> None:
        registry = factory(model_name=f"contract-tamper-{uuid.uuid4().hex[:8]}")
        with registry.parent_run("contract-tamper") as run_id:
            logged = registry.log_model(run_id, model, input_example=frame[["a", "b", "c"]].head(5))
        version = registry.register(logged, tags={})
        self.tamper(registry, version)
        with pytest.raises(ModelIntegrityError, match="changed"):
            registry.load_model(version.version)

    def test_runs_hold_metrics_tags_and_artifacts(self, registry: Registry,
                                                  tmp_path: Path) -> None:
        folder = tmp_path / "card"
        folder.mkdir()
        (folder / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        with registry.parent_run("contract-run", tags={"flywheel.kind": "test"},
                                 params={"search": {"trials": 3}}) as run_id:
            registry.log_metrics(run_id, {"roc_auc": 0.91})
            registry.set_tags(run_id, {"flywheel.note": "n" * 9000})
            registry.log_artifact_text(run_id, "evaluation/gates.json", '{"passed": true}')
            registry.log_artifact_folder(run_id, folder, "card")
            child = registry.log_trial(run_id, 0, params={"lr": 0.1}, metrics={"cv": 0.9},
                                       state="complete", duration_s=1.5)
        assert child and child != run_id
        assert registry.read_artifact_text(run_id, "evaluation/gates.json") == '{"passed": true}'
        assert registry.artifact_exists(run_id, "evaluation/gates.json")
        assert not registry.artifact_exists(run_id, "evaluation/missing.json")
        local = registry.download_artifacts(run_id, "card", tmp_path / "back")
        assert (local / "plot.png").read_bytes() == (folder / "plot.png").read_bytes()
        with pytest.raises(RegistryError):
            registry.read_artifact_text(run_id, "no/such/file.txt")

    def test_the_monitoring_run_is_created_once_per_version(
            self, registry: Registry, logged: LoggedModel) -> None:
        version = registry.register(logged, tags={})
        run_id = registry.monitoring_run(version)
        registry.log_window_metrics(run_id, {"drift_share": 0.25, "nan": float("nan")}, step=0)
        again = registry.monitoring_run(registry.version_info(version.version))
        assert again == run_id

    def test_the_stamp_changes_when_the_store_is_written_and_not_when_read(
            self, registry: Registry, logged: LoggedModel) -> None:
        registry.register(logged, tags={})
        registry.register(logged, tags={})
        before = registry.store_stamp()
        if before is None:  # allowed: pollers then read the store in full each time
            assert registry.store_stamp() is None
            return
        registry.aliases_and_tags()
        registry.versions()
        assert registry.store_stamp() == before
        registry.set_alias(CHAMPION, "2")
        assert registry.store_stamp() != before

    def test_concurrent_registrations_get_distinct_version_numbers(
            self, factory: RegistryFactory, logged: LoggedModel) -> None:
        name = f"contract-concurrent-{uuid.uuid4().hex[:8]}"
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(2), context.Queue()
        count = 3
        workers = [context.Process(target=_register_in_a_new_process,
                                   args=(factory, name, logged, count, barrier, results))
                   for _ in range(2)]
        for worker in workers:
            worker.start()
        got = [results.get(timeout=300) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        numbers = sorted(int(v) for batch in got for v in batch)
        assert numbers == list(range(1, 2 * count + 1))
        registry = factory(model_name=name)
        assert registry.alias_version(CHAMPION) == "1"
        assert registry.alias_version(CHALLENGER) == str(2 * count)

    def test_an_unreachable_store_fails_fast_with_a_registry_error(
            self, unreachable: Registry) -> None:
        started = time.monotonic()
        with pytest.raises(RegistryError) as info:
            # Reading a store that does not exist yet may answer "nothing" without creating
            # it; writing must fail.
            unreachable.versions()
            with unreachable.parent_run("contract-unreachable"):
                pass
        assert time.monotonic() - started < 30
        assert unreachable.tracking_uri.split("://")[0] in str(info.value)
