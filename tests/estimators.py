"""Estimators for tests that plug in by import path (training.custom_learners)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class FlakyClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the training class balance; raises in fit when ``fail`` is true."""

    def __init__(self, fail: bool = False, strength: float = 1.0) -> None:
        self.fail = fail
        self.strength = strength

    def fit(self, x: Any, y: Any) -> FlakyClassifier:
        if self.fail:
            raise RuntimeError("flaky learner failed on purpose")
        self.classes_ = np.unique(y)
        self.prior_ = np.bincount(y, minlength=len(self.classes_)) / len(y)
        self.weights_ = np.zeros(np.asarray(x).shape[1])
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        score = 1 / (1 + np.exp(-self.strength * (x[:, 0] - np.nanmean(x[:, 0]))))
        return np.column_stack([1 - score, score])

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]
