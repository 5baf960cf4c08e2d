"""Losses for non-negative regression targets: LightGBM also searches Poisson and Tweedie when
no target value is negative, and only then (a real search on diamonds' prices)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from optuna.trial import TrialState

from flywheel.core.spec import ProjectSpec
from flywheel.data import infer_schema
from flywheel.training import (
    WARM_START_ATTR,
    SearchProblem,
    cv_folds,
    resolve_learners,
    run_search,
    warm_start_trial,
)
from flywheel.training._candidates import nonnegative_regression
from flywheel.training._warm_start import DEFAULTS_ATTR
from tests.conftest import DIAMONDS

CHAMPION = {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10,
            "colsample_bytree": 0.8, "subsample": 0.9, "reg_alpha": 1e-3, "reg_lambda": 1e-2,
            "objective": "poisson"}


def _spec() -> ProjectSpec:
    return ProjectSpec.model_validate({
        "name": "t", "data": {"path": "t.csv"},
        "target": {"column": "price", "task": "regression"},
        "training": {"cv_folds": 3, "learners": ["lightgbm"], "metric": "rmse",
                     "search": {"seed": 0, "trials": 2}},
    })


def _problem(tmp_path: Path, shift: float = 0.0) -> SearchProblem:
    frame = pd.read_parquet(DIAMONDS).sample(600, random_state=0).reset_index(drop=True)
    frame["price"] = frame["price"] - shift
    schema = infer_schema(frame, "price")
    y = frame["price"].to_numpy(float)
    return SearchProblem(frame=frame[schema.feature_columns], y=y,
                         folds=cv_folds(y, task="regression", k=3, seed=0), schema=schema,
                         spec=_spec(), metric_name="rmse",
                         storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="t-1",
                         n_jobs=1)


def test_lightgbm_searches_poisson_and_tweedie_only_for_a_target_that_is_never_negative(
        ) -> None:
    training = _spec().training
    (nonnegative,) = resolve_learners(training, nonnegative_target=True)
    (signed,) = resolve_learners(training)
    assert nonnegative.space["objective"].choices == ["regression", "poisson", "tweedie"]
    assert nonnegative.defaults is not None and nonnegative.defaults["objective"] == "regression"
    assert "objective" not in signed.space and "objective" not in (signed.defaults or {})
    assert nonnegative_regression("regression", np.array([0.0, 3.5]))
    assert not nonnegative_regression("regression", np.array([-0.1, 3.5]))
    assert not nonnegative_regression("binary", np.array([0, 1]))


def test_a_poisson_champion_warm_starts_a_price_search_and_the_defaults_keep_squared_error(
        tmp_path: Path) -> None:
    problem = _problem(tmp_path)
    assert problem.nonnegative_target
    warm, _ = warm_start_trial(problem.spec.training, source="version 1 (champion)",
                               learner="lightgbm", params=CHAMPION, nonnegative_target=True)
    trials = run_search(dataclasses.replace(problem, warm_start=warm)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0].params["lightgbm.objective"] == "poisson"
    assert WARM_START_ATTR in trials[0].user_attrs
    assert trials[1].params["lightgbm.objective"] == "regression"
    assert trials[1].user_attrs[DEFAULTS_ATTR] == "lightgbm"
    # The search scores the project's metric on the predictions (prices), not the log link.
    assert all(200 < t.value < 3000 for t in trials)


def test_a_target_with_negative_values_skips_a_poisson_champion_and_never_tries_a_log_link(
        tmp_path: Path) -> None:
    problem = _problem(tmp_path, shift=1000.0)
    assert not problem.nonnegative_target
    warm, message = warm_start_trial(problem.spec.training, source="version 1 (champion)",
                                     learner="lightgbm", params=CHAMPION)
    assert warm is None and "unknown ['objective']" in message
    trials = run_search(problem).trials
    assert all("lightgbm.objective" not in t.params for t in trials)
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_champion_from_before_the_loss_was_searched_warm_starts_with_squared_error() -> None:
    earlier = {k: v for k, v in CHAMPION.items() if k != "objective"}
    warm, message = warm_start_trial(_spec().training, source="version 1 (champion)",
                                     learner="lightgbm", params=earlier, nonnegative_target=True)
    assert warm is not None, message
    assert warm.params["lightgbm.objective"] == "regression"
