"""Optuna on the tracking database: `flywheel train` in two folders (two hosts) with the same
spec and data runs one study there, within one trial budget, and a rerun resumes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from flywheel import Project
from flywheel.training import STUDY_SCHEMA, open_storage, study_storage
from tests.services.postgres_project import (
    PASSWORD_VAR,
    REPO,
    no_local_stores,
    pg_uri,
    run_cli,
    tracked_project,
)

pytestmark = pytest.mark.services

TRIALS = 6
QUICK = {"learners": ["linear"], "cv_folds": 2, "search": {"trials": TRIALS, "seed": 0}}


def test_two_hosts_training_the_same_spec_share_one_study_and_a_rerun_resumes_it(
        tmp_path: Path, postgres: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, postgres.password)
    postgres.create_database("search_shared")
    tracking = {"tracking_uri": pg_uri(postgres, database="search_shared")}
    hosts = [tracked_project(tmp_path / name, tracking, **QUICK) for name in ("a", "b")]
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "flywheel.cli.main", "train"], cwd=root,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for root in hosts]
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs

    project = Project.load(hosts[0])
    url = study_storage(project.spec, project.workspace.optuna_db)
    assert url == tracking["tracking_uri"]
    summaries = optuna.get_all_study_summaries(open_storage(url, project.spec))
    assert len(summaries) == 1  # one study, not one per host
    finished = [t for t in optuna.load_study(study_name=summaries[0].study_name,
                                             storage=open_storage(url, project.spec)).trials
                if t.state.is_finished()]
    # One budget for both: each host stops once the study holds TRIALS finished trials (a
    # trial each may have been running at that moment).
    assert TRIALS <= len(finished) <= TRIALS + 1
    schemas = postgres.psql("SELECT schema_name FROM information_schema.schemata",
                            database="search_shared")
    assert STUDY_SCHEMA in schemas.split()
    assert all(no_local_stores(root) == [] for root in hosts)

    again = run_cli(hosts[1], "train")
    assert again.code == 0, again.text
    assert "nothing new to train" in again.text
