"""Performance without labels: confidence-based performance estimation (CBPE).

At training time an isotonic calibrator is fitted on the holdout (rows the model never saw):
for each class, the model's probability mapped to how often that class really occurred. In
production the calibrated probability of each row stands in for its unknown label, and the
metrics are computed in expectation:

- accuracy: the mean calibrated probability of the predicted class;
- ROC AUC (binary): the expected true and false positives at every score threshold give an
  expected ROC curve (each row counts as ``c`` of a positive and ``1 - c`` of a negative, where
  ``c`` is its calibrated probability), and its area; multiclass: the macro one-vs-rest mean.

The estimate holds under covariate shift (the inputs move, P(label | inputs) does not). It
cannot see concept drift: when the relation between inputs and label changes, the calibrator
is wrong and only measured performance (labels from /feedback) shows it. Reports say so.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from flywheel.core.errors import MonitoringError

__all__ = ["CBPE_ASSUMPTION", "Calibrator", "estimate_performance", "fit_calibrator"]

CBPE_ASSUMPTION = ("Estimated from calibrated probabilities (CBPE): valid while only the inputs "
                   "shift; it assumes no concept drift (P(label | inputs) unchanged), which only "
                   "measured performance with labels can confirm.")


@dataclasses.dataclass(frozen=True)
class Calibrator:
    """Per-class isotonic maps from a model's probability to the observed frequency.

    Attributes:
        x, y: For each class, the isotonic fit's breakpoints (increasing ``x``); values in
            between are interpolated, values outside clipped.
    """

    classes: tuple[str, ...]
    x: tuple[np.ndarray, ...]
    y: tuple[np.ndarray, ...]
    rows: int

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, rows summing to one (binary: from the positive
        class's map)."""
        proba = np.atleast_2d(np.asarray(proba, dtype=float))
        if proba.shape[1] != len(self.classes):
            raise MonitoringError(f"probabilities have {proba.shape[1]} columns but the "
                                  f"calibrator knows {len(self.classes)} classes.")
        if len(self.classes) == 2:
            positive = np.interp(proba[:, 1], self.x[0], self.y[0])
            return np.asarray(np.column_stack([1 - positive, positive]))
        out = np.column_stack([np.interp(proba[:, k], self.x[k], self.y[k])
                               for k in range(len(self.classes))])
        total = out.sum(axis=1, keepdims=True)
        return np.asarray(np.divide(out, total, out=np.full_like(out, 1.0 / out.shape[1]),
                                    where=total > 0))

    def to_json(self) -> str:
        return json.dumps({"method": "isotonic", "classes": list(self.classes),
                           "rows": self.rows, "x": [v.tolist() for v in self.x],
                           "y": [v.tolist() for v in self.y]})

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        """Raises: MonitoringError if the text is not a stored calibrator."""
        try:
            raw = json.loads(text)
            return cls(tuple(raw["classes"]), tuple(np.asarray(v, float) for v in raw["x"]),
                       tuple(np.asarray(v, float) for v in raw["y"]), int(raw["rows"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise MonitoringError(f"the stored calibrator cannot be read ({exc}); retrain the "
                                  "version to store a new one.") from exc


def fit_calibrator(y: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]) -> Calibrator:
    """Fit per-class isotonic maps on holdout labels (codes) and probabilities."""
    from sklearn.isotonic import IsotonicRegression

    y = np.asarray(y)
    proba = np.atleast_2d(np.asarray(proba, dtype=float))
    which = [1] if len(classes) == 2 else list(range(len(classes)))
    xs, ys = [], []
    for k in which:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(proba[:, k], (y == k).astype(float))
        xs.append(np.asarray(iso.X_thresholds_, dtype=float))
        ys.append(np.asarray(iso.y_thresholds_, dtype=float))
    return Calibrator(tuple(classes), tuple(xs), tuple(ys), len(y))


def estimate_performance(calibrator: Calibrator, proba: np.ndarray,
                         weights: np.ndarray | None = None) -> dict[str, float]:
    """Expected accuracy and ROC AUC of a window from the model's probabilities.

    Args:
        weights: Optional row weights (a re-weighted population); default all one.
    """
    proba = np.atleast_2d(np.asarray(proba, dtype=float))
    if len(proba) == 0:
        return {}
    w = np.ones(len(proba)) if weights is None else np.asarray(weights, dtype=float)
    calibrated = calibrator.calibrate(proba)
    predicted = proba.argmax(axis=1)
    hit = calibrated[np.arange(len(proba)), predicted]
    out = {"estimated_accuracy": float(np.sum(w * hit) / np.sum(w))}
    if proba.shape[1] == 2:
        out["estimated_roc_auc"] = _expected_auc(proba[:, 1], calibrated[:, 1], w)
    else:
        aucs = [_expected_auc(proba[:, k], calibrated[:, k], w) for k in range(proba.shape[1])]
        found = [a for a in aucs if a == a]
        out["estimated_roc_auc"] = float(np.mean(found)) if found else float("nan")
    return out


def _expected_auc(score: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> float:
    """Area under the expected ROC curve: rows count ``positive`` as positives and
    ``1 - positive`` as negatives (times their weight); tied scores count one half."""
    order = np.argsort(score, kind="mergesort")
    s, wp, w = score[order], positive[order], weights[order]
    wn = (1.0 - wp) * w
    wp = wp * w
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    group_p = np.add.reduceat(wp, starts)
    group_n = np.add.reduceat(wn, starts)
    below_n = np.concatenate(([0.0], np.cumsum(group_n)[:-1]))
    total_p, total_n = group_p.sum(), group_n.sum()
    if total_p <= 0 or total_n <= 0:
        return float("nan")
    return float(np.sum(group_p * (below_n + 0.5 * group_n)) / (total_p * total_n))
