"""The Optuna search: learner and hyper-parameters scored by cross-validation.

The study lives in the storage ``training.search.storage`` names (``_storage``:
``.flywheel/optuna.db`` embedded, the tracking database on PostgreSQL) under a name derived
from the data and the search-relevant spec, so running ``flywheel train`` again after an
interruption resumes it, and a process on another host with the same spec and data joins it.
Parallel trials are separate processes optimizing the same study.

The time budget is a deadline, not a hint: a trial still running when it passes is stopped
(between LightGBM's or XGBoost's boosting rounds, inside CatBoost's C++ loop, which checks for
signals, or in the learner's own Python steps, by ``SIGALRM`` in a process's main thread;
elsewhere between folds). A stopped trial is pruned, or,
while the study has no complete trial yet, completed on the folds it finished, so a short
budget still yields a model.

Feature pipelines are fitted once per fold (and per scaling need) and reused by every trial:
they do not depend on the learner's hyper-parameters, and fitting them per fold keeps target
encoding honest.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from flywheel.core.errors import TrainingError
from flywheel.core.spec import ProjectSpec
from flywheel.data import DataSchema
from flywheel.evaluation import Metric, compute_metrics, get_metric, summarize
from flywheel.features import build_feature_pipeline
from flywheel.training._candidates import Learner, nonnegative_regression, resolve_learners
from flywheel.training._cv import Fold
from flywheel.training._deadline import Deadline, alarm, cut_short
from flywheel.training._ensemble import OofStore
from flywheel.training._storage import is_shared_storage, open_storage
from flywheel.training._warm_start import (
    DEFAULTS_ATTR,
    WARM_START_ATTR,
    WarmStart,
    default_trials,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
BEGUN = (*FINISHED, TrialState.RUNNING)
"""Every state but WAITING: trials enqueued (defaults, a warm start) and not yet asked for
neither count toward the trial cap nor are trials of the result; a resumed study runs them
first."""


@dataclasses.dataclass(frozen=True)
class SearchProblem:
    """Everything a search process needs; picklable, so parallel workers get a copy."""

    frame: pd.DataFrame
    y: np.ndarray
    folds: list[Fold]
    schema: DataSchema
    spec: ProjectSpec
    metric_name: str
    storage_url: str
    study_name: str
    n_jobs: int
    warm_start: WarmStart | None = None
    """Enqueued as the first trial when the study holds none yet (a retraining's champion)."""

    @property
    def nonnegative_target(self) -> bool:
        """A regression target with no negative value: learners search its losses too."""
        return nonnegative_regression(self.spec.target.task, self.y)


@dataclasses.dataclass(frozen=True)
class TrialProgress:
    """What the progress display shows after each trial."""

    finished: int
    total: int | None
    """The study's trial count; None: as many as the time budget allows."""
    best_value: float | None
    elapsed: float
    state: str


@dataclasses.dataclass(frozen=True)
class SearchResult:
    study_name: str
    learner: str
    params: dict[str, Any]
    """The winning learner's parameters, without the learner prefix."""
    best_value: float
    cv_metrics: dict[str, float]
    """Mean and std (``<name>_std``) of every task metric across folds."""
    n_estimators: int | None
    """Boosting rounds for the refit, from early stopping in the folds."""
    trials: list[optuna.trial.FrozenTrial]
    best_number: int = -1
    """The winning trial's number in the study."""
    resumed: int = 0
    """Finished trials the study already held when this search started (earlier runs)."""
    new_trials: int = 0
    """Trials this search (and its parallel workers) finished."""
    deadline_hit: bool = False
    """Whether the time budget ended the search (a running trial may have been stopped)."""
    duration_s: float = 0.0
    oof: OofStore | None = None
    """Out-of-fold predictions of the trials this process ran (``training.ensemble.size`` above
    1 only); the ensemble selection scores the other candidates again."""


class _FoldCache:
    """Feature matrices per (fold, scaled), built on first use."""

    def __init__(self, problem: SearchProblem) -> None:
        self.problem = problem
        self._cache: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, k: int, scaled: bool) -> tuple[np.ndarray, np.ndarray]:
        if (k, scaled) not in self._cache:
            p = self.problem
            train, valid = p.folds[k]
            features = build_feature_pipeline(p.schema, p.spec.features, task=p.spec.target.task,
                                              scale_numeric=scaled)
            x_train = features.fit_transform(p.frame.iloc[train], p.y[train])
            x_valid = features.transform(p.frame.iloc[valid])
            self._cache[(k, scaled)] = (x_train, x_valid)
        return self._cache[(k, scaled)]


def make_study(problem: SearchProblem, *, seed: int, create: bool = True) -> optuna.Study:
    spec = problem.spec.training
    metric = _metric(problem)
    learners = resolve_learners(spec, nonnegative_target=problem.nonnegative_target)
    if spec.search.sampler == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed,
                                                                          multivariate=True)
    elif spec.search.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        space: dict[str, list[Any]] = {}
        if len(learners) > 1:
            space["learner"] = [learner.name for learner in learners]
        for learner in learners:
            space.update(learner.grid_values())
        sampler = optuna.samplers.GridSampler(space, seed=seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
              if spec.search.pruning else optuna.pruners.NopPruner())
    storage = open_storage(problem.storage_url, problem.spec)
    return optuna.create_study(
        storage=storage, study_name=problem.study_name, sampler=sampler, pruner=pruner,
        direction="maximize" if metric.greater_is_better else "minimize",
        load_if_exists=create,
    )


def _metric(problem: SearchProblem) -> Metric:
    return get_metric(problem.spec.target.task, problem.metric_name)


KeepOof = Callable[[optuna.Trial, str, float, np.ndarray], None]
"""(trial, learner, CV score, out-of-fold predictions) of a trial that finished every fold."""


def make_objective(problem: SearchProblem, deadline: float | None = None, *,
                   keep: KeepOof | None = None) -> Callable[[optuna.Trial], float]:
    """The function Optuna maximizes or minimizes: the metric's mean across folds.

    Past ``deadline`` (``time.time()``) a running trial stops; see the module docstring.
    ``keep`` receives the out-of-fold predictions of every trial that scored all its folds
    (rows in no validation fold are NaN), for the ensemble selection.
    """
    spec = problem.spec.training
    task = problem.spec.target.task
    metric = _metric(problem)
    learners = {learner.name: learner for learner in
                resolve_learners(spec, nonnegative_target=problem.nonnegative_target)}
    cache = _FoldCache(problem)
    grid = spec.search.sampler == "grid"
    n_classes = int(problem.y.max()) + 1 if task != "regression" else 0

    def objective(trial: optuna.Trial) -> float:
        name = (trial.suggest_categorical("learner", list(learners)) if len(learners) > 1
                else next(iter(learners)))
        trial.set_user_attr("learner", name)
        learner = learners[name]
        params = learner.suggest(trial, grid=grid)
        fold_metrics: list[dict[str, float]] = []
        best_rounds: list[int] = []
        oof = _empty_oof(len(problem.y), n_classes) if keep is not None else None
        try:
            for k in range(len(problem.folds)):
                train, valid = problem.folds[k]
                y_train, y_valid = problem.y[train], problem.y[valid]
                try:
                    if deadline is not None and time.time() >= deadline:
                        raise Deadline
                    with alarm(deadline):
                        x_train, x_valid = cache.get(k, learner.scale_numeric)
                        estimator = learner.build(params, task, spec.search.seed, problem.n_jobs)
                        rounds = _fit(estimator, learner, x_train, y_train, x_valid, y_valid)
                        prediction = _predict(estimator, x_valid, task, n_classes)
                except Deadline:
                    return cut_short(trial, k, fold_metrics, metric.name, len(problem.folds),
                                     best_rounds)
                if rounds is not None:
                    best_rounds.append(rounds)
                if oof is not None:
                    oof[valid] = prediction
                scores = compute_metrics(task, y_valid, prediction)
                if not np.isfinite(scores[metric.name]):
                    raise TrainingError(f"{metric.name} is not finite on fold {k + 1}")
                fold_metrics.append(scores)
                running = float(np.mean([m[metric.name] for m in fold_metrics]))
                trial.report(running, k)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:1000])
            raise
        summary = summarize(fold_metrics)
        trial.set_user_attr("cv", summary)
        if best_rounds:
            k = len(problem.folds)
            # The refit sees k/(k-1) times the rows of a fold's training part.
            trial.set_user_attr("n_estimators", int(np.mean(best_rounds) * k / max(1, k - 1)))
        if keep is not None and oof is not None:
            keep(trial, name, float(summary[metric.name]), oof)
        return float(summary[metric.name])

    return objective


def _empty_oof(rows: int, n_classes: int) -> np.ndarray:
    shape = (rows,) if n_classes == 0 else (rows, n_classes)
    return np.full(shape, np.nan, dtype=np.float32)


def _fit(estimator: Any, learner: Learner, x_train: np.ndarray, y_train: np.ndarray,
         x_valid: np.ndarray, y_valid: np.ndarray) -> int | None:
    if learner.fit_early is not None:
        return learner.fit_early(estimator, x_train, y_train, x_valid, y_valid)
    estimator.fit(x_train, y_train)
    return None


def _predict(estimator: Any, x: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    if task == "regression":
        return np.asarray(estimator.predict(x), dtype=float)
    proba = np.asarray(estimator.predict_proba(x), dtype=float)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((len(x), n_classes))  # a class absent from this fold's training rows
    full[:, np.asarray(estimator.classes_, dtype=int)] = proba
    return full


def mark_stale_trials_failed(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process can never finish; mark them failed.

    Only call this while holding the workspace's training lock, when no other process can be
    running trials of this study.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(stale)


def study_progress(problem: SearchProblem) -> tuple[int, int | None]:
    """(finished trials, the best trial's number or None) of the problem's study as stored,
    without creating it."""
    try:
        study = optuna.load_study(study_name=problem.study_name,
                                  storage=open_storage(problem.storage_url, problem.spec))
    except KeyError:  # no such study yet
        return 0, None
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    try:
        return finished, study.best_trial.number
    except ValueError:
        return finished, None


@dataclasses.dataclass(frozen=True)
class SearchStart:
    """Where a search begins: the study, its trial cap and deadline, the trials already done."""

    study: optuna.Study
    total: int | None
    """The trial count to reach (None: until the deadline)."""
    timeout: float | None
    deadline: float | None
    """Wall-clock time (``time.time()``) the trials must end by, or None."""
    started: float
    """``time.monotonic()`` when the search began."""
    done: int
    """Finished trials the study already held (resume)."""
    remaining: int
    """Trials still to run (1 when there is no cap: run until the deadline)."""


def begin_search(problem: SearchProblem, *, n_trials: int | None,
                 timeout: float | None) -> SearchStart:
    """Open the study for ``problem`` and work out its cap, deadline and what is left; trials
    a killed run left RUNNING are failed first, unless the study is shared (its heartbeats do
    that, and another host's workers may be running them)."""
    spec = problem.spec.training.search
    total = n_trials or spec.trials
    timeout = timeout if timeout is not None else spec.timeout_seconds
    started = time.monotonic()
    deadline = time.time() + timeout if timeout is not None else None
    study = make_study(problem, seed=spec.seed)
    if not is_shared_storage(problem.storage_url):
        mark_stale_trials_failed(study)
    if not study.get_trials(deepcopy=False):
        warm = problem.warm_start
        if warm is not None:
            study.enqueue_trial(warm.params, user_attrs={WARM_START_ATTR: warm.source})
        for start in default_trials(problem.spec.training,
                                    nonnegative_target=problem.nonnegative_target):
            study.enqueue_trial(start.params, user_attrs={DEFAULTS_ATTR: start.learner})
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = 1 if total is None else max(0, total - done)
    return SearchStart(study, total, timeout, deadline, started, done, remaining)


def run_search(problem: SearchProblem, *, on_trial: Callable[[TrialProgress], None] | None = None,
               record: Callable[[optuna.trial.FrozenTrial], None] | None = None,
               recorded: Collection[int] = (), n_trials: int | None = None,
               timeout: float | None = None) -> SearchResult:
    """Optimize until the study holds ``n_trials`` finished trials or ``timeout`` passes.

    ``timeout`` (seconds from now) is a deadline for the trials too; see the module docstring.
    Without a trial count (``n_trials`` and the spec's ``trials`` None) the search runs until
    the deadline.

    ``record`` is called once for every finished trial of the study not in ``recorded`` (trial
    numbers an earlier run logged), including those of parallel workers, as soon as this
    process sees it; the time it takes counts against the budget.

    Raises:
        TrainingError: If no trial completed; the message carries the first error.
    """
    # Failed trials are recorded with their errors (user attribute, MLflow child run); Optuna's
    # own warning would print a traceback per failure, and one on Ctrl-C.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = problem.spec.training.search
    begun = begin_search(problem, n_trials=n_trials, timeout=timeout)
    study, total, timeout, deadline = begun.study, begun.total, begun.timeout, begun.deadline
    started, done, remaining = begun.started, begun.done, begun.remaining
    workers: list[multiprocessing.process.BaseProcess] = []
    if remaining and spec.parallel > 1:
        ctx = multiprocessing.get_context("spawn")
        for index in range(1, spec.parallel):
            proc: multiprocessing.process.BaseProcess = ctx.Process(
                target=_worker, args=(problem, spec.seed + index, total, deadline), daemon=True)
            proc.start()
            workers.append(proc)

    seen: set[int] = set(recorded)
    store = oof_store(problem)

    def record_new(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        for t in finished:
            if record is not None and t.number not in seen:
                record(t)
            seen.add(t.number)
        return finished

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished = record_new(study)
        if on_trial is not None:
            on_trial(TrialProgress(len(finished), total, _best_value(study),
                                   time.monotonic() - started, trial.state.name.lower()))

    try:
        if remaining and (deadline is None or time.time() < deadline):
            study.optimize(make_objective(problem, deadline,
                                          keep=None if store is None else store.keep),
                           timeout=_left(deadline),
                           catch=(Exception,), callbacks=[*_cap(total), report],
                           gc_after_trial=False)
        for proc in workers:
            left = _left(deadline)
            proc.join(timeout=None if left is None else left + 10)
        record_new(study)
    finally:
        for proc in workers:  # only still alive when the search was interrupted
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
    hit = deadline is not None and time.time() >= deadline
    result = _result(study, problem, resumed=done, timeout=timeout if hit else None,
                     duration_s=time.monotonic() - started)
    return dataclasses.replace(result, oof=store)


def oof_store(problem: SearchProblem) -> OofStore | None:
    """An empty store for the trials' out-of-fold predictions when the spec asks for an
    ensemble (``training.ensemble.size`` above 1), else None."""
    ensemble = problem.spec.training.ensemble
    if ensemble.size <= 1:
        return None
    return OofStore(ensemble.candidates, greater_is_better=_metric(problem).greater_is_better)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.time())


def _cap(total: int | None) -> list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]]:
    return [] if total is None else [optuna.study.MaxTrialsCallback(total, states=BEGUN)]


def _worker(problem: SearchProblem, seed: int, total: int | None, deadline: float | None
            ) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = make_study(problem, seed=seed)
    study.optimize(make_objective(problem, deadline), timeout=_left(deadline),
                   catch=(Exception,), callbacks=_cap(total), gc_after_trial=False)


def _best_value(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:
        return None


def _result(study: optuna.Study, problem: SearchProblem, *, resumed: int,
            timeout: float | None, duration_s: float) -> SearchResult:
    trials = study.get_trials(deepcopy=False, states=BEGUN)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        errors = [t.user_attrs.get("error") or t.system_attrs.get("fail_reason")
                  for t in trials if t.state == TrialState.FAIL]
        first = next((e for e in errors if e), None)
        if first is None and timeout is not None:
            raise TrainingError(
                f"the time budget of {timeout:g} s ran out before the first trial finished "
                "one cross-validation fold; raise --timeout (training.search.timeout_seconds) "
                "or train on a sample.")
        raise TrainingError(
            f"none of the {len(trials)} trial(s) completed; first error: "
            f"{first or 'no trial finished within the budget'}. Check the "
            "learners and search space in flywheel.yaml, or raise the time budget."
        )
    best = study.best_trial
    learner = str(best.user_attrs.get("learner"))
    prefix = f"{learner}."
    params = {k[len(prefix):]: v for k, v in best.params.items() if k.startswith(prefix)}
    return SearchResult(
        study_name=study.study_name, learner=learner, params=params,
        best_value=float(best.value if best.value is not None else np.nan),
        cv_metrics=dict(best.user_attrs.get("cv", {})),
        n_estimators=best.user_attrs.get("n_estimators"), trials=trials,
        best_number=best.number, resumed=resumed,
        new_trials=sum(t.state in FINISHED for t in trials) - resumed,
        deadline_hit=timeout is not None, duration_s=duration_s,
    )


def default_n_jobs(parallel: int) -> int:
    """Threads per model so that ``parallel`` trials share the cores this process may run on
    (its CPU affinity, as ``taskset`` or a container's cpuset sets it, else all of them)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, parallel))
