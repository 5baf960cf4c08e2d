"""LightGBM for the serving fast path: ``booster_.predict`` for batches, and LightGBM's
single-row C API for one row.

``Booster.predict`` spends about 60 µs in Python per call (it builds a predictor object and a
parameter string every time) on top of the tree walk, which is what a one-record request pays.
``LGBM_BoosterPredictForMatSingleRowFast`` keeps one prepared predictor: the call is the tree
walk and a ctypes call, about ten times cheaper, with the same result bit for bit (the same
C++ predictor runs; ``verify_compiled`` checks single records through this path).
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from flywheel.core.errors import CompileError

Predict = Callable[[np.ndarray], np.ndarray]
_PREDICT_NORMAL = 0
_FLOAT64 = 1


def lightgbm_predict(estimator: Any, classify: bool, where: str, num_threads: int) -> Predict:
    """The exact ``predict_proba`` (classifiers) or ``predict`` (regressors) of ``estimator``
    on an encoded float64 matrix."""
    import lightgbm

    name = type(estimator).__name__
    wanted = lightgbm.LGBMClassifier if classify else lightgbm.LGBMRegressor
    if not isinstance(estimator, wanted):
        raise CompileError(where, name, f"expected an {wanted.__name__} for this task")
    if callable(estimator.objective):
        raise CompileError(where, name, "a custom objective makes predict_proba return raw "
                           "scores")
    booster = estimator.booster_
    # What LGBMModel.predict passes besides the data that can change the output: prediction
    # early stopping. The thread count it passes (n_jobs) changes only the speed.
    params: dict[str, Any] = {k: v for k, v in estimator.get_params().items()
                              if k.startswith("pred_early_stop")}
    params["num_threads"] = num_threads
    binary = classify and estimator.n_classes_ == 2
    single = _SingleRow.create(booster, params)

    def predict(matrix: np.ndarray) -> np.ndarray:
        if single is not None and matrix.shape[0] == 1:
            result = single(matrix[0])
        else:  # num_iteration=None: the booster's best iteration, as LGBMModel.predict does
            result = np.asarray(booster.predict(matrix, raw_score=False, num_iteration=None,
                                                **params))
        if binary:  # predict_proba's np.vstack((1.0 - p, p)).T, without its overhead
            out = np.empty((result.shape[0], 2), dtype=np.float64)
            out[:, 1] = result
            np.subtract(1.0, result, out=out[:, 0])
            return out
        return result

    return predict


class _SingleRow:
    """One row through LightGBM's prepared single-row predictor (thread-safe)."""

    def __init__(self, lib: Any, config: ctypes.c_void_p, features: int, outputs: int) -> None:
        self._lib = lib
        self._config = config
        self._row = np.empty(features, dtype=np.float64)
        self._out = np.empty(outputs, dtype=np.float64)
        self._out_len = ctypes.c_int64()
        self._args = (config, self._row.ctypes.data_as(ctypes.c_void_p),
                      ctypes.byref(self._out_len),
                      self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        self._outputs = outputs
        self._lock = threading.Lock()
        weakref.finalize(self, lib.LGBM_FastConfigFree, config)

    @classmethod
    def create(cls, booster: Any, params: dict[str, Any], *,
               predict_type: int = _PREDICT_NORMAL) -> _SingleRow | None:
        """None when this LightGBM build lacks the single-row API (batches still work).

        ``predict_type`` 3 (``C_API_PREDICT_CONTRIB``) gives the tree contributions instead.
        """
        from lightgbm import basic

        # LightGBM binds its C library only privately; the single-row C API has no Python
        # wrapper that skips the per-call checks, which is what this module is for.
        lib = basic._LIB  # type: ignore[attr-defined]
        if not hasattr(lib, "LGBM_BoosterPredictForMatSingleRowFastInit"):
            return None
        features = booster.num_feature()
        # As Booster.predict(num_iteration=None): the best iteration if early stopping found
        # one, else all (-1).
        iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        config = ctypes.c_void_p()
        status = lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle, ctypes.c_int(predict_type), ctypes.c_int(0),
            ctypes.c_int(iterations), ctypes.c_int(_FLOAT64), ctypes.c_int32(features),
            basic._c_str(basic._param_dict_to_str(params)), ctypes.byref(config))
        if status != 0:
            return None
        outputs = booster.num_model_per_iteration()
        if predict_type != _PREDICT_NORMAL:  # one value per feature and the bias, per class
            outputs *= features + 1
        return cls(lib, config, features, outputs)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The booster's output for one row, shaped as ``Booster.predict`` shapes one row:
        (1,) for one output, (1, classes) for several."""
        with self._lock:
            self._row[:] = row
            if self._lib.LGBM_BoosterPredictForMatSingleRowFast(*self._args) != 0:
                raise RuntimeError(self._lib.LGBM_GetLastError().decode())
            out = self._out[:self._out_len.value].copy()
        return out.reshape(1, -1) if self._outputs > 1 else out
