"""Warm starts: a retraining's search begins with the champion's learner and parameters.

``warm_start_trial`` checks the champion's settings against this spec's search space and turns
them into Optuna's parameter names; the search enqueues them (``study.enqueue_trial``) as the
first trial of a study that holds no trial yet, so a resumed study is not seeded twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flywheel.core.spec import ParamSpace, TrainingSpec
from flywheel.training._candidates import resolve_learners

__all__ = ["WARM_START_ATTR", "WarmStart", "warm_start_trial"]

WARM_START_ATTR = "flywheel.warm_start"
"""Trial user attribute of the enqueued trial: where its parameters came from."""


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """The first trial to run: the champion's settings in Optuna's names."""

    source: str
    """Where they came from, e.g. ``version 3 (champion)``."""
    learner: str
    params: dict[str, Any]
    """Optuna parameter names (``learner``, ``lightgbm.num_leaves``, ...) to their values."""


def warm_start_trial(spec: TrainingSpec, *, source: str, learner: str | None,
                     params: Mapping[str, Any] | None) -> tuple[WarmStart | None, str]:
    """The warm start for ``learner`` with ``params`` (without the learner prefix), or None,
    and a sentence saying which and why.

    Skipped when the learner is not in ``training.learners``, the parameters are not exactly
    its search space's, a value lies outside its range or choices, or the sampler is grid
    (whose trials are the grid's points).
    """
    def skipped(reason: str) -> tuple[None, str]:
        return None, f"not warm-started from {source}: {reason}"

    learners = {lr.name: lr for lr in resolve_learners(spec)}
    if spec.search.sampler == "grid":
        return skipped("the grid sampler runs only the grid's points")
    if not learner or params is None:
        return skipped("its run records no learner and parameters")
    if learner not in learners:
        return skipped(f"its learner {learner!r} is not in training.learners "
                       f"({', '.join(learners)})")
    space = learners[learner].space
    if set(params) != set(space):
        missing, unknown = sorted(set(space) - set(params)), sorted(set(params) - set(space))
        return skipped(f"its parameters do not fit {learner}'s search space (missing "
                       f"{missing or 'none'}, unknown {unknown or 'none'})")
    for name, value in params.items():
        problem = _outside(space[name], value)
        if problem:
            return skipped(f"{learner}.{name} = {value!r} {problem}")
    names = {f"{learner}.{k}": v for k, v in params.items()}
    if len(learners) > 1:
        names["learner"] = learner
    return (WarmStart(source, learner, names),
            f"warm-started from {source}: the first trial is its {learner} parameters")


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
