"""Training: candidate learners, splits, and the Optuna search over them."""

from __future__ import annotations

from flywheel.training._candidates import BUILTIN_LEARNERS, Learner, resolve_learners
from flywheel.training._cv import cv_folds, holdout_split
from flywheel.training._search import (
    SearchProblem,
    SearchResult,
    TrialProgress,
    default_n_jobs,
    run_search,
    study_progress,
)
from flywheel.training._target import TargetEncoding, encode_target

__all__ = [
    "BUILTIN_LEARNERS",
    "Learner",
    "SearchProblem",
    "SearchResult",
    "TargetEncoding",
    "TrialProgress",
    "cv_folds",
    "default_n_jobs",
    "encode_target",
    "holdout_split",
    "resolve_learners",
    "run_search",
    "study_progress",
]
