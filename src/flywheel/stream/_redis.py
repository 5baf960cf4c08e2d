"""Redis Streams as a stream source and a prediction sink (redis-py, imported lazily).

The source reads with ``XREADGROUP`` under a consumer group (created at the stream's start,
``MKSTREAM``, if missing), re-reads its own pending entries and takes over those of consumers
idle longer than ``claim_idle_ms`` with ``XAUTOCLAIM`` when it starts, and acknowledges with
``XACK``. Settling a batch is one server-side script: for each event, ``XACK`` and, only if that
acknowledged it (it was still pending for the group), the ``XADD`` of its prediction or dead
letter. Like MULTI/EXEC it runs whole or not at all, so a crash re-delivers and never loses;
unlike MULTI/EXEC it also writes nothing for an event another consumer already settled (a
consumer that was only slow when its entries were claimed), so the output holds one entry per
event id.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from flywheel.core.errors import ConfigError, StreamError
from flywheel.stream.base import DeadLetter, Event, Prediction, StreamSource

_log = logging.getLogger("flywheel.stream")

__all__ = ["RedisStreamSink", "RedisStreamSource", "RedisTarget", "parse_redis_url"]

_T = TypeVar("_T")

_URL = re.compile(r"^(rediss?)://(?:([^:@/]*)(?::([^@/]*))?@)?([^:/]+)(?::(\d{1,5}))?/(.+)$")

# KEYS: source, output (or ""), dead letters. ARGV: group, number of predictions, then
# id + encoded fields per prediction, then id + reason + raw fields per dead letter.
_SETTLE = """
local written = 0
local n = tonumber(ARGV[2])
local i = 3
for _ = 1, n do
  local id, body = ARGV[i], ARGV[i + 1]
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    if KEYS[2] ~= '' then
      redis.call('XADD', KEYS[2], '*', 'event_id', id, 'prediction', body)
    end
    written = written + 1
  end
  i = i + 2
end
while i <= #ARGV do
  local id, reason, raw = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    redis.call('XADD', KEYS[3], '*', 'event_id', id, 'reason', reason, 'fields', raw)
  end
  i = i + 3
end
return written
"""


@dataclass(frozen=True)
class RedisTarget:
    """A stream on a server, from ``redis://[user:password@]HOST[:PORT]/STREAM``."""

    url: str
    """The server's URL, without the stream (for redis-py)."""
    stream: str

    def same_server(self, other: RedisTarget) -> bool:
        return self.url == other.url


def parse_redis_url(text: str, *, what: str = "--source") -> RedisTarget:
    """The server and stream of ``redis://HOST:PORT/STREAM``.

    Raises:
        ConfigError: If ``text`` is not such a URL.
    """
    match = _URL.match(text.strip())
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a Redis stream URL; expected "
                          "redis://HOST:PORT/STREAM, such as redis://127.0.0.1:6379/events.")
    scheme, user, password, host, port, stream = match.groups()
    auth = f"{user or ''}:{password}@" if password is not None else (f"{user}@" if user else "")
    return RedisTarget(url=f"{scheme}://{auth}{host}:{port or 6379}", stream=stream)


def connect(url: str) -> Any:
    """A redis-py client for ``url``, checked with PING.

    Raises:
        ConfigError: If redis-py is missing or the server does not answer.
    """
    try:
        import redis
    except ImportError as exc:
        raise ConfigError("stream scoring from Redis needs redis-py; pip install "
                          "flywheel[redis]") from exc
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_keepalive=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"the Redis server {url} does not answer ({exc}); start it or "
                          "correct --source/--output.") from exc
    return client


class RedisStreamSource:
    """Events of one Redis stream under a consumer group.

    Args:
        target: Server and stream.
        group: The consumer group; created at the start of the stream if missing.
        consumer: This consumer's name in the group (one per process).
        claim_idle_ms: ``recover`` takes over entries pending this long at another consumer.
        dead_letter: The dead-letter stream (on the same server).
    """

    def __init__(self, target: RedisTarget, *, group: str, consumer: str,
                 claim_idle_ms: int = 30_000, dead_letter: str | None = None) -> None:
        self.target = target
        self.name = target.stream
        self.group, self.consumer = group, consumer
        self.claim_idle_ms = claim_idle_ms
        self.dead_letter = dead_letter or f"{target.stream}:dead"
        self.client = connect(target.url)
        self._settle = self.client.register_script(_SETTLE)
        self._ensure_group()
        self._claim_cursor = "0-0"
        self._claimed_at = 0.0
        self._own_done = False

    def _ensure_group(self) -> None:
        import redis

        try:
            self.client.xgroup_create(self.name, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _broker(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``, with redis-py's connection errors as ``StreamError``.

        A server that lost the group (restarted without persistence, or the group destroyed)
        answers NOGROUP: the group is created again and the call retried once, so the scorer
        goes on with what is appended from then on instead of failing every read.
        """
        import redis

        try:
            try:
                return call()
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                _log.warning("%s: consumer group %s is gone from %s; created it again",
                             self.target.url, self.group, self.name)
                self._ensure_group()
                self._own_done = False
                self._claim_cursor = "0-0"
                return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._own_done = False  # after a reconnect, re-read what this consumer holds
            raise StreamError(f"{self.target.url} ({what} on {self.name})", str(exc)) from exc

    def read(self, count: int, block_ms: int) -> list[Event]:
        return self._broker("XREADGROUP", functools.partial(self._read, count, block_ms))

    def _read(self, count: int, block_ms: int) -> list[Event]:
        reply = self.client.xreadgroup(self.group, self.consumer, {self.name: ">"},
                                       count=count, block=block_ms)
        return _events(reply[0][1]) if reply else []

    def recover(self, count: int) -> list[Event]:
        """Own pending entries first (id 0), then entries of idle consumers (XAUTOCLAIM);
        the idle consumers' entries are looked for again every ``claim_idle_ms`` (at most
        once a second), so a consumer that dies while this one runs is taken over too."""
        return self._broker("recover", functools.partial(self._recover, count))

    def _recover(self, count: int) -> list[Event]:
        if not self._own_done:
            reply = self.client.xreadgroup(self.group, self.consumer, {self.name: "0"},
                                           count=count)
            events = _events(reply[0][1]) if reply else []
            if events:
                # the next call reads past these: they are settled before it
                return events
            self._own_done = True
        if self._claim_cursor == "done":
            if time.monotonic() - self._claimed_at < max(1.0, self.claim_idle_ms / 1000.0):
                return []
            self._claim_cursor = "0-0"
        self._claimed_at = time.monotonic()
        reply = self.client.xautoclaim(self.name, self.group, self.consumer,
                                       self.claim_idle_ms, start_id=self._claim_cursor,
                                       count=count)
        cursor = _text(reply[0])
        self._claim_cursor = "done" if cursor == "0-0" else cursor
        return _events([entry for entry in reply[1] if entry and entry[1] is not None])

    def pending_ids(self, limit: int = 1_000_000) -> list[str]:
        """Ids delivered to any consumer of the group and not yet acknowledged."""
        entries = self.client.xpending_range(self.name, self.group, min="-", max="+",
                                             count=limit)
        return [_text(e["message_id"]) for e in entries]

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            self._broker("XACK", lambda: self.client.xack(self.name, self.group, *ids))

    def settle(self, predictions: Sequence[Prediction], dead: Sequence[DeadLetter], *,
               output: str = "") -> int:
        """Acknowledge every event given and, atomically with each acknowledgement, add its
        prediction to ``output`` (none: ``""``) or its dead letter; returns predictions
        written (fewer if another consumer settled some first)."""
        args: list[Any] = [self.group, len(predictions)]
        for p in predictions:
            args += (p.event_id, encode_prediction(p))
        for d in dead:
            args += (d.event.id, d.reason, orjson.dumps(d.event.fields, default=str))
        if len(args) == 2:
            return 0
        keys = [self.name, output, self.dead_letter]
        return int(self._broker("settle", lambda: self._settle(keys=keys, args=args)))

    def lag(self) -> int | None:
        for group in self._broker("XINFO", lambda: self.client.xinfo_groups(self.name)):
            if _text(group.get("name", group.get(b"name", b""))) == self.group:
                lag = group.get("lag", group.get(b"lag"))
                return int(lag) if lag is not None else None
        return None

    def close(self) -> None:
        self.client.close()


class RedisStreamSink:
    """Predictions as entries of a Redis stream (fields ``event_id``, ``prediction``: JSON).

    The output must be on the source's server: each entry is added in the same server-side
    script that acknowledges its event.

    Raises:
        ConfigError: If the output is on another server than the source.
    """

    def __init__(self, target: RedisTarget, source: StreamSource) -> None:
        if not isinstance(source, RedisStreamSource) or not target.same_server(source.target):
            raise ConfigError(f"--output {target.url}/{target.stream} is not on the source's "
                              "Redis server; a prediction is written in the same transaction "
                              "that acknowledges its event, so put the output stream beside "
                              "the source, or write to a folder.")
        self.target = target

    def commit(self, source: StreamSource, predictions: Sequence[Prediction],
               dead: Sequence[DeadLetter]) -> None:
        as_redis_source(source).settle(predictions, dead, output=self.target.stream)

    def close(self) -> None:
        pass


def as_redis_source(source: StreamSource) -> RedisStreamSource:
    """``source`` as a Redis source (settling dead letters needs one).

    Raises:
        ConfigError: If it is another kind of source.
    """
    if not isinstance(source, RedisStreamSource):
        raise ConfigError(f"the source {source.name} is not a Redis stream; this sink settles "
                          "events through Redis.")
    return source


def encode_prediction(p: Prediction) -> bytes:
    """The ``prediction`` field of an output entry."""
    return orjson.dumps({"version": p.version, "arm": p.arm, "prediction": p.prediction,
                         "probabilities": p.probabilities, "classes": list(p.classes)},
                        option=orjson.OPT_SERIALIZE_NUMPY)


def _events(entries: Sequence[Any]) -> list[Event]:
    out = []
    for raw_id, raw_fields in entries:
        event_id = _text(raw_id)
        fields = {_text(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                  for k, v in (raw_fields or {}).items()}
        out.append(Event(event_id, fields, appended_ms=_id_ms(event_id)))
    return out


def _id_ms(event_id: str) -> float | None:
    head = event_id.partition("-")[0]
    return float(head) if head.isdigit() else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
