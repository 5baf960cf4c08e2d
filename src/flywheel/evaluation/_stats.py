"""Uncertainty of holdout metrics: bootstrap intervals and paired comparisons of two models.

Two models scored on the *same* rows are compared on the difference of their metric, resampling
rows jointly (a paired bootstrap), so that the rows both models find easy or hard cancel out; for
ROC AUC of a binary task, DeLong's test gives the same interval analytically.

Resamples are drawn as count weights (how often each row is drawn), stratified by class for
classification so that every resample holds every class (ROC AUC needs both), and every metric
is computed from the weights at once, vectorized over resamples; nothing loops over rows in
Python. Intervals are percentile intervals of the resampled statistic.

``gain`` is oriented so that positive always means the challenger is better: challenger minus
champion for metrics where greater is better (ROC AUC), champion minus challenger otherwise
(RMSE, log loss).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import numpy as np
from scipy import stats as sps

from flywheel.core.errors import ConfigError
from flywheel.core.spec import Task
from flywheel.evaluation._metrics import get_metric

__all__ = [
    "MetricInterval",
    "PairedComparison",
    "bootstrap_metric",
    "compare_paired",
    "delong_roc_auc",
    "weighted_metric",
]

# Rows x resamples held in memory at once by the vectorized bootstrap.
_CELLS_PER_CHUNK = 4_000_000
_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


@dataclasses.dataclass(frozen=True)
class MetricInterval:
    """A metric on a holdout with its bootstrap confidence interval."""

    metric: str
    value: float
    low: float
    high: float
    confidence: float
    resamples: int
    rows: int


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """A challenger against a champion on the same rows.

    Attributes:
        challenger, champion: The metric of each model on the compared rows.
        difference: ``challenger - champion``, in the metric's own direction.
        gain: The difference oriented so that positive means the challenger is better.
        low, high: Two-sided ``confidence`` interval of ``gain``.
        se: Standard error of ``gain``.
        p_value: Two-sided p-value of "no difference".
        method: ``delong`` or ``bootstrap``.
    """

    metric: str
    greater_is_better: bool
    challenger: float
    champion: float
    difference: float
    gain: float
    low: float
    high: float
    se: float
    p_value: float
    confidence: float
    method: str
    rows: int
    resamples: int

    def to_dict(self) -> dict[str, float | int | str | bool]:
        return dataclasses.asdict(self)


# Weighted metrics -------------------------------------------------------------------------
# Each takes y (n,), a prediction (n,) or (n, k), and weights (b, n); returns (b,) values.

WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _proba(pred: np.ndarray) -> np.ndarray:
    return pred if pred.ndim == 2 else np.column_stack([1 - pred, pred])


def _binary_auc(positive: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC of ``score`` for the 0/1 labels ``positive``, per weight row.

    Ties count one half, as in ``sklearn.metrics.roc_auc_score``.
    """
    order = np.argsort(score, kind="mergesort")
    s, pos = score[order], positive[order].astype(bool)
    ws = w[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each tie group
    wp = np.add.reduceat(np.where(pos, ws, 0.0), starts, axis=1)
    wn = np.add.reduceat(np.where(pos, 0.0, ws), starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn  # negative weight strictly below each group
    total_p, total_n = wp.sum(axis=1), wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(((wp * (below + 0.5 * wn)).sum(axis=1)) / (total_p * total_n))


def _w_roc_auc(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    p = _proba(pred)
    if p.shape[1] == 2:
        return _binary_auc(y == 1, p[:, 1], w)
    # sklearn's multi_class="ovr", average="macro": the mean of one-vs-rest AUCs.
    return np.asarray(np.mean([_binary_auc(y == k, p[:, k], w) for k in range(p.shape[1])],
                              axis=0), dtype=float)


def _wmean(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.asarray((w @ values) / w.sum(axis=1))


def _w_log_loss(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    p = _proba(pred)
    p = p / p.sum(axis=1, keepdims=True)
    picked = np.clip(p[np.arange(len(y)), y], _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
    return _wmean(-np.log(picked), w)


def _w_accuracy(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _wmean((_proba(pred).argmax(axis=1) == y).astype(float), w)


def _w_f1(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    p = _proba(pred)
    label = p.argmax(axis=1)
    classes = [1] if p.shape[1] == 2 else list(range(p.shape[1]))
    scores = []
    for k in classes:
        tp = w @ ((label == k) & (y == k)).astype(float)
        fp = w @ ((label == k) & (y != k)).astype(float)
        fn = w @ ((label != k) & (y == k)).astype(float)
        denominator = 2 * tp + fp + fn
        scores.append(np.divide(2 * tp, denominator, out=np.zeros_like(tp),
                                where=denominator > 0))
    return np.asarray(np.mean(scores, axis=0))


def _w_brier(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    p = _proba(pred)
    if p.shape[1] == 2:  # the positive class's, as in flywheel.evaluation's brier
        return _wmean((p[:, 1] - (y == 1)) ** 2, w)
    onehot = np.eye(p.shape[1])[y]
    return _wmean(np.sum((p - onehot) ** 2, axis=1), w)


def _w_rmse(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.asarray(np.sqrt(_wmean((y - pred) ** 2, w)), dtype=float)


def _w_mae(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _wmean(np.abs(y - pred), w)


def _w_r2(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1)
    mean = (w @ y) / total
    sse = w @ ((y - pred) ** 2)
    sst = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(1 - sse / sst)


_WEIGHTED: dict[str, WeightedMetric] = {
    "roc_auc": _w_roc_auc, "log_loss": _w_log_loss, "accuracy": _w_accuracy, "f1": _w_f1,
    "brier": _w_brier, "rmse": _w_rmse, "mae": _w_mae, "r2": _w_r2,
}


def weighted_metric(name: str, y: np.ndarray, pred: np.ndarray, weights: np.ndarray
                    ) -> np.ndarray:
    """``name`` computed once per row of ``weights`` (resample counts), shape ``(b,)``.

    With all weights one it equals the metric of ``flywheel.evaluation.compute_metrics``.

    Raises:
        ConfigError: If ``name`` is not a metric flywheel knows.
    """
    if name not in _WEIGHTED:
        raise ConfigError(f"no resampled form of metric {name!r}; choose one of "
                          f"{', '.join(sorted(_WEIGHTED))}.")
    y = np.asarray(y)
    return _WEIGHTED[name](y, np.asarray(pred, dtype=float), np.atleast_2d(weights).astype(float))


# Resampling -------------------------------------------------------------------------------


def _resample_weights(n: int, resamples: int, rng: np.random.Generator,
                      strata: np.ndarray | None) -> Iterator[np.ndarray]:
    """Count weights of ``resamples`` bootstrap resamples, in chunks of rows ``(b, n)``."""
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s)
                                                    for s in np.unique(strata)]
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        weights = np.zeros((b, n))
        for members in groups:
            size = len(members)
            weights[:, members] = rng.multinomial(size, np.full(size, 1.0 / size), size=b)
        done += b
        yield weights


def _check_inputs(y: np.ndarray, *preds: np.ndarray) -> None:
    if len(y) < 2:
        raise ValueError(f"need at least 2 rows to resample, got {len(y)}")
    for pred in preds:
        if len(pred) != len(y):
            raise ValueError(f"predictions have {len(pred)} rows but labels {len(y)}")
        if not np.all(np.isfinite(pred)):
            raise ValueError("predictions contain NaN or infinite values")


def bootstrap_metric(task: Task, metric: str, y: np.ndarray, pred: np.ndarray, *,
                     confidence: float = 0.95, resamples: int = 1000, seed: int = 0
                     ) -> MetricInterval:
    """``metric`` of ``pred`` on ``y`` with a percentile bootstrap interval."""
    y, pred = np.asarray(y), np.asarray(pred, dtype=float)
    _check_inputs(y, pred)
    rng = np.random.default_rng(seed)
    strata = y if task != "regression" else None
    value = float(weighted_metric(metric, y, pred, np.ones((1, len(y))))[0])
    draws = np.concatenate([weighted_metric(metric, y, pred, w)
                            for w in _resample_weights(len(y), resamples, rng, strata)])
    low, high = _percentiles(draws, confidence)
    return MetricInterval(metric, value, low, high, confidence, resamples, len(y))


def compare_paired(task: Task, metric: str, y: np.ndarray, challenger: np.ndarray,
                   champion: np.ndarray, *, confidence: float = 0.95, resamples: int = 1000,
                   method: str = "auto", seed: int = 0) -> PairedComparison:
    """Compare two models' predictions on the same rows ``y``.

    Args:
        method: ``bootstrap`` (paired, stratified by class for classification), ``delong``
            (binary ROC AUC only), or ``auto``: DeLong for binary ROC AUC, else bootstrap.

    Raises:
        ValueError: If the inputs disagree in length, hold NaN, or ``delong`` is asked for
            another metric.
    """
    y = np.asarray(y)
    a, b = np.asarray(challenger, dtype=float), np.asarray(champion, dtype=float)
    _check_inputs(y, a, b)
    m = get_metric(task, metric)
    binary_auc = task == "binary" and metric == "roc_auc"
    if method == "auto":
        method = "delong" if binary_auc else "bootstrap"
    if method == "delong":
        if not binary_auc:
            raise ValueError(f"DeLong's test is for ROC AUC of a binary task, not {metric}")
        return _delong_comparison(y, _proba(a)[:, 1], _proba(b)[:, 1], confidence)
    if method != "bootstrap":
        raise ValueError(f"unknown comparison method {method!r}; use auto, bootstrap or delong")
    sign = 1.0 if m.greater_is_better else -1.0
    ones = np.ones((1, len(y)))
    va = float(weighted_metric(metric, y, a, ones)[0])
    vb = float(weighted_metric(metric, y, b, ones)[0])
    rng = np.random.default_rng(seed)
    strata = y if task != "regression" else None
    gains = np.concatenate([
        sign * (weighted_metric(metric, y, a, w) - weighted_metric(metric, y, b, w))
        for w in _resample_weights(len(y), resamples, rng, strata)])
    gains = gains[np.isfinite(gains)]
    if len(gains) < max(10, resamples // 2):
        raise ValueError(f"the metric {metric} is undefined on most resamples")
    low, high = _percentiles(gains, confidence)
    gain = sign * (va - vb)
    # Two-sided bootstrap p-value of "no difference": twice the smaller tail beyond zero.
    tail = min(np.mean(gains <= 0), np.mean(gains >= 0))
    p_value = float(min(1.0, 2 * max(tail, 1 / (len(gains) + 1))))
    return PairedComparison(
        metric=metric, greater_is_better=m.greater_is_better, challenger=va, champion=vb,
        difference=va - vb, gain=gain, low=low, high=high, se=float(np.std(gains, ddof=1)),
        p_value=p_value, confidence=confidence, method="bootstrap", rows=len(y),
        resamples=len(gains))


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


# DeLong -----------------------------------------------------------------------------------


def _midranks(x: np.ndarray) -> np.ndarray:
    return np.asarray(sps.rankdata(x, method="average"), dtype=float)


def delong_roc_auc(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of each row of ``scores`` (k, n) and their covariance (k, k), by DeLong et al.

    The fast form of Sun and Xu (2014): midranks within positives, negatives and all rows.

    Raises:
        ValueError: If ``y`` does not hold both classes.
    """
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError("ROC AUC needs both classes in the compared rows")
    positives, negatives = scores[:, y], scores[:, ~y]
    k = scores.shape[0]
    aucs = np.empty(k)
    v10, v01 = np.empty((k, m)), np.empty((k, n))
    for r in range(k):
        tx, ty = _midranks(positives[r]), _midranks(negatives[r])
        tz = _midranks(np.concatenate([positives[r], negatives[r]]))
        aucs[r] = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
        v10[r] = (tz[:m] - tx) / n
        v01[r] = 1.0 - (tz[m:] - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _delong_comparison(y: np.ndarray, a: np.ndarray, b: np.ndarray, confidence: float
                       ) -> PairedComparison:
    aucs, cov = delong_roc_auc(y, np.vstack([a, b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    zq = float(sps.norm.ppf(0.5 + confidence / 2))
    if se > 0:
        p_value = float(2 * sps.norm.sf(abs(diff) / se))
    else:  # identical rankings: no difference, and no doubt about it
        p_value = 1.0 if diff == 0 else 0.0
    return PairedComparison(
        metric="roc_auc", greater_is_better=True, challenger=float(aucs[0]),
        champion=float(aucs[1]), difference=diff, gain=diff, low=diff - zq * se,
        high=diff + zq * se, se=se, p_value=p_value, confidence=confidence, method="delong",
        rows=len(y), resamples=0)
