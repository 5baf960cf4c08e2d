"""The optional learners XGBoost and CatBoost (``training/_candidates.py``): the missing-package
error, early stopping, determinism, and a small search that registers the winner."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import ProjectSpec, TrainingSpec
from flywheel.data import infer_schema
from flywheel.training import (
    BUILTIN_LEARNERS,
    SearchProblem,
    cv_folds,
    resolve_learners,
    run_search,
)
from flywheel.training._candidates import MAX_BOOSTING_ROUNDS
from flywheel.training._deadline import Deadline, alarm
from tests.conftest import CHURN, make_project, require_learner

OPTIONAL = ("xgboost", "catboost")


def _easy(rows: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


def _fit_early(name: str, task: str = "binary", seed: int = 0) -> tuple[Any, int]:
    learner = BUILTIN_LEARNERS[name]
    x, y = _easy()
    target: Any = y if task == "binary" else x[:, 0] + x[:, 1]
    estimator = learner.build({"learning_rate": 0.3}, task, seed, 1)  # type: ignore[arg-type]
    assert learner.fit_early is not None
    rounds = learner.fit_early(estimator, x[:900], target[:900], x[900:], target[900:])
    return estimator, rounds


@pytest.mark.parametrize("name", OPTIONAL)
def test_choosing_an_optional_learner_that_is_not_installed_is_a_config_error_naming_its_extra(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # how Python blocks an import
    extra = f'pip install "flywheel\\[{name}\\]"'
    with pytest.raises(ConfigError, match=f"training.learners: '{name}' needs the {name} "
                                          f"package, which is not installed; install it with "
                                          f"`{extra}`"):
        resolve_learners(TrainingSpec(learners=["lightgbm", name]))
    with pytest.raises(ConfigError, match=extra):  # the build, in a worker that skipped it
        BUILTIN_LEARNERS[name].build({}, "binary", 0, 1)


@pytest.mark.parametrize("name", OPTIONAL)
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_early_stopping_stops_well_before_the_round_cap_and_predicts_with_the_best_round(
        name: str, task: str) -> None:
    require_learner(name)
    estimator, rounds = _fit_early(name, task)
    assert 1 <= rounds < MAX_BOOSTING_ROUNDS // 4
    if name == "xgboost":
        assert estimator.best_iteration + 1 == rounds
    else:  # use_best_model: the trees past the best iteration are dropped
        assert estimator.tree_count_ == rounds


@pytest.mark.parametrize("name", OPTIONAL)
def test_the_same_seed_fits_the_same_model_and_another_seed_another(name: str) -> None:
    require_learner(name)
    x, y = _easy()
    params = {"n_estimators": 30, "subsample": 0.7}
    fits = [BUILTIN_LEARNERS[name].build(params, "binary", seed, 2).fit(x, y).predict_proba(x)
            for seed in (0, 0, 1)]
    np.testing.assert_array_equal(fits[0], fits[1])
    assert np.abs(fits[0] - fits[2]).max() > 0


@pytest.mark.parametrize("name", OPTIONAL)
def test_the_thread_count_asked_for_reaches_the_estimator(name: str) -> None:
    require_learner(name)
    params = BUILTIN_LEARNERS[name].build({}, "binary", 0, 3).get_params()
    assert params["n_jobs" if name == "xgboost" else "thread_count"] == 3


@pytest.mark.parametrize("name", OPTIONAL)
def test_the_deadline_stops_a_fit_in_the_middle_as_the_deadline(name: str) -> None:
    require_learner(name)
    x, y = _easy(rows=20_000)
    estimator = BUILTIN_LEARNERS[name].build(
        {"n_estimators": 100_000, "learning_rate": 0.001}, "binary", 0, 1)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(Deadline), alarm(time.time() + 0.5):  # not KeyboardInterrupt
        estimator.fit(x, y)
    assert time.monotonic() - started < 5


def test_a_catboost_search_that_runs_into_its_budget_ends_with_its_trials(
        tmp_path: Path) -> None:
    require_learner("catboost")
    x, y = _easy(rows=4000)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    spec = ProjectSpec.model_validate({
        "name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
        "training": {"cv_folds": 3, "learners": ["catboost"],
                     "search": {"seed": 0, "trials": None, "timeout_seconds": 6.0}},
    })
    schema = infer_schema(frame.assign(y=np.where(y == 1, "yes", "no")), "y")
    problem = SearchProblem(frame=frame, y=y, folds=cv_folds(y, task="binary", k=3, seed=0),
                            schema=schema, spec=spec, metric_name="roc_auc",
                            storage_url=f"sqlite:///{tmp_path / 'optuna.db'}",
                            study_name="t-1", n_jobs=1)
    started = time.monotonic()
    result = run_search(problem)  # the deadline lands inside a CatBoost fit
    assert time.monotonic() - started < 12
    assert result.deadline_hit and result.learner == "catboost"
    assert any(t.state.name == "COMPLETE" for t in result.trials)


def test_a_small_search_over_xgboost_and_catboost_registers_a_verified_compiled_champion(
        tmp_path: Path) -> None:
    for name in OPTIONAL:
        require_learner(name)
    from flywheel.pipelines._context import ProjectContext
    from flywheel.pipelines.train import train_project

    make_project(tmp_path / "p", frame=pd.read_parquet(CHURN).head(600),
                 training={"learners": list(OPTIONAL), "search": {"trials": 4, "seed": 1,
                                                                  "sampler": "random"}})
    context = ProjectContext.load(tmp_path / "p")
    result = train_project(context)
    storage = f"sqlite:///{tmp_path / 'p' / '.flywheel' / 'optuna.db'}"
    (study,) = [optuna.load_study(study_name=s.study_name, storage=storage)
                for s in optuna.get_all_study_summaries(storage)]
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert {t.user_attrs["learner"] for t in trials} == set(OPTIONAL)  # each was chosen
    assert all(0 < t.user_attrs["n_estimators"] < MAX_BOOSTING_ROUNDS for t in trials)
    assert result.learner in OPTIONAL and result.version.version == "1"
    assert result.version.tags["flywheel.compiled.verified"] == "true"


def test_the_embedded_path_never_imports_xgboost_or_catboost() -> None:
    code = ("import sys\n"
            "import flywheel.cli.main, flywheel.pipelines.train, flywheel.pipelines.serve\n"
            "import flywheel.serving.app, flywheel.features, flywheel.training\n"
            "from flywheel.core.spec import TrainingSpec\n"
            "flywheel.training.resolve_learners(TrainingSpec(learners=['lightgbm', 'linear']))\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('xgboost', 'catboost'))\n"
            "print(loaded)\n"
            "sys.exit(1 if loaded else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
