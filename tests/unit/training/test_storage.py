"""Where the Optuna study lives: training.search.storage resolved against the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import ProjectSpec, parse_spec
from flywheel.training import is_shared_storage, open_storage, study_storage

PG = "postgresql://flywheel:${FW_TEST_PG_PW}@db:5432/mlflow"


def spec_at(root: Path, *, storage: str = "auto", tracking_uri: str | None = None,
            coordination_uri: str | None = None) -> ProjectSpec:
    raw: dict[str, Any] = {"name": "p", "data": {"path": "d.csv"},
                           "target": {"column": "y", "task": "binary"},
                           "training": {"search": {"storage": storage}},
                           "tracking": {"tracking_uri": tracking_uri},
                           "coordination": {"uri": coordination_uri}}
    return parse_spec(raw).at(root)


def test_auto_keeps_an_embedded_project_s_study_in_its_workspace(tmp_path: Path) -> None:
    db = tmp_path / ".flywheel" / "optuna.db"
    assert study_storage(spec_at(tmp_path), db) == f"sqlite:///{db}"


def test_auto_puts_the_study_in_the_tracking_database_when_tracking_is_postgresql(
        tmp_path: Path) -> None:
    url = study_storage(spec_at(tmp_path, tracking_uri=PG), tmp_path / "optuna.db")
    assert url == PG  # still unexpanded: the password is read when a connection is made
    assert is_shared_storage(url)


def test_auto_stays_local_when_tracking_is_an_http_server(tmp_path: Path) -> None:
    db = tmp_path / "optuna.db"
    url = study_storage(spec_at(tmp_path, tracking_uri="http://mlflow:5000"), db)
    assert url == f"sqlite:///{db}" and not is_shared_storage(url)


def test_auto_uses_the_coordination_database_beside_an_http_tracking_server(
        tmp_path: Path) -> None:
    spec = spec_at(tmp_path, tracking_uri="http://mlflow:5000", coordination_uri=PG)
    assert study_storage(spec, tmp_path / "optuna.db") == PG


def test_relative_journal_and_sqlite_paths_resolve_against_the_project(tmp_path: Path) -> None:
    assert study_storage(spec_at(tmp_path, storage="journal:studies/s.log"), Path("x")) \
        == f"journal:{tmp_path / 'studies' / 's.log'}"
    assert study_storage(spec_at(tmp_path, storage="sqlite:///o.db"), Path("x")) \
        == f"sqlite:///{tmp_path / 'o.db'}"


@pytest.mark.parametrize("bad", ["optuna.db", "journal:", "redis"])
def test_a_storage_that_is_neither_auto_a_url_nor_a_journal_is_a_config_error(
        tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="training.search.storage"):
        spec_at(tmp_path, storage=bad)


def test_a_journal_file_holds_a_study_that_a_second_open_resumes(tmp_path: Path) -> None:
    spec = spec_at(tmp_path, storage="journal:j/study.log")
    url = study_storage(spec, tmp_path / "optuna.db")
    study = optuna.create_study(storage=open_storage(url, spec), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name="s", storage=open_storage(url, spec))
    assert len(again.trials) == 3 and (tmp_path / "j" / "study.log").is_file()


def test_a_storage_url_naming_an_unset_variable_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FW_TEST_PG_PW", raising=False)
    spec = spec_at(tmp_path, storage=PG)
    with pytest.raises(ConfigError, match="training.search.storage .* FW_TEST_PG_PW"):
        open_storage(study_storage(spec, tmp_path / "optuna.db"), spec)


def test_a_worker_joining_a_created_study_storage_reads_and_writes_its_trials(
        tmp_path: Path) -> None:
    from flywheel.training import _storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = spec_at(tmp_path, storage=url)
    created = optuna.create_study(storage=open_storage(url, spec), study_name="s")
    created.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    del _storage._OPEN[url]  # as in a fresh worker process
    joined = open_storage(url, spec, joining=True)  # no table creation, no schema check
    optuna.load_study(storage=joined, study_name="s").optimize(
        lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(storage=url, study_name="s").trials) == 3
