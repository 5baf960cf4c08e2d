from __future__ import annotations

import pytest

from flywheel.core._rollout_spec import RolloutSpec
from flywheel.core.errors import ConfigError, RolloutError
from flywheel.core.spec import parse_spec
from flywheel.rollout import parse_state, policy_from_spec
from tests.unit.rollout.frames import state


def test_policies_take_the_spec_defaults_and_command_line_overrides() -> None:
    spec = RolloutSpec.model_validate({"canary": {"stages": [10, 100]},
                                       "limits": {"max_error_rate": 0.02}})
    policy = policy_from_spec("canary", spec, task="binary",
                              overrides={"min_requests": 50, "limits.max_error_rate": 0.05,
                                         "min_labels": None})
    assert policy.kind == "canary" and policy.stages == [10.0, 100.0]
    assert policy.min_requests == 50 and policy.min_labels == 50
    assert policy.limits.max_error_rate == 0.05 and policy.metric == "accuracy"


@pytest.mark.parametrize(("kind", "overrides", "needle"), [
    ("canary", {"stages": [50, 10]}, "stages must increase"),
    ("canary", {"stages": [0, 100]}, "percentage in (0, 100]"),
    ("shadow", {"share": 1.5}, "share: must be <= 1.0"),
    ("shadow", {"then": "party"}, "then: must be one of"),
    ("ab", {"metric": "abs_error"}, "needs a regression model"),
    ("ab", {"metric": "conversion"}, "names none; set target.positive_class"),
    ("bandit", {"arms": ["2", "2"]}, "each arm must be a different version"),
    ("rainbow", {}, "unknown rollout kind"),
])
def test_invalid_policies_are_refused_with_the_reason(kind: str, overrides: dict[str, object],
                                                      needle: str) -> None:
    with pytest.raises(RolloutError) as caught:
        policy_from_spec(kind, RolloutSpec(), task="binary", overrides=overrides)
    assert needle in str(caught.value)


def test_the_spec_rejects_a_typo_in_the_rollout_section_with_a_suggestion() -> None:
    raw = {"name": "x", "data": {"path": "a.csv"}, "target": {"column": "y", "task": "binary"},
           "rollout": {"canary": {"min_request": 5}}}
    with pytest.raises(ConfigError, match="rollout.canary.min_request: unknown key; did you mean "
                                          "'min_requests'"):
        parse_spec(raw)


def test_state_survives_the_registry_tag_round_trip() -> None:
    original = state("bandit", arms=["1", "2", "3"])
    again = parse_state(original.to_tag())
    assert again == original and again.weights == {"1": 1 / 3, "2": 1 / 3, "3": 1 / 3}


def test_a_damaged_state_tag_is_refused_with_a_way_out() -> None:
    with pytest.raises(RolloutError, match="rollout stop --force"):
        parse_state('{"id": "x"}')


def test_traffic_follows_the_policy_and_stage() -> None:
    canary = state("canary", stages=[5, 50, 100])
    assert [(r.arm, r.version, r.weight) for r in canary.traffic().routes] == [
        ("champion", "1", 0.95), ("challenger", "2", 0.05)]
    later = canary.model_copy(update={"stage": 1})
    assert later.traffic().routes[1].weight == 0.5
    shadow = state("shadow", share=0.2).traffic()
    assert shadow.routes[0].weight == 1.0 and shadow.shadow is not None
    assert (shadow.shadow.version, shadow.shadow.weight) == ("2", 0.2)
    green = state("blue_green")
    assert green.traffic().routes[0].version == "1"
    assert green.model_copy(update={"phase": "switched"}).traffic().routes[0].version == "2"
    done = canary.model_copy(update={"status": "rolled_back"})
    assert [(r.version, r.weight) for r in done.traffic().routes] == [("1", 1.0)]


def test_a_limit_turned_off_stays_off_after_the_state_is_stored_and_read_back() -> None:
    from flywheel.core.spec import RolloutSpec
    from flywheel.rollout import new_state, parse_state, policy_from_spec
    from tests.unit.rollout.frames import T0

    spec = RolloutSpec.model_validate({"limits": {"max_divergence": None,
                                                  "max_metric_drop": None}})
    policy = policy_from_spec("canary", spec, task="binary", positive="yes")
    stored = new_state(model="m", policy=policy, champion="1", challenger="2",
                       started_by="test", reason="", now=T0)
    read = parse_state(stored.to_tag())
    assert read.policy.limits.max_divergence is None
    assert read.policy.limits.max_metric_drop is None
