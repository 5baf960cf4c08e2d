"""A `flywheel` process killed with SIGKILL between an alias move and its audit entry: the next
command finds the half-made change, finishes or records it, and says so.

Each test runs the real CLI in a subprocess with ``FLYWHEEL_CRASH_AT`` naming the moment the
process kills itself (``os.kill(pid, SIGKILL)``, no cleanup), on a real MLflow store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flywheel import Project
from flywheel.core.crashpoints import CRASH_ENV
from flywheel.pipelines._recovery import RECOVERED_TAG
from flywheel.registry import AuditLog
from tests.conftest import CHURN, add_version, aliases, make_project

pytestmark = pytest.mark.hardening  # kill -9 fault probes: real processes killed at each crash point

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
KILLED = -signal.SIGKILL


def cli(project: Project, *args: str, crash_at: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    env["COLUMNS"] = "200"
    return subprocess.run([FLYWHEEL, *args, "--config", str(project.spec.root / "flywheel.yaml")],
                          capture_output=True, text=True, env=env, timeout=300)


def log_of(project: Project) -> AuditLog:
    return AuditLog(project.workspace.audit_log)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(800))


def test_a_promote_killed_after_the_champion_moved_is_recorded_and_finished_by_history(
        project: Project, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(project, fitted)
    add_version(project, fitted)
    killed = cli(project, "promote", "2", "--reason", "better", crash_at="promote.alias_moved")
    assert killed.returncode == KILLED
    # The crash left the champion moved, the challenger not retired, and no change recorded.
    assert aliases(project) == {"champion": "2", "challenger": "2"}
    assert log_of(project).read().entries == () and len(log_of(project).read().pending) == 1

    shown = cli(project, "history")
    assert shown.returncode == 0, shown.stderr
    assert "recovered" in shown.stdout and "champion 1 → 2" in shown.stdout
    assert "killed before recording it" in shown.stdout
    hist = log_of(project).read()
    assert hist.pending == ()
    champion, retire = hist.entries
    assert (champion.alias, champion.from_version, champion.to_version) == ("champion", "1", "2")
    assert champion.reason == "better" and champion.recovered is not None
    assert champion.evidence["gates"] == "all 4 gates passed"
    assert (retire.alias, retire.to_version) == ("challenger", None)
    assert "recovery made it" in (retire.recovered or "")
    assert aliases(project) == {"champion": "2"}  # rolled forward: the challenger retired
    # The record is whole again: a rollback knows where 2 came from.
    assert project.rollback().to_version == "1"
    assert cli(project, "history").stdout.count("recovery of intent") == 1


def test_a_promote_killed_after_recording_the_champion_retires_the_challenger_on_models(
        project: Project, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(project, fitted)
    add_version(project, fitted)
    killed = cli(project, "promote", "2", crash_at="promote.champion_recorded")
    assert killed.returncode == KILLED
    assert aliases(project) == {"champion": "2", "challenger": "2"}
    listed = cli(project, "models")
    assert listed.returncode == 0, listed.stderr
    assert "recovered just now" in listed.stderr and "challenger 2 → -" in listed.stderr
    assert aliases(project) == {"champion": "2"}
    entries = log_of(project).read().entries
    assert [(e.alias, e.to_version, e.recovered is None) for e in entries] == \
        [("champion", "2", True), ("challenger", None, False)]


def test_a_promote_killed_before_any_alias_moved_changes_nothing_and_says_so(
        project: Project, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(project, fitted)
    add_version(project, fitted)
    assert cli(project, "promote", "2", crash_at="promote.intent_written").returncode == KILLED
    shown = cli(project, "history")
    assert "interrupted before any alias moved; nothing changed" in shown.stdout
    assert aliases(project) == {"champion": "1", "challenger": "2"}
    assert log_of(project).read().entries == ()


def test_a_rollback_killed_after_the_move_is_recorded_by_the_next_promote(
        project: Project, fitted: tuple[Any, pd.DataFrame]) -> None:
    add_version(project, fitted)
    add_version(project, fitted)
    add_version(project, fitted)
    project.promote("2")
    assert cli(project, "rollback", crash_at="rollback.alias_moved").returncode == KILLED
    assert aliases(project)["champion"] == "1"
    change = project.promote("3")  # the next change settles the interrupted one first
    assert (change.from_version, change.to_version) == ("1", "3")
    champion = [e for e in log_of(project).read().entries if e.alias == "champion"]
    assert [(e.action, e.from_version, e.to_version) for e in champion] == \
        [("promote", "1", "2"), ("rollback", "2", "1"), ("promote", "1", "3")]
    assert champion[1].recovered is not None


@pytest.fixture
def trained(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "t", frame=pd.read_parquet(CHURN).head(1500))
    project.train()  # version 1, champion
    return project


def test_a_train_killed_after_creating_its_version_leaves_no_ghost(trained: Project) -> None:
    killed = cli(trained, "train", "--seed", "3", crash_at="register.version_created")
    assert killed.returncode == KILLED
    # The ghost: version 2 exists, gated, with no alias and no audit entry.
    versions = {v.version: v for v in trained.registry().versions()}
    assert set(versions) == {"1", "2"} and versions["2"].aliases == ()
    assert "flywheel.gates.passed" in versions["2"].tags
    assert [e.alias for e in log_of(trained).read().entries] == ["champion"]

    listed = cli(trained, "models")
    assert listed.returncode == 0, listed.stderr
    assert "recovered just now" in listed.stderr and "registration of version 2" in \
        listed.stderr
    assert "version 2:" in listed.stdout and "registration interrupted" in listed.stdout
    assert "no model card" in listed.stdout
    assert aliases(trained) == {"champion": "1", "challenger": "2"}
    register = log_of(trained).read().entries[-1]
    assert (register.action, register.alias, register.to_version) == \
        ("register", "challenger", "2")
    assert register.recovered is not None and register.evidence["run_id"]
    assert "registration interrupted" in trained.registry().version_info("2").tags[RECOVERED_TAG]


def test_a_train_killed_after_moving_the_challenger_is_audited_by_the_next_train(
        trained: Project) -> None:
    killed = cli(trained, "train", "--seed", "3", crash_at="register.alias_moved")
    assert killed.returncode == KILLED
    assert aliases(trained) == {"champion": "1", "challenger": "2"}
    assert [e.alias for e in log_of(trained).read().entries] == ["champion"]
    result = trained.train(seed=5)  # version 3; settles version 2's registration first
    assert result.version.version == "3"
    entries = [(e.alias, e.from_version, e.to_version, e.recovered is not None)
               for e in log_of(trained).read().entries]
    assert entries == [("champion", None, "1", False), ("challenger", None, "2", True),
                       ("challenger", "2", "3", False)]
    assert log_of(trained).read().pending == ()
