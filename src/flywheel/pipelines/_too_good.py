"""Results too good to be true: the caveats training prints and records with the version.

A near-perfect holdout score, or one feature carrying most of the model's importance, is how a
target leak shows: a column computed from the target, or known only after it. Training cannot
tell a leak from an easy problem, so it warns, naming the features, and trains on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flywheel.core.spec import Task
from flywheel.data import DataSchema

NEAR_PERFECT = 0.99
"""Holdout ROC AUC (classification) or R² (regression) at or above this is near perfect."""
DOMINANT_SHARE = 0.5
"""One feature carrying this share of the positive permutation importance dominates."""


def too_good_warnings(task: Task, holdout: Mapping[str, float],
                      importances: Sequence[tuple[str, float, float]], schema: DataSchema
                      ) -> list[str]:
    """The caveats for a model with these holdout metrics and permutation importances
    ((column, mean drop, std), largest first); empty when nothing looks too good."""
    target = schema.target
    metric = "r2" if task == "regression" else "roc_auc"
    value = holdout.get(metric)
    positive = [(column, drop) for column, drop, _ in importances if drop > 0]
    total = sum(drop for _, drop in positive)
    leaders = ", ".join(column for column, _ in positive[:3])
    out = []
    if value is not None and value == value and value >= NEAR_PERFECT:
        out.append(f"the holdout {metric} is {value:.4f}, near perfect: check that no feature "
                   f"is computed from {target} or known only after it"
                   + (f" (the most important: {leaders})" if leaders else ""))
    if positive and total > 0 and positive[0][1] / total >= DOMINANT_SHARE:
        column, drop = positive[0]
        out.append(f"one feature, {column}, carries {drop / total:.0%} of the model's "
                   "importance (permutation, on the holdout): check that it is known when "
                   f"predicting and not derived from {target}")
    flagged = [name for name in schema.feature_columns if schema.columns[name].reason]
    if flagged:
        out.append(f"schema.yaml flags {', '.join(flagged)} as nearly determining {target} "
                   "(see each column's reason); set role: ignore for any not known when "
                   "predicting, or delete the reason once checked")
    return out
