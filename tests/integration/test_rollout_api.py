"""Starting, deciding and stopping rollouts against a real MLflow registry, with evidence
written to a real prediction log (no server: `test_rollout_server.py` has those)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flywheel import Project
from flywheel.cli import rollout as rollout_cli
from flywheel.cli.main import main
from flywheel.core.errors import RolloutConflictError, RolloutError
from flywheel.pipelines.promote import history
from flywheel.pipelines.rollout import (
    RolloutController,
    rollout_status,
    start_rollout,
    stop_rollout,
)
from flywheel.rollout import STATE_TAG, parse_state
from flywheel.serving import PredictionLog
from tests.conftest import make_project

FAST = {"learners": ["linear"], "cv_folds": 2, "search": {"trials": 2, "seed": 0}}
LAYOUT = (("x", True),)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("rollout")
    project = make_project(root, training=FAST)
    project.train()            # version 1: champion
    project.train(seed=3)      # version 2: challenger
    return project


@pytest.fixture
def fresh(project: Project) -> Iterator[Project]:
    """Champion 1, challenger 2, no rollout running."""
    registry = project.registry()
    registry.set_alias("champion", "1")
    registry.set_alias("challenger", "2")
    state = rollout_status(project, fresh=False).state
    if state is not None and state.running:
        stop_rollout(project, reason="test setup")
    yield project


_LOGS: dict[Path, PredictionLog] = {}


def feed(project: Project, arm: str, version: str, n: int, *, accuracy: float = 0.9,
         errors: int = 0, seed: int = 0) -> None:
    """Write ``n`` answered requests (and their labels) to the prediction log.

    One log per folder for the whole module, as in a server process (two logs of one process
    opened within the same second would share a file name).
    """
    rng = np.random.default_rng(seed)
    folder = project.workspace.predictions
    log = _LOGS.get(folder) or _LOGS.setdefault(folder, PredictionLog(folder))
    now = time.time()
    labels = []
    for i in range(n):
        rid = f"{arm}-{version}-{seed}-{i}-{now}"
        if i < errors:
            log.append_error(rid, now, version, 1.0, arm, "RuntimeError: boom")
            continue
        truth = "yes" if rng.random() < 0.3 else "no"
        right = rng.random() < accuracy
        guess = truth if right else ("no" if truth == "yes" else "yes")
        p = 0.8 if guess == "yes" else 0.2
        log.append(LAYOUT, rid, now, version, 1.0, [{"x": float(i)}], [guess], [[1 - p, p]],
                   arm=arm)
        labels.append((rid, truth))
    log.append_feedback(labels)
    log.flush()


def test_a_rollout_without_a_challenger_is_refused(fresh: Project) -> None:
    fresh.registry().delete_alias("challenger")
    with pytest.raises(RolloutError, match="no challenger to roll out"):
        start_rollout(fresh, "canary")


def test_a_version_that_failed_its_gates_is_refused(fresh: Project) -> None:
    registry = fresh.registry()
    passed = registry.version_info("2").tags["flywheel.gates.passed"]
    registry.set_version_tags("2", {"flywheel.gates.passed": "false",
                                    "flywheel.gates.threshold": "fail: roc_auc 0.91 < 0.9999"})
    try:
        with pytest.raises(RolloutError, match="version 2 did not pass its gates.*roc_auc"):
            start_rollout(fresh, "canary", "2")
    finally:
        registry.set_version_tags("2", {"flywheel.gates.passed": passed,
                                        "flywheel.gates.threshold": "pass"})


def test_a_version_that_failed_its_gates_takes_a_canary_only_with_force_and_a_reason(
        fresh: Project, capsys: pytest.CaptureFixture[str]) -> None:
    registry = fresh.registry()
    passed = registry.version_info("2").tags["flywheel.gates.passed"]
    registry.set_version_tags("2", {"flywheel.gates.passed": "false",
                                    "flywheel.gates.champion": "fail: lower bound -0.0125"})
    root = str(fresh.spec.root)
    args = ["rollout", "canary", "2", "--stages", "10,100", "--min-requests", "30",
            "--min-labels", "0", "--config", root]
    try:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "did not pass its gates" in err and "--rerun" in err and "--force" in err
        assert main([*args, "--force"]) == 2
        assert "--force needs --reason" in capsys.readouterr().err
        assert rollout_status(fresh, fresh=False).state is None or \
            not rollout_status(fresh, fresh=False).state.running
        assert main([*args, "--force", "--reason", "476 holdout rows cannot tell"]) == 0
        state = rollout_status(fresh, fresh=False).state
        assert state.running and state.forced
        started = history(fresh).entries[-1]
        assert started.action == "rollout_force_start" and started.evidence["forced"] is True
        assert started.reason == "476 holdout rows cannot tell"
        assert "lower bound" in started.evidence["failed_gates"]["2"][0]
        controller = RolloutController(fresh)
        feed(fresh, "champion", "1", 100, seed=30)
        feed(fresh, "challenger", "2", 40, seed=31)
        assert controller.tick().action == "advance"
        feed(fresh, "challenger", "2", 40, seed=32)
        assert controller.tick().action == "promote"  # the canary settled it
        assert registry.alias_version("champion") == "2"
        promoted = [e for e in history(fresh).entries if e.alias == "champion"][-1]
        assert promoted.action == "rollout_promote" and promoted.evidence["forced"] is True
    finally:
        registry.set_version_tags("2", {"flywheel.gates.passed": passed,
                                        "flywheel.gates.champion": "pass"})


def test_the_champion_itself_is_refused(fresh: Project) -> None:
    with pytest.raises(RolloutError, match="version 1 is the champion already"):
        start_rollout(fresh, "canary", "1")


def test_rollout_refuses_when_monitoring_is_not_configured(fresh: Project) -> None:
    spec = fresh.spec.model_copy(update={
        "monitoring": fresh.spec.monitoring.model_copy(update={"enabled": False})})
    with pytest.raises(RolloutError, match="monitoring is not configured"):
        start_rollout(Project(spec), "canary")


def test_only_one_rollout_runs_at_a_time(fresh: Project) -> None:
    start_rollout(fresh, "shadow")
    with pytest.raises(RolloutConflictError, match="already has a shadow rollout of version 2"):
        start_rollout(fresh, "canary")


def test_canary_advances_stage_by_stage_then_promotes_and_audits_each_step(
        fresh: Project) -> None:
    state = start_rollout(fresh, "canary", overrides={"stages": [10, 100], "min_requests": 50,
                                                      "min_labels": 20}, reason="nightly")
    stored = parse_state(fresh.registry().aliases_and_tags()[1][STATE_TAG])
    assert stored.id == state.id and stored.status == "running" and stored.stage == 0
    controller = RolloutController(fresh)
    feed(fresh, "champion", "1", 300)
    feed(fresh, "challenger", "2", 60, seed=1)
    assert controller.tick().action == "advance"
    assert rollout_status(fresh, fresh=False).state.stage == 1
    assert controller.tick().action == "wait"  # the new stage counts from zero
    feed(fresh, "challenger", "2", 60, seed=2)
    decision = controller.tick()
    assert decision.action == "promote" and decision.version == "2"
    assert fresh.registry().alias_version("champion") == "2"
    assert rollout_status(fresh, fresh=False).state.status == "promoted"
    assert controller.tick() is None
    entries = history(fresh).entries[-4:]
    assert [(e.action, e.alias, e.to_version) for e in entries] == [
        ("rollout_start", "rollout", "2"), ("rollout_advance", "rollout", "2"),
        ("rollout_promote", "champion", "2"), ("rollout_promote", "challenger", None)]
    promoted = entries[2]
    assert promoted.evidence["rollout"] == state.id and promoted.reason.startswith("canary")
    assert promoted.evidence["arms"]["challenger"]["requests"] == 120


def test_status_after_a_promotion_shows_the_new_champion_and_counts_its_requests_apart(
        fresh: Project, capsys: pytest.CaptureFixture[str]) -> None:
    start_rollout(fresh, "canary", overrides={"stages": [10, 100], "min_requests": 30,
                                              "min_labels": 0})
    controller = RolloutController(fresh)
    feed(fresh, "champion", "1", 100, seed=20)
    feed(fresh, "challenger", "2", 40, seed=21)
    assert controller.tick().action == "advance"
    feed(fresh, "challenger", "2", 40, seed=22)
    assert controller.tick().action == "promote"
    counted = rollout_status(fresh).evidence.to_dict()
    assert counted["champion"]["requests"] == 100 and counted["challenger"]["requests"] == 80
    feed(fresh, "champion", "2", 500, seed=23)  # the new champion answering afterwards
    status = rollout_status(fresh)
    assert [(r.arm, r.version, r.weight) for r in status.traffic().routes] == \
        [("champion", "2", 1.0)]
    assert status.evidence.to_dict() == counted  # none of version 2's later requests
    assert main(["rollout", "status", "--json", "--config", str(fresh.spec.root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["traffic"] == [{"arm": "champion", "version": "2", "weight": 1.0}]
    assert shown["evidence"]["champion"] == {**counted["champion"]}
    assert main(["rollout", "status", "--config", str(fresh.spec.root)]) == 0
    out = capsys.readouterr().out
    assert any(line.split() == ["champion", "2", "100%"] for line in out.splitlines())


def test_canary_rolls_back_on_errors_and_the_audit_names_the_breached_limit(
        fresh: Project) -> None:
    start_rollout(fresh, "canary", overrides={"min_requests": 50})
    feed(fresh, "champion", "1", 200)
    feed(fresh, "challenger", "2", 60, errors=6, seed=3)
    decision = RolloutController(fresh).tick()
    assert decision.action == "rollback" and "error rate: 10.00% of 60" in decision.breached[0]
    assert fresh.registry().alias_version("champion") == "1"
    entry = history(fresh).entries[-1]
    assert entry.action == "rollout_rollback" and "error rate" in entry.reason
    assert entry.evidence["decision"]["checks"]["error_rate"]["errors"] == 6
    assert rollout_status(fresh, fresh=False).state.traffic().routes[0].weight == 1.0


def test_an_interrupted_promotion_is_completed_by_the_next_tick(fresh: Project) -> None:
    state = start_rollout(fresh, "canary")
    registry = fresh.registry()
    crashed = state.model_copy(update={"pending": "promote", "pending_version": "2",
                                       "decision": {"action": "promote", "reason": "passed"}})
    registry.set_model_tag(STATE_TAG, crashed.to_tag())
    decision = RolloutController(fresh).tick()
    assert decision.action == "promote" and registry.alias_version("champion") == "2"
    assert rollout_status(fresh, fresh=False).state.status == "promoted"
    before = len(history(fresh).entries)
    assert RolloutController(fresh).tick() is None and len(history(fresh).entries) == before


def test_an_interrupted_decision_never_undoes_a_champion_set_by_hand_meanwhile(
        fresh: Project) -> None:
    state = start_rollout(fresh, "canary")
    registry = fresh.registry()
    crashed = state.model_copy(update={"pending": "promote", "pending_version": "2",
                                       "decision": {"action": "promote", "reason": "passed"}})
    registry.set_model_tag(STATE_TAG, crashed.to_tag())
    if "3" not in {v.version for v in registry.versions()}:
        fresh.train(seed=5)  # version 3, which the operator makes champion by hand
    registry.set_alias("champion", "3")
    decision = RolloutController(fresh).tick()
    assert decision.action == "conclude" and "outside the rollout" in decision.reason
    assert registry.alias_version("champion") == "3"
    assert rollout_status(fresh, fresh=False).state.status == "stopped"
    assert RolloutController(fresh).tick() is None and registry.alias_version("champion") == "3"


def test_two_controllers_ticking_at_once_advance_the_stage_once(fresh: Project) -> None:
    start_rollout(fresh, "canary", overrides={"stages": [10, 50, 100], "min_requests": 30,
                                              "min_labels": 0})
    feed(fresh, "champion", "1", 200)
    feed(fresh, "challenger", "2", 40, seed=4)
    decisions: list[str] = []

    def tick() -> None:
        decision = RolloutController(fresh).tick()
        decisions.append(decision.action if decision else "none")

    threads = [threading.Thread(target=tick) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(decisions).count("advance") == 1
    assert rollout_status(fresh, fresh=False).state.stage == 1


def test_a_champion_moved_by_hand_ends_the_rollout(fresh: Project) -> None:
    start_rollout(fresh, "canary")
    fresh.registry().set_alias("champion", "2")
    decision = RolloutController(fresh).tick()
    assert decision.action == "conclude" and "outside the rollout" in decision.reason
    assert rollout_status(fresh, fresh=False).state.status == "stopped"


def test_ab_shows_its_plan_up_front_and_promotes_a_significantly_better_challenger(
        fresh: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rollout", "ab", "--mde", "0.1", "--config", str(fresh.spec.root)])
    out = capsys.readouterr().out
    assert code == 0 and "minimum detectable effect 0.1" in out and "per arm" in out
    plan = rollout_status(fresh, fresh=False).state.plan
    assert plan["sequential_per_arm"] >= plan["fixed_per_arm"] > 0
    feed(fresh, "champion", "1", 400, accuracy=0.6, seed=5)
    feed(fresh, "challenger", "2", 400, accuracy=0.9, seed=6)
    decision = RolloutController(fresh).tick()
    assert decision.action == "promote" and decision.p_value <= 0.05
    assert decision.checks["test"]["n"] == [400, 400]


def test_status_json_and_stop_from_the_command_line(
        fresh: Project, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(fresh.spec.root)
    start_rollout(fresh, "canary", overrides={"stages": [5, 100]})
    feed(fresh, "challenger", "2", 5, seed=7)
    assert main(["rollout", "status", "--json", "--config", root]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rollout"]["status"] == "running"
    assert status["traffic"] == [{"arm": "champion", "version": "1", "weight": 0.95},
                                 {"arm": "challenger", "version": "2", "weight": 0.05}]
    assert status["evidence"]["challenger"]["requests"] == 5
    assert status["next"]["action"] == "wait"
    assert main(["rollout", "status", "--config", root]) == 0
    assert "canary rollout" in capsys.readouterr().out
    assert main(["rollout", "stop", "--reason", "enough", "--config", root]) == 0
    assert "traffic returns to the champion" in capsys.readouterr().out
    assert main(["rollout", "stop", "--config", root]) == 2
    assert "has no rollout running" in capsys.readouterr().err


def test_bad_options_are_refused_with_the_reason(
        fresh: Project, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(fresh.spec.root)
    assert main(["rollout", "canary", "--stages", "50,10", "--config", root]) == 2
    assert "stages must increase" in capsys.readouterr().err
    assert main(["rollout", "canary", "--stages", "five", "--config", root]) == 2
    assert main(["rollout", "canary", "7", "--config", root]) == 2
    assert "has no version 7" in capsys.readouterr().err
    assert main(["rollout", "shadow", "--then", "party", "--config", root]) == 2
    assert "then: must be one of" in capsys.readouterr().err
    assert rollout_status(fresh, fresh=False).state is None or \
        not rollout_status(fresh, fresh=False).state.running


def test_a_damaged_state_is_reported_and_cleared_only_with_force(
        fresh: Project, capsys: pytest.CaptureFixture[str]) -> None:
    registry = fresh.registry()
    registry.set_model_tag(STATE_TAG, "{not json")
    with pytest.raises(RolloutError, match="not valid"):
        RolloutController(fresh).tick()
    root = str(fresh.spec.root)
    assert main(["rollout", "stop", "--config", root]) == 2
    assert main(["rollout", "stop", "--force", "--config", root]) == 0
    assert STATE_TAG not in registry.aliases_and_tags()[1]
    assert rollout_status(fresh).state is None


def test_blue_green_warms_up_switches_at_once_and_completes_after_a_clean_bake(
        fresh: Project) -> None:
    start_rollout(fresh, "blue-green", overrides={"bake_requests": 30})
    controller = RolloutController(fresh)
    switch = controller.tick()
    assert switch.action == "switch" and switch.checks["health"]["ok"]
    assert fresh.registry().alias_version("champion") == "2"
    state = rollout_status(fresh, fresh=False).state
    assert state.phase == "switched" and state.traffic().routes[0].version == "2"
    feed(fresh, "challenger", "2", 40, seed=8)
    assert controller.tick().action == "promote"
    assert rollout_status(fresh, fresh=False).state.status == "promoted"
    assert fresh.registry().alias_version("champion") == "2"


def test_blue_green_switches_back_when_the_new_version_fails_after_the_switch(
        fresh: Project) -> None:
    start_rollout(fresh, "blue_green", overrides={"bake_requests": 100})
    controller = RolloutController(fresh)
    assert controller.tick().action == "switch"
    feed(fresh, "challenger", "2", 50, errors=10, seed=9)
    decision = controller.tick()
    assert decision.action == "rollback" and "error rate" in decision.breached[0]
    assert fresh.registry().alias_version("champion") == "1"
    last = history(fresh).entries[-1]
    assert (last.action, last.alias, last.from_version, last.to_version) == (
        "rollout_rollback", "champion", "2", "1")


def test_bandit_moves_traffic_to_the_better_arm_then_promotes_it(fresh: Project) -> None:
    start_rollout(fresh, "bandit", overrides={"min_samples": 100, "floor": 0.05})
    controller = RolloutController(fresh)
    feed(fresh, "v1", "1", 60, accuracy=0.5, seed=10)
    feed(fresh, "v2", "2", 60, accuracy=0.9, seed=11)
    first = controller.tick()
    assert first.action == "reweight" and first.weights["2"] > 0.8
    assert rollout_status(fresh, fresh=False).state.weights == first.weights
    feed(fresh, "v1", "1", 60, accuracy=0.5, seed=12)
    feed(fresh, "v2", "2", 60, accuracy=0.9, seed=13)
    final = controller.tick()
    assert final.action == "promote" and final.version == "2"
    assert fresh.registry().alias_version("champion") == "2"


def test_status_watch_refreshes_until_interrupted(
        fresh: Project, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    start_rollout(fresh, "shadow", overrides={"share": 0.3})
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(rollout_cli.time, "sleep", sleep)
    assert main(["rollout", "status", "--watch", "--interval", "0.5", "--config",
                 str(fresh.spec.root)]) == 0
    assert sleeps == [0.5, 0.5] and "shadow rollout" in capsys.readouterr().out
