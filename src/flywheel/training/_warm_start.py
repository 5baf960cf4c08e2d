"""Where a search begins: a retraining's warm start (the champion's learner and parameters),
then each learner's known-good defaults.

``warm_start_trial`` checks the champion's settings against this spec's search space and turns
them into Optuna's parameter names; ``default_trials`` does the same for the learners'
``defaults`` (``training.search.defaults_first``). The search enqueues them
(``study.enqueue_trial``) as the first trials of a study that holds no trial yet, so a resumed
study is not seeded twice. Starting from defaults is what FLAML and AutoGluon do: a short budget
then holds at least one sound model per learner, not only the sampler's first random draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flywheel.core.spec import ParamSpace, TrainingSpec
from flywheel.training._candidates import resolve_learners

__all__ = ["DEFAULTS_ATTR", "WARM_START_ATTR", "WarmStart", "default_trials",
           "warm_start_trial"]

WARM_START_ATTR = "flywheel.warm_start"
"""Trial user attribute of the enqueued trial: where its parameters came from."""
DEFAULTS_ATTR = "flywheel.defaults"
"""Trial user attribute of an enqueued defaults trial: the learner whose defaults it runs."""


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """The first trial to run: the champion's settings in Optuna's names."""

    source: str
    """Where they came from, e.g. ``version 3 (champion)``."""
    learner: str
    params: dict[str, Any]
    """Optuna parameter names (``learner``, ``lightgbm.num_leaves``, ...) to their values."""


def warm_start_trial(spec: TrainingSpec, *, source: str, learner: str | None,
                     params: Mapping[str, Any] | None, nonnegative_target: bool = False
                     ) -> tuple[WarmStart | None, str]:
    """The warm start for ``learner`` with ``params`` (without the learner prefix), or None,
    and a sentence saying which and why.

    Skipped when the learner is not in ``training.learners``, the parameters are not exactly
    its search space's, a value lies outside its range or choices, or the sampler is grid
    (whose trials are the grid's points).
    """
    def skipped(reason: str) -> tuple[None, str]:
        return None, f"not warm-started from {source}: {reason}"

    learners = {lr.name: lr for lr in resolve_learners(spec,
                                                       nonnegative_target=nonnegative_target)}
    if spec.search.sampler == "grid":
        return skipped("the grid sampler runs only the grid's points")
    if not learner or params is None:
        return skipped("its run records no learner and parameters")
    if learner not in learners:
        return skipped(f"its learner {learner!r} is not in training.learners "
                       f"({', '.join(learners)})")
    if nonnegative_target:
        # A champion from before its learner searched its loss used the first choice.
        params = {**learners[learner].nonnegative_defaults, **params}
    misfit = _misfit(learner, learners[learner].space, params)
    if misfit:
        return skipped(misfit)
    return (WarmStart(source, learner, _optuna_names(learner, params, several=len(learners) > 1)),
            f"warm-started from {source}: the first trial is its {learner} parameters")


def _misfit(learner: str, space: Mapping[str, ParamSpace], params: Mapping[str, Any]
            ) -> str | None:
    """Why ``params`` are not a point of ``learner``'s search ``space`` (None: they are)."""
    if set(params) != set(space):
        missing, unknown = sorted(set(space) - set(params)), sorted(set(params) - set(space))
        return (f"its parameters do not fit {learner}'s search space (missing "
                f"{missing or 'none'}, unknown {unknown or 'none'})")
    for name, value in params.items():
        problem = _outside(space[name], value)
        if problem:
            return f"{learner}.{name} = {value!r} {problem}"
    return None


def _optuna_names(learner: str, params: Mapping[str, Any], *, several: bool) -> dict[str, Any]:
    """``params`` under the names the search suggests them by (and ``learner`` when the search
    chooses among several)."""
    names = {f"{learner}.{k}": v for k, v in params.items()}
    if several:
        names["learner"] = learner
    return names


def _outside(space: ParamSpace, value: Any) -> str | None:
    if space.type == "categorical":
        return None if value in (space.choices or []) else f"is not one of {space.choices}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"
    if space.type == "int" and not float(value).is_integer():
        return "is not an integer"
    low, high = float(space.low or 0.0), float(space.high or 0.0)
    if not low <= float(value) <= high:
        return f"is outside the search range [{low:g}, {high:g}]"
    return None


def default_trials(spec: TrainingSpec, *, nonnegative_target: bool = False) -> list[WarmStart]:
    """Each learner's ``defaults`` in Optuna's names, in ``training.learners`` order; none with
    ``search.defaults_first`` off or the grid sampler, none for a learner without defaults
    (custom learners) or whose defaults do not fit its space."""
    if not spec.search.defaults_first or spec.search.sampler == "grid":
        return []
    learners = resolve_learners(spec, nonnegative_target=nonnegative_target)
    return [WarmStart(f"{learner.name} defaults", learner.name,
                      _optuna_names(learner.name, learner.defaults, several=len(learners) > 1))
            for learner in learners
            if learner.defaults is not None
            and _misfit(learner.name, learner.space, learner.defaults) is None]
