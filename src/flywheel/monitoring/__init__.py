"""Monitoring: drift, data quality, performance measured and estimated, alerts, reports.

The retraining loop and `flywheel monitor` both go through ``monitor_window``; its result's
``metrics`` (flat names to floats) is what rules read::

    result = monitor_window(window, version, spec.monitoring)
    result.metrics["drift_share"], result.metrics.get("estimated_roc_auc")
    fired = [o for o in evaluate_rules(rules, result.metrics) if o.fired]
"""

from __future__ import annotations

from flywheel.monitoring._alert import Alert
from flywheel.monitoring._alerts import (
    AlertDispatcher,
    AlertSink,
    FileSink,
    LogSink,
    create_sink,
)
from flywheel.monitoring._cbpe import (
    CBPE_ASSUMPTION,
    Calibrator,
    estimate_performance,
    fit_calibrator,
)
from flywheel.monitoring._contributions import ContributionShift, Explain, contribution_shift
from flywheel.monitoring._drift import ColumnDrift, DriftReport, detect_drift
from flywheel.monitoring._monitor import MonitoredVersion, metric_name, monitor_window
from flywheel.monitoring._multivariate import DomainClassifierResult, domain_classifier
from flywheel.monitoring._operational import operational_metrics
from flywheel.monitoring._performance import PerformanceReport, encode_labels, measure_performance
from flywheel.monitoring._prometheus import PrometheusSink
from flywheel.monitoring._quality import ColumnQuality, QualityReport, check_quality
from flywheel.monitoring._reference import (
    CategoricalReference,
    MonitoringReference,
    NumericReference,
    build_reference,
    reference_from_profile,
)
from flywheel.monitoring._report import render_report
from flywheel.monitoring._result import MonitorResult, WindowInfo
from flywheel.monitoring._rules import (
    METRIC_NAMES,
    RuleOutcome,
    check_rule_names,
    evaluate_rules,
    parse_rule,
)
from flywheel.monitoring._webhook import WebhookSink
from flywheel.monitoring._window import (
    Window,
    prediction_columns,
    window_from_frame,
    window_from_log,
)

__all__ = [
    "CBPE_ASSUMPTION",
    "METRIC_NAMES",
    "Alert",
    "AlertDispatcher",
    "AlertSink",
    "Calibrator",
    "CategoricalReference",
    "ColumnDrift",
    "ColumnQuality",
    "ContributionShift",
    "DomainClassifierResult",
    "DriftReport",
    "Explain",
    "FileSink",
    "LogSink",
    "MonitorResult",
    "MonitoredVersion",
    "MonitoringReference",
    "NumericReference",
    "PerformanceReport",
    "PrometheusSink",
    "QualityReport",
    "RuleOutcome",
    "WebhookSink",
    "Window",
    "WindowInfo",
    "build_reference",
    "check_quality",
    "check_rule_names",
    "contribution_shift",
    "create_sink",
    "detect_drift",
    "domain_classifier",
    "encode_labels",
    "estimate_performance",
    "evaluate_rules",
    "fit_calibrator",
    "measure_performance",
    "metric_name",
    "monitor_window",
    "operational_metrics",
    "parse_rule",
    "prediction_columns",
    "reference_from_profile",
    "render_report",
    "window_from_frame",
    "window_from_log",
]
