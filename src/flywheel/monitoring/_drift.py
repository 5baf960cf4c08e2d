"""Per-column drift against the reference: a method per column, a verdict per column, and the
share of drifted feature columns for the data-set verdict.

The method is picked by the column's type and the sample size unless the spec fixes it (as
Evidently picks it): while the smaller sample has at most ``test_max_rows`` rows, a statistical
test (Kolmogorov-Smirnov for numbers, chi-square for categories) flags drift when its p-value is
below the significance; above that size every difference is significant, so a distance with a
practical threshold decides (Wasserstein normalized by the reference's spread for numbers,
Jensen-Shannon for categories). A numeric column with at most five distinct values is treated as
categorical. Every verdict carries its method, score, threshold and p-value (tests only).

The data set drifts when at least ``drift_share`` of the feature columns drift, or columns that
carry at least that share of the model's permutation importance do (two inputs of thirteen can
hold most of what the model knows), or the domain classifier found multivariate drift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import DriftSpec
from flywheel.data import category_strings
from flywheel.monitoring._reference import (
    CategoricalReference,
    ColumnReference,
    MonitoringReference,
    NumericReference,
    as_numeric,
)
from flywheel.monitoring._stattests import (
    binned_counts,
    chi2_homogeneity,
    jensen_shannon,
    ks_binned,
    ks_weighted,
    psi,
    wasserstein_weighted,
    weighted_binned,
)

__all__ = ["ColumnDrift", "DriftReport", "detect_drift"]

_FEW_VALUES = 5
_PLOT_BINS = 30
_PLOT_CATEGORIES = 12
TESTS = {"ks", "chi2"}


@dataclasses.dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict.

    Attributes:
        score: The test statistic (KS D, chi-square) or the distance.
        threshold: The significance for tests (drift when ``p_value`` is below it), the
            distance threshold otherwise (drift when ``score`` is at or above it).
        shares: For plots: bin or category labels with reference and current shares.
    """

    column: str
    role: str
    kind: str
    method: str
    score: float
    threshold: float
    p_value: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    shares: tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]] = ((), (), ())

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "role": self.role, "kind": self.kind,
                "method": self.method, "score": self.score, "threshold": self.threshold,
                "p_value": self.p_value, "drifted": self.drifted,
                "reference_rows": self.reference_rows, "current_rows": self.current_rows}


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """Every column's verdict and the data-set verdict over feature columns.

    Attributes:
        skipped: Columns not checked, with the reason.
        importance: Each feature's share of the model's permutation importance, or None
            (not stored with the version: every column weighs the same).
        multivariate_drift: The domain classifier's verdict, when it ran.
    """

    columns: tuple[ColumnDrift, ...]
    drift_share_threshold: float
    skipped: Mapping[str, str]
    importance: Mapping[str, float] | None = None
    multivariate_drift: bool = False

    @property
    def features(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.role == "feature"]

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.features if c.drifted]

    @property
    def share(self) -> float:
        features = self.features
        return len(self.drifted) / len(features) if features else float("nan")

    @property
    def weighted_share(self) -> float:
        """The drifted columns' share of the checked columns' importance (the plain share
        when no importance is known or none of the checked columns has any)."""
        features = self.features
        if not features:
            return float("nan")
        if self.importance is None:
            return self.share
        weights = {c.column: self.importance.get(c.column, 0.0) for c in features}
        total = sum(weights.values())
        if total <= 0:
            return self.share
        return sum(weights[c] for c in self.drifted) / total

    @property
    def reasons(self) -> list[str]:
        """Why the data set drifts (empty when it does not)."""
        out = []
        if self.features and self.share >= self.drift_share_threshold:
            out.append(f"{self.share:.0%} of the feature columns drifted")
        if self.importance is not None and self.features and \
                self.weighted_share >= self.drift_share_threshold:
            out.append(f"the drifted columns carry {self.weighted_share:.0%} of the model's "
                       "feature importance")
        if self.multivariate_drift:
            out.append("the domain classifier tells the window from the reference")
        return out

    @property
    def dataset_drift(self) -> bool:
        return bool(self.reasons)

    def column(self, name: str) -> ColumnDrift | None:
        return next((c for c in self.columns if c.column == name), None)


def detect_drift(reference: MonitoringReference, frame: pd.DataFrame, spec: DriftSpec,
                 *, columns: list[str] | None = None) -> DriftReport:
    """Compare ``frame``'s columns with the reference.

    Args:
        frame: The current window, one column per reference column it has (features by name,
            the label under the target's name, predictions as ``prediction.*``).
        columns: Which reference columns to check (default: every one, less ``spec.exclude``).
    """
    wanted = columns if columns is not None else [c for c in reference.columns
                                                   if c not in spec.exclude]
    results: list[ColumnDrift] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        ref = reference.columns.get(name)
        if ref is None:
            skipped[name] = "not in the reference"
            continue
        if name not in frame.columns:
            skipped[name] = "missing from the window"
            continue
        if ref.count == 0:
            skipped[name] = "the reference has no values"
            continue
        verdict = _column(name, ref, frame[name], spec)
        if verdict is None:
            skipped[name] = "no values in the window"
        else:
            results.append(verdict)
    return DriftReport(tuple(results), spec.drift_share, skipped,
                       importance=reference.importance)


def _column(name: str, ref: ColumnReference, values: pd.Series,
            spec: DriftSpec) -> ColumnDrift | None:
    if isinstance(ref, NumericReference):
        current = as_numeric(values)
        if ref.float32:  # like with like: "0.221" sent as text is float32 0.22100000083...
            current = _at_float32(current)
        current = np.sort(current[np.isfinite(current)])
        if len(current) == 0:
            return None
        method = _method(spec, name, "numeric", min(ref.count, len(current)))
        few = ref.exact and len(ref.values) <= _FEW_VALUES and \
            len(np.union1d(ref.values, current)) <= _FEW_VALUES
        if method in ("chi2", "jensenshannon") or (few and spec.columns.get(name, "auto")
                                                   == "auto" and spec.numeric_method == "auto"):
            if method not in ("chi2", "jensenshannon"):
                method = "chi2" if method == "ks" else "jensenshannon"
            keys, ref_counts, cur_counts = _value_counts(ref, current)
            return _categorical_verdict(name, ref, method, keys, ref_counts, cur_counts, spec)
        return _numeric_verdict(name, ref, method, current, spec)
    text = category_strings(values).dropna()
    if len(text) == 0:
        return None
    method = _method(spec, name, "categorical", min(ref.count, len(text)))
    if method in ("ks", "wasserstein"):
        method = "chi2" if method == "ks" else "jensenshannon"
    keys, ref_counts, cur_counts = _category_counts(ref, text)
    return _categorical_verdict(name, ref, method, keys, ref_counts, cur_counts, spec)


def _at_float32(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to float32, except those beyond its range (kept as they are)."""
    inside = np.abs(np.nan_to_num(values)) <= np.finfo(np.float32).max
    rounded = values.astype(np.float32, casting="unsafe") if inside.all() else \
        np.where(inside, values, 0.0).astype(np.float32)
    return np.where(inside, rounded.astype(np.float64), values)


def _method(spec: DriftSpec, name: str, kind: str, rows: int) -> str:
    chosen = spec.columns.get(name, "auto")
    if chosen == "auto":
        chosen = spec.numeric_method if kind == "numeric" else spec.categorical_method
    if chosen == "auto":
        test = rows <= spec.test_max_rows
        if kind == "numeric":
            chosen = "ks" if test else "wasserstein"
        else:
            chosen = "chi2" if test else "jensenshannon"
    return chosen


def _numeric_verdict(name: str, ref: NumericReference, method: str, current: np.ndarray,
                     spec: DriftSpec) -> ColumnDrift:
    p_value: float | None = None
    if method == "ks" and ref.bin_edges is not None:
        score, p_value = ks_binned(ref.bin_edges, ref.weights, ref.count, current)
        threshold, drifted = spec.significance, p_value < spec.significance
    elif method == "ks":
        score, p_value = ks_weighted(ref.values, ref.weights, ref.count, current)
        threshold, drifted = spec.significance, p_value < spec.significance
    elif method == "wasserstein":
        score = wasserstein_weighted(ref.values, ref.weights, current, scale=ref.std)
        threshold = spec.wasserstein_threshold
        drifted = score >= threshold
    else:  # psi on the reference's decile bins
        score = psi(weighted_binned(ref.psi_edges, ref.values, ref.weights),
                    binned_counts(ref.psi_edges, current))
        threshold, drifted = spec.psi_threshold, score >= spec.psi_threshold
    return ColumnDrift(name, ref.role, "numeric", method, float(score), float(threshold),
                       p_value, bool(drifted), ref.count, len(current),
                       _numeric_shares(ref, current))


def _categorical_verdict(name: str, ref: ColumnReference, method: str, keys: list[str],
                         ref_counts: np.ndarray, cur_counts: np.ndarray,
                         spec: DriftSpec) -> ColumnDrift:
    p_value: float | None = None
    if method == "chi2":
        score, p_value = chi2_homogeneity(ref_counts, cur_counts)
        threshold, drifted = spec.significance, p_value < spec.significance
    elif method == "jensenshannon":
        score = jensen_shannon(ref_counts, cur_counts)
        threshold, drifted = spec.jensenshannon_threshold, score >= spec.jensenshannon_threshold
    else:
        score = psi(ref_counts, cur_counts)
        threshold, drifted = spec.psi_threshold, score >= spec.psi_threshold
    ref_share = ref_counts / max(ref_counts.sum(), 1)
    cur_share = cur_counts / max(cur_counts.sum(), 1)
    top = np.argsort(-np.maximum(ref_share, cur_share), kind="stable")[:_PLOT_CATEGORIES]
    shares = (tuple(keys[i] for i in top), tuple(float(ref_share[i]) for i in top),
              tuple(float(cur_share[i]) for i in top))
    return ColumnDrift(name, ref.role, ref.kind, method, float(score), float(threshold),
                       p_value, bool(drifted), ref.count, int(cur_counts.sum()), shares)


def _category_counts(ref: CategoricalReference, text: pd.Series
                     ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts per key: the reference's categories, then "other" (if the reference pooled
    some) or each category the reference never saw."""
    seen = text.value_counts()
    keys = list(ref.categories)
    cur = seen.reindex(keys, fill_value=0).to_numpy(dtype=np.int64)
    new = seen[~seen.index.isin(keys)]
    ref_counts = ref.counts.astype(np.int64)
    if ref.other > 0:
        keys.append("(other)")
        ref_counts = np.append(ref_counts, ref.other)
        cur = np.append(cur, int(new.sum()))
    elif len(new):
        keys.extend(str(k) for k in new.index)
        ref_counts = np.append(ref_counts, np.zeros(len(new), dtype=np.int64))
        cur = np.append(cur, new.to_numpy(dtype=np.int64))
    return keys, ref_counts, cur


def _value_counts(ref: NumericReference, current: np.ndarray
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    values = np.union1d(ref.values, np.unique(current))
    ref_counts = np.zeros(len(values))
    ref_counts[np.searchsorted(values, ref.values)] = ref.weights
    cur_counts = binned_counts(values[:-1], current) if len(values) > 1 else \
        np.array([len(current)])
    return [f"{v:g}" for v in values], ref_counts, cur_counts


def _numeric_shares(ref: NumericReference, current: np.ndarray
                    ) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    lo = min(float(ref.values[0]), float(current[0]))
    hi = max(float(ref.values[-1]), float(current[-1]))
    if hi <= lo:
        hi = lo + abs(lo) * 1e-9 + 1.0
    # Halved ends keep ``hi - lo`` finite when a window holds values near the float limits
    # (sentinels such as 1e308): the edges then still increase, and nothing overflows.
    edges = np.linspace(lo / 2, hi / 2, _PLOT_BINS + 1) * 2
    edges[0], edges[-1] = lo, hi
    ref_hist = np.histogram(ref.values, edges, weights=ref.weights)[0]
    cur_hist = np.histogram(current, edges)[0]
    centres = edges[:-1] / 2 + edges[1:] / 2
    return (tuple(f"{c:.6g}" for c in centres),
            tuple(float(v) for v in ref_hist / max(ref_hist.sum(), 1)),
            tuple(float(v) for v in cur_hist / max(cur_hist.sum(), 1)))
