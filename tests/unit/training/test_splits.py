from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.core.errors import ConfigError, TrainingError
from flywheel.core.spec import TargetSpec
from flywheel.training import cv_folds, encode_target, holdout_split


def test_holdout_is_stratified_and_disjoint() -> None:
    y = np.array([0] * 90 + [1] * 10)
    search, holdout = holdout_split(y, task="binary", fraction=0.2, seed=0)
    assert len(holdout) == 20 and set(search).isdisjoint(holdout)
    assert y[holdout].sum() == 2


def test_time_ordered_holdout_is_the_latest_rows() -> None:
    y = np.zeros(10, dtype=int)
    y[::2] = 1
    order = np.array([5, 3, 9, 1, 0, 8, 7, 2, 6, 4])
    _, holdout = holdout_split(y, task="binary", fraction=0.3, seed=0, time_order=order)
    assert sorted(order[holdout]) == [7, 8, 9]


def test_time_ordered_folds_validate_after_they_train() -> None:
    order = np.random.default_rng(0).permutation(100)
    for train, valid in cv_folds(np.zeros(100), task="regression", k=4, seed=0, time_order=order):
        assert order[train].max() < order[valid].min()


def test_stratified_folds_keep_the_class_balance() -> None:
    y = np.array([0] * 80 + [1] * 20)
    for _, valid in cv_folds(y, task="binary", k=5, seed=0):
        assert y[valid].sum() == 4


def test_a_class_rarer_than_the_folds_is_a_clear_error() -> None:
    with pytest.raises(TrainingError, match="fewer than training.cv_folds"):
        cv_folds(np.array([0] * 50 + [1] * 3), task="binary", k=5, seed=0)


def test_binary_target_puts_the_positive_class_at_code_1() -> None:
    y, enc = encode_target(pd.Series(["yes", "no", "no"]),
                           TargetSpec(column="c", task="binary", positive_class="no"))
    assert enc.classes == ("yes", "no") and y.tolist() == [0, 1, 1]
    assert enc.decode(np.array([1, 0])).tolist() == ["no", "yes"]


def test_positive_class_that_is_not_a_label_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="positive_class: 'maybe'"):
        encode_target(pd.Series(["yes", "no"]),
                      TargetSpec(column="c", task="binary", positive_class="maybe"))
