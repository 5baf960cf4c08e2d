"""After the search: the ensemble's candidate trials, their out-of-fold predictions, and the
greedy selection over them.

The candidates are the study's complete trials that scored every fold (a trial the time budget
cut short scored only some): the best ``training.ensemble.candidates`` by CV score, plus the
best trial of each learner. Their out-of-fold predictions come from the search's ``OofStore``
when this process ran them; the others (trials of parallel workers, of Ray workers, or of an
earlier run the study resumes) are scored again with their own parameters on the same folds,
which is deterministic, so they equal what the trial saw.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from flywheel.evaluation import get_metric
from flywheel.training._ensemble import EnsembleSelection, OofStore, select_ensemble
from flywheel.training._search import SearchProblem, SearchResult, make_objective

__all__ = ["EnsembleOutcome", "TrialSettings", "refit_estimate", "select_from_search",
           "trial_settings"]


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """What refitting one trial needs: its learner, parameters and boosting rounds."""

    number: int
    learner: str
    params: dict[str, Any]
    """Without the learner prefix."""
    n_estimators: int | None
    score: float


@dataclasses.dataclass(frozen=True)
class EnsembleOutcome:
    """The selection, or why there is none, and what it cost."""

    selection: EnsembleSelection | None
    members: tuple[TrialSettings, ...] = ()
    """The chosen trials' settings, in the selection's order (the best trial first)."""
    reason: str | None = None
    """Why no ensemble was selected (None when one was)."""
    rescored: int = 0
    """Candidates scored again because another process or run had finished them."""


def trial_settings(trial: FrozenTrial) -> TrialSettings:
    """The learner, parameters (prefix removed) and boosting rounds of a finished trial."""
    learner = str(trial.user_attrs.get("learner"))
    prefix = f"{learner}."
    params = {k[len(prefix):]: v for k, v in trial.params.items() if k.startswith(prefix)}
    rounds = trial.user_attrs.get("n_estimators")
    return TrialSettings(trial.number, learner, params,
                         None if rounds is None else int(rounds),
                         float(trial.value if trial.value is not None else float("nan")))


def refit_estimate(trial: FrozenTrial, folds: int) -> float:
    """Seconds refitting ``trial`` on all search rows is expected to take: one fold's share of
    its run, scaled by the refit's k/(k-1) times the rows and (with early stopping) rounds."""
    if trial.datetime_start is None or trial.datetime_complete is None or folds < 2:
        return 0.0
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return seconds / folds * (folds / (folds - 1)) ** 2


def select_from_search(problem: SearchProblem, result: SearchResult) -> EnsembleOutcome:
    """Select the ensemble ``training.ensemble`` asks for from ``result``'s study.

    A selection whose best prefix is the best trial alone is returned as it is (one member):
    the caller then keeps the single model.
    """
    spec = problem.spec.training.ensemble
    metric = get_metric(problem.spec.target.task, problem.metric_name)
    complete = [t for t in result.trials if t.state == TrialState.COMPLETE
                and t.value is not None and "stopped" not in t.user_attrs]
    if not any(t.number == result.best_number for t in complete):
        return EnsembleOutcome(None, reason="the best trial was stopped by the time budget "
                               "before its last fold, so it has no out-of-fold predictions")
    sign = -1.0 if metric.greater_is_better else 1.0
    ranked = sorted(complete, key=lambda t: (sign * float(t.value or 0.0), t.number))
    chosen = {t.number: t for t in ranked[:spec.candidates]}
    learners: set[str] = set()
    for t in ranked:
        name = str(t.user_attrs.get("learner"))
        if name not in learners:
            chosen.setdefault(t.number, t)
            learners.add(name)
    store = result.oof or OofStore(len(chosen), greater_is_better=metric.greater_is_better)
    store.capacity = max(store.capacity, len(chosen))
    missing = [t for t in chosen.values() if t.number not in store]
    if missing:
        objective = make_objective(problem, None, keep=store.keep)  # one fold cache for all
        for t in missing:
            try:
                # FixedTrial answers the objective's suggest/report calls as a Trial does
                objective(cast(optuna.Trial, optuna.trial.FixedTrial(t.params, number=t.number)))
            except Exception:  # noqa: S112 - a candidate that fails now is left out
                continue
    folds = len(problem.folds)
    costs = {n: refit_estimate(t, folds) for n, t in chosen.items()}
    selection = select_ensemble(store, problem.y, metric, best=result.best_number,
                                size=spec.size, rounds=spec.rounds, costs=costs,
                                max_cost=spec.refit_seconds)
    members = tuple(trial_settings(chosen[n]) for n in selection.members)
    return EnsembleOutcome(selection, members, rescored=len(missing))
