"""Rules on metrics (``drift_share > 0.3``): parsing, name checks and evaluation.

Alert rules and the retraining loop's triggers share this: a rule holds when its metric's value
compares true; a rule whose metric the window did not produce (no labels yet, a regression
model) is reported as not evaluated rather than guessed.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from flywheel.core.errors import ConfigError
from flywheel.core.spec import RuleSpec, format_validation_errors
from flywheel.evaluation import task_metrics

__all__ = ["METRIC_NAMES", "RuleOutcome", "check_rule_names", "evaluate_rules", "parse_rule"]

_BASE = {
    "rows", "rows_total", "shadow_rows", "error_rows", "other_version_rows",
    "drift_share", "weighted_drift_share", "drifted_columns", "columns_checked",
    "dataset_drift", "prediction_drift", "label_drift", "multivariate_auc", "multivariate_p",
    "multivariate_drift", "null_rate_max", "null_rate_excess_max", "unseen_category_rate_max",
    "out_of_range_rate_max", "missing_columns",
    "schema_violations", "labelled_rows", "label_coverage", "unknown_label_ids",
    "estimated_accuracy", "estimated_roc_auc", "estimated_accuracy_drop",
    "estimated_roc_auc_drop", "requests", "errors", "error_rate", "p50_ms", "p99_ms",
    "throughput_rps", "span_seconds", "contribution_shift",
}
_TASK = {name for task in ("binary", "regression") for name in task_metrics(task)}
METRIC_NAMES = frozenset(_BASE | {f"{m}{s}" for m in _TASK for s in ("", "_low", "_high",
                                                                      "_drop")})
"""Every metric name a monitoring run can produce, besides per-column ones."""
PER_COLUMN = ("drift.", "drift_p.", "null_rate.")
"""Prefixes of per-column metrics: ``drift.temp`` (the column's drift score), ``drift_p.temp``
(its p-value, tests only), ``null_rate.temp``."""


@dataclasses.dataclass(frozen=True)
class RuleOutcome:
    """A rule checked against one window's metrics.

    Attributes:
        value: The metric's value, or None when the window did not produce it.
        fired: True when the rule holds.
    """

    rule: RuleSpec
    value: float | None
    fired: bool

    @property
    def evaluated(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return {"rule": str(self.rule), "metric": self.rule.metric, "op": self.rule.op,
                "threshold": self.rule.value, "severity": self.rule.severity,
                "value": self.value, "fired": self.fired, "evaluated": self.evaluated}


def parse_rule(text: str | Mapping[str, Any]) -> RuleSpec:
    """One rule from its text (``"p99_ms > 50"``) or mapping form.

    Raises:
        ConfigError: If it is not ``metric op number``.
    """
    try:
        return RuleSpec.model_validate(text)
    except ValidationError as exc:
        raise ConfigError(f"bad rule {text!r}: " + "; ".join(
            format_validation_errors(exc, RuleSpec))) from exc


def check_rule_names(rules: Iterable[RuleSpec], *, extra: Iterable[str] = (),
                     where: str = "monitoring.alerts.rules") -> None:
    """Refuse rules on metrics no run can produce (a typo would otherwise never fire).

    Args:
        extra: Further names the caller produces (the retraining loop's own metrics).

    Raises:
        ConfigError: Naming each unknown metric and the nearest known one.
    """
    known = METRIC_NAMES | set(extra)
    problems = []
    for rule in rules:
        name = rule.metric
        if name in known or (name.startswith(PER_COLUMN) and name.split(".", 1)[1]):
            continue
        near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}?" if near else "`flywheel monitor --json` lists them"
        problems.append(f"{rule}: no metric {name!r}; {hint}")
    if problems:
        raise ConfigError(f"{len(problems)} rule(s) in {where} name unknown metrics:",
                          problems=problems)


def evaluate_rules(rules: Iterable[RuleSpec], metrics: Mapping[str, float]
                   ) -> list[RuleOutcome]:
    """Check each rule against ``metrics``; NaN counts as not produced."""
    out = []
    for rule in rules:
        value = metrics.get(rule.metric)
        if value is None or value != value:
            out.append(RuleOutcome(rule, None, False))
        else:
            out.append(RuleOutcome(rule, float(value), rule.holds(float(value))))
    return out
