"""Evaluation: metrics (and, later, gates and model cards)."""

from __future__ import annotations

from flywheel.evaluation._metrics import (
    DEFAULT_METRIC,
    Metric,
    compute_metrics,
    get_metric,
    summarize,
    task_metrics,
)

__all__ = ["DEFAULT_METRIC", "Metric", "compute_metrics", "get_metric", "summarize",
           "task_metrics"]
