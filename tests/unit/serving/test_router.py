from __future__ import annotations

import types

import pytest

from flywheel.serving import Router
from tests.unit.rollout.frames import state


def model(version: str) -> object:
    return types.SimpleNamespace(version=version, log_layout=(("x", True),))


LOADED = {"1": model("1"), "2": model("2"), "3": model("3")}


def shares(router: Router, n: int = 20_000, *,
           header: bytes = b"x-flywheel-unit") -> dict[str, float]:
    counts: dict[str, int] = {}
    for i in range(n):
        choice = router.route([(header, f"user-{i}".encode())], [{}])
        arm = "champion" if choice is None else choice[1]
        counts[arm] = counts.get(arm, 0) + 1
    return {arm: c / n for arm, c in counts.items()}


def test_without_a_rollout_every_request_takes_the_champions_path() -> None:
    router = Router()
    router.update(None, LOADED)
    assert router.route([], [{}]) is None and router.mirror() is None


def test_a_canary_sends_its_stage_share_to_the_challenger() -> None:
    router = Router()
    router.update(state("canary", stages=[5, 25, 100]), LOADED)
    assert shares(router)["challenger"] == pytest.approx(0.05, abs=0.006)
    assert router.weights == {("champion", "1"): pytest.approx(0.95),
                              ("challenger", "2"): pytest.approx(0.05)}


def test_units_are_sticky_and_stay_on_the_challenger_as_stages_grow() -> None:
    router = Router()
    s = state("ab", split=0.5)
    router.update(s, LOADED)
    headers = [(b"x-flywheel-unit", b"alice")]
    first = router.route(headers, [{}])
    assert all(router.route(headers, [{}]) == first for _ in range(50))
    canary = state("canary", stages=[5, 25, 100])
    router.update(canary, LOADED)
    early = {i for i in range(5000)
             if router.route([(b"x-flywheel-unit", str(i).encode())], [{}]) is not None}
    router.update(canary.model_copy(update={"stage": 1}), LOADED)
    later = {i for i in range(5000)
             if router.route([(b"x-flywheel-unit", str(i).encode())], [{}]) is not None}
    assert early < later and len(later) == pytest.approx(1250, abs=120)


def test_a_record_field_keys_the_split_when_the_header_is_absent() -> None:
    router = Router()
    router.update(state("ab", split=0.5, unit_field="customer"), LOADED)
    choices = {str(router.route([], [{"customer": "C42"}])) for _ in range(20)}
    assert len(choices) == 1


def test_a_version_that_is_not_loaded_gets_no_traffic_and_is_reported() -> None:
    router = Router()
    router.update(state("canary", stages=[50, 100]), {"1": LOADED["1"]})
    assert shares(router, 2000) == {"champion": 1.0}
    assert router.problem is not None and "2" in router.problem


def test_shadow_mirrors_its_share_while_the_champion_answers() -> None:
    router = Router()
    router.update(state("shadow", share=0.25), LOADED)
    assert shares(router, 500) == {"champion": 1.0}
    mirror = router.mirror()
    assert mirror is not None and mirror[0] is LOADED["2"] and mirror[1] == 0.25


def test_bandit_routes_by_weights_and_names_arms_by_version() -> None:
    router = Router()
    s = state("bandit", arms=["1", "2", "3"]).model_copy(
        update={"weights": {"1": 0.1, "2": 0.8, "3": 0.1}})
    router.update(s, LOADED)
    seen = shares(router)
    assert seen["v2"] == pytest.approx(0.8, abs=0.02) and set(seen) == {"v1", "v2", "v3"}
    assert router.route([(b"x-flywheel-unit", b"u")], [{}])[2] in (True, False)


def test_a_switched_blue_green_answers_with_the_new_version_and_falls_back_to_the_old() -> None:
    router = Router()
    router.update(state("blue_green").model_copy(update={"phase": "switched"}), LOADED)
    target, arm, candidate = router.route([], [{}])
    assert target is LOADED["2"] and arm == "challenger" and candidate
    assert router.plan is not None and router.plan.fallback is LOADED["1"]
