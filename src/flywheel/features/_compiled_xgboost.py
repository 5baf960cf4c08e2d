"""XGBoost and CatBoost for the serving fast path.

XGBoost: ``XGBModel.predict_proba`` on one row costs about 330 µs, most of it Python around
the C call (input-type dispatch, a JSON config and an array interface built per call, then
``predict_proba``'s own reshaping). ``_XgboostRow`` builds the array interface of one
preallocated row and the config once and calls ``XGBoosterPredictFromDense`` with them, which
is what ``Booster.inplace_predict`` calls, so the result is the same bit for bit (about 85 µs;
``verify_compiled`` checks single records through this path). Batches go through
``Booster.inplace_predict``.

CatBoost: its own ``predict`` with ``thread_count=1`` (it would otherwise start a thread per
core for each call). A faster call needs a ``Pool`` per request, which costs what it saves.

Both packages are optional extras; this module imports them only when such an estimator is
compiled.
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from flywheel.core.errors import CompileError

Predict = Callable[[np.ndarray], np.ndarray]
_BST_ULONG = ctypes.c_uint64
"""XGBoost's ``bst_ulong`` (``xgboost.core.c_bst_ulong``)."""


def xgboost_predict(estimator: Any, classify: bool, where: str, num_threads: int) -> Predict:
    """The exact ``predict_proba`` (classifiers) or ``predict`` (regressors) of ``estimator``
    on an encoded float64 matrix."""
    import xgboost

    name = type(estimator).__name__
    wanted = xgboost.XGBClassifier if classify else xgboost.XGBRegressor
    if not isinstance(estimator, wanted):
        raise CompileError(where, name, f"expected an {wanted.__name__} for this task")
    if callable(estimator.objective):
        raise CompileError(where, name, "a custom objective makes predict_proba return raw "
                           "scores")
    booster = estimator.get_booster()
    booster.set_param({"nthread": num_threads})  # 0: OpenMP's default; see compile_predictor
    iterations = iteration_range(booster)
    binary = classify and estimator.n_classes_ == 2
    single = _XgboostRow(booster, estimator.missing, iterations)

    def predict(matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[0] == 1:
            result = single(matrix[0])
        else:
            result = booster.inplace_predict(matrix, iteration_range=iterations,
                                             missing=estimator.missing)
        if binary:  # predict_proba's np.vstack((1 - p, p)).T, in float32 as it computes it
            result = np.asarray(result, dtype=np.float32).reshape(-1)
            out = np.empty((result.shape[0], 2), dtype=np.float64)
            out[:, 1] = result
            out[:, 0] = np.float32(1.0) - result
            return out
        return np.asarray(result, dtype=np.float64)

    return predict


def iteration_range(booster: Any) -> tuple[int, int]:
    """The trees ``XGBModel.predict`` uses: up to the best iteration when early stopping
    recorded one, else all."""
    best = booster.attr("best_iteration")
    return (0, int(best) + 1) if best is not None else (0, 0)


class _XgboostRow:
    """One row through ``XGBoosterPredictFromDense`` with a prepared input and config
    (thread-safe)."""

    def __init__(self, booster: Any, missing: float, iterations: tuple[int, int], *,
                 margin: bool = False) -> None:
        from xgboost import core

        # XGBoost binds its C library only privately; inplace_predict rebuilds both JSON
        # strings on every call, which is most of what one row costs.
        self._lib = core._LIB
        self._check = core._check_call
        self._booster = booster
        features = booster.num_features()
        self._row = np.empty((1, features), dtype=np.float64)
        self._input = json.dumps({"data": [self._row.ctypes.data, False], "shape": [1, features],
                                  "strides": None, "typestr": "<f8", "version": 3}).encode()
        self._config = json.dumps({
            "type": 1 if margin else 0, "training": False, "iteration_begin": iterations[0],
            "iteration_end": iterations[1], "missing": float(missing), "strict_shape": False,
            "cache_id": 0}).encode()
        self._shape = ctypes.POINTER(_BST_ULONG)()
        self._dims = _BST_ULONG()
        self._preds = ctypes.POINTER(ctypes.c_float)()
        self._lock = threading.Lock()

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The booster's float32 output for one row: shape (1,) or (1, outputs)."""
        with self._lock:
            self._row[0] = row
            self._check(self._lib.XGBoosterPredictFromDense(
                self._booster.handle, self._input, self._config, None,
                ctypes.byref(self._shape), ctypes.byref(self._dims), ctypes.byref(self._preds)))
            shape = tuple(int(self._shape[i]) for i in range(self._dims.value))
            size = int(np.prod(shape))
            out = np.ctypeslib.as_array(self._preds, (size,)).copy()
        return out.reshape(shape)


def catboost_predict(estimator: Any, classify: bool, where: str) -> Predict:
    """The exact ``predict_proba`` (classifiers) or ``predict`` (regressors) of ``estimator``
    on an encoded float64 matrix, on one thread."""
    import catboost

    name = type(estimator).__name__
    wanted = catboost.CatBoostClassifier if classify else catboost.CatBoostRegressor
    if not isinstance(estimator, wanted):
        raise CompileError(where, name, f"expected a {wanted.__name__} for this task")
    if estimator.get_cat_feature_indices() or estimator.get_text_feature_indices():
        raise CompileError(where, name, "it reads categorical or text features itself")
    if classify:
        return lambda matrix: np.asarray(estimator.predict_proba(matrix, thread_count=1),
                                         dtype=np.float64)
    return lambda matrix: np.asarray(estimator.predict(matrix, thread_count=1), dtype=np.float64)
