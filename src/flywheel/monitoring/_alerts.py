"""Alerts: what a fired rule says, where it goes, and how repeats are held back.

Sinks are small objects behind one protocol (``send``); a sink that also wants every metric of
every run (Prometheus gauges) implements ``observe`` too. ``AlertDispatcher`` sends each fired
alert to every sink unless the same rule fired for the same model within the cool-down; the
time each alert was last sent is kept in a small JSON file, so separate `flywheel monitor` runs
(cron) de-duplicate as well as one `--watch` loop. A failing sink is logged and never stops
monitoring or the other sinks.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from flywheel.core.errors import ConfigError
from flywheel.core.spec import AlertSinkSpec, AlertsSpec
from flywheel.core.workspace import atomic_write_text
from flywheel.monitoring._alert import Alert
from flywheel.monitoring._prometheus import PrometheusSink
from flywheel.monitoring._rules import RuleOutcome
from flywheel.monitoring._webhook import WebhookSink

__all__ = ["Alert", "AlertDispatcher", "AlertSink", "FileSink", "LogSink", "create_sink"]

log = logging.getLogger("flywheel.monitoring")


@runtime_checkable
class AlertSink(Protocol):
    def send(self, alert: Alert) -> None: ...


class LogSink:
    """Alerts as warnings (critical ones as errors) of the ``flywheel.monitoring`` logger."""

    def send(self, alert: Alert) -> None:
        level = logging.ERROR if alert.severity == "critical" else logging.WARNING
        log.log(level, "alert: %s", alert.message)

    @classmethod
    def from_spec(cls, spec: AlertSinkSpec, root: Path) -> LogSink:
        return cls()


class FileSink:
    """One JSON line per alert, appended (a single write, so concurrent writers don't mix)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(alert.to_dict()) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    @classmethod
    def from_spec(cls, spec: AlertSinkSpec, root: Path) -> FileSink:
        path = Path(spec.path) if spec.path else Path(".flywheel/monitoring/alerts.jsonl")
        return cls(path if path.is_absolute() else root / path)


_SINKS: dict[str, Callable[[AlertSinkSpec, Path], Any]] = {
    "log": LogSink.from_spec,
    "file": FileSink.from_spec,
    "webhook": WebhookSink.from_spec,
    "prometheus": PrometheusSink.from_spec,
}


def create_sink(spec: AlertSinkSpec, root: Path) -> AlertSink:
    """The sink ``spec`` describes; relative paths resolve against ``root``.

    Raises:
        ConfigError: For an unknown kind or a webhook whose URL variable is unset.
    """
    if spec.kind not in _SINKS:
        raise ConfigError(f"Unknown alert sink {spec.kind!r}; choose one of {sorted(_SINKS)}.")
    sink: AlertSink = _SINKS[spec.kind](spec, root)
    return sink


class AlertDispatcher:
    """Send fired alerts to the sinks, at most once per rule and model per cool-down.

    Args:
        sinks: Where alerts go.
        cooldown_seconds: A repeat within this long is held back (still reported).
        state_path: JSON file remembering when each alert was last sent (None: in memory).
    """

    def __init__(self, sinks: Sequence[AlertSink], *, cooldown_seconds: float,
                 state_path: str | Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.sinks = list(sinks)
        self.cooldown = cooldown_seconds
        self.state_path = Path(state_path) if state_path is not None else None
        self.clock = clock
        self._sent: dict[str, float] = self._load()

    @classmethod
    def from_spec(cls, spec: AlertsSpec, root: Path, *, state_path: str | Path | None = None
                  ) -> AlertDispatcher:
        return cls([create_sink(s, root) for s in spec.sinks],
                   cooldown_seconds=spec.cooldown_seconds, state_path=state_path)

    def observe(self, metrics: Mapping[str, float], outcomes: Sequence[RuleOutcome],
                labels: Mapping[str, str]) -> None:
        """Give every run's metrics to sinks that chart them (Prometheus)."""
        for sink in self.sinks:
            observe = getattr(sink, "observe", None)
            if observe is not None:
                self._guard(sink, functools.partial(observe, metrics, outcomes, labels))

    def dispatch(self, alerts: Sequence[Alert]) -> tuple[list[Alert], list[Alert]]:
        """Send what is not held back; returns (sent, suppressed)."""
        now = self.clock()
        sent, held = [], []
        for alert in alerts:
            last = self._sent.get(alert.key)
            if last is not None and now - last < self.cooldown:
                held.append(alert)
                continue
            for sink in self.sinks:
                self._guard(sink, functools.partial(sink.send, alert))
            self._sent[alert.key] = now
            sent.append(alert)
        if sent:
            self._save()
        return sent, held

    def close(self, timeout: float = 10.0) -> None:
        """Let sinks with background work (webhooks) finish, waiting at most ``timeout``."""
        for sink in self.sinks:
            closer = getattr(sink, "close", None)
            if closer is not None:
                self._guard(sink, functools.partial(closer, timeout))

    @staticmethod
    def _guard(sink: object, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception:  # noqa: BLE001 - one broken sink must not stop monitoring
            log.exception("alert sink %s failed", type(sink).__name__)

    def _load(self) -> dict[str, float]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
            return {str(k): float(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError):
            log.warning("alert state %s unreadable; starting afresh", self.state_path)
            return {}

    def _save(self) -> None:
        if self.state_path is not None:
            try:
                atomic_write_text(self.state_path, json.dumps(self._sent, indent=1))
            except OSError:
                log.warning("cannot write alert state %s", self.state_path, exc_info=True)
