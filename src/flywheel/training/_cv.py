"""Splits: the holdout set aside before the search, and the folds the search scores on."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit, train_test_split

from flywheel.core.errors import TrainingError
from flywheel.core.spec import Task

IntArray = np.ndarray
Fold = tuple[IntArray, IntArray]


def holdout_split(y: np.ndarray, *, task: Task, fraction: float, seed: int,
                  time_order: np.ndarray | None = None) -> Fold:
    """Indices of (search rows, holdout rows).

    With ``time_order`` (sortable values, one per row) the holdout is the latest ``fraction``
    of rows; otherwise a random split, stratified by class for classification.

    Raises:
        TrainingError: If there are too few rows (or too few of a class) to split.
    """
    n = len(y)
    n_holdout = int(round(n * fraction))
    if n_holdout < 1 or n - n_holdout < 2:
        raise TrainingError(f"{n} labelled rows are too few to set aside a {fraction:.0%} "
                            "holdout and still train; add data or lower training.holdout_fraction.")
    index = np.arange(n)
    if time_order is not None:
        ordered = index[np.argsort(time_order, kind="stable")]
        return np.sort(ordered[:-n_holdout]), np.sort(ordered[-n_holdout:])
    stratify = y if task != "regression" else None
    if stratify is not None and np.bincount(y).min() < 2:
        raise TrainingError("a class has fewer than 2 rows, so a stratified holdout is "
                            "impossible; add data for it or drop the class.")
    search, holdout = train_test_split(index, test_size=n_holdout, random_state=seed,
                                       stratify=stratify)
    return np.sort(search), np.sort(holdout)


def cv_folds(y: np.ndarray, *, task: Task, k: int, seed: int,
             time_order: np.ndarray | None = None) -> list[Fold]:
    """``k`` (train, validation) index pairs over ``y``'s rows.

    Stratified k-fold for classification, shuffled k-fold for regression, and expanding-window
    time-ordered splits (validation always after training) when ``time_order`` is given.

    Raises:
        TrainingError: If a class has fewer rows than folds.
    """
    index = np.arange(len(y))
    if time_order is not None:
        ordered = index[np.argsort(time_order, kind="stable")]
        return [(ordered[tr], ordered[va]) for tr, va in TimeSeriesSplit(n_splits=k).split(ordered)]
    if task == "regression":
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(index))
    smallest = int(np.bincount(y).min())
    if smallest < k:
        raise TrainingError(f"the rarest class has {smallest} row(s) in the search data, fewer "
                            f"than training.cv_folds ({k}); lower cv_folds or add data.")
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(index, y))
