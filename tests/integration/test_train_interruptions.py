"""Killing, interrupting and parallelizing `flywheel train` (real processes; slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from flywheel import Project
from tests.conftest import make_project

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def start_training(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "flywheel.cli.main", "train", "--config",
                             str(root), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True,
                            preexec_fn=_sigint_default)


def _sigint_default() -> None:
    """A shell without job control starts its background jobs with SIGINT ignored, and the
    child inherits that (Python then installs no KeyboardInterrupt handler); the user's
    terminal, which this test plays, delivers Ctrl-C to a process that takes it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def study_trials(root: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{root / '.flywheel' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()


def wait_for_trials(root: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done = [t for t in study_trials(root) if t.state == TrialState.COMPLETE]
            if len(done) >= count:
                return
        except (ValueError, Exception):  # the study does not exist yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} trials finished in {timeout} s")


def train_runs(project: Project) -> list[mlflow.entities.Run]:
    """The parent runs of `flywheel train` (not trials, not monitoring runs)."""
    registry = project.registry()
    client = mlflow.MlflowClient(registry.tracking_uri)
    experiment = client.get_experiment_by_name(registry.experiment).experiment_id
    return [r for r in client.search_runs([experiment], "tags.`flywheel.study` != ''")
            if "mlflow.parentRunId" not in r.data.tags]


def test_killed_search_resumes_where_it_stopped(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={"search": {"trials": 40, "seed": 0,
                                                          "pruning": False}})
    proc = start_training(tmp_path)
    wait_for_trials(tmp_path, 3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = study_trials(tmp_path)
    kept = {t.number: t.params for t in before if t.state == TrialState.COMPLETE}
    assert 3 <= len(kept) < 40
    assert project.registry().versions() == []  # nothing half-registered
    (killed,) = train_runs(project)
    assert killed.info.status == "RUNNING"
    holder = tmp_path / ".flywheel" / "locks" / "train.holder"
    assert str(proc.pid) in holder.read_text()

    result = Project.load(tmp_path).train(trials=len(before) + 3)
    after = study_trials(tmp_path)
    assert {t.number: t.params for t in after if t.number in kept} == kept
    assert all(t.state != TrialState.RUNNING for t in after)  # the killed trial is marked failed
    assert len(after) == len(before) + 3
    assert result.version.version == "1"
    # The next start closed what the killed process left open, and said so.
    runs = {r.info.run_id: r for r in train_runs(project)}
    assert runs[killed.info.run_id].info.status == "KILLED"
    assert "killed" in runs[killed.info.run_id].data.tags["flywheel.error"]
    assert any(killed.info.run_id in note and "KILLED" in note for note in result.notes)
    assert any(f"pid {proc.pid}" in note and "killed" in note for note in result.notes)
    assert not holder.exists()


def test_ctrl_c_keeps_the_study_and_registers_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={"search": {"trials": 40, "seed": 0}})
    proc = start_training(tmp_path)
    wait_for_trials(tmp_path, 2)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # say where it hangs: flywheel dumps its stacks on USR1
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise AssertionError(f"train did not end 60 s after Ctrl-C; its stacks:\n{err[-8000:]}"
                             ) from None
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert len([t for t in study_trials(tmp_path) if t.state == TrialState.COMPLETE]) >= 2
    registry = project.registry()
    assert registry.versions() == []
    assert [r.info.status for r in train_runs(project)] == ["KILLED"]


def test_parallel_trials_share_one_study(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={"search": {"trials": 6, "seed": 0,
                                                          "parallel": 2}})
    result = project.train()
    trials = study_trials(tmp_path)
    assert 6 <= len(trials) <= 7  # each process may start one last trial as the budget runs out
    assert result.version.version == "1"
