"""Answering a request under a rollout: the routed version answers, the champion covers for
it, and mirrored traffic goes to the shadow runner.

A candidate (a version under test) that raises, rejects the input, or answers slower than the
policy's timeout never becomes a user-visible error: the failure is recorded against it
(``append_error`` with its arm, and the ``flywheel_rollout_candidate_failures`` metric) and the
rollout's champion answers the same request. Model calls run on the event loop for speed, so a
slow call cannot be cut short; it is measured, and past the timeout its answer is discarded
and counted as a timeout.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flywheel.serving._inputs import InputProblems
from flywheel.serving._router import CHAMPION_ARM, Router
from flywheel.serving._shadow import ShadowRunner

if TYPE_CHECKING:
    from flywheel.predlog import PredictionLog
    from flywheel.serving._batching import Answer, Batcher
    from flywheel.serving._metrics import ServingMetrics
    from flywheel.serving._models import ServedModel

__all__ = ["RolloutResponder"]

ChampionAnswer = Callable[["ServedModel", list[dict[str, Any]], str, float, str],
                          Awaitable["Answer"]]


class RolloutResponder:
    """Routes requests by the rollout plan and handles candidate failures and mirroring.

    Args:
        batcher: Model calls go through it, so routed requests batch like any other.
        prediction_log: Where candidate failures are recorded.
        metrics: Candidate failures and shadow calls are counted there.
    """

    def __init__(self, batcher: Batcher, prediction_log: PredictionLog | None,
                 metrics: ServingMetrics) -> None:
        self.batcher = batcher
        self.log = prediction_log
        self.metrics = metrics
        self.router = Router()
        self.shadow = ShadowRunner(prediction_log, metrics)

    async def answer(self, headers: list[tuple[bytes, bytes]], champion: ServedModel,
                     body: Any, records: list[dict[str, Any]], request_id: str,
                     started: float, answer_champion: ChampionAnswer
                     ) -> tuple[ServedModel, str, list[dict[str, Any]], Answer]:
        """Who answered (model and arm), the records as it validated them, and the answer."""
        plan = self.router.plan
        choice = self.router.route(headers, records)
        if choice is None:
            served, arm = champion, CHAMPION_ARM
            answer = await answer_champion(champion, records, request_id, started, arm)
        else:
            target, arm, candidate = choice
            if candidate:
                served, arm, records, answer = await self._candidate(
                    target, arm, champion, body, records, request_id, started, answer_champion)
            else:
                served = target
                answer = await answer_champion(target, records, request_id, started, arm)
        mirror = self.router.mirror()
        if mirror is not None and plan is not None and \
                (mirror[1] >= 1.0 or random.random() < mirror[1]):
            self.shadow.submit(mirror[0], records, request_id, plan.timeout_s)
        return served, arm, records, answer

    async def _candidate(self, target: ServedModel, arm: str, champion: ServedModel,
                         body: Any, records: list[dict[str, Any]], request_id: str,
                         started: float, answer_champion: ChampionAnswer
                         ) -> tuple[ServedModel, str, list[dict[str, Any]], Answer]:
        plan = self.router.plan
        timeout_s = plan.timeout_s if plan is not None else float("inf")
        began = time.perf_counter()
        try:
            mine = records if target.log_layout == champion.log_layout else \
                target.checker.records(body)[0]
            answer = await self.batcher.submit(target, mine)
            elapsed = time.perf_counter() - began
            if elapsed <= timeout_s:
                return target, arm, mine, answer
            error, kind = f"timeout: {elapsed * 1000.0:.1f} ms over {timeout_s * 1000.0:g} ms", \
                "timeout"
        except InputProblems as exc:
            error, kind = f"input rejected: {exc.problems[:3]}", "input"
        except Exception as exc:  # noqa: BLE001 - the candidate failed; the champion answers
            error, kind = f"{type(exc).__name__}: {exc}"[:500], "error"
        self.metrics.candidate_failed(target.version, arm, kind)
        if self.log is not None:
            self.log.append_error(request_id, time.time(), target.version,
                                  (time.perf_counter() - began) * 1000.0, arm, error)
        fallback = plan.fallback if plan is not None and plan.fallback is not None else champion
        answer = await answer_champion(fallback, records, request_id, started, CHAMPION_ARM)
        return fallback, CHAMPION_ARM, records, answer

    def stop(self) -> None:
        self.shadow.stop()
