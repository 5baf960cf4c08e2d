"""Task metrics: what can be optimized and reported, with their direction.

Classification metrics take class probabilities (columns in the model's class order);
regression metrics take predicted values. ``brier`` is the positive class's Brier score for a
binary task (scikit-learn's ``brier_score_loss``) and the multiclass Brier score (summed over
classes, 0 to 2) for a multiclass one.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm

from flywheel.core.errors import ConfigError
from flywheel.core.spec import Task


@dataclasses.dataclass(frozen=True)
class Metric:
    """A named score with its direction."""

    name: str
    greater_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]

    def better(self, a: float, b: float) -> bool:
        """True if score ``a`` is better than ``b``."""
        return a > b if self.greater_is_better else a < b


def _proba_matrix(proba: np.ndarray) -> np.ndarray:
    return proba if proba.ndim == 2 else np.column_stack([1 - proba, proba])


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    p = _proba_matrix(proba)
    if p.shape[1] == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    return float(skm.roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1])))


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    p = _proba_matrix(proba)
    return float(skm.log_loss(y, p, labels=np.arange(p.shape[1])))


def _accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(_proba_matrix(proba).argmax(axis=1) == y))


def _f1(y: np.ndarray, proba: np.ndarray) -> float:
    p = _proba_matrix(proba)
    average = "binary" if p.shape[1] == 2 else "macro"
    return float(skm.f1_score(y, p.argmax(axis=1), average=average, zero_division=0))


def _brier(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary: the positive class's mean squared error, sklearn's ``brier_score_loss``
    (0 to 1; a constant prediction of the base rate scores rate * (1 - rate)). Multiclass: the
    sum over classes of the squared error, averaged over rows (Brier's original form, 0 to 2),
    which for two classes would be twice the binary score."""
    p = _proba_matrix(proba)
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - (y == 1)) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - pred) ** 2)))


def _mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y - pred)))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(skm.r2_score(y, pred))


CLASSIFICATION_METRICS = {
    m.name: m for m in (
        Metric("roc_auc", True, _roc_auc),
        Metric("log_loss", False, _log_loss),
        Metric("accuracy", True, _accuracy),
        Metric("f1", True, _f1),
        Metric("brier", False, _brier),
    )
}
REGRESSION_METRICS = {
    m.name: m for m in (
        Metric("rmse", False, _rmse),
        Metric("mae", False, _mae),
        Metric("r2", True, _r2),
    )
}
DEFAULT_METRIC: dict[str, str] = {"binary": "roc_auc", "multiclass": "log_loss",
                                  "regression": "rmse"}


def task_metrics(task: Task) -> dict[str, Metric]:
    """Every metric reported for ``task``."""
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def get_metric(task: Task, name: str | None) -> Metric:
    """The metric to optimize: ``name``, or the task's default.

    Raises:
        ConfigError: If ``name`` is not a metric of this task.
    """
    available = task_metrics(task)
    name = name or DEFAULT_METRIC[task]
    if name not in available:
        raise ConfigError(f"training.metric: {name!r} is not a {task} metric; choose one of "
                          f"{', '.join(available)}.")
    return available[name]


def compute_metrics(task: Task, y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """All of the task's metrics; a metric that cannot be computed (one class present) is NaN."""
    out: dict[str, float] = {}
    for name, metric in task_metrics(task).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined metrics become NaN, said once by callers
            try:
                out[name] = metric.compute(y, prediction)
            except ValueError:
                out[name] = float("nan")
    return out


def summarize(values: list[dict[str, float]]) -> dict[str, Any]:
    """Mean and standard deviation across folds: ``{name: mean, name_std: std}``."""
    out: dict[str, float] = {}
    for name in values[0] if values else []:
        column = np.array([v[name] for v in values], dtype=float)
        out[name] = float(np.nanmean(column)) if np.isfinite(column).any() else float("nan")
        out[f"{name}_std"] = float(np.nanstd(column)) if np.isfinite(column).any() else float("nan")
    return out
