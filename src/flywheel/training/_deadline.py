"""The search's deadline inside a trial: a signal that stops the running fold, and what
becomes of a trial it stopped."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from flywheel.evaluation import summarize


class Deadline(BaseException):
    """The search's time budget ran out inside a trial (a BaseException, so no learner's
    ``except Exception`` swallows it)."""


@contextlib.contextmanager
def alarm(deadline: float | None) -> Iterator[None]:
    """Raise ``Deadline`` inside the block once ``time.time()`` passes ``deadline``.

    Only the main thread of a process can take signals; elsewhere the block runs unbounded and
    the caller checks the deadline between folds.
    """
    if deadline is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    left = deadline - time.time()
    if left <= 0:
        raise Deadline
    rang = threading.Event()

    def ring(signum: int, frame: Any) -> None:
        rang.set()
        raise Deadline

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, left)
    try:
        yield
    except KeyboardInterrupt:
        # CatBoost's C++ loop checks for signals and turns whatever the handler raised into
        # KeyboardInterrupt; after the alarm rang, that is the deadline, not a Ctrl-C.
        if rang.is_set():
            raise Deadline from None
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cut_short(trial: optuna.Trial, fold: int, fold_metrics: list[dict[str, float]],
              metric: str, folds: int, best_rounds: list[int]) -> float:
    """End a trial the deadline stopped in fold ``fold`` (0-based).

    Completed on the folds it finished while the study has no complete trial (so the search
    still yields a model), otherwise pruned.
    """
    trial.set_user_attr("stopped", f"the time budget ran out during fold {fold + 1} of {folds}")
    complete = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete or not fold_metrics:
        raise optuna.TrialPruned()
    summary = summarize(fold_metrics)
    trial.set_user_attr("cv", summary)
    trial.set_user_attr("folds_scored", len(fold_metrics))
    if best_rounds:
        trial.set_user_attr("n_estimators", int(np.mean(best_rounds) * folds / max(1, folds - 1)))
    return float(summary[metric])
