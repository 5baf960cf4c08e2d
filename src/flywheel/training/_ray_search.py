"""The Optuna search on Ray (``training.search.backend: ray``).

Each of ``training.search.workers`` workers is a plain Ray task (one CPU) that runs
``study.optimize`` on the shared study, the way the local backend's processes do; not Ray Tune,
whose OptunaSearch asks for one trial at a time. The search problem (the data and its folds) is
put in Ray's object store once and every worker reads it from there.

This process only watches: it records every finished trial (an MLflow child run) as soon as it
sees it in the study, and reports progress. Pruning, the time budget, the trial cap and resuming
are the study's and the objective's, as locally. A worker that dies (its process killed, its node
lost) loses only the trial it was running: that trial is marked failed in the study (and so in
MLflow), and a new worker takes its place while trials remain.

A worker process's start-up is mostly importing flywheel, scikit-learn and LightGBM (about
two seconds each). ``ray_search_workers`` starts Ray and that import in the workers before the
search, and ``flywheel train`` opens it before it reads the data, so the import overlaps the
validation and the opening of the tracking store instead of delaying the first trials.

Ray is imported only here, inside the functions: the local backend never loads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from flywheel.core.errors import TrainingError
from flywheel.core.rayconnect import connect_ray
from flywheel.training._search import (
    BEGUN,
    FINISHED,
    SearchProblem,
    SearchResult,
    TrialProgress,
    _best_value,
    _result,
    begin_search,
    make_objective,
    make_study,
)
from flywheel.training._storage import open_storage

if TYPE_CHECKING:
    from types import ModuleType

    from flywheel.core.spec import SearchSpec

__all__ = ["WORKER_ATTR", "RayWarmUp", "ray_search_workers", "run_ray_search"]

WORKER_ATTR = "flywheel.worker"
"""Trial user attribute: the worker that ran it (``<token>:<pid>@<host>``)."""
_POLL_SECONDS = 0.25
_GRACE_SECONDS = 30.0
"""How long past the deadline a worker may take to stop before it is cancelled."""


@dataclasses.dataclass(frozen=True)
class RayWarmUp:
    """The warm-up tasks ``ray_search_workers`` started (one per worker)."""

    ray: ModuleType
    refs: list[Any]
    started: float
    """``time.perf_counter()`` when they were submitted."""

    def wait(self) -> list[str]:
        """Block until every worker has imported the search's modules; the processes warmed
        (``<pid>@<host>``, as in ``WORKER_ATTR``)."""
        return [str(who) for who in self.ray.get(self.refs)]


@contextlib.contextmanager
def ray_search_workers(spec: SearchSpec) -> Iterator[RayWarmUp | None]:
    """Ray connected for a search with ``spec``, its worker processes importing the search's
    modules, for the length of the block; yields None for the local backend.

    ``run_ray_search`` inside the block uses this connection, and its trials run in the
    processes warmed here (Ray hands a task an idle worker process of the same job). Ray is
    shut down at the end if this call started it.

    Raises:
        ConfigError: If Ray is not installed, or ``spec.ray_address`` cannot be reached.
    """
    if spec.backend != "ray":
        yield None
        return
    ray, owned = connect_ray(spec.ray_address, cpus=spec.workers,
                             setting="training.search.ray_address")
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_warm)
        yield RayWarmUp(ray, [task.remote() for _ in range(spec.workers)], time.perf_counter())
    finally:
        if owned:
            ray.shutdown()


def _warm() -> str:
    """A worker's imports, done before it gets the search (the problem unpickles into them)."""
    import lightgbm  # noqa: F401
    import sklearn.compose  # noqa: F401
    import sqlalchemy.orm  # noqa: F401

    import flywheel.training._search  # noqa: F401

    return f"{os.getpid()}@{socket.gethostname()}"


def run_ray_search(problem: SearchProblem, *,
                   on_trial: Callable[[TrialProgress], None] | None = None,
                   record: Callable[[optuna.trial.FrozenTrial], None] | None = None,
                   recorded: Collection[int] = (), n_trials: int | None = None,
                   timeout: float | None = None) -> SearchResult:
    """``run_search`` with the trials in Ray tasks; the same arguments and result.

    Raises:
        ConfigError: If Ray is not installed, or ``training.search.ray_address`` cannot be
            reached.
        TrainingError: If no trial completed; the message carries the first error.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = problem.spec.training.search
    begun = begin_search(problem, n_trials=n_trials, timeout=timeout)
    study, total, timeout, deadline = begun.study, begun.total, begun.timeout, begun.deadline
    started, done, remaining = begun.started, begun.done, begun.remaining
    seen: set[int] = set(recorded)

    def record_new() -> None:
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        for t in finished:
            if t.number in seen:
                continue
            if record is not None:
                record(t)
            seen.add(t.number)
            if on_trial is not None:
                on_trial(TrialProgress(len(finished), total, _best_value(study),
                                       time.monotonic() - started, t.state.name.lower()))

    errors: list[str] = []
    if remaining and (deadline is None or time.time() < deadline):
        ray, owned = connect_ray(spec.ray_address, cpus=spec.workers,
                                 setting="training.search.ray_address")
        try:
            errors = _drive(ray, problem, study, total=total, deadline=deadline,
                            on_poll=record_new)
        finally:
            if owned:
                ray.shutdown()
    record_new()
    if errors and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise TrainingError(f"no trial completed on Ray: {len(errors)} worker(s) failed; the "
                            f"first: {errors[0]}. Check that the workers reach the study "
                            "storage (training.search.storage) and import flywheel.")
    hit = deadline is not None and time.time() >= deadline
    return _result(study, problem, resumed=done, timeout=timeout if hit else None,
                   duration_s=time.monotonic() - started)


def _drive(ray: ModuleType, problem: SearchProblem, study: optuna.Study, *, total: int | None,
           deadline: float | None, on_poll: Callable[[], None]) -> list[str]:
    """Run the workers to the end, replacing any that die while trials remain; returns what
    the failed workers died of."""
    spec = problem.spec.training.search
    task = ray.remote(num_cpus=1, max_retries=0)(_work)
    problem_ref = ray.put(problem)  # the data crosses to the object store once
    running: dict[Any, str] = {}
    errors: list[str] = []
    launched = 0

    def launch() -> None:
        nonlocal launched
        token = uuid.uuid4().hex[:12]
        ref = task.remote(problem_ref, token, spec.seed + launched, total, deadline)
        running[ref] = token
        launched += 1

    for _ in range(spec.workers):
        launch()
    replacements = 3 * spec.workers
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_SECONDS)
            for ref in ready:
                token = running.pop(ref)
                try:
                    ray.get(ref)
                except (ray.exceptions.RayError, OSError) as exc:
                    errors.append(_first_line(exc))
                    _fail_trials_of(study, token, exc)
                    if replacements > 0 and _trials_remain(study, total, deadline):
                        replacements -= 1
                        launch()
            on_poll()
            if deadline is not None and time.time() > deadline + _GRACE_SECONDS:
                break
    finally:
        for ref in running:  # interrupted, or past the grace period
            ray.cancel(ref, force=True)
        for token in running.values():
            _fail_trials_of(study, token, None)
    return errors


def _work(problem: SearchProblem, token: str, seed: int, total: int | None,
          deadline: float | None) -> int:
    """One worker: optimize the shared study until the cap or the deadline; trials it ran."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    problem = _with_threads(problem, 1)
    open_storage(problem.storage_url, problem.spec, joining=True)  # the driver created it
    study = make_study(problem, seed=seed)
    objective = make_objective(problem, deadline)
    who = f"{token}:{os.getpid()}@{socket.gethostname()}"
    count = 0

    def tagged(trial: optuna.Trial) -> float:
        nonlocal count
        count += 1
        trial.set_user_attr(WORKER_ATTR, who)
        return objective(trial)

    left = None if deadline is None else max(0.0, deadline - time.time())
    cap = [] if total is None else [optuna.study.MaxTrialsCallback(total, states=None)]
    study.optimize(tagged, timeout=left, catch=(Exception,), callbacks=cap,
                   gc_after_trial=False)
    return count


def _with_threads(problem: SearchProblem, n_jobs: int) -> SearchProblem:
    return dataclasses.replace(problem, n_jobs=n_jobs)  # a worker owns one CPU


def _fail_trials_of(study: optuna.Study, token: str, exc: BaseException | None) -> None:
    """Mark failed the trials a dead (or cancelled) worker left running."""
    reason = (f"its Ray worker died while running it ({_first_line(exc)})" if exc is not None
              else "the search stopped while it was running")
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if str(trial.user_attrs.get(WORKER_ATTR, "")).startswith(f"{token}:"):
            storage = study._storage
            storage.set_trial_user_attr(trial._trial_id, "error", reason[:1000])
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _trials_remain(study: optuna.Study, total: int | None, deadline: float | None) -> bool:
    if deadline is not None and time.time() >= deadline:
        return False
    return total is None or len(study.get_trials(deepcopy=False, states=BEGUN)) < total
