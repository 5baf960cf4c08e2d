"""Prometheus metrics of the prediction service.

With several workers, prometheus-client's multiprocess mode aggregates them: ``flywheel serve``
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    """Counters and histograms, with label children cached for the hot path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("flywheel_requests", "Requests by endpoint, model version and "
                                "HTTP status.", ["endpoint", "model_version", "status"],
                                registry=self.registry)
        self.latency = Histogram("flywheel_request_latency_seconds", "Time from the request "
                                 "body received to the response sent.", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("flywheel_batch_rows", "Rows per model call.",
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.predictions = Counter("flywheel_predictions", "Predicted labels (classifiers).",
                                   ["model_version", "prediction"], registry=self.registry)
        self.values = Histogram("flywheel_predicted_value", "Predicted values (regression).",
                                ["model_version"], registry=self.registry)
        self.model_info = Gauge("flywheel_model_version_info", "1 for each loaded model "
                                "version and alias.", ["alias", "model_version"],
                                registry=self.registry, multiprocess_mode="liveall")
        self.compiled = Gauge("flywheel_model_compiled", "1 when a loaded version answers "
                              "through its verified compiled predictor, 0 when through the "
                              "scikit-learn pipeline (slower; the server log says why).",
                              ["model_version"], registry=self.registry,
                              multiprocess_mode="liveall")
        self.candidate_failures = Counter(
            "flywheel_rollout_candidate_failures", "Calls of a version under rollout that "
            "failed or timed out; the champion answered instead.",
            ["model_version", "arm", "kind"], registry=self.registry)
        self.shadow_calls = Counter("flywheel_shadow_calls", "Mirrored (shadow) calls by "
                                    "outcome: ok, error, timeout, dropped.",
                                    ["model_version", "outcome"], registry=self.registry)
        self.rollout_weight = Gauge("flywheel_rollout_weight", "Traffic share of each arm of "
                                    "the running rollout.", ["arm", "model_version"],
                                    registry=self.registry, multiprocess_mode="liveall")
        self._children: dict[tuple[Any, ...], Any] = {}
        self._weighted: set[tuple[str, str]] = set()

    def request(self, endpoint: str, version: str, status: int | str, seconds: float) -> None:
        """Count one answered request (``status``: HTTP's number, or a gRPC code's name)."""
        key: tuple[Any, ...] = ("r", endpoint, version, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(endpoint, version, str(status))
        child.inc()
        key = ("l", endpoint)
        hist = self._children.get(key)
        if hist is None:
            hist = self._children[key] = self.latency.labels(endpoint)
        hist.observe(seconds)

    def prepare(self, version: str, classes: tuple[str, ...]) -> None:
        """Create the series a version's answers will count, before it takes traffic (the
        first ``labels`` call of a series costs far more than an increment)."""
        for endpoint in ("predict", "v2/models/infer"):
            key: tuple[Any, ...] = ("r", endpoint, version, 200)
            if key not in self._children:
                self._children[key] = self.requests.labels(endpoint, version, "200")
            if ("l", endpoint) not in self._children:
                self._children[("l", endpoint)] = self.latency.labels(endpoint)
        for label in classes:
            key = ("p", version, label)
            if key not in self._children:
                self._children[key] = self.predictions.labels(version, str(label))
        if not classes and ("v", version) not in self._children:
            self._children[("v", version)] = self.values.labels(version)

    def predicted(self, version: str, predictions: list[Any], regression: bool) -> None:
        if regression:
            hist = self._children.get(("v", version))
            if hist is None:
                hist = self._children[("v", version)] = self.values.labels(version)
            for value in predictions:
                hist.observe(value)
            return
        for label in predictions:
            key = ("p", version, label)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.predictions.labels(version, str(label))
            child.inc()

    def candidate_failed(self, version: str, arm: str, kind: str) -> None:
        self.candidate_failures.labels(version, arm, kind).inc()

    def shadow_call(self, version: str, outcome: str) -> None:
        key = ("s", version, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.shadow_calls.labels(version, outcome)
        child.inc()

    def set_weights(self, weights: dict[tuple[str, str], float]) -> None:
        """The rollout's traffic shares by (arm, version); arms no longer routed read 0.

        (Zeroed rather than removed: in multiprocess mode a removed series lives on in the
        worker's metric file.)
        """
        for arm, version in self._weighted - set(weights):
            self.rollout_weight.labels(arm, version).set(0.0)
        for (arm, version), share in weights.items():
            self.rollout_weight.labels(arm, version).set(share)
        self._weighted |= set(weights)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
