"""The Prometheus alert sink: every monitoring metric and rule as gauges.

``flywheel_monitor_value{metric="drift_share", model=..., version=...}`` holds each run's flat
metrics, ``flywheel_monitor_rule{rule="drift_share > 0.3", ...}`` is 1 while a rule holds and 0
otherwise, and ``flywheel_monitor_alerts_total`` counts alerts sent. The gauges live in the
sink's own registry, served on ``port`` (while `flywheel monitor --watch` runs) and/or written
to ``path`` for node_exporter's textfile collector.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from flywheel.core.workspace import atomic_write_bytes

if TYPE_CHECKING:
    from flywheel.core.spec import AlertSinkSpec
    from flywheel.monitoring._alert import Alert
    from flywheel.monitoring._rules import RuleOutcome

__all__ = ["PrometheusSink"]

_SERVED: dict[int, PrometheusSink] = {}


class PrometheusSink:
    """Gauges of monitoring metrics and rules."""

    def __init__(self, *, port: int | None = None, path: str | Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self.path = Path(path) if path is not None else None
        self.values = Gauge("flywheel_monitor_value", "Latest value of each monitoring metric.",
                            ["model", "version", "metric"], registry=self.registry)
        self.rules = Gauge("flywheel_monitor_rule", "1 while an alert rule holds, else 0.",
                           ["model", "version", "rule", "severity"], registry=self.registry)
        self.alerts = Counter("flywheel_monitor_alerts", "Alerts sent.", ["model", "rule"],
                              registry=self.registry)
        self.last_run = Gauge("flywheel_monitor_last_run_timestamp_seconds",
                              "When the last monitoring run finished.", ["model"],
                              registry=self.registry)
        if port is not None:
            from prometheus_client import start_http_server

            start_http_server(port, registry=self.registry)
            _SERVED[port] = self

    @classmethod
    def from_spec(cls, spec: AlertSinkSpec, root: Path) -> PrometheusSink:
        if spec.port is not None and spec.port in _SERVED:  # one server per port per process
            return _SERVED[spec.port]
        path = None
        if spec.path:
            path = Path(spec.path) if Path(spec.path).is_absolute() else root / spec.path
        return cls(port=spec.port, path=path)

    def observe(self, metrics: Mapping[str, float], outcomes: Sequence[RuleOutcome],
                labels: Mapping[str, str]) -> None:
        model, version = labels.get("model", ""), labels.get("version", "")
        for name, value in metrics.items():
            self.values.labels(model, version, name).set(value)
        for outcome in outcomes:
            if outcome.evaluated:
                rule = outcome.rule
                self.rules.labels(model, version, str(rule), rule.severity).set(
                    1.0 if outcome.fired else 0.0)
        self.last_run.labels(model).set(time.time())
        self._write()

    def send(self, alert: Alert) -> None:
        self.alerts.labels(alert.model, alert.rule).inc()
        self._write()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _write(self) -> None:
        if self.path is not None:
            atomic_write_bytes(self.path, self.render())
