"""Multivariate drift: a domain classifier trained to tell reference rows from current rows.

Per-column tests miss a change in how columns move together. If a small gradient-boosted model
can tell which rows are the reference's, the joint distribution moved; its cross-validated ROC
AUC says how much (0.5: indistinguishable, 1: fully separated), and the columns it splits on
most say where. Both sides are drawn down to ``rows`` rows each (stated in the report); the
reference side is the raw-row sample stored with the version.

The verdict is a test with a stated false-alarm rate, plus a size: drift needs the test's
p-value below ``significance`` and the cross-validated ROC AUC at or above ``threshold``. Each
fold gives a one-sided Mann-Whitney test of "current rows score higher than reference rows" on
its held-out rows (its U statistic is that fold's ROC AUC times its pairs); given the model
fitted on the other folds, the labels of the held-out rows are exchangeable when nothing
drifted, so each fold's test is exact. The p-value is the smallest of them times the number of
folds (Bonferroni), which holds its level however the folds depend on each other. (One test on
the pooled out-of-fold scores does not: the folds' models differ, and at 5 % it flagged 7-9 %
of windows that had not drifted.) ``bench/monitor_flights.py`` measures the false-alarm rate
over 100 samples of training data.

Both sides are compared at float32 precision (numbers) and as text (everything else), each
column as the reference holds it: a float32 column read from a file and the same numbers sent as
JSON text differ in the last digits, and a classifier splitting on exact values would tell them
apart with nothing drifted (issue 13).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from flywheel.data import category_strings
from flywheel.monitoring._reference import as_numeric

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
    p_value: float = 1.0
    """The folds' smallest one-sided Mann-Whitney p-value (current rows score above reference
    rows) times the number of folds."""
    significance: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return {"roc_auc": self.roc_auc, "threshold": self.threshold,
                "p_value": self.p_value, "significance": self.significance,
                "drifted": self.drifted,
                "reference_rows": self.reference_rows, "current_rows": self.current_rows,
                "top_columns": [list(t) for t in self.top_columns]}


def domain_classifier(reference: pd.DataFrame, current: pd.DataFrame, *, rows: int,
                      threshold: float, significance: float = 0.05,
                      seed: int = 0) -> DomainClassifierResult:
    """Train and cross-validate the domain classifier on the columns both frames have.

    Args:
        threshold: Least ROC AUC that counts as drift (the size of the shift).
        significance: The test's false-alarm rate: drift needs a p-value below it.

    Raises:
        ValueError: If there are no shared columns or too few rows on either side.
    """
    import lightgbm as lgb  # imported on use: LightGBM takes a moment to load
    from scipy.stats import mannwhitneyu
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
    x = _encode(ref, cur)
    y = np.r_[np.zeros(len(ref)), np.ones(len(cur))]
    scores = np.zeros(len(y))
    gains = np.zeros(len(columns))
    fold_p = []
    folds = StratifiedKFold(_FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(x, y):
        model = lgb.LGBMClassifier(
            n_estimators=60, num_leaves=15, learning_rate=0.1, min_child_samples=20,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, n_jobs=1,
            random_state=seed, verbose=-1, importance_type="gain")
        model.fit(x.iloc[train], y[train])
        scores[test] = np.asarray(model.predict_proba(x.iloc[test]))[:, 1]
        gains += model.feature_importances_
        held = y[test] == 1
        fold_p.append(float(mannwhitneyu(scores[test][held], scores[test][~held],
                                         alternative="greater", method="asymptotic").pvalue))
    auc = float(roc_auc_score(y, scores))
    p_value = min(1.0, _FOLDS * min(fold_p))
    total = gains.sum()
    order = np.argsort(-gains)[:_TOP]
    top = tuple((columns[i], float(gains[i] / total) if total > 0 else 0.0) for i in order
                if gains[i] > 0)
    return DomainClassifierResult(roc_auc=auc, threshold=threshold,
                                  drifted=p_value < significance and auc >= threshold,
                                  reference_rows=len(ref), current_rows=len(cur),
                                  top_columns=top, p_value=p_value, significance=significance)


def _draw(frame: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    picked = np.sort(rng.choice(len(frame), size=rows, replace=False))
    return frame.iloc[picked].reset_index(drop=True)


def _encode(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Both sides stacked, each column read as the reference holds it: numbers (booleans,
    datetimes as epoch seconds) at float32 precision, anything else as text categories."""
    out: dict[str, Any] = {}
    for name in reference.columns:
        ref, cur = reference[name], current[name]
        if _is_number(ref):
            both = np.concatenate([as_numeric(ref), as_numeric(cur)])
            with np.errstate(over="ignore"):  # beyond float32's range is +-inf: still apart
                out[name] = both.astype(np.float32).astype(np.float64)
        else:
            text = pd.concat([category_strings(ref).astype("string"),
                              category_strings(cur).astype("string")], ignore_index=True)
            out[name] = text.astype("category")
    return pd.DataFrame(out)


def _is_number(values: pd.Series) -> bool:
    return bool(pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values)
                or pd.api.types.is_datetime64_any_dtype(values))
