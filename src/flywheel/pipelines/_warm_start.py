"""The warm start of a retraining: the champion's learner and parameters, read from the run
that trained it (``flywheel.best_learner``, or ``flywheel.learner`` for versions registered
before ensembles, and ``flywheel.best_params``)."""

from __future__ import annotations

import json
import logging

from optuna.trial import FrozenTrial

from flywheel.core.errors import FlywheelError
from flywheel.core.spec import ProjectSpec
from flywheel.registry import MlflowRegistry
from flywheel.training import WARM_START_ATTR, WarmStart, warm_start_trial

__all__ = ["TAG_WARM_START", "warm_start_from", "warm_started_trial"]

TAG_WARM_START = "flywheel.warm_start"
"""Run tag: where the first trial's parameters came from, or why there was no warm start."""

log = logging.getLogger("flywheel.training")


def warm_start_from(registry: MlflowRegistry, spec: ProjectSpec, ref: str, *,
                    nonnegative_target: bool = False) -> tuple[WarmStart | None, str]:
    """The warm start from version or alias ``ref``, or None, and a sentence saying which
    (also logged); ``nonnegative_target`` as ``SearchProblem.nonnegative_target``."""
    try:
        info = registry.version_info(ref)
        tags = registry.run_tags(info.run_id) if info.run_id else {}
    except FlywheelError as exc:
        message = f"not warm-started from {ref}: {exc}"
    else:
        learner = tags.get("flywheel.best_learner") or info.tags.get("flywheel.learner")
        try:
            params = json.loads(tags.get("flywheel.best_params", "null"))
        except json.JSONDecodeError:
            params = None
        warm, message = warm_start_trial(
            spec.training, source=f"version {info.version} ({ref})", learner=learner,
            params=params if isinstance(params, dict) else None,
            nonnegative_target=nonnegative_target)
        if warm is not None:
            log.info(message)
            return warm, message
    log.info(message)
    return None, message


def warm_started_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The study's enqueued warm-start trial, if it has one."""
    return next((t for t in trials if WARM_START_ATTR in t.user_attrs), None)
