"""Prometheus metrics of `flywheel stream`: throughput, lag, latency and errors."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["StreamMetrics"]

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)
_BATCH_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024)


class StreamMetrics:
    """Counters, gauges and histograms in their own registry (served on --metrics-port)."""

    def __init__(self, stream: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["stream"]
        self.events = Counter("flywheel_stream_events", "Events settled, by outcome: scored or "
                              "dead_letter.", [*labels, "outcome"], registry=self.registry)
        self.predictions = Counter("flywheel_stream_predictions", "Predictions written, by "
                                   "model version and rollout arm.",
                                   [*labels, "model_version", "arm"], registry=self.registry)
        self.errors = Counter("flywheel_stream_errors", "Failures: parse, input, model, "
                              "candidate (the champion answered), broker (retried).",
                              [*labels, "kind"], registry=self.registry)
        self.lag = Gauge("flywheel_stream_lag", "Events in the stream not yet delivered to the "
                         "consumer group.", labels, registry=self.registry)
        self.pending = Gauge("flywheel_stream_batch_events", "Events in the last micro-batch.",
                             labels, registry=self.registry)
        self.latency = Histogram("flywheel_stream_latency_seconds", "Time from the event's "
                                 "append to its prediction being written (broker clock for "
                                 "the append).", labels, buckets=_LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batch = Histogram("flywheel_stream_batch_size", "Events per micro-batch.", labels,
                               buckets=_BATCH_BUCKETS, registry=self.registry)
        self.stream = stream
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(self.stream, *values)
        return found

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Answer ``GET /metrics`` on ``host:port`` from a background thread."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)
