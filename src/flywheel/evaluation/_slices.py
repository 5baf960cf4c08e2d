"""Error analysis: the slices of the data where a model's metric is worst.

A slice is one value of a categorical column (the most frequent ones, and missing values) or
one range of a numeric column (quantile bins, and missing values). Each slice with at least
``min_rows`` rows is scored with the metric; the worst against the whole set are reported
with a bootstrap confidence interval and their row count, so a small slice that only looks
bad by chance shows a wide interval.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import Task
from flywheel.evaluation._metrics import get_metric
from flywheel.evaluation._stats import bootstrap_metric

__all__ = ["Slice", "worst_slices"]

_MAX_VALUES = 20
"""Categorical columns: slices of at most this many most frequent values."""


@dataclasses.dataclass(frozen=True)
class Slice:
    """The metric on one slice of the rows, with its interval."""

    column: str
    condition: str
    """Which rows, such as ``state = CA`` or ``total_day_minutes in [250.1, 351.5]``."""
    rows: int
    value: float
    low: float
    high: float
    overall: float
    """The metric on all rows, for comparison."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def worst_slices(task: Task, metric: str, frame: pd.DataFrame, y: np.ndarray,
                 prediction: np.ndarray, *, columns: Sequence[str] | None = None,
                 bins: int = 4, min_rows: int = 30, top: int = 10, resamples: int = 200,
                 seed: int = 0) -> list[Slice]:
    """The ``top`` slices whose ``metric`` is furthest from the whole set's, worst first.

    Only slices worse than the whole set are listed. A slice where the metric cannot be
    computed (one class present for ROC AUC) is left out.

    Args:
        frame: The rows' raw feature values (the holdout, or logged inputs).
        y, prediction: Labels (class codes or values) and the model's predictions
            (probabilities, or values), row for row with ``frame``.
        columns: The columns to slice (default: every column of ``frame``).
        bins: Quantile ranges per numeric column.
        min_rows: Smaller slices are not scored.

    Raises:
        ValueError: If ``y``, ``prediction`` and ``frame`` differ in length.
    """
    y, prediction = np.asarray(y), np.asarray(prediction, dtype=float)
    if not len(y) == len(prediction) == len(frame):
        raise ValueError(f"{len(frame)} rows, {len(y)} labels and {len(prediction)} "
                         "predictions; slices need one of each per row")
    scorer = get_metric(task, metric)
    overall = _score(scorer.compute, y, prediction)
    if overall is None:
        return []
    scored: list[tuple[float, str, str, np.ndarray, float]] = []
    for column in columns if columns is not None else list(frame.columns):
        for condition, mask in _slices(column, frame[column], bins):
            rows = int(mask.sum())
            if rows < min_rows or rows == len(y):
                continue
            value = _score(scorer.compute, y[mask], prediction[mask])
            if value is None or not scorer.better(overall, value):
                continue
            scored.append((abs(value - overall), column, condition, mask, value))
    scored.sort(key=lambda s: -s[0])
    out = []
    for _, column, condition, mask, value in scored[:top]:
        try:
            ci = bootstrap_metric(task, metric, y[mask], prediction[mask],
                                  resamples=resamples, seed=seed)
            low, high = ci.low, ci.high
        except ValueError:  # a resample the metric cannot score
            low = high = float("nan")
        out.append(Slice(column, condition, int(mask.sum()), value, low, high, overall))
    return out


def _score(compute: Any, y: np.ndarray, prediction: np.ndarray) -> float | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(compute(y, prediction))
        except ValueError:
            return None
    return value if np.isfinite(value) else None


def _slices(column: str, values: pd.Series, bins: int) -> Iterator[tuple[str, np.ndarray]]:
    missing = values.isna().to_numpy()
    if missing.any():
        yield f"{column} is missing", missing
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique(dropna=True) > bins:
        number = values.to_numpy(dtype=float, na_value=np.nan)
        edges = np.unique(np.nanquantile(number, np.linspace(0, 1, bins + 1)))
        for i, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            last = i == len(edges) - 2
            mask = (number >= low) & ((number <= high) if last else (number < high))
            yield f"{column} in [{low:.4g}, {high:.4g}{']' if last else ')'}", mask
        return
    text = values.astype("string")
    for value in text.value_counts(dropna=True).index[:_MAX_VALUES]:
        yield f"{column} = {value}", (text == value).fillna(False).to_numpy(dtype=bool)
