"""What one monitoring run found: every section, one flat metrics mapping, the fired alerts.

``metrics`` is what automation reads (alert rules, the retraining loop's triggers, MLflow,
Prometheus): plain names to floats, such as ``drift_share``, ``estimated_roc_auc``,
``roc_auc``, ``p99_ms``, ``error_rate``, ``rows``. ``notes`` says what could not be computed
and why; a run with notes is partial (``complete`` is False), never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from flywheel.monitoring._alert import Alert
from flywheel.monitoring._contributions import ContributionShift
from flywheel.monitoring._drift import DriftReport
from flywheel.monitoring._multivariate import DomainClassifierResult
from flywheel.monitoring._performance import PerformanceReport
from flywheel.monitoring._quality import QualityReport
from flywheel.monitoring._rules import RuleOutcome

__all__ = ["MonitorResult", "WindowInfo"]


@dataclasses.dataclass(frozen=True)
class WindowInfo:
    """Where the window's rows came from."""

    source: str
    rows: int
    start: str | None = None
    end: str | None = None
    excluded: Mapping[str, int] = dataclasses.field(default_factory=dict)
    sampled: int | None = None
    """Rows drawn for drift and quality when monitoring.sample_rows applied."""

    @property
    def description(self) -> str:
        span = f" ({self.start} to {self.end})" if self.start and self.end else ""
        return f"{self.source}{span}"


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    """One window monitored against one model version.

    Attributes:
        metrics: Flat numbers by name; see ``flywheel.monitoring.METRIC_NAMES``.
        rules: Every alert rule with its value and whether it fired.
        alerts: The rules that fired, as alerts (sent or held back by the cool-down).
        sent: Alerts actually sent to the sinks this run (the rest were repeats within the
            cool-down); None when the run did not send alerts at all.
        notes: What could not be computed, and why.
    """

    model: str
    version: str
    task: str
    created: str
    window: WindowInfo
    metrics: Mapping[str, float]
    drift: DriftReport | None = None
    multivariate: DomainClassifierResult | None = None
    quality: QualityReport | None = None
    performance: PerformanceReport | None = None
    operational: Mapping[str, float] = dataclasses.field(default_factory=dict)
    rules: tuple[RuleOutcome, ...] = ()
    alerts: tuple[Alert, ...] = ()
    sent: tuple[Alert, ...] | None = None
    notes: tuple[str, ...] = ()
    reference: str = "training data"
    report_path: str | None = None
    mlflow_run_id: str | None = None
    contributions: ContributionShift | None = None
    """How the model's contribution shares moved from the reference to the window."""

    @property
    def complete(self) -> bool:
        return not self.notes

    @property
    def alerted(self) -> bool:
        return bool(self.alerts)

    def held_back(self, alert: Alert) -> bool:
        """True if ``alert`` fired but was not sent again (a repeat within the cool-down)."""
        return self.sent is not None and alert not in self.sent

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: every verdict with its score, threshold and p-value."""
        drift = None
        if self.drift is not None:
            drift = {"share": self.drift.share, "threshold": self.drift.drift_share_threshold,
                     "weighted_share": self.drift.weighted_share,
                     "importance": None if self.drift.importance is None
                     else dict(self.drift.importance),
                     "dataset_drift": self.drift.dataset_drift, "reasons": self.drift.reasons,
                     "drifted": self.drift.drifted,
                     "columns": [c.to_dict() for c in self.drift.columns],
                     "skipped": dict(self.drift.skipped)}
        quality = None
        if self.quality is not None:
            quality = {"rows": self.quality.rows,
                       "columns": [c.to_dict() for c in self.quality.columns],
                       "violations": list(self.quality.violations)}
        cleaned: dict[str, Any] = _clean({
            "model": self.model, "version": self.version, "task": self.task,
            "created": self.created, "complete": self.complete, "alerted": self.alerted,
            "window": dataclasses.asdict(self.window) | {"excluded": dict(self.window.excluded)},
            "reference": self.reference, "metrics": dict(self.metrics), "drift": drift,
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
            "quality": quality,
            "performance": None if self.performance is None else self.performance.to_dict(),
            "operational": dict(self.operational),
            "rules": [r.to_dict() for r in self.rules],
            "alerts": [a.to_dict() | {"sent": None if self.sent is None else a in self.sent}
                       for a in self.alerts],
            "notes": list(self.notes), "report": self.report_path,
            "mlflow_run_id": self.mlflow_run_id,
            "contributions": None if self.contributions is None
            else self.contributions.to_dict(),
        })
        return cleaned

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _clean(value: Any) -> Any:
    """NaN and infinities become null, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
