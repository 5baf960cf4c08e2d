"""Greedy ensemble selection (Caruana et al. 2004) on real out-of-fold predictions, the kept
trials' store, the EnsembleModel estimator and the training.ensemble setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from flywheel.core.errors import ConfigError, TrainingError
from flywheel.core.spec import ProjectSpec, parse_spec
from flywheel.data import infer_schema
from flywheel.evaluation import get_metric
from flywheel.features import build_feature_pipeline, compile_predictor
from flywheel.training import (
    EnsembleModel,
    OofStore,
    SearchProblem,
    cv_folds,
    encode_target,
    refit_estimate,
    run_search,
    select_ensemble,
    select_from_search,
)


def _problem(tmp_path: Path, *, size: int = 4, trials: int = 6, rows: int = 300,
             learners: tuple[str, ...] = ("lightgbm", "linear")) -> SearchProblem:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "z": rng.normal(size=rows),
                          "c": rng.choice(["a", "b", "c"], size=rows)})
    signal = frame["x"] + np.sin(3 * frame["z"]) + (frame["c"] == "a")
    frame["y"] = np.where(signal + rng.normal(scale=0.8, size=rows) > 0.5, "yes", "no")
    schema = infer_schema(frame, "y")
    spec = ProjectSpec.model_validate({
        "name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
        "training": {"cv_folds": 3, "learners": list(learners),
                     "search": {"seed": 0, "trials": trials}, "ensemble": {"size": size}},
    })
    y, _ = encode_target(frame["y"], spec.target)
    return SearchProblem(frame=frame[["x", "z", "c"]], y=y,
                         folds=cv_folds(y, task="binary", k=3, seed=0), schema=schema,
                         spec=spec, metric_name="roc_auc",
                         storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="t-1",
                         n_jobs=1)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchProblem, object]:
    problem = _problem(tmp_path_factory.mktemp("ensemble"))
    return problem, run_search(problem)


def test_the_ensembles_out_of_fold_score_is_at_least_the_best_trials(searched) -> None:
    problem, result = searched
    outcome = select_from_search(problem, result)
    selection = outcome.selection
    assert selection is not None and outcome.rescored == 0  # this process ran every trial
    auc = get_metric("binary", "roc_auc")
    best_oof = result.oof.get(result.best_number).oof
    assert selection.best_single == pytest.approx(auc.compute(problem.y, best_oof))
    assert selection.score >= selection.best_single and selection.gain >= 0
    assert selection.members[0] == result.best_number
    assert sum(selection.weights) == pytest.approx(1.0)
    assert len(selection.members) <= 4
    weighted = sum(w * result.oof.get(n).oof.astype(float)
                   for n, w in zip(selection.members, selection.weights, strict=True))
    assert selection.score == pytest.approx(auc.compute(problem.y, weighted))


def test_trials_another_process_ran_are_scored_again_to_the_same_predictions(searched) -> None:
    problem, result = searched
    outcome = select_from_search(problem, dataclasses.replace(result, oof=None))
    again = select_from_search(problem, result)
    assert outcome.rescored >= 2
    assert outcome.selection == again.selection


def test_the_store_keeps_the_best_trials_and_each_learners_best() -> None:
    store = OofStore(2, greater_is_better=True)
    for number, (learner, score) in enumerate([("a", 0.9), ("a", 0.8), ("b", 0.5), ("a", 0.85),
                                               ("a", 0.95)]):
        store.add(number, learner, score, np.full((5, 2), 0.5))
    assert [t.number for t in store.ranked()] == [4, 0, 2]
    assert store.get(4).oof.dtype == np.float32 and store.get(4).oof.shape == (5,)


def test_a_library_where_one_trial_is_best_keeps_that_trial_alone() -> None:
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    store = OofStore(5, greater_is_better=True)
    store.add(0, "a", 1.0, y.astype(float))  # perfect ranking
    store.add(1, "a", 0.5, np.linspace(0, 1, 8)[::-1])
    selection = select_ensemble(store, y, get_metric("binary", "roc_auc"), best=0, size=3,
                                rounds=10)
    assert selection.members == (0,) and selection.weights == (1.0,)
    assert selection.gain == 0.0


def test_regression_gains_are_positive_when_the_error_falls() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    store = OofStore(5, greater_is_better=False)
    store.add(0, "a", 1.0, y + rng.normal(scale=0.5, size=200))
    store.add(1, "b", 1.1, y + rng.normal(scale=0.5, size=200))
    selection = select_ensemble(store, y, get_metric("regression", "rmse"), best=0, size=2,
                                rounds=10)
    assert set(selection.members) == {0, 1} and selection.gain > 0
    assert selection.score < selection.best_single


def test_the_refit_limit_keeps_out_a_trial_too_slow_to_refit_and_takes_the_next_best() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    store = OofStore(5, greater_is_better=False)
    for number, scale in enumerate([0.5, 0.55, 0.7]):  # independent errors: averaging helps
        store.add(number, "a", scale, y + rng.normal(scale=scale, size=300))
    rmse = get_metric("regression", "rmse")
    free = select_ensemble(store, y, rmse, best=0, size=2, rounds=10)
    costs = {0: 10.0, 1: 25.0, 2: 4.0}
    limited = select_ensemble(store, y, rmse, best=0, size=2, rounds=10, costs=costs,
                              max_cost=20.0)
    assert free.members == (0, 1)
    assert limited.members == (0, 2) and limited.refit_seconds == 14.0
    assert limited.left_out == (1,) and limited.gain > 0
    assert limited.describe()["left_out_for_refit_time"] == [1]
    alone = select_ensemble(store, y, rmse, best=0, size=2, rounds=10, costs=costs, max_cost=5.0)
    assert alone.members == (0,)  # the best trial is refit whatever its cost


def test_a_refit_estimate_is_a_folds_share_of_the_trial_scaled_to_all_rows(searched) -> None:
    _, result = searched
    trial = next(t for t in result.trials if t.datetime_complete is not None)
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    assert refit_estimate(trial, 3) == pytest.approx(seconds / 3 * 1.5 ** 2)


def test_a_best_trial_without_predictions_is_a_training_error() -> None:
    store = OofStore(5, greater_is_better=True)
    with pytest.raises(TrainingError, match="no out-of-fold predictions"):
        select_ensemble(store, np.zeros(3), get_metric("binary", "roc_auc"), best=7, size=2,
                        rounds=3)


def _member(c: float) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=c))])


def test_the_ensemble_model_averages_its_members_probabilities_by_weight() -> None:
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    y = (x["a"] + rng.normal(size=100) > 0).astype(int).to_numpy()
    model = EnsembleModel([_member(0.01), _member(10.0)], [0.25, 0.75], task="binary").fit(x, y)
    expected = (0.25 * _member(0.01).fit(x, y).predict_proba(x)
                + 0.75 * _member(10.0).fit(x, y).predict_proba(x))
    assert np.allclose(model.predict_proba(x), expected)
    assert (model.predict(x) == expected.argmax(axis=1)).all()


def test_weights_that_do_not_sum_to_one_are_refused() -> None:
    with pytest.raises(TrainingError, match="sum to 1"):
        EnsembleModel([_member(1.0), _member(2.0)], [0.5, 0.6]).fit(
            pd.DataFrame({"a": [0.0, 1.0]}), np.array([0, 1]))


def test_a_fitted_ensemble_compiles_to_its_members_weighted_average(searched) -> None:
    problem, _ = searched
    members = [Pipeline([("features", build_feature_pipeline(
        problem.schema, problem.spec.features, task="binary", scale_numeric=True)),
        ("model", LogisticRegression(C=c))]) for c in (0.1, 1.0)]
    model = EnsembleModel(members, [0.4, 0.6], task="binary").fit(problem.frame, problem.y)
    compiled = compile_predictor(model, problem.schema, task="binary")
    records = problem.frame.head(20).to_dict(orient="records")
    assert compiled.kind == "ensemble"
    assert np.allclose(compiled.predict_records(records[:1]),
                       model.predict_proba(problem.frame.head(1)), atol=1e-9)
    assert np.allclose(compiled.predict_records(records),
                       model.predict_proba(problem.frame.head(20)), atol=1e-9)


@pytest.mark.parametrize("value", [0, 51, 2.5, "5", True])
def test_a_bad_ensemble_size_is_a_config_error_naming_the_setting(value: object) -> None:
    raw = {"name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
           "training": {"ensemble": {"size": value}}}
    with pytest.raises(ConfigError, match=r"training\.ensemble\.size: must be"):
        parse_spec(raw)


def test_the_refit_limit_is_a_budget_that_keeps_the_spec_hash_and_must_be_positive() -> None:
    from flywheel.pipelines._train_parts import spec_hash_of

    base = {"name": "t", "data": {"path": "t.csv"}, "target": {"column": "y", "task": "binary"},
            "training": {"ensemble": {"size": 5}}}
    limited = {**base, "training": {"ensemble": {"size": 5, "refit_seconds": 30}}}
    assert spec_hash_of(ProjectSpec.model_validate(base)) == \
        spec_hash_of(ProjectSpec.model_validate(limited))
    with pytest.raises(ConfigError, match="training.ensemble.refit_seconds"):
        parse_spec({**base, "training": {"ensemble": {"size": 5, "refit_seconds": 0}}})
