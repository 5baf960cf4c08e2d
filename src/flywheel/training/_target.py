"""Target encoding for learners: classes become 0..K-1 (a binary task's positive class is 1)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from flywheel.core.errors import ConfigError
from flywheel.core.spec import TargetSpec
from flywheel.data import category_strings


@dataclasses.dataclass(frozen=True)
class TargetEncoding:
    """How labels map to the integer codes models are trained on."""

    classes: tuple[str, ...]
    """Label of each code; empty for regression."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(np.asarray(self.classes, dtype=object)[codes])


def encode_target(y: pd.Series, target: TargetSpec) -> tuple[np.ndarray, TargetEncoding]:
    """Codes (classification) or floats (regression) for ``y``, and the mapping used.

    Raises:
        ConfigError: If the spec's positive class is not a label of a binary target.
    """
    if target.task == "regression":
        return y.to_numpy(dtype=float), TargetEncoding(())
    labels = category_strings(y).to_numpy(dtype=object)
    classes = sorted(set(labels))
    if target.task == "binary":
        positive = target.positive_class if target.positive_class is not None else classes[-1]
        if positive not in classes:
            raise ConfigError(f"target.positive_class: {positive!r} is not a label of "
                              f"{target.column!r} (labels: {', '.join(map(repr, classes))}).")
        classes = [c for c in classes if c != positive] + [positive]
    codes = pd.Categorical(labels, categories=classes).codes.astype(np.int64)
    return codes, TargetEncoding(tuple(classes))
