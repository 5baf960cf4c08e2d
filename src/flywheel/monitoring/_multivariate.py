"""Multivariate drift: a domain classifier trained to tell reference rows from current rows.

Per-column tests miss a change in how columns move together. If a small gradient-boosted model
can tell which rows are the reference's, the joint distribution moved; its cross-validated ROC
AUC says how much (0.5: indistinguishable, 1: fully separated), and the columns it splits on
most say where. Both sides are drawn down to ``rows`` rows each (stated in the report); the
reference side is the raw-row sample stored with the version.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DomainClassifierResult", "domain_classifier"]

_FOLDS = 3
_TOP = 5


@dataclasses.dataclass(frozen=True)
class DomainClassifierResult:
    """The classifier's cross-validated ROC AUC and the columns that separate most.

    Attributes:
        top_columns: (column, share of the classifier's split gain), largest first.
    """

    roc_auc: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    top_columns: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"roc_auc": self.roc_auc, "threshold": self.threshold, "drifted": self.drifted,
                "reference_rows": self.reference_rows, "current_rows": self.current_rows,
                "top_columns": [list(t) for t in self.top_columns]}


def domain_classifier(reference: pd.DataFrame, current: pd.DataFrame, *, rows: int,
                      threshold: float, seed: int = 0) -> DomainClassifierResult:
    """Train and cross-validate the domain classifier on the columns both frames have.

    Raises:
        ValueError: If there are no shared columns or too few rows on either side.
    """
    import lightgbm as lgb  # imported on use: LightGBM takes a moment to load
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    columns = [c for c in reference.columns if c in current.columns]
    if not columns:
        raise ValueError("the reference sample and the window share no columns")
    rng = np.random.default_rng(seed)
    ref = _draw(reference[columns], rows, rng)
    cur = _draw(current[columns], rows, rng)
    if min(len(ref), len(cur)) < 2 * _FOLDS:
        raise ValueError(f"too few rows ({len(ref)} reference, {len(cur)} current)")
    x = _encode(pd.concat([ref, cur], ignore_index=True))
    y = np.r_[np.zeros(len(ref)), np.ones(len(cur))]
    scores = np.zeros(len(y))
    gains = np.zeros(len(columns))
    folds = StratifiedKFold(_FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(x, y):
        model = lgb.LGBMClassifier(
            n_estimators=60, num_leaves=15, learning_rate=0.1, min_child_samples=20,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, n_jobs=1,
            random_state=seed, verbose=-1, importance_type="gain")
        model.fit(x.iloc[train], y[train])
        scores[test] = np.asarray(model.predict_proba(x.iloc[test]))[:, 1]
        gains += model.feature_importances_
    auc = float(roc_auc_score(y, scores))
    total = gains.sum()
    order = np.argsort(-gains)[:_TOP]
    top = tuple((columns[i], float(gains[i] / total) if total > 0 else 0.0) for i in order
                if gains[i] > 0)
    return DomainClassifierResult(roc_auc=auc, threshold=threshold, drifted=auc >= threshold,
                                  reference_rows=len(ref), current_rows=len(cur),
                                  top_columns=top)


def _draw(frame: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    picked = np.sort(rng.choice(len(frame), size=rows, replace=False))
    return frame.iloc[picked].reset_index(drop=True)


def _encode(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers stay numbers; everything else becomes a pandas category LightGBM splits on."""
    out = {}
    for name in frame.columns:
        s = frame[name]
        if pd.api.types.is_bool_dtype(s):
            out[name] = s.astype(float)
        elif pd.api.types.is_numeric_dtype(s):
            out[name] = s.astype(float)
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[name] = s.astype("int64").astype(float).where(s.notna())
        else:
            out[name] = s.astype("string").astype("category")
    return pd.DataFrame(out)
