"""Shadow traffic: requests the champion answered, scored again by the challenger, entirely off
the response path.

The request path only puts a reference to the request on a queue (``SimpleQueue.put``, a
fraction of a microsecond); a background thread drains it, scores what it took with one model
call per version, and records each answer in the prediction log as arm ``shadow`` under the
user's request id (so feedback labels join it too). The user's answer never waits for the
challenger and never sees its failures: a failed or slow shadow call is recorded against the
challenger (``append_error``), counted in the metrics, and that is all. If the challenger
cannot keep up, mirrored requests beyond ``max_pending`` are dropped and counted, rather than
queueing without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel.predlog import PredictionLog
    from flywheel.serving._metrics import ServingMetrics
    from flywheel.serving._models import ServedModel

__all__ = ["SHADOW_ARM", "ShadowRunner"]

log = logging.getLogger("flywheel.serving")

SHADOW_ARM = "shadow"
_DRAIN = 256

Item = tuple["ServedModel", list[dict[str, Any]], str, float, float]


class ShadowRunner:
    """Scores mirrored requests with their shadow version in a background thread.

    Args:
        prediction_log: Where shadow answers and failures are recorded.
        metrics: Shadow calls by version and outcome.
        max_pending: Mirrored requests waiting at most; more are dropped.
    """

    def __init__(self, prediction_log: PredictionLog | None, metrics: ServingMetrics, *,
                 max_pending: int = 10_000) -> None:
        self.log = prediction_log
        self.metrics = metrics
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, served: ServedModel, records: list[dict[str, Any]], request_id: str,
               timeout_s: float) -> None:
        """Mirror one request (called on the request path: no work beyond a queue put)."""
        if self._thread is None:
            self.start()
        if self._queue.qsize() >= self.max_pending:
            self.metrics.shadow_call(served.version, "dropped")
            return
        self._queue.put((served, records, request_id, time.time(), timeout_s))

    def start(self) -> ShadowRunner:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="flywheel-shadow",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Score what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            stop = False
            while len(items) < _DRAIN:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
            try:
                self._score(items)
            except Exception:  # noqa: BLE001 - shadow scoring must never take the server down
                log.exception("shadow scoring failed")
            if stop:
                return

    def _score(self, items: list[Item]) -> None:
        groups: dict[int, list[Item]] = {}
        for item in items:
            groups.setdefault(id(item[0]), []).append(item)
        for group in groups.values():
            served = group[0][0]
            records = [r for item in group for r in item[1]]
            started = time.perf_counter()
            try:
                predictions, probabilities = served.answer(records)
            except Exception as exc:  # noqa: BLE001 - a failure of the challenger, recorded
                self._failed(group, (time.perf_counter() - started) * 1000.0,
                             f"{type(exc).__name__}: {exc}"[:500], "error")
                continue
            elapsed = time.perf_counter() - started
            if elapsed > group[0][4]:
                self._failed(group, elapsed * 1000.0, f"timeout: {elapsed * 1000.0:.1f} ms over "
                             f"{group[0][4] * 1000.0:g} ms", "timeout")
                continue
            start = 0
            for served_, rows, request_id, when, _ in group:
                end = start + len(rows)
                self.metrics.shadow_call(served.version, "ok")
                if self.log is not None:
                    self.log.append(served_.log_layout, request_id, when, served.version,
                                    elapsed * 1000.0, rows, predictions[start:end],
                                    None if probabilities is None else probabilities[start:end],
                                    arm=SHADOW_ARM)
                start = end

    def _failed(self, group: list[Item], latency_ms: float, error: str, outcome: str) -> None:
        for served, _, request_id, when, _ in group:
            self.metrics.shadow_call(served.version, outcome)
            if self.log is not None:
                self.log.append_error(request_id, when, served.version, latency_ms,
                                      SHADOW_ARM, error)
