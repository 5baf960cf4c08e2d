"""The ``monitoring:`` section of flywheel.yaml: windows, drift methods and thresholds, alert
rules and sinks.

Rules (``drift_share > 0.3``) are parsed here with a regular expression and never evaluated as
code; ``flywheel.monitoring.evaluate_rules`` checks them against a window's metrics, and the
retraining loop's triggers reuse ``RuleSpec``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flywheel.core._section import Condition, ConditionOp
from flywheel.core._section import Section as _Section

__all__ = [
    "DATA_QUALITY_RULES",
    "LOG_SCHEMES",
    "AlertSinkSpec",
    "AlertsSpec",
    "DriftMethod",
    "DriftSpec",
    "MonitoringSpec",
    "RuleOp",
    "RuleSpec",
    "SinkKind",
]


RuleOp = ConditionOp

LOG_SCHEMES = ("s3", "gs", "gcs", "hdfs", "file")
"""URI schemes ``monitoring.log_location`` accepts (pyarrow's file systems)."""


class RuleSpec(Condition):
    """A condition on a named metric, such as ``drift_share > 0.3``: it holds when the metric
    compares true. Written as that text or as a mapping {metric, op, value}; parsed with a
    regular expression, never evaluated as code. Alert rules fire when they hold (the retraining
    loop's triggers use the same form)."""

    severity: Literal["warning", "critical"] = "warning"
    """How loud the alert is; sinks pass it on."""


SinkKind = Literal["log", "file", "webhook", "prometheus"]


class AlertSinkSpec(_Section):
    """Where fired alerts go."""

    kind: SinkKind
    """log (the flywheel.monitoring logger), file (JSON lines), webhook (POST JSON) or
    prometheus (gauges of every monitoring metric and alert)."""
    path: str | None = None
    """file: the JSONL file (default .flywheel/monitoring/alerts.jsonl); prometheus: a text
    file for node_exporter's textfile collector (optional)."""
    url: str | None = None
    """webhook: where to POST."""
    url_env: str | None = None
    """webhook: the environment variable holding the URL (keeps secrets out of this file)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """webhook: extra HTTP headers."""
    timeout_seconds: float = Field(5.0, gt=0)
    """webhook: per attempt."""
    retries: int = Field(3, ge=0, le=10)
    """webhook: attempts after the first, with exponential backoff."""
    backoff_seconds: float = Field(1.0, ge=0)
    """webhook: wait before the first retry; doubled each time."""
    port: int | None = Field(None, ge=1, le=65535)
    """prometheus: serve the gauges on this port while `flywheel monitor --watch` runs."""

    @model_validator(mode="after")
    def _check_target(self) -> AlertSinkSpec:
        if self.kind == "webhook" and not (self.url or self.url_env):
            raise ValueError("a webhook sink needs `url` or `url_env`")
        return self


DATA_QUALITY_RULES = (
    RuleSpec(metric="missing_columns", op=">", value=0),
    RuleSpec(metric="out_of_range_rate_max", op=">", value=0.05),
    RuleSpec(metric="unseen_category_rate_max", op=">", value=0.05),
    RuleSpec(metric="null_rate_excess_max", op=">", value=0.05),
)
"""Default data-quality rules. Rates, not any single value: a window of production data drawn
from the training distribution holds a value beyond the training range now and then (about
2 / (training rows) of each column), which is no violation worth waking anyone for."""


class AlertsSpec(_Section):
    rules: list[RuleSpec] = Field(default_factory=lambda: [
        RuleSpec(metric="dataset_drift", op=">", value=0),
        RuleSpec(metric="multivariate_drift", op=">", value=0),
        *DATA_QUALITY_RULES,
        RuleSpec(metric="estimated_roc_auc_drop", op=">", value=0.05),
        RuleSpec(metric="roc_auc_drop", op=">", value=0.05),
        RuleSpec(metric="error_rate", op=">", value=0.01),
    ])
    """Each rule that holds fires an alert; see `flywheel monitor --json` for metric names.
    A rule on a metric the window cannot give (no labels, a regression task) is skipped. The
    defaults need no labels to catch a gross shift: data-set drift, multivariate drift and
    data-quality violations (a feature missing, over 5 % of a column's values outside the
    training range or of unseen categories, nulls 5 points above the column's limit)."""
    sinks: list[AlertSinkSpec] = Field(default_factory=lambda: [
        AlertSinkSpec(kind="log"), AlertSinkSpec(kind="file")])
    cooldown_seconds: float = Field(3600.0, ge=0)
    """An alert that fired is not sent again for this long (it is still reported)."""


DriftMethod = Literal["auto", "ks", "wasserstein", "psi", "chi2", "jensenshannon"]


class DriftSpec(_Section):
    """Per-column drift of features, prediction and label against the version's reference."""

    numeric_method: Literal["auto", "ks", "wasserstein", "psi"] = "auto"
    """auto: Kolmogorov-Smirnov while the smaller sample has at most test_max_rows rows,
    Wasserstein distance normalized by the reference's standard deviation above."""
    categorical_method: Literal["auto", "chi2", "jensenshannon", "psi"] = "auto"
    """auto: chi-square test of homogeneity up to test_max_rows, Jensen-Shannon distance above."""
    columns: dict[str, DriftMethod] = Field(default_factory=dict)
    """Per-column method, overriding the two above."""
    exclude: list[str] = Field(default_factory=list)
    """Columns not checked for drift."""
    test_max_rows: int = Field(1000, ge=1)
    """Statistical tests up to this many rows; above, every difference is significant, so
    auto switches to distances with practical thresholds."""
    significance: float = Field(0.05, gt=0.0, lt=0.5)
    """A test flags drift when its p-value is below this (the false-alarm rate per column)."""
    wasserstein_threshold: float = Field(0.1, gt=0.0)
    jensenshannon_threshold: float = Field(0.1, gt=0.0, le=1.0)
    psi_threshold: float = Field(0.2, gt=0.0)
    drift_share: float = Field(0.5, gt=0.0, le=1.0)
    """The data set drifts (metric dataset_drift = 1) when at least this share of the feature
    columns drift, or columns carrying at least this share of the model's permutation
    importance do, or the domain classifier finds multivariate drift."""
    multivariate: bool = True
    """Train a domain classifier to tell reference rows from current rows."""
    multivariate_threshold: float = Field(0.7, gt=0.5, le=1.0)
    """Multivariate drift needs its cross-validated ROC AUC at or above this (the size of the
    shift) and its test's p-value below multivariate_significance."""
    multivariate_significance: float = Field(0.05, gt=0.0, lt=0.5)
    """The domain classifier's test flags drift when its p-value is below this (its
    false-alarm rate on windows that did not drift)."""
    multivariate_rows: int = Field(5000, ge=100)
    """Rows drawn from each side for the classifier (reported)."""


class MonitoringSpec(_Section):
    """`flywheel monitor`: drift, data quality, performance and alerts of the serving model."""

    enabled: bool = True
    """Monitoring configured for the model; a rollout refuses to start without it."""
    version: str = "champion"
    """The alias (or version number) whose reference and calibration are compared against."""
    window_rows: int = Field(10_000, ge=1)
    """Default window: the last N rows of the prediction log."""
    min_rows: int = Field(50, ge=1)
    """Fewer rows than this: drift and performance are not computed (reported)."""
    sample_rows: int | None = Field(None, ge=100)
    """Draw at most this many rows of a window for drift and quality (reported when used)."""
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    """Level of the confidence intervals of measured performance."""
    bootstrap: int = Field(500, ge=100, le=100_000)
    """Bootstrap resamples for those intervals."""
    report: str = ".flywheel/monitoring/report.html"
    """Where the HTML report is written (relative to this file)."""
    log_location: str = ".flywheel/predictions"
    """Where the prediction log lives: a folder (relative to this file, or absolute: a shared
    file system lets replicas in separate folders share one log), or an object-store URI such
    as s3://bucket/prefix (credentials from the environment, as pyarrow reads them)."""
    log_retention_days: float | None = Field(None, gt=0)
    """Delete the log's hourly partitions older than this many days (none: keep everything)."""
    drift: DriftSpec = DriftSpec()
    alerts: AlertsSpec = AlertsSpec()

    @model_validator(mode="after")
    def _check_log_location(self) -> MonitoringSpec:
        location = self.log_location.strip()
        if not location:
            raise ValueError("log_location is empty; give a folder such as "
                             "`.flywheel/predictions` or a URI such as `s3://bucket/prefix`")
        scheme, sep, rest = location.partition("://")
        if sep and scheme.lower() not in LOG_SCHEMES:
            raise ValueError(f"log_location {location!r} uses the scheme {scheme!r}; use a "
                             f"folder or one of {', '.join(f'{s}://' for s in LOG_SCHEMES)}")
        if sep and not rest.strip("/"):
            raise ValueError(f"log_location {location!r} names no bucket or folder; write it "
                             "as `s3://bucket/prefix`")
        return self
