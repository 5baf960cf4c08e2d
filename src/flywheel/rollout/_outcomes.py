"""Per-request outcomes from feedback: the numbers the metric limit, the A/B test and the bandit
compare.

Every metric is a mean of per-request values, so one test (a difference in means) serves them
all; a proportion (accuracy, conversion) is the mean of 0/1 values.

    accuracy       1 when the prediction equals the label                 (greater is better)
    conversion     1 when the label is the positive class (the outcome    (greater is better)
                   the model's answer led to, such as a purchase)
    label          the label as a number (revenue, minutes)               (greater is better)
    abs_error      |predicted value - label| (regression)                 (smaller is better)
    squared_error  (predicted value - label)^2 (regression)               (smaller is better)

Labels arrive as text (``/feedback`` stores them so); classes compare without regard to case or
surrounding space, and numerically when both sides are numbers (``1`` equals ``1.0``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["BINARY_METRICS", "GREATER_IS_BETTER", "outcome_values"]

GREATER_IS_BETTER = {"accuracy": True, "conversion": True, "label": True, "abs_error": False,
                     "squared_error": False}
BINARY_METRICS = frozenset({"accuracy", "conversion"})


def outcome_values(rows: pd.DataFrame, metric: str, *, positive: str | None = None
                   ) -> np.ndarray:
    """The metric's per-request values for the labelled rows of ``rows`` (others dropped).

    Rows whose label cannot be read as the metric needs (text where a number is expected)
    are dropped too.

    Raises:
        ValueError: If the metric is unknown, or conversion has no positive label.
    """
    if metric not in GREATER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(GREATER_IS_BETTER)}")
    if rows.empty or "label" not in rows:
        return np.empty(0)
    labelled = rows[rows["label"].notna()]
    if labelled.empty:
        return np.empty(0)
    labels = labelled["label"].astype(str)
    if metric == "accuracy":
        return np.asarray(same_label(labelled["prediction"].astype(str), labels), dtype=float)
    if metric == "conversion":
        if positive is None:
            raise ValueError("the conversion metric needs the positive label")
        target = pd.Series([positive] * len(labels), index=labels.index)
        return np.asarray(same_label(labels, target), dtype=float)
    numbers = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
    if metric == "label":
        return np.asarray(numbers[np.isfinite(numbers)], dtype=float)
    values = pd.to_numeric(labelled["value"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(numbers) & np.isfinite(values)
    error = values[ok] - numbers[ok]
    return np.asarray(np.abs(error) if metric == "abs_error" else error * error, dtype=float)


def same_label(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Element-wise equality of two label columns, forgiving case, spaces and number forms."""
    a = left.str.strip().str.lower().to_numpy()
    b = right.str.strip().str.lower().to_numpy()
    equal = a == b
    if not equal.all():
        na = pd.to_numeric(pd.Series(a), errors="coerce").to_numpy(dtype=float)
        nb = pd.to_numeric(pd.Series(b), errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            equal |= np.isfinite(na) & (na == nb)
    return np.asarray(equal, dtype=bool)
