"""XGBoost's and CatBoost's exact tree contributions (``TreeContributions`` of
``_contributions``).

XGBoost: ``Booster.predict(DMatrix, pred_contribs=True)``, exact TreeSHAP over the trees
predictions use (up to the best iteration). The bias column holds the expected margin with
``base_score`` in it (XGBoost keeps the intercept in margin space: the log-odds of
``base_score`` for a logistic model). XGBoost computes in float32, so its parts add up to its
own float32 margin only to a few ulps (up to about 1e-5 on margins near 10); the difference is
added to the bias, which makes each row's parts add up to the margin served to within float64
rounding. The per-column parts are XGBoost's, unchanged.

CatBoost: ``get_feature_importance(type="ShapValues")``, exact for its symmetric trees and
computed in float64; they add up to ``RawFormulaVal`` to within 1e-12.

The packages are optional extras, imported only when such a model is explained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flywheel.core.errors import ExplanationError
from flywheel.core.spec import Task
from flywheel.features._compiled_xgboost import _XgboostRow, iteration_range


def xgboost_contributions(estimator: Any, task: Task, version: str, num_threads: int = 1
                          ) -> _XgboostContributions:
    """The contributions of a fitted ``XGBClassifier`` or ``XGBRegressor``.

    Raises:
        ExplanationError: If the regressor has several targets.
    """
    booster = estimator.get_booster()
    classes = int(getattr(estimator, "n_classes_", 0) or 0) if task != "regression" else 0
    if task == "regression" and int(getattr(estimator, "n_targets_", 1) or 1) > 1:
        raise ExplanationError(version, "its XGBoost regressor has several targets")
    return _XgboostContributions(booster, float(estimator.missing), classes if classes > 2 else 1)


class _XgboostContributions:
    def __init__(self, booster: Any, missing: float, outputs: int) -> None:
        self.outputs = outputs
        self._booster = booster
        self._missing = missing
        self._iterations = iteration_range(booster)
        self._single = _XgboostRow(booster, missing, self._iterations, margin=True)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        import xgboost

        rows = matrix.shape[0]
        data = xgboost.DMatrix(matrix, missing=self._missing, nthread=1)
        parts = np.asarray(self._booster.predict(data, pred_contribs=True,
                                                 iteration_range=self._iterations),
                           dtype=np.float64).reshape(rows, self.outputs, -1)
        # float32 rounding between XGBoost's parts and its margin goes to the bias (module doc)
        parts[:, :, -1] += self.raw_scores(matrix) - parts.sum(axis=2)
        return parts

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[0] == 1:
            raw = self._single(matrix[0])
        else:
            raw = self._booster.inplace_predict(matrix, iteration_range=self._iterations,
                                                predict_type="margin", missing=self._missing)
        return np.asarray(raw, dtype=np.float64).reshape(matrix.shape[0], self.outputs)


def catboost_contributions(estimator: Any, task: Task, version: str, num_threads: int = 1
                           ) -> _CatboostContributions:
    """The contributions of a fitted ``CatBoostClassifier`` or ``CatBoostRegressor``.

    Raises:
        ExplanationError: If the model reads categorical or text features itself.
    """
    if estimator.get_cat_feature_indices() or estimator.get_text_feature_indices():
        raise ExplanationError(version, "its CatBoost model reads categorical or text features "
                               "itself")
    classes = int(len(getattr(estimator, "classes_", []))) if task != "regression" else 0
    return _CatboostContributions(estimator, classes if classes > 2 else 1,
                                  num_threads if num_threads > 0 else -1)


class _CatboostContributions:
    def __init__(self, estimator: Any, outputs: int, threads: int) -> None:
        self.outputs = outputs
        self._estimator = estimator
        self._threads = threads  # -1: every core

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        import catboost

        parts = self._estimator.get_feature_importance(
            data=catboost.Pool(matrix), type="ShapValues", thread_count=self._threads)
        return np.asarray(parts, dtype=np.float64).reshape(matrix.shape[0], self.outputs, -1)

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        raw = self._estimator.predict(matrix, prediction_type="RawFormulaVal", thread_count=1)
        return np.asarray(raw, dtype=np.float64).reshape(matrix.shape[0], self.outputs)
