"""The retraining loop against a real registry: triggers, retraining, gates, rollout, and
restarts after a kill."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.pipelines.loop import LoopState, RetrainingLoop
from flywheel.serving import PredictionLog
from tests.conftest import CHURN, make_project

REPO = Path(__file__).resolve().parents[2]
START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)

# The retraining loop end to end: each test trains and serves more than once (25-40 s each), so
# the module runs in the slow invocation, keeping the default suite under ten minutes.
pytestmark = pytest.mark.slow


def loop_project(root: Path, **retraining: object) -> Project:
    make_project(root, training={"learners": ["lightgbm"]})
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["retraining"] = {"triggers": ["rows >= 1"], "cooldown_hours": 0, "min_window_rows": 50,
                         "window_rows": 400, "min_labels": 100, "data_days": None,
                         "trials": 2, **retraining}
    raw["rollout"] = {"canary": {"stages": [50.0, 100.0], "min_requests": 40,
                                 "min_labels": 0},
                      "limits": {"max_metric_drop": None}}
    raw["monitoring"] = {"drift": {"multivariate": False}, "alerts": {"sinks": [{"kind": "file"}]}}
    raw["gates"] = {**raw.get("gates", {}), "champion": {"mode": "off"}, "robustness": False}
    spec_path.write_text(yaml.safe_dump(raw))
    return Project.load(spec_path)


def serve_offline(project: Project, frame: pd.DataFrame, *, version: str = "champion",
                  arm: str = "champion", start: dt.datetime = START, prefix: str = "r",
                  labels: bool = True) -> None:
    """Write what a server would log for ``frame``: predictions by ``version``, then labels."""
    registry = project.registry()
    info = registry.version_info(version)
    model = registry.load_model(info.version)
    features = project.schema.feature_columns
    proba = model.predict_proba(frame[features])
    classes = json.loads(info.tags["flywheel.classes"])
    log = PredictionLog(project.workspace.predictions)
    records = json.loads(frame[features].to_json(orient="records"))
    layout = tuple((n, project.schema.columns[n].kind in ("numeric", "integer"))
                   for n in features)
    for i, record in enumerate(records):
        rid = f"{prefix}{i}"
        log.append(layout, rid, time.time(), info.version, 0.3, [record],
                   [classes[int(np.argmax(proba[i]))]], [proba[i].tolist()], arm=arm,
                   event_time=(start + dt.timedelta(minutes=i)).timestamp())
    if labels:
        log.append_feedback((f"{prefix}{i}", str(v)) for i, v in
                            enumerate(frame[project.schema.target]))
    log.close()


def assert_warm_started(project: Project, *, champion: str, retrained: str) -> None:
    """The retraining's study began with the champion's learner and parameters, and its run
    says so."""
    registry = project.registry()
    old = registry.run_tags(registry.version_info(champion).run_id or "")
    new = registry.run_tags(registry.version_info(retrained).run_id or "")
    assert new["flywheel.warm_start"].startswith(
        f"warm-started from version {champion} (champion): the first trial is its lightgbm "
        "parameters (trial 0, complete)"), new["flywheel.warm_start"]
    study = optuna.load_study(study_name=new["flywheel.study"],
                              storage=f"sqlite:///{project.workspace.optuna_db}")
    first = study.trials[0]
    assert first.user_attrs["flywheel.warm_start"] == f"version {champion} (champion)"
    assert {k.removeprefix("lightgbm."): v for k, v in first.params.items()} == \
        json.loads(old["flywheel.best_params"])


@pytest.fixture(scope="module")
def churn_traffic() -> pd.DataFrame:
    return pd.read_parquet(CHURN).sample(600, random_state=7).reset_index(drop=True)


def test_a_trigger_retrains_gates_and_starts_a_canary_and_never_retrains_twice(
        tmp_path: Path, churn_traffic: pd.DataFrame) -> None:
    project = loop_project(tmp_path)
    project.train()
    serve_offline(project, churn_traffic)
    loop = RetrainingLoop(project, clock=lambda: START + dt.timedelta(days=1))
    first = loop.tick()
    assert first.action == "rollout_started", first.detail
    registry = project.registry()
    assert registry.alias_version("champion") == "1"
    assert registry.alias_version("challenger") == "2"
    actions = [e.action for e in project.history().entries]
    assert actions.count("loop_trigger") == 1 and actions.count("loop_retrained") == 1
    assert any(a.startswith("rollout") for a in actions)
    assert_warm_started(project, champion="1", retrained="2")
    second = loop.tick()
    assert second.action == "rollout_step"
    assert len(registry.versions()) == 2
    assert LoopState.read(loop.state_path).phase == "rolling_out"


def test_too_few_labels_fails_the_retraining_and_the_champion_keeps_serving(
        tmp_path: Path, churn_traffic: pd.DataFrame) -> None:
    project = loop_project(tmp_path, min_labels=10_000, cooldown_hours=24)
    project.train()
    serve_offline(project, churn_traffic)
    loop = RetrainingLoop(project, clock=lambda: START)
    result = loop.tick()
    assert result.action == "retrain_failed" and "10000" in result.detail
    assert project.registry().alias_version("champion") == "1"
    assert [v.version for v in project.registry().versions()] == ["1"]
    state = LoopState.read(loop.state_path)
    assert state.phase == "idle" and state.last_retrain is None  # no cool-down started
    serve_offline(project, churn_traffic.head(100), prefix="s")
    assert loop.tick().action == "retrain_failed"  # the loop goes on


def test_no_trigger_holds_means_no_retraining(tmp_path: Path,
                                              churn_traffic: pd.DataFrame) -> None:
    project = loop_project(tmp_path, triggers=["rows > 1000000"])
    project.train()
    serve_offline(project, churn_traffic)
    result = RetrainingLoop(project, clock=lambda: START).tick()
    assert result.action == "checked" and "rows" in result.evidence["metrics"]
    assert len(project.registry().versions()) == 1


def _loop_once(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "flywheel.cli.main", "loop", "--once",
                             "--config", str(root)], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killing_the_loop_mid_retraining_and_mid_canary_leaves_a_consistent_registry(
        tmp_path: Path, churn_traffic: pd.DataFrame) -> None:
    project = loop_project(tmp_path, trials=30, timeout_seconds=15)
    project.train()
    serve_offline(project, churn_traffic)
    state_path = project.workspace.root / "loop" / "state.json"
    proc = _loop_once(tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the search is running, then SIGKILL
        if state_path.exists() and LoopState.read(state_path).data_file and \
                project.workspace.optuna_db.exists() and time.monotonic() and proc.poll() is None:
            time.sleep(2.0)
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert LoopState.read(state_path).phase == "retraining"
    assert [v.version for v in project.registry().versions()] == ["1"]
    out = _loop_once(tmp_path).communicate(timeout=300)[0]
    assert "rollout_started" in out, out
    registry = project.registry()
    assert sorted(v.version for v in registry.versions()) == ["1", "2"]
    # Mid-canary: the challenger answers its share, then the loop is killed during a tick.
    serve_offline(project, churn_traffic.head(300), version="2", arm="challenger",
                  prefix="c", start=START + dt.timedelta(days=2))
    proc = _loop_once(tmp_path)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(6):
        if LoopState.read(state_path).phase == "idle":
            break
        serve_offline(project, churn_traffic.head(200), version="2", arm="challenger",
                      prefix=f"d{_}", start=START + dt.timedelta(days=3 + _))
        _loop_once(tmp_path).communicate(timeout=300)
    state = LoopState.read(state_path)
    assert state.phase == "idle", state
    registry = project.registry()
    assert sorted(v.version for v in registry.versions()) == ["1", "2"]
    assert registry.alias_version("champion") in ("1", "2")
    history = project.history()
    assert history.problems == ()
    actions = [e.action for e in history.entries]
    assert actions.count("loop_trigger") == 1 and actions.count("loop_retrained") == 1
    assert actions.count("loop_rollout_done") == 1


def test_a_trigger_on_an_unknown_metric_is_refused_with_the_nearest_name(tmp_path: Path) -> None:
    from flywheel.core.errors import ConfigError

    project = loop_project(tmp_path, triggers=["drift_shar > 0.3"])
    with pytest.raises(ConfigError, match="drift_share"):
        RetrainingLoop(project)


def test_delivery_report_measures_the_deployed_metric_and_the_baseline_on_the_same_rows(
        tmp_path: Path, churn_traffic: pd.DataFrame) -> None:
    from flywheel.cli.main import main
    from flywheel.pipelines.report import build_report
    from flywheel.pipelines.report_render import report_html, report_markdown

    project = loop_project(tmp_path)
    project.train()
    serve_offline(project, churn_traffic)
    report = build_report(project)
    assert report.predictions == len(churn_traffic) and report.failed == 0
    assert report.metric == "roc_auc" and report.baseline_version == "1"
    # The champion is the baseline here: served and re-scored offline, the numbers agree.
    assert report.deployed == pytest.approx(report.baseline, abs=1e-6)
    assert report.deployed > 0.8
    assert sum(p.labelled for p in report.periods) == len(churn_traffic)
    assert "predictions at 100.00% success" in report.summary()
    assert "data:image/png;base64," in report_html(report)
    assert "| period |" in report_markdown(report)
    assert main(["report", "--config", str(tmp_path), "--json"]) == 0
    assert (project.workspace.root / "report.html").exists()


def test_report_on_a_project_that_never_served_says_so(tmp_path: Path) -> None:
    from flywheel.pipelines.report import build_report

    project = loop_project(tmp_path)
    project.train()
    report = build_report(project)
    assert report.predictions == 0 and report.deployed is None
    assert any("empty" in note for note in report.notes)


def test_a_damaged_loop_state_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from flywheel.cli.main import main

    project = loop_project(tmp_path)
    state = project.workspace.root / "loop" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    assert main(["loop", "--once", "--config", str(tmp_path)]) == 2
    assert state.read_text() == "{not json"  # left for the user to look at
