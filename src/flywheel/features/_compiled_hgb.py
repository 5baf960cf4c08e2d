"""scikit-learn's HistGradientBoosting for the serving fast path: its trees as flat node arrays,
walked with numpy on the encoded float64 matrix.

``predict_proba`` on one row costs milliseconds (input validation, an OpenMP pool per tree, the
loss's bookkeeping); the trees themselves are a few hundred comparisons. The fitted estimator
keeps each tree as a ``TreePredictor`` whose ``nodes`` hold the raw-value split
(``num_threshold``, ``missing_go_to_left``), the children and the leaf values. All trees are
concatenated into one set of arrays, and every tree advances one level per step, so one row
costs about ``max depth`` numpy calls rather than one Python loop per node.

The output is the estimator's: as ``_raw_predict``, the baseline plus each tree's leaf value in
iteration order (``np.add.accumulate`` adds in sequence, as its ``+=`` per tree does), then
the estimator's own loss turns the raw scores into probabilities or values. Trees that split
on categorical features (``is_categorical_``) are not compiled; they answer through the
estimator's method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]
_CHUNK = 1024
"""Rows walked at once: the walk holds (rows, trees) node indices."""


def hgb_predict(estimator: Any, classify: bool) -> Predict | None:
    """The exact ``predict_proba`` (classifiers) or ``predict`` (regressors) of a fitted
    ``HistGradientBoosting*`` on an encoded float64 matrix; None when its trees split on a
    categorical feature (the estimator's own method answers then)."""
    categorical = getattr(estimator, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        return None
    per_iteration = int(estimator.n_trees_per_iteration_)
    # Tree t of iteration i for class k sits at position i * per_iteration + k, so the trees of
    # class k are every per_iteration-th one, in iteration order.
    trees = [p.nodes for iteration in estimator._predictors for p in iteration]
    if not trees or any(np.any(t["is_categorical"]) for t in trees):
        return None
    starts = np.cumsum([0] + [len(t) for t in trees[:-1]])
    nodes = np.concatenate(trees)
    offset = np.repeat(starts, [len(t) for t in trees])
    leaf = nodes["is_leaf"].astype(bool)
    own = np.arange(len(nodes))
    # A leaf points to itself, so walking past it changes nothing.
    left = np.where(leaf, own, nodes["left"].astype(np.intp) + offset)
    right = np.where(leaf, own, nodes["right"].astype(np.intp) + offset)
    feature = np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp)
    threshold = nodes["num_threshold"].astype(np.float64)
    missing_left = nodes["missing_go_to_left"].astype(bool)
    value = nodes["value"].astype(np.float64)
    roots = starts.astype(np.intp)
    depth = int(nodes["depth"].max())
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
    loss = estimator._loss

    def raw(matrix: np.ndarray) -> np.ndarray:
        rows = matrix.shape[0]
        node = np.broadcast_to(roots, (rows, len(roots)))
        for _ in range(depth):
            x = np.take_along_axis(matrix, feature[node], axis=1)
            go_left = np.where(x != x, missing_left[node], x <= threshold[node])
            node = np.where(go_left, left[node], right[node])
        leaves = value[node]
        scores = np.empty((rows, per_iteration), dtype=np.float64)
        for k in range(per_iteration):
            terms = np.concatenate([np.full((rows, 1), baseline[k]), leaves[:, k::per_iteration]],
                                   axis=1)
            scores[:, k] = np.add.accumulate(terms, axis=1)[:, -1]
        return scores

    def raw_row(row: np.ndarray) -> np.ndarray:
        node = roots
        for _ in range(depth):
            x = row[feature[node]]
            go_left = x <= threshold[node]
            nan = x != x
            if nan.any():
                go_left = np.where(nan, missing_left[node], go_left)
            node = np.where(go_left, left[node], right[node])
        leaves = value[node]
        return np.array([[np.add.accumulate(np.concatenate([baseline[k:k + 1],
                                                             leaves[k::per_iteration]]))[-1]
                          for k in range(per_iteration)]])

    def predict(matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[0] == 1:
            scores = raw_row(matrix[0])
        else:
            scores = np.concatenate([raw(matrix[i:i + _CHUNK])
                                     for i in range(0, matrix.shape[0], _CHUNK)])
        if classify:
            return np.asarray(loss.predict_proba(scores), dtype=np.float64)
        return np.asarray(loss.link.inverse(scores.ravel()), dtype=np.float64)

    return predict
