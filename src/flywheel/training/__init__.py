"""Training: candidate learners, splits, and the Optuna search over them."""

from __future__ import annotations

from flywheel.training._candidates import BUILTIN_LEARNERS, Learner, resolve_learners
from flywheel.training._cv import cv_folds, holdout_split
from flywheel.training._ensemble import EnsembleModel, EnsembleSelection, OofStore, select_ensemble
from flywheel.training._ensemble_search import (
    EnsembleOutcome,
    TrialSettings,
    refit_estimate,
    select_from_search,
    trial_settings,
)
from flywheel.training._ray_search import RayWarmUp, ray_search_workers, run_ray_search
from flywheel.training._search import (
    SearchProblem,
    SearchResult,
    TrialProgress,
    default_n_jobs,
    run_search,
    study_progress,
)
from flywheel.training._storage import SCHEMA as STUDY_SCHEMA
from flywheel.training._storage import is_shared_storage, open_storage, study_storage
from flywheel.training._target import TargetEncoding, encode_target
from flywheel.training._warm_start import WARM_START_ATTR, WarmStart, warm_start_trial

__all__ = [
    "BUILTIN_LEARNERS",
    "STUDY_SCHEMA",
    "WARM_START_ATTR",
    "EnsembleModel",
    "EnsembleOutcome",
    "EnsembleSelection",
    "Learner",
    "OofStore",
    "RayWarmUp",
    "SearchProblem",
    "SearchResult",
    "TargetEncoding",
    "TrialProgress",
    "TrialSettings",
    "WarmStart",
    "cv_folds",
    "default_n_jobs",
    "encode_target",
    "holdout_split",
    "is_shared_storage",
    "open_storage",
    "ray_search_workers",
    "refit_estimate",
    "resolve_learners",
    "run_ray_search",
    "run_search",
    "select_ensemble",
    "select_from_search",
    "study_progress",
    "study_storage",
    "trial_settings",
    "warm_start_trial",
]
