"""The stream scoring loop: read a micro-batch, check, route, score, write, then acknowledge.

Scoring goes through the server's own parts: the ``ModelStore`` (hot swap: a promoted version
answers from the next batch on), the ``Router`` (a running rollout routes each event by its
unit field, sticky as over HTTP), each version's input checker, and the ``PredictionLog``
(request id = event id, so feedback joins by event id). A candidate version that fails on a
batch never loses it: the champion scores those events and the failure is counted against the
candidate, as over HTTP.

An event's record is the JSON object in its ``record`` field (or ``data``). An event whose
record does not parse, or fails the input checks, goes to the dead-letter stream with the
reason; so does one the model cannot score. Nothing is acknowledged before the sink wrote it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from flywheel.core.errors import StreamError
from flywheel.predlog import PredictionLog
from flywheel.serving import InputProblems, ModelStore, Router, ServedModel
from flywheel.stream._metrics import StreamMetrics
from flywheel.stream.base import DeadLetter, Event, Prediction, PredictionSink, StreamSource

log = logging.getLogger("flywheel.stream")

__all__ = ["RECORD_FIELDS", "StreamScorer", "parse_record"]

RECORD_FIELDS = ("record", "data")
"""Event fields that may hold the record (a JSON object of feature values)."""
CHAMPION_ARM = "champion"


def parse_record(event: Event) -> dict[str, Any]:
    """The record an event carries.

    Raises:
        ValueError: Saying why it is not a JSON object of features.
    """
    raw = next((event.fields[f] for f in RECORD_FIELDS if f in event.fields), None)
    if raw is None:
        raise ValueError(f"no {' or '.join(RECORD_FIELDS)} field; fields are "
                         f"{sorted(event.fields)}")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the record is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"the record is a JSON {type(record).__name__}, not an object of "
                         "features")
    return record


class StreamScorer:
    """Scores events from ``source`` into ``sink`` with the models of ``store``.

    Args:
        source: The stream and consumer group.
        sink: Where predictions go.
        store: The model store (started by the caller; its poller swaps versions in).
        prediction_log: Where every prediction is recorded (None: not recorded).
        batch: Most events per micro-batch.
        block_ms: How long a read waits for the first event.
    """

    def __init__(self, source: StreamSource, sink: PredictionSink, store: ModelStore, *,
                 prediction_log: PredictionLog | None = None,
                 metrics: StreamMetrics | None = None, batch: int = 500,
                 block_ms: int = 100) -> None:
        self.source, self.sink, self.store = source, sink, store
        self.log = prediction_log
        self.metrics = metrics or StreamMetrics(source.name)
        self.batch = batch
        self.block_ms = block_ms
        self.router = Router()
        self.stopping = threading.Event()
        self.scored = 0
        self.dead_lettered = 0
        previous = store.on_change
        store.on_change = self._model_changed(previous)
        self._model_changed(None)("rollout", None)

    def _model_changed(self, previous: Callable[[str, str | None], None] | None
                       ) -> Callable[[str, str | None], None]:
        def changed(alias: str, version: str | None) -> None:
            self.router.update(self.store.rollout, self.store.by_version)
            if previous is not None:
                previous(alias, version)

        return changed

    def run(self, *, max_events: int | None = None, idle_exit_s: float | None = None) -> int:
        """Score until ``stop`` (or ``max_events`` settled, or ``idle_exit_s`` without an
        event); returns the events settled. Re-delivered events come first."""
        settled = 0
        idle_since = time.monotonic()
        lag_at = 0.0
        while not self.stopping.is_set():
            if self.store.default is None:
                self.store.reconcile()
                if self.store.default is None:
                    self.stopping.wait(1.0)
                    continue
            try:
                events = self.source.recover(self.batch) or \
                    self.source.read(self.batch, self.block_ms)
                now = time.monotonic()
                if now - lag_at > 1.0:
                    lag = self.source.lag()
                    if lag is not None:
                        self.metrics.child(self.metrics.lag).set(lag)
                    lag_at = now
                if events:
                    idle_since = now
                    settled += self.process(events)
            except StreamError as exc:
                # Nothing of the batch was acknowledged: it is re-read once the broker answers.
                self.metrics.child(self.metrics.errors, "broker").inc()
                log.warning("%s; retrying in 1 s", exc)
                self.stopping.wait(1.0)
                continue
            if max_events is not None and settled >= max_events:
                break
            if not events and idle_exit_s is not None and now - idle_since > idle_exit_s:
                break
        return settled

    def stop(self) -> None:
        self.stopping.set()

    def process(self, events: list[Event]) -> int:
        """Score one micro-batch and commit it; returns the events settled (0, acknowledging
        nothing, when no model is loaded).

        Raises:
            StreamError: If the broker fails; nothing of the batch is acknowledged then.
        """
        started = time.perf_counter()
        champion = self.store.default
        if champion is None:
            return 0
        dead: list[DeadLetter] = []
        groups: dict[tuple[int, str], tuple[ServedModel, str, bool, list[Event],
                                            list[dict[str, Any]]]] = {}
        plan = self.router.plan
        for event in events:
            try:
                record = parse_record(event)
            except ValueError as exc:
                dead.append(DeadLetter(event, f"unparseable: {exc}"))
                self.metrics.child(self.metrics.errors, "parse").inc()
                continue
            served, arm, candidate = champion, CHAMPION_ARM, False
            if plan is not None:
                target = self.router.route([], [record])
                if target is not None:
                    served, arm, candidate = target
            key = (id(served), arm)
            if key not in groups:
                groups[key] = (served, arm, candidate, [], [])
            groups[key][3].append(event)
            groups[key][4].append(record)
        predictions: list[Prediction] = []
        logged: list[tuple[ServedModel, str, list[Event], list[dict[str, Any]], list[Any],
                           Any]] = []
        for served, arm, candidate, group_events, records in groups.values():
            self._score(served, arm, candidate, champion, group_events, records, dead,
                        predictions, logged)
        self.sink.commit(self.source, predictions, dead)
        self._after_commit(predictions, dead, logged, started)
        return len(predictions) + len(dead)

    def _score(self, served: ServedModel, arm: str, candidate: bool, champion: ServedModel,
               events: list[Event], records: list[dict[str, Any]], dead: list[DeadLetter],
               predictions: list[Prediction], logged: list[Any]) -> None:
        events, records = self._checked(served, events, records, dead)
        if not records:
            return
        try:
            labels, probabilities = served.answer(records)
        except Exception as exc:  # noqa: BLE001 - a model failing on checked input
            if candidate:
                self.metrics.child(self.metrics.errors, "candidate").inc()
                if self.log is not None:
                    for event in events:
                        self.log.append_error(event.id, time.time(), served.version, 0.0, arm,
                                              f"{type(exc).__name__}: {exc}"[:500])
                self._score(champion, CHAMPION_ARM, False, champion, events, records, dead,
                            predictions, logged)
                return
            self.metrics.child(self.metrics.errors, "model").inc()
            reason = f"the model could not score it: {type(exc).__name__}: {exc}"[:500]
            dead.extend(DeadLetter(e, reason) for e in events)
            return
        classes = served.model.classes
        for i, event in enumerate(events):
            predictions.append(Prediction(
                event_id=event.id, version=served.version, arm=arm, prediction=labels[i],
                probabilities=None if probabilities is None else probabilities[i],
                classes=classes))
        logged.append((served, arm, events, records, labels, probabilities))

    def _checked(self, served: ServedModel, events: list[Event],
                 records: list[dict[str, Any]], dead: list[DeadLetter]
                 ) -> tuple[list[Event], list[dict[str, Any]]]:
        """The events whose records pass ``served``'s input checks; the others dead-lettered
        with every problem found in them."""
        try:
            served.checker.check(records)
            return events, records
        except InputProblems as exc:
            by_row: dict[int, list[str]] = {}
            for problem in exc.problems:
                loc = problem.get("loc", [])
                row = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
                field = ".".join(str(p) for p in loc[2:]) or "record"
                by_row.setdefault(row, []).append(f"{field}: {problem.get('msg')}")
        if -1 in by_row:  # not about one row (a batch over max_rows): check one at a time
            return self._one_by_one(served, events, records, dead)
        keep_events, keep_records = [], []
        for i, (event, record) in enumerate(zip(events, records, strict=True)):
            if i in by_row:
                dead.append(DeadLetter(event, "failed the input checks: "
                                       + "; ".join(by_row[i])))
                self.metrics.child(self.metrics.errors, "input").inc()
            else:
                keep_events.append(event)
                keep_records.append(record)
        if len(by_row) > 100 and keep_records:  # the checker stops listing after 100
            return self._one_by_one(served, keep_events, keep_records, dead)
        return keep_events, keep_records

    def _one_by_one(self, served: ServedModel, events: list[Event],
                    records: list[dict[str, Any]], dead: list[DeadLetter]
                    ) -> tuple[list[Event], list[dict[str, Any]]]:
        keep_events, keep_records = [], []
        for event, record in zip(events, records, strict=True):
            try:
                served.checker.check([record])
            except InputProblems as exc:
                dead.append(DeadLetter(event, f"failed the input checks: {exc}"))
                self.metrics.child(self.metrics.errors, "input").inc()
                continue
            keep_events.append(event)
            keep_records.append(record)
        return keep_events, keep_records

    def _after_commit(self, predictions: list[Prediction], dead: list[DeadLetter],
                      logged: list[Any], started: float) -> None:
        now = time.time()
        metrics = self.metrics
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if self.log is not None:
            for served, arm, events, records, labels, probabilities in logged:
                for i, event in enumerate(events):
                    self.log.append(served.log_layout, event.id, now, served.version,
                                    elapsed_ms, records[i:i + 1], labels[i:i + 1],
                                    None if probabilities is None else probabilities[i:i + 1],
                                    arm=arm, event_time=None if event.appended_ms is None
                                    else event.appended_ms / 1000.0)
        for served, arm, events, *_ in logged:
            metrics.child(metrics.predictions, served.version, arm).inc(len(events))
        latency = metrics.child(metrics.latency)
        for p_event in (e for _, _, events, *_ in logged for e in events):
            if p_event.appended_ms is not None:
                latency.observe(max(0.0, now - p_event.appended_ms / 1000.0))
        metrics.child(metrics.events, "scored").inc(len(predictions))
        if dead:
            metrics.child(metrics.events, "dead_letter").inc(len(dead))
            for d in dead[:5]:
                log.warning("event %s to the dead-letter stream: %s", d.event.id, d.reason)
        total = len(predictions) + len(dead)
        metrics.child(metrics.batch).observe(total)
        metrics.child(metrics.pending).set(total)
        self.scored += len(predictions)
        self.dead_lettered += len(dead)
