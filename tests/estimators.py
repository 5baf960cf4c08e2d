"""Estimators for tests that plug in by import path (training.custom_learners)."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np
from lightgbm import LGBMClassifier
from scipy.special import expit
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


class WeakClassifier(ClassifierMixin, BaseEstimator):
    """A deliberately poor but well-behaved model: a logistic curve of the first feature,
    centred on its training mean (each row scored on its own, so it passes the gates)."""

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength

    def fit(self, x: Any, y: Any) -> WeakClassifier:
        x = np.asarray(x, dtype=float)
        self.classes_ = np.unique(y)
        self.centre_ = float(np.nanmean(x[:, 0]))
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        score = expit(self.strength * (np.nan_to_num(x[:, 0], nan=self.centre_) - self.centre_))
        return np.column_stack([1 - score, score])

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


class ChaosClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM that raises on a share of calls in a process where $FLYWHEEL_CHAOS holds that
    share (a server under test); elsewhere (training, gates) it never fails."""

    def __init__(self, n_estimators: int = 100) -> None:
        self.n_estimators = n_estimators

    def fit(self, x: Any, y: Any) -> ChaosClassifier:
        self.model_ = LGBMClassifier(n_estimators=self.n_estimators, n_jobs=1, verbose=-1,
                                     random_state=0)
        self.model_.fit(x, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        rate = float(os.environ.get("FLYWHEEL_CHAOS") or 0.0)
        if rate and random.random() < rate:
            raise RuntimeError("chaos: injected failure")
        return self.model_.predict_proba(x)

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


class SlowClassifier(ClassifierMixin, BaseEstimator):
    """Computes for ``seconds`` in fit (a long fit in Python, as a big model's is), then
    predicts like WeakClassifier."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def fit(self, x: Any, y: Any) -> SlowClassifier:
        end = time.perf_counter() + self.seconds
        block = np.ones((64, 64))
        while time.perf_counter() < end:
            block = np.tanh(block @ block / 64)
        self.classes_ = np.unique(y)
        self.centre_ = float(np.nanmean(np.asarray(x, dtype=float)[:, 0]))
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        score = expit(np.nan_to_num(x[:, 0], nan=self.centre_) - self.centre_)
        return np.column_stack([1 - score, score])

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]
