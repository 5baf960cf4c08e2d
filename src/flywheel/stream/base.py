"""What stream scoring needs from a broker: a source of events and a sink for predictions.

A source hands out events under a consumer group and forgets one only when it is acknowledged;
a sink writes predictions keyed by event id. ``StreamScorer`` acknowledges an event only in
``commit``, after (or atomically with) its prediction being written, so a crash re-delivers and
never loses. Redis Streams implement both (``_redis.py``); a Kafka source (confluent-kafka:
poll, commit offsets after the write) fits the same two protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["DeadLetter", "Event", "Prediction", "PredictionSink", "StreamSource"]


@dataclass(frozen=True)
class Event:
    """One event from the source: its id (unique in the stream) and its raw fields."""

    id: str
    fields: dict[str, Any]
    appended_ms: float | None = None
    """When the broker appended it (epoch ms), when the id says so (Redis ids do)."""


@dataclass(frozen=True)
class Prediction:
    """A scored event: what the sink writes under the event's id."""

    event_id: str
    version: str
    arm: str
    prediction: Any
    probabilities: list[float] | None = None
    classes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class DeadLetter:
    """An event that cannot be scored (unparseable, failing the input checks), and why."""

    event: Event
    reason: str


class StreamSource(Protocol):
    """Events under a consumer group; an event stays pending until ``ack``-ed."""

    name: str
    """The stream (topic) read, for messages and metric labels."""

    def read(self, count: int, block_ms: int) -> list[Event]:
        """Up to ``count`` new events, waiting at most ``block_ms`` for the first."""
        ...

    def recover(self, count: int) -> list[Event]:
        """Events delivered before but never acknowledged: this consumer's own, then those of
        consumers idle longer than the source's claim time (dead ones), taken over."""
        ...

    def ack(self, ids: Sequence[str]) -> None:
        """Forget ``ids``: they will not be delivered again."""
        ...

    def lag(self) -> int | None:
        """Events in the stream not yet delivered to the group (None: unknown)."""
        ...

    def close(self) -> None: ...


class PredictionSink(Protocol):
    """Where predictions go, keyed by event id, at most one per id."""

    def commit(self, source: StreamSource, predictions: Sequence[Prediction],
               dead: Sequence[DeadLetter]) -> None:
        """Write ``predictions``, send ``dead`` to the dead-letter stream, then acknowledge
        all of their events on ``source``; an event never written is never acknowledged.

        An id that is already in the output (a re-delivery after a crash between write and
        acknowledgement) is not written again.
        """
        ...

    def close(self) -> None: ...
