from __future__ import annotations

import datetime as dt

import numpy as np

from flywheel.rollout import HealthCheck, decide, gather_evidence
from flywheel.rollout._limits import error_rate_p_value
from tests.unit.rollout.frames import T0, log, rows, state


def test_clean_canary_stage_with_enough_requests_and_labels_advances() -> None:
    s = state("canary", stages=[5, 50, 100], min_requests=200, min_labels=50)
    frame = log(rows("champion", "1", 3000), rows("challenger", "2", 250, seed=1))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "advance" and decision.stage == 1
    assert decision.checks["error_rate"]["errors"] == 0


def test_canary_waits_for_labels_where_the_metric_limit_needs_them() -> None:
    s = state("canary", min_requests=100, min_labels=50)
    frame = log(rows("champion", "1", 2000), rows("challenger", "2", 300, labelled=0.1))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "wait" and "labels" in decision.reason


def test_canary_rolls_back_a_clearly_worse_challenger_on_its_metric() -> None:
    s = state("canary", limits={"max_divergence": None}, min_requests=100)
    frame = log(rows("champion", "1", 2000, accuracy=0.95),
                rows("challenger", "2", 200, accuracy=0.6, seed=3))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "rollback"
    assert decision.breached[0].startswith("accuracy:")
    assert decision.checks["metric"]["gain_interval"][1] < -0.02


def test_canary_rolls_back_at_once_when_error_rate_exceeds_limit_conclusively() -> None:
    s = state("canary", min_requests=1000)
    frame = log(rows("champion", "1", 2000), rows("challenger", "2", 100, errors=8))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "rollback" and "error rate: 8.00% of 100" in decision.breached[0]


def test_one_early_error_does_not_roll_back_before_the_stage_is_complete() -> None:
    s = state("canary", min_requests=200)
    frame = log(rows("champion", "1", 2000), rows("challenger", "2", 30, errors=1))
    assert decide(s, gather_evidence(frame, s)).action == "wait"


def test_canary_rolls_back_on_diverging_predictions_and_on_slow_p99() -> None:
    s = state("canary", min_requests=100, limits={"max_metric_drop": None})
    frame = log(rows("champion", "1", 2000, p_yes=0.2),
                rows("challenger", "2", 300, p_yes=0.8, latency_ms=40.0))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "rollback"
    kinds = sorted(b.split(":")[0] for b in decision.breached)
    assert kinds == ["p99 latency", "prediction divergence"]


def test_canary_promotes_after_its_last_stage() -> None:
    s = state("canary", stages=[10, 100], min_requests=100).model_copy(update={"stage": 1})
    frame = log(rows("champion", "1", 1000), rows("challenger", "2", 200, seed=5))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "promote" and decision.version == "2"


def test_stage_counts_start_when_the_stage_does() -> None:
    later = T0 + dt.timedelta(minutes=5)
    s = state("canary", min_requests=100).model_copy(update={"stage": 1,
                                                               "stage_started": later})
    frame = log(rows("champion", "1", 1000), rows("challenger", "2", 150),
                rows("challenger", "2", 40, at=later + dt.timedelta(seconds=1)))
    evidence = gather_evidence(frame, s)
    assert evidence.arm("challenger").requests == 190
    assert evidence.arm("challenger").stage_requests == 40
    assert decide(s, evidence).action == "wait"


def test_ab_promotes_a_significantly_better_challenger_with_its_p_value() -> None:
    s = state("ab", mde=0.05)
    frame = log(rows("champion", "1", 1500, accuracy=0.80),
                rows("challenger", "2", 1500, accuracy=0.90, seed=9))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "promote" and decision.p_value is not None
    assert decision.p_value <= 0.05 and decision.checks["test"]["gain"] > 0


def test_ab_ends_with_no_difference_at_the_planned_sample() -> None:
    s = state("ab", mde=0.05).model_copy(update={"plan": {"sequential_per_arm": 400}})
    frame = log(rows("champion", "1", 500, accuracy=0.85),
                rows("challenger", "2", 500, accuracy=0.85, seed=1))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "conclude" and "no difference" in decision.reason


def test_shadow_pairs_answers_and_concludes_after_enough_clean_requests() -> None:
    s = state("shadow", min_requests=100, then="canary")
    ids = [f"s{i}" for i in range(150)]
    frame = log(rows("champion", "1", 150, ids=ids, seed=1),
                rows("shadow", "2", 150, ids=ids, seed=1))
    evidence = gather_evidence(frame, s)
    assert evidence.shadow is not None and evidence.shadow.pairs == 150
    assert evidence.shadow.agreement == 1.0
    decision = decide(s, evidence)
    assert decision.action == "conclude" and decision.then == "canary"


def test_shadow_rolls_back_when_the_mirrored_calls_fail() -> None:
    s = state("shadow", min_requests=100)
    frame = log(rows("champion", "1", 200), rows("shadow", "2", 200, errors=20))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "rollback" and "shadow calls failed" in decision.breached[0]


def test_blue_green_switches_after_a_clean_warm_up_and_switches_back_on_errors() -> None:
    s = state("blue_green", bake_requests=100)
    frame = log(rows("champion", "1", 500))
    ok = HealthCheck(True, 50, 0.3)
    assert decide(s, gather_evidence(frame, s), health=ok).action == "switch"
    failed = HealthCheck(False, 3, 0.3, ("scoring failed: ValueError",))
    assert decide(s, gather_evidence(frame, s), health=failed).action == "rollback"
    switched = s.model_copy(update={"phase": "switched"})
    bad = log(frame, rows("challenger", "2", 120, errors=12))
    assert decide(switched, gather_evidence(bad, switched)).action == "rollback"
    good = log(frame, rows("challenger", "2", 120))
    assert decide(switched, gather_evidence(good, switched)).action == "promote"


def test_bandit_reweights_towards_and_then_promotes_the_better_arm() -> None:
    s = state("bandit", arms=["1", "2"], min_samples=100)
    few = log(rows("v1", "1", 60, accuracy=0.5), rows("v2", "2", 60, accuracy=0.9, seed=2))
    first = decide(s, gather_evidence(few, s))
    assert first.action == "reweight" and first.weights["2"] > first.weights["1"]
    many = log(rows("v1", "1", 400, accuracy=0.5), rows("v2", "2", 400, accuracy=0.9, seed=2))
    final = decide(s, gather_evidence(many, s))
    assert final.action == "promote" and final.version == "2"


def test_a_log_without_arms_is_attributed_by_version() -> None:
    s = state("canary")
    frame = log(rows("champion", "1", 50), rows("challenger", "2", 20)).drop(columns=["arm"])
    evidence = gather_evidence(frame, s)
    assert evidence.arm("champion").requests == 50 and evidence.arm("challenger").requests == 20


def test_error_rate_test_needs_evidence_and_false_alarms_stay_below_alpha() -> None:
    assert error_rate_p_value(0, 500, 0.01) == 1.0
    assert error_rate_p_value(2, 28, 0.01) > 0.05           # two early errors: not yet
    assert error_rate_p_value(10, 200, 0.01) < 0.01          # 5 % against a 1 % limit
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(200):  # a rate exactly at the limit, looked at after every call
        k = np.cumsum(rng.random(3000) < 0.01)
        alarms += any(error_rate_p_value(int(k[n - 1]), n, 0.01) <= 0.01
                      for n in range(25, 3001, 25))
    assert alarms / 200 <= 0.02


def test_a_confidently_better_challenger_is_not_rolled_back_for_predicting_differently() -> None:
    s = state("canary", stages=[10, 100], min_requests=100, min_labels=50)
    frame = log(rows("champion", "1", 1000, accuracy=0.6, p_yes=0.2),
                rows("challenger", "2", 200, accuracy=0.95, p_yes=0.7, seed=4))
    decision = decide(s, gather_evidence(frame, s))
    assert decision.action == "advance"
    assert decision.checks["divergence"]["jensen_shannon"] > 0.2
    assert decision.checks["divergence"]["counted"] is False
    assert decision.checks["metric"]["gain_interval"][0] > 0


def test_divergence_with_labels_expected_is_judged_at_the_end_of_the_stage() -> None:
    s = state("canary", min_requests=300, min_labels=50)
    frame = log(rows("champion", "1", 1000, p_yes=0.2),
                rows("challenger", "2", 100, p_yes=0.8, seed=4))
    early = decide(s, gather_evidence(frame, s))
    assert early.action == "wait" and early.checks["divergence"]["counted"] is False
    done = log(frame, rows("challenger", "2", 250, p_yes=0.8, seed=5))
    late = decide(s, gather_evidence(done, s))
    assert late.action == "rollback" and late.breached[0].startswith("prediction divergence")
