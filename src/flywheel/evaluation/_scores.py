"""What a model says about a frame: class probabilities for a classifier, values otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import Task

__all__ = ["predict_scores"]


def predict_scores(model: Any, frame: pd.DataFrame, task: Task | str) -> np.ndarray:
    """``model.predict`` for regression, ``model.predict_proba`` otherwise, as floats.

    Classifiers give one row per input and one column per class (in the order of the
    model's ``classes_``); regression gives one value per input.
    """
    if task == "regression":
        return np.asarray(model.predict(frame), dtype=float)
    return np.asarray(model.predict_proba(frame), dtype=float)
