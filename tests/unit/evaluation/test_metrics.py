from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from flywheel.core.errors import ConfigError
from flywheel.evaluation import compute_metrics, get_metric, summarize


def test_perfect_binary_probabilities_score_perfectly() -> None:
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    m = compute_metrics("binary", y, proba)
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 1.0 and m["f1"] == 1.0
    assert m["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.09, 0.01]))
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.7, 0.9])))


def test_binary_brier_equals_scikit_learns_brier_score_loss() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(np.int64)
    positive = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(scale=0.2, size=500), 0, 1)
    proba = np.column_stack([1 - positive, positive])
    brier = compute_metrics("binary", y, proba)["brier"]
    assert brier == pytest.approx(brier_score_loss(y, positive))
    # A constant prediction of the base rate scores rate * (1 - rate), not twice that.
    rate = y.mean()
    constant = np.column_stack([np.full(500, 1 - rate), np.full(500, rate)])
    assert compute_metrics("binary", y, constant)["brier"] == pytest.approx(rate * (1 - rate))


def test_multiclass_brier_sums_the_squared_error_over_classes() -> None:
    y = np.array([0, 1, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]])
    expected = np.mean([0.04 + 0.01 + 0.01, 0.04 + 0.16 + 0.04, 0.09 + 0.09 + 0.36])
    assert compute_metrics("multiclass", y, proba)["brier"] == pytest.approx(expected)


def test_multiclass_metrics_use_every_class_column() -> None:
    y = np.array([0, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.1 / 3
    m = compute_metrics("multiclass", y, proba)
    assert m["accuracy"] == 0.75 and 0 < m["roc_auc"] <= 1


def test_regression_metrics() -> None:
    m = compute_metrics("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3)) and m["mae"] == pytest.approx(2 / 3)


def test_auc_of_a_single_class_is_nan_not_an_error() -> None:
    m = compute_metrics("binary", np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]))
    assert math.isnan(m["roc_auc"])


def test_metric_direction_and_defaults() -> None:
    assert get_metric("binary", None).name == "roc_auc"
    assert get_metric("regression", None).name == "rmse"
    assert get_metric("regression", "rmse").better(1.0, 2.0)
    assert get_metric("binary", "roc_auc").better(0.9, 0.8)


def test_unknown_metric_for_the_task_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'rmse' is not a binary metric"):
        get_metric("binary", "rmse")


def test_summary_gives_mean_and_std_across_folds() -> None:
    s = summarize([{"auc": 0.8}, {"auc": 0.9}])
    assert s["auc"] == pytest.approx(0.85) and s["auc_std"] == pytest.approx(0.05)
