"""Greedy ensemble selection over the search's trials (Caruana et al., ICML 2004).

The search keeps each finished trial's out-of-fold predictions (``OofStore``: float32, the
positive class's probability for a binary task, bounded to the best ``candidates`` trials by CV
score plus the best trial of each learner). After the search, ``select_ensemble`` starts from
the study's best trial and adds, ``rounds`` times and with replacement, the kept trial whose
addition gives the best metric of the averaged out-of-fold predictions, once ``size`` distinct
members are in only those. The ensemble is the best prefix of those steps, so its out-of-fold
score is never below the best trial's; a member's weight is its share of the prefix's steps.

``EnsembleModel`` is the estimator registered for such an ensemble: fitting it fits a clone of
each member pipeline on the same rows, and it predicts the weighted average of its members'
probabilities (classification) or values (regression).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from flywheel.core.errors import TrainingError
from flywheel.evaluation import Metric

__all__ = ["EnsembleModel", "EnsembleSelection", "KeptTrial", "OofStore", "select_ensemble"]


@dataclasses.dataclass(frozen=True)
class KeptTrial:
    """One finished trial's out-of-fold predictions (NaN where a row was in no validation
    fold, as with time-ordered folds)."""

    number: int
    learner: str
    score: float
    """The trial's CV score (mean of its folds' metric), which ranks it."""
    oof: np.ndarray
    """float32; (rows,) for regression and binary (the positive class), (rows, classes)."""


class OofStore:
    """The kept trials: the best ``capacity`` by CV score, plus the best trial of each learner.

    Args:
        capacity: How many trials to keep overall (besides each learner's best).
        greater_is_better: The metric's direction.
    """

    def __init__(self, capacity: int, *, greater_is_better: bool) -> None:
        self.capacity = capacity
        self.greater_is_better = greater_is_better
        self._kept: dict[int, KeptTrial] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, number: object) -> bool:
        return number in self._kept

    def add(self, number: int, learner: str, score: float, prediction: np.ndarray) -> None:
        """Keep a trial's out-of-fold predictions (``prediction`` as the objective scores
        them: (rows, 2) for binary is stored as its positive column), then drop any kept trial
        neither among the best ``capacity`` nor the best of its learner."""
        if not np.isfinite(score):
            return
        oof = prediction[:, 1] if prediction.ndim == 2 and prediction.shape[1] == 2 \
            else prediction
        self._kept[number] = KeptTrial(number, learner, float(score),
                                       np.asarray(oof, dtype=np.float32))
        ranked = self.ranked()
        keep = {t.number for t in ranked[:self.capacity]}
        learners: set[str] = set()
        for t in ranked:
            if t.learner not in learners:  # each learner's best, so the library spans them
                keep.add(t.number)
                learners.add(t.learner)
        self._kept = {n: t for n, t in self._kept.items() if n in keep}

    def keep(self, trial: Any, learner: str, score: float, prediction: np.ndarray) -> None:
        """``add`` in the objective's ``keep`` form (an Optuna trial first)."""
        self.add(int(trial.number), learner, score, prediction)

    def ranked(self) -> list[KeptTrial]:
        """Kept trials, best CV score first (ties: the earlier trial)."""
        sign = -1.0 if self.greater_is_better else 1.0
        return sorted(self._kept.values(), key=lambda t: (sign * t.score, t.number))

    def get(self, number: int) -> KeptTrial | None:
        return self._kept.get(number)


@dataclasses.dataclass(frozen=True)
class EnsembleSelection:
    """The members chosen, their weights, and the out-of-fold evidence for them."""

    members: tuple[int, ...]
    """Trial numbers, the best trial first, then in the order they were first chosen."""
    weights: tuple[float, ...]
    """Each member's share of the selection steps; they sum to 1."""
    learners: tuple[str, ...]
    score: float
    """The metric of the weighted out-of-fold predictions."""
    best_single: float
    """The same metric of the best trial's out-of-fold predictions alone."""
    rows: int
    """Out-of-fold rows scored (rows in some validation fold)."""
    steps: int
    """Selection steps of the chosen prefix."""
    greater_is_better: bool = True
    refit_seconds: float | None = None
    """The members' estimated refit time (None: no estimates were given)."""
    left_out: tuple[int, ...] = ()
    """Kept trials the refit limit made unavailable at some step (the selection might not
    have taken them anyway)."""

    @property
    def gain(self) -> float:
        """How much better than the best trial alone (positive: better, whichever way the
        metric points)."""
        difference = self.score - self.best_single
        return difference if self.greater_is_better else -difference

    def describe(self) -> dict[str, Any]:
        return {"members": list(self.members), "weights": [round(w, 6) for w in self.weights],
                "learners": list(self.learners), "oof_score": self.score,
                "oof_best_single": self.best_single, "oof_rows": self.rows,
                "steps": self.steps,
                **({} if self.refit_seconds is None
                   else {"refit_estimate_s": round(self.refit_seconds, 1)}),
                **({"left_out_for_refit_time": list(self.left_out)} if self.left_out else {})}


def select_ensemble(store: OofStore, y: np.ndarray, metric: Metric, *, best: int, size: int,
                    rounds: int, costs: Mapping[int, float] | None = None,
                    max_cost: float | None = None) -> EnsembleSelection:
    """Greedy forward selection with replacement, started from trial ``best``.

    ``costs`` are the trials' estimated refit seconds; with ``max_cost``, a trial joins only
    while the members' summed cost stays within it (``best`` is always in: the single model
    would be refit too). Among the others the selection still takes the best addition.

    Raises:
        TrainingError: If trial ``best`` has no kept out-of-fold predictions.
    """
    first = store.get(best)
    if first is None:
        raise TrainingError(f"the best trial ({best}) has no out-of-fold predictions kept, so "
                            "no ensemble can be selected; set training.ensemble.size: 1.")
    rows = ~np.isnan(first.oof.reshape(len(first.oof), -1)).any(axis=1)
    target = y[rows]
    library = {t.number: t.oof[rows].astype(np.float64) for t in store.ranked()
               if t.oof.shape == first.oof.shape}

    def score(prediction: np.ndarray) -> float:
        return float(metric.compute(target, prediction))

    def better(a: float, b: float) -> bool:
        return metric.better(a, b) and not np.isclose(a, b, rtol=0.0, atol=1e-12)

    cost = dict(costs or {})
    total = library[best].copy()
    counts: Counter[int] = Counter({best: 1})
    order = [best]
    left_out: set[int] = set()
    single = score(total)
    chosen = (single, 1, Counter(counts), list(order))
    for step in range(2, rounds + 1):
        allowed = list(library) if len(counts) < size else list(counts)
        if max_cost is not None:
            spent = sum(cost.get(n, 0.0) for n in counts)
            affordable = [n for n in allowed if n in counts or spent + cost.get(n, 0.0) <= max_cost]
            left_out.update(set(allowed) - set(affordable))
            allowed = affordable
        trial_scores = [(score((total + library[n]) / step), n) for n in allowed]
        value, number = trial_scores[0]
        for v, n in trial_scores[1:]:
            if better(v, value):
                value, number = v, n
        total += library[number]
        counts[number] += 1
        if number not in order:
            order.append(number)
        if better(value, chosen[0]):
            chosen = (value, step, Counter(counts), list(order))
    value, steps, picked, members = chosen
    members = [n for n in members if picked[n]]
    kept = {t.number: t for t in store.ranked()}
    return EnsembleSelection(
        members=tuple(members), weights=tuple(picked[n] / steps for n in members),
        learners=tuple(kept[n].learner for n in members), score=value, best_single=single,
        rows=int(rows.sum()), steps=steps, greater_is_better=metric.greater_is_better,
        refit_seconds=None if costs is None else sum(cost.get(n, 0.0) for n in members),
        left_out=tuple(sorted(left_out - set(members))) if max_cost is not None else ())


class EnsembleModel(BaseEstimator):  # type: ignore[misc]
    """A weighted average of fitted model pipelines, used as one model.

    Args:
        members: Unfitted pipelines (each the feature step and its learner, with the trial's
            parameters); ``fit`` fits a clone of each.
        weights: One per member, summing to 1.
        task: ``binary``, ``multiclass`` or ``regression``.
        trials: The trial number of each member, kept for the record.
    """

    def __init__(self, members: Sequence[Any] = (), weights: Sequence[float] = (),
                 task: str = "binary", trials: Sequence[int] = ()) -> None:
        self.members = members
        self.weights = weights
        self.task = task
        self.trials = trials

    def fit(self, x: Any, y: np.ndarray) -> EnsembleModel:
        """Fit a clone of every member on ``x``, ``y``.

        Raises:
            TrainingError: If the members and weights differ in number, or the weights do
                not sum to 1.
        """
        if not self.members or len(self.members) != len(self.weights):
            raise TrainingError(f"an ensemble needs one weight per member; got "
                                f"{len(self.members)} member(s), {len(self.weights)} weight(s)")
        if not np.isclose(sum(self.weights), 1.0):
            raise TrainingError(f"ensemble weights must sum to 1, got {sum(self.weights):.6g}")
        self.members_ = [clone(m).fit(x, y) for m in self.members]
        self.weights_ = [float(w) for w in self.weights]
        if self.task != "regression":
            self.classes_ = self.members_[0].classes_
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        """The weighted average of the members' class probabilities."""
        return _weighted([np.asarray(m.predict_proba(x), dtype=np.float64)
                          for m in self.members_], self.weights_)

    def predict(self, x: Any) -> np.ndarray:
        """Values (regression) or the most probable class of the averaged probabilities."""
        if self.task == "regression":
            return _weighted([np.asarray(m.predict(x), dtype=np.float64)
                              for m in self.members_], self.weights_)
        labels: np.ndarray = np.asarray(self.classes_)[self.predict_proba(x).argmax(axis=1)]
        return labels


def _weighted(outputs: list[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    total = outputs[0] * weights[0]
    for out, w in zip(outputs[1:], weights[1:], strict=True):
        total += out * w
    return total
