"""Warm starts: the champion's settings checked against the search space, and enqueued as the
first trial of a new study (a real Optuna study on SQLite)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from flywheel.core.spec import ProjectSpec
from flywheel.training import (
    BUILTIN_LEARNERS,
    WARM_START_ATTR,
    run_search,
    warm_start_trial,
)
from flywheel.training._warm_start import DEFAULTS_ATTR, default_trials
from tests.conftest import search_problem

LGBM = {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10,
        "colsample_bytree": 0.8, "subsample": 0.9, "reg_alpha": 1e-3, "reg_lambda": 1e-2}


def _spec(learners: list[str], sampler: str = "tpe") -> ProjectSpec:
    return ProjectSpec.model_validate({
        "name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
        "training": {"cv_folds": 3, "learners": learners,
                     "search": {"seed": 0, "trials": 2, "sampler": sampler}},
    })


def test_the_champions_settings_become_optunas_names_for_the_first_trial() -> None:
    warm, message = warm_start_trial(_spec(["lightgbm", "linear"]).training,
                                     source="version 3 (champion)", learner="lightgbm",
                                     params=LGBM)
    assert warm is not None and warm.learner == "lightgbm"
    assert warm.params == {"learner": "lightgbm", **{f"lightgbm.{k}": v for k, v in LGBM.items()}}
    assert message == ("warm-started from version 3 (champion): the first trial is its lightgbm "
                       "parameters")


def test_a_learner_outside_the_search_is_skipped_with_the_reason() -> None:
    warm, message = warm_start_trial(_spec(["linear"]).training, source="version 3 (champion)",
                                     learner="lightgbm", params=LGBM)
    assert warm is None
    assert message == ("not warm-started from version 3 (champion): its learner 'lightgbm' is "
                       "not in training.learners (linear)")


def test_parameters_that_do_not_fit_the_space_are_skipped_with_the_reason() -> None:
    spec = _spec(["lightgbm"]).training
    out_of_range = {**LGBM, "num_leaves": 1000}
    assert "lightgbm.num_leaves = 1000 is outside the search range [7, 255]" in \
        warm_start_trial(spec, source="v", learner="lightgbm", params=out_of_range)[1]
    missing = {k: v for k, v in LGBM.items() if k != "subsample"}
    assert "missing ['subsample']" in warm_start_trial(spec, source="v", learner="lightgbm",
                                                       params=missing)[1]
    assert "not warm-started from v: the grid sampler" in warm_start_trial(
        _spec(["lightgbm"], "grid").training, source="v", learner="lightgbm", params=LGBM)[1]
    assert warm_start_trial(spec, source="v", learner=None, params=None)[0] is None


def test_a_new_study_runs_the_warm_start_first_and_a_resumed_one_is_not_seeded_again(
        tmp_path: Path) -> None:
    spec = _spec(["linear", "random_forest"])
    warm, _ = warm_start_trial(spec.training, source="version 1 (champion)", learner="linear",
                               params={"C": 0.037})
    problem = dataclasses.replace(search_problem(tmp_path, spec), warm_start=warm)
    first = run_search(problem, n_trials=1).trials
    assert [t.params for t in first] == [{"learner": "linear", "linear.C": 0.037}]
    assert first[0].user_attrs[WARM_START_ATTR] == "version 1 (champion)"
    again = run_search(problem, n_trials=2).trials
    assert len(again) == 2 and WARM_START_ATTR not in again[1].user_attrs


def _defaults_spec(learners: list[str], *, trials: int, **search: object) -> ProjectSpec:
    return ProjectSpec.model_validate({
        "name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
        "training": {"cv_folds": 3, "learners": learners,
                     "search": {"seed": 0, "trials": trials, **search}},
    })


def test_a_new_study_tries_each_learners_defaults_first_and_marks_them(tmp_path: Path) -> None:
    spec = _defaults_spec(["linear", "random_forest"], trials=3)
    trials = run_search(search_problem(tmp_path, spec)).trials
    forest = BUILTIN_LEARNERS["random_forest"].defaults
    assert forest is not None
    assert trials[0].params == {"learner": "linear", "linear.C": 1.0}
    assert trials[1].params == {"learner": "random_forest",
                                **{f"random_forest.{k}": v for k, v in forest.items()}}
    assert [t.user_attrs.get(DEFAULTS_ATTR) for t in trials] == ["linear", "random_forest", None]


def test_the_warm_start_runs_before_the_defaults(tmp_path: Path) -> None:
    spec = _defaults_spec(["linear", "random_forest"], trials=2)
    warm, _ = warm_start_trial(spec.training, source="version 1 (champion)", learner="linear",
                               params={"C": 0.037})
    problem = dataclasses.replace(search_problem(tmp_path, spec), warm_start=warm)
    trials = run_search(problem).trials
    assert trials[0].params["linear.C"] == 0.037 and WARM_START_ATTR in trials[0].user_attrs
    assert trials[1].user_attrs[DEFAULTS_ATTR] == "linear"


def test_a_cap_below_the_defaults_runs_only_the_cap_and_a_resumed_study_runs_the_rest(
        tmp_path: Path) -> None:
    spec = _defaults_spec(["linear", "random_forest"], trials=1)
    problem = search_problem(tmp_path, spec)
    first = run_search(problem).trials  # the waiting default is not a trial of the result
    assert [t.user_attrs.get(DEFAULTS_ATTR) for t in first] == ["linear"]
    again = run_search(problem, n_trials=2).trials
    assert [t.user_attrs.get(DEFAULTS_ATTR) for t in again] == ["linear", "random_forest"]


def test_defaults_first_off_leaves_every_trial_to_the_sampler(tmp_path: Path) -> None:
    spec = _defaults_spec(["linear"], trials=2, defaults_first=False)
    trials = run_search(search_problem(tmp_path, spec)).trials
    assert all(DEFAULTS_ATTR not in t.user_attrs for t in trials)
    assert trials[0].params["linear.C"] != 1.0
    assert default_trials(spec.training) == []
    grid = _defaults_spec(["linear"], trials=2, sampler="grid")
    assert default_trials(grid.training) == []


def test_every_built_in_learners_defaults_lie_inside_its_search_space() -> None:
    for name, learner in BUILTIN_LEARNERS.items():
        spec = _defaults_spec([name], trials=1).training
        if learner.package is not None and learner.package not in sys.modules:
            try:
                __import__(learner.package)
            except ImportError:
                continue
        (start,) = default_trials(spec)
        assert start.params == {f"{name}.{k}": v for k, v in (learner.defaults or {}).items()}
