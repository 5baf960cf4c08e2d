"""The Optuna search on a real study (SQLite in a tmp dir): budgets and resumption."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.core.errors import TrainingError
from flywheel.core.spec import ProjectSpec
from flywheel.data import infer_schema
from flywheel.training import SearchProblem, cv_folds, encode_target, run_search


def _problem(tmp_path: Path, *, learner: dict[str, object] | None = None,
             search: dict[str, object] | None = None, k: int = 3) -> SearchProblem:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    frame["y"] = np.where(frame["x"] + rng.normal(scale=0.5, size=300) > 0, "yes", "no")
    schema = infer_schema(frame, "y")
    custom = [{"name": "custom", **learner}] if learner else []
    spec = ProjectSpec.model_validate({
        "name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
        "training": {"cv_folds": k, "learners": ["custom"] if learner else ["linear"],
                     "custom_learners": custom, "search": {"seed": 0, **(search or {})}},
    })
    y, _ = encode_target(frame["y"], spec.target)
    return SearchProblem(frame=frame[["x", "z"]], y=y, folds=cv_folds(y, task="binary", k=k,
                                                                      seed=0),
                         schema=schema, spec=spec, metric_name="roc_auc",
                         storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="t-1",
                         n_jobs=1)


SLOW = {"estimator": "tests.estimators.SlowClassifier", "params": {"seconds": 2.0}}


def test_the_budget_stops_a_running_trial_and_keeps_the_folds_it_finished(
        tmp_path: Path) -> None:
    problem = _problem(tmp_path, learner=SLOW, search={"trials": 5, "timeout_seconds": 7.0},
                       k=5)
    started = time.monotonic()
    result = run_search(problem)
    took = time.monotonic() - started
    assert took < 7.9  # one trial alone needs 5 folds x 2 s, after the study is created
    (trial,) = result.trials
    scored = trial.user_attrs["folds_scored"]
    assert 1 <= scored <= 3
    assert f"ran out during fold {scored + 1} of 5" in trial.user_attrs["stopped"]
    assert result.deadline_hit and result.best_value == pytest.approx(
        trial.user_attrs["cv"]["roc_auc"])


def test_a_budget_too_short_for_one_fold_is_a_clear_error(tmp_path: Path) -> None:
    problem = _problem(tmp_path, learner=SLOW, search={"timeout_seconds": 1.0})
    started = time.monotonic()
    with pytest.raises(TrainingError, match="time budget of 1 s ran out before the first trial"):
        run_search(problem)
    assert time.monotonic() - started < 3.5


def test_a_budget_without_a_trial_count_searches_until_the_budget(tmp_path: Path) -> None:
    problem = _problem(tmp_path, search={"trials": None, "timeout_seconds": 4.0})
    started = time.monotonic()
    result = run_search(problem)
    assert 3.5 < time.monotonic() - started < 6.0
    assert result.deadline_hit and result.new_trials >= 2


def test_a_resumed_search_says_so_and_records_only_its_own_trials(tmp_path: Path) -> None:
    problem = _problem(tmp_path, search={"trials": 3})
    first: list[int] = []
    run_search(problem, record=lambda t: first.append(t.number))
    second: list[int] = []
    problem = _problem(tmp_path, search={"trials": 5})
    result = run_search(problem, record=lambda t: second.append(t.number), recorded=first)
    assert first == [0, 1, 2] and second == [3, 4]
    assert result.resumed == 3 and result.new_trials == 2
