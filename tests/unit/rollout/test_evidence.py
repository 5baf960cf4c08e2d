"""Evidence counts a rollout's own requests, each under the version that answered it."""

from __future__ import annotations

import datetime as dt

from flywheel.rollout import gather_evidence
from tests.unit.rollout.frames import T0, log, rows, state


def test_after_a_promotion_the_new_champions_requests_are_not_counted_as_the_old() -> None:
    running = state("canary")
    ended = running.model_copy(update={"status": "promoted",
                                       "updated": T0 + dt.timedelta(minutes=1)})
    later = T0 + dt.timedelta(minutes=2)
    frame = log(rows("champion", "1", 100), rows("challenger", "2", 40, seed=1),
                rows("champion", "2", 500, seed=2, at=later))  # served after the promotion
    arms = gather_evidence(frame, ended).to_dict()
    assert (arms["champion"]["version"], arms["champion"]["requests"]) == ("1", 100)
    assert arms["challenger"]["requests"] == 40
    routes = ended.traffic().routes
    assert [(r.arm, r.version, r.weight) for r in routes] == [("champion", "2", 1.0)]
    assert ended.traffic("3").routes[0].version == "3"  # the registry's champion now


def test_rows_of_an_arm_answered_by_another_version_are_left_out_while_running() -> None:
    running = state("canary")
    frame = log(rows("champion", "1", 50), rows("champion", "7", 30, seed=3))
    assert gather_evidence(frame, running).to_dict()["champion"]["requests"] == 50


def test_a_stopped_rollout_leaves_the_champion_it_started_from_unless_it_had_switched() -> None:
    stopped = state("blue_green").model_copy(update={"status": "stopped"})
    assert stopped.traffic().routes[0].version == "1"
    switched = stopped.model_copy(update={"phase": "switched"})
    assert switched.traffic().routes[0].version == "2"
