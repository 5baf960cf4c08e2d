"""The Optuna search on a real two-node Ray cluster: trials as MLflow child runs, a worker
killed mid-search, the time budget, resuming, and an address nobody answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from flywheel.core.spec import ProjectSpec
from flywheel.demo import free_port
from flywheel.pipelines.train import train_project
from flywheel.testing import RayCluster
from flywheel.training import (
    SearchProblem,
    ray_search_workers,
    run_ray_search,
)
from flywheel.training._ray_search import WORKER_ATTR
from tests.conftest import REPO, make_project, search_problem

pytestmark = pytest.mark.ray

SLOW = {"name": "slow", "estimator": "tests.estimators.SlowClassifier",
        "params": {"seconds": 1.0}}


def _ray_training(cluster: RayCluster, *, trials: int, slow: bool = False,
                  **search: object) -> dict[str, object]:
    return {"cv_folds": 3, "learners": ["slow"] if slow else ["lightgbm"],
            "custom_learners": [SLOW] if slow else [],
            "search": {"trials": trials, "seed": 0, "backend": "ray", "workers": 2,
                       "ray_address": cluster.address, **search}}


def _study(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / '.flywheel/optuna.db'}")


def _child_runs(project, study: str) -> dict[int, dict[str, str]]:  # type: ignore[no-untyped-def]
    runs = project.registry().find_runs(f"tags.`flywheel.study` = '{study}'")
    return {int(r.tags["flywheel.trial"]): r.tags for r in runs if "flywheel.trial" in r.tags}


def test_a_search_on_the_two_node_cluster_logs_every_trial_as_a_child_run(
        tmp_path: Path, ray_cluster: RayCluster) -> None:
    project = make_project(tmp_path, training=_ray_training(ray_cluster, trials=6))
    result = train_project(project)
    assert sum(result.trials.values()) == 6 and result.trials["fail"] == 0
    trials = _study(tmp_path, result.study_name).get_trials()
    assert len({t.user_attrs[WORKER_ATTR].split(":")[0] for t in trials}) == 2  # two workers
    runs = _child_runs(project, result.study_name)
    assert sorted(runs) == [t.number for t in trials]
    assert {runs[t.number]["flywheel.trial_state"] for t in trials} <= {"complete", "pruned"}
    assert result.version.version == "1"


def test_a_worker_killed_midway_loses_only_its_running_trial_and_the_search_finishes(
        tmp_path: Path, ray_cluster: RayCluster) -> None:
    project = make_project(tmp_path, training=_ray_training(ray_cluster, trials=6, slow=True,
                                                            pruning=False))
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_running_worker() -> None:
        url = f"sqlite:///{tmp_path / '.flywheel/optuna.db'}"
        while not stop.is_set() and not killed:
            time.sleep(0.3)
            try:
                # Only reads: a storage opened by URL creates the tables, and doing so beside
                # the search's own first opening broke it (UNIQUE alembic_version).
                storage = optuna.storages.RDBStorage(url, skip_table_creation=True,
                                                     skip_compatibility_check=True)
                names = optuna.get_all_study_names(storage)
            except Exception:  # the study database is not created yet
                continue
            for name in names:
                for trial in optuna.load_study(study_name=name, storage=storage).get_trials(
                        states=(TrialState.RUNNING,)):
                    who = trial.user_attrs.get(WORKER_ATTR)
                    started = trial.datetime_start.timestamp() if trial.datetime_start else 0
                    if who and time.time() - started > 1.0:  # midway through its folds
                        os.kill(int(who.split(":")[1].split("@")[0]), signal.SIGKILL)
                        killed.append(trial.number)
                        return

    watcher = threading.Thread(target=kill_one_running_worker, daemon=True)
    watcher.start()
    try:
        result = train_project(project)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert len(killed) == 1
    assert result.trials == {"complete": 5, "pruned": 0, "fail": 1}
    trials = {t.number: t for t in _study(tmp_path, result.study_name).get_trials()}
    dead = trials[killed[0]]
    assert dead.state == TrialState.FAIL
    assert "its Ray worker died while running it" in dead.user_attrs["error"]
    assert all(t.state == TrialState.COMPLETE for n, t in trials.items() if n != killed[0])
    runs = _child_runs(project, result.study_name)
    assert sorted(runs) == sorted(trials)
    assert runs[killed[0]]["flywheel.trial_state"] == "fail"
    assert "Ray worker died" in runs[killed[0]]["flywheel.error"]
    assert result.version.version == "1"


def _problem(tmp_path: Path, address: str, *, seconds: float = 1.0,
             **search: object) -> SearchProblem:
    spec = ProjectSpec.model_validate({
        "name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
        "training": {"cv_folds": 3, "learners": ["slow"],
                     "custom_learners": [{**SLOW, "params": {"seconds": seconds}}],
                     "search": {"seed": 0, "backend": "ray", "workers": 2,
                                "ray_address": address, **search}},
    })
    return search_problem(tmp_path, spec, rows=300)


def test_the_time_budget_ends_a_ray_search_as_it_ends_a_local_one(
        tmp_path: Path, ray_cluster: RayCluster) -> None:
    problem = _problem(tmp_path, ray_cluster.address, trials=None, timeout_seconds=30.0)
    started = time.monotonic()
    result = run_ray_search(problem)  # the budget covers the workers' start-up too
    took = time.monotonic() - started
    assert took < 30.0 + 5.0, took  # a running trial stops at the deadline, within a fold
    assert result.deadline_hit and result.new_trials >= 1
    assert all(t.state != TrialState.RUNNING for t in result.trials)


def test_a_search_inside_ray_search_workers_runs_its_trials_in_the_warmed_processes(
        tmp_path: Path, ray_cluster: RayCluster) -> None:
    problem = _problem(tmp_path, ray_cluster.address, seconds=0.2, trials=4)
    with ray_search_workers(problem.spec.training.search) as warming:
        assert warming is not None
        warmed = warming.wait()  # one process per node: each node has one CPU
        result = run_ray_search(problem)
    ran = {t.user_attrs[WORKER_ATTR].split(":", 1)[1] for t in result.trials}
    assert len(warmed) == 2 and ran == set(warmed)  # no trial waited for a cold process
    assert result.new_trials == 4


def test_a_second_ray_search_resumes_the_study_the_first_left(
        tmp_path: Path, ray_cluster: RayCluster) -> None:
    first = run_ray_search(_problem(tmp_path, ray_cluster.address, seconds=0.2, trials=2,
                                    workers=1))
    second = run_ray_search(_problem(tmp_path, ray_cluster.address, seconds=0.2, trials=4,
                                     workers=1))  # two workers may overshoot the cap by one
    assert (first.new_trials, second.resumed, second.new_trials) == (2, 2, 2)
    assert [t.number for t in second.trials] == [0, 1, 2, 3]


def test_an_unreachable_ray_address_is_a_config_error_naming_it(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    raw = yaml.safe_load((tmp_path / "flywheel.yaml").read_text())
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    raw["training"]["search"].update({"backend": "ray", "ray_address": address})
    (tmp_path / "flywheel.yaml").write_text(yaml.safe_dump(raw))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flywheel.cli.main", "train", "--config",
                           str(tmp_path)], capture_output=True, text=True, timeout=180,
                          cwd=REPO)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot reach Ray at '{address}'" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # not Ray's minutes of retries
    assert not (tmp_path / ".flywheel" / "models").exists() or project.registry().versions() == []
