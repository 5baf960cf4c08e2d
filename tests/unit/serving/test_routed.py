from __future__ import annotations

import asyncio
import time
import types
from typing import Any

from flywheel.serving._batching import Batcher
from flywheel.serving._metrics import ServingMetrics
from flywheel.serving._routed import RolloutResponder
from tests.unit.rollout.frames import state


class FakeLog:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.errors: list[tuple[str, str, str, str]] = []

    def append(self, layout: Any, request_id: str, when: float, version: str, latency: float,
               records: Any, predictions: Any, probabilities: Any, *, arm: str) -> None:
        self.rows.append((request_id, version, arm))

    def append_error(self, request_id: str, when: float, version: str, latency: float,
                     arm: str, error: str) -> None:
        self.errors.append((request_id, version, arm, error))


def model(version: str, *, fails: bool = False, sleep: float = 0.0) -> Any:
    def answer(rows: list[dict[str, Any]]) -> tuple[list[str], None]:
        if sleep:
            time.sleep(sleep)
        if fails:
            raise RuntimeError(f"version {version} is broken")
        return [f"from-{version}"] * len(rows), None

    return types.SimpleNamespace(version=version, log_layout=(("x", True),), answer=answer)


def respond(responder: RolloutResponder, champion: Any, request_id: str = "r1") -> Any:
    async def champion_answer(served: Any, records: Any, rid: str, started: float,
                              arm: str) -> Any:
        return await responder.batcher.submit(served, records)

    async def run() -> Any:
        return await responder.answer([(b"x-flywheel-unit", b"u")], champion, {}, [{"x": 1.0}],
                                      request_id, time.perf_counter(), champion_answer)

    return asyncio.run(run())


def setup(challenger: Any, kind: str = "canary", **overrides: Any
          ) -> tuple[RolloutResponder, FakeLog, Any]:
    log = FakeLog()
    responder = RolloutResponder(Batcher(), log, ServingMetrics())  # type: ignore[arg-type]
    champion = model("1")
    responder.router.update(state(kind, **overrides), {"1": champion, "2": challenger})
    return responder, log, champion


def test_a_failing_candidate_is_answered_by_the_champion_and_counted_against_itself() -> None:
    responder, log, champion = setup(model("2", fails=True), stages=[100])
    served, arm, _, (predictions, _) = respond(responder, champion)
    assert (served.version, arm, predictions) == ("1", "champion", ["from-1"])
    assert log.errors == [("r1", "2", "challenger", "RuntimeError: version 2 is broken")]
    metrics = responder.metrics.render()[0].decode()
    assert 'flywheel_rollout_candidate_failures_total{arm="challenger",kind="error",' \
           'model_version="2"} 1.0' in metrics


def test_a_candidate_slower_than_the_timeout_counts_as_a_timeout() -> None:
    responder, log, champion = setup(model("2", sleep=0.05), stages=[100], timeout_ms=10)
    served, arm, _, _ = respond(responder, champion)
    assert served.version == "1" and log.errors[0][3].startswith("timeout: ")


def test_a_healthy_candidate_answers_under_its_arm() -> None:
    responder, log, champion = setup(model("2"), stages=[100])
    served, arm, _, (predictions, _) = respond(responder, champion)
    assert (served.version, arm, predictions) == ("2", "challenger", ["from-2"])
    assert log.errors == []


def test_shadow_answers_are_logged_off_the_response_path_and_failures_never_reach_users(
) -> None:
    responder, log, champion = setup(model("2"), "shadow", share=1.0)
    served, arm, _, (predictions, _) = respond(responder, champion, "r1")
    assert (served.version, predictions) == ("1", ["from-1"])
    broken, log2, champion2 = setup(model("2", fails=True), "shadow", share=1.0)
    served2, _, _, (predictions2, _) = respond(broken, champion2, "r2")
    assert (served2.version, predictions2) == ("1", ["from-1"])
    responder.stop()
    broken.stop()
    assert log.rows == [("r1", "2", "shadow")]
    assert [(e[0], e[2]) for e in log2.errors] == [("r2", "shadow")]
