"""Performance of a window: measured where labels arrived (with bootstrap confidence
intervals), estimated by CBPE where they did not, and both against the version's holdout.

Measured metrics reuse ``flywheel.evaluation``'s vectorized bootstrap. Each number says whether
it was measured or estimated; ``<metric>_drop`` is the holdout value minus the window's (so a
positive drop is a loss, for metrics where greater is better).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import Task
from flywheel.evaluation import MetricInterval, Slice, bootstrap_metric, task_metrics

__all__ = ["PerformanceReport", "encode_labels", "measure_performance"]

_BIG = 20_000


@dataclasses.dataclass(frozen=True)
class PerformanceReport:
    """Measured (labelled rows) and estimated (all rows) performance of one window.

    Attributes:
        reference: The version's holdout metrics, for comparison.
    """

    task: str
    rows: int
    labelled_rows: int
    measured: Mapping[str, MetricInterval]
    estimated: Mapping[str, float]
    reference: Mapping[str, float]
    assumption: str | None = None
    slices: tuple[Slice, ...] = ()
    """Where the measured metric is worst on the labelled rows (error analysis)."""

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"labelled_rows": float(self.labelled_rows),
                                 "label_coverage": self.labelled_rows / self.rows
                                 if self.rows else 0.0}
        greater = {n: m.greater_is_better for n, m in task_metrics(self.task).items()}  # type: ignore[arg-type]
        for name, ci in self.measured.items():
            out[name] = ci.value
            out[f"{name}_low"], out[f"{name}_high"] = ci.low, ci.high
            if name in self.reference:
                sign = 1.0 if greater.get(name, True) else -1.0
                out[f"{name}_drop"] = sign * (self.reference[name] - ci.value)
        for name, value in self.estimated.items():
            out[name] = value
            base = name.removeprefix("estimated_")
            if base in self.reference:
                out[f"{name}_drop"] = self.reference[base] - value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "rows": self.rows, "labelled_rows": self.labelled_rows,
                "measured": {n: dataclasses.asdict(ci) for n, ci in self.measured.items()},
                "estimated": dict(self.estimated), "reference": dict(self.reference),
                "assumption": self.assumption, "slices": [s.to_dict() for s in self.slices]}


def encode_labels(labels: pd.Series, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Class codes of label strings (exact, then case-insensitive match, ``1.0`` as ``1``);
    returns the codes and a mask of labels that name no class."""
    text = labels.astype("string")
    lookup = {c: i for i, c in enumerate(classes)}
    lookup.update({c.lower(): i for i, c in enumerate(classes) if c.lower() not in lookup})
    normal = text.str.strip().str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    codes = normal.map(lookup)
    codes = codes.where(codes.notna(), normal.str.lower().map(lookup))
    unknown = codes.isna().to_numpy()
    return codes.fillna(-1).to_numpy(dtype=np.int64), unknown


def measure_performance(task: Task, y: np.ndarray, prediction: np.ndarray, *,
                        confidence: float, resamples: int, seed: int = 0
                        ) -> dict[str, MetricInterval]:
    """Every metric of the task with its bootstrap interval (fewer resamples above 20,000
    rows); metrics undefined on these rows (one class only) are left out."""
    if len(y) > _BIG:
        resamples = max(100, min(resamples, 200))
    out = {}
    for name in task_metrics(task):
        try:
            ci = bootstrap_metric(task, name, y, prediction, confidence=confidence,
                                  resamples=resamples, seed=seed)
        except ValueError:
            continue
        if ci.value == ci.value:
            out[name] = ci
    return out
