"""The refit after the search: the best trial's model, or, with ``training.ensemble.size``
above 1, the greedy ensemble of trials (``training.select_from_search``), each member refit on
all search rows with its own parameters as the single best is."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from flywheel.core.spec import ProjectSpec, Task
from flywheel.data import DataSchema
from flywheel.evaluation import get_metric, predict_scores
from flywheel.features import build_feature_pipeline
from flywheel.pipelines._train_parts import refit
from flywheel.training import (
    EnsembleModel,
    EnsembleOutcome,
    Learner,
    SearchProblem,
    SearchResult,
    TrialSettings,
    default_n_jobs,
    select_from_search,
)

__all__ = ["ENSEMBLE_LEARNER", "FittedModel", "ensemble_card_rows", "refit_model"]

ENSEMBLE_LEARNER = "ensemble"
"""The ``flywheel.learner`` of a version that is an ensemble."""


@dataclasses.dataclass(frozen=True)
class FittedModel:
    """The model to evaluate and register, and how it was chosen."""

    model: Any
    learner: str
    """The best trial's learner, or ``ensemble``."""
    outcome: EnsembleOutcome | None = None
    """The ensemble selection (None: ``training.ensemble.size`` is 1)."""

    @property
    def is_ensemble(self) -> bool:
        return isinstance(self.model, EnsembleModel)

    def summary(self, y_holdout: np.ndarray, holdout: pd.DataFrame, task: Task,
                metric: str, ensemble_holdout: float) -> dict[str, Any]:
        """The ensemble's record (members, weights, out-of-fold and holdout gains over the
        best trial); empty for a single model."""
        if not self.is_ensemble or self.outcome is None or self.outcome.selection is None:
            return {}
        best = self.model.members_[0]
        scorer = get_metric(task, metric)
        single = float(scorer.compute(y_holdout, predict_scores(best, holdout, task)))
        gain = ensemble_holdout - single if scorer.greater_is_better else single - ensemble_holdout
        selection = self.outcome.selection
        return {**selection.describe(), "metric": metric, "holdout_score": ensemble_holdout,
                "holdout_best_single": single, "holdout_gain": gain,
                "oof_gain": selection.gain, "rescored": self.outcome.rescored,
                "params": [m.params for m in self.outcome.members]}


def refit_model(problem: SearchProblem, result: SearchResult, x: pd.DataFrame, y: np.ndarray,
                learners: dict[str, Learner], notes: list[str]) -> FittedModel:
    """The single best trial refit (``size: 1``, exactly as before ensembles existed, or when
    the best trial alone scores best out of fold), or the selected ensemble fitted on ``x``.

    Why no ensemble was built is appended to ``notes``.
    """
    spec, schema = problem.spec, problem.schema
    if spec.training.ensemble.size <= 1:
        return FittedModel(refit(x, y, schema, spec, learners[result.learner], result),
                           result.learner)
    outcome = select_from_search(problem, result)
    selection = outcome.selection
    if selection is None or len(selection.members) < 2:
        notes.append("ensemble: " + (outcome.reason or "the best trial alone scored best on "
                                     "the out-of-fold predictions; it is the model"))
        return FittedModel(refit(x, y, schema, spec, learners[result.learner], result),
                           result.learner, outcome)
    members = [member_pipeline(schema, spec, learners[m.learner], m) for m in outcome.members]
    model = EnsembleModel(members=members, weights=list(selection.weights),
                          task=spec.target.task, trials=list(selection.members)).fit(x, y)
    return FittedModel(model, ENSEMBLE_LEARNER, outcome)


def member_pipeline(schema: DataSchema, spec: ProjectSpec, learner: Learner,
                    trial: TrialSettings) -> Pipeline:
    """An unfitted pipeline of the feature step and ``trial``'s estimator, with the boosting
    rounds its folds stopped at (as ``refit`` sets them for the best trial)."""
    params = dict(trial.params)
    if learner.early_stopping and trial.n_estimators:
        params["n_estimators"] = max(1, int(trial.n_estimators))
    features = build_feature_pipeline(schema, spec.features, task=spec.target.task,
                                      scale_numeric=learner.scale_numeric)
    estimator = learner.build(params, spec.target.task, spec.training.search.seed,
                              default_n_jobs(1))
    return Pipeline([("features", features), ("model", estimator)])


def ensemble_card_rows(record: dict[str, Any]) -> dict[str, str]:
    """The card's facts about an ensemble: members with weights, and its gains."""
    members = ", ".join(f"trial {n} ({learner}) {w:.3f}" for n, learner, w in
                        zip(record["members"], record["learners"], record["weights"],
                            strict=True))
    metric = record["metric"]
    return {
        "ensemble members (weight)": members,
        f"ensemble {metric}, out of fold": (f"{record['oof_score']:.4f} vs best trial "
                                            f"{record['oof_best_single']:.4f} "
                                            f"({record['oof_gain']:+.4f}, "
                                            f"{record['oof_rows']:,} rows)"),
        f"ensemble {metric}, holdout": (f"{record['holdout_score']:.4f} vs best trial "
                                        f"{record['holdout_best_single']:.4f} "
                                        f"({record['holdout_gain']:+.4f})"),
        "ensemble members' parameters": json.dumps(record["params"]),
    }
