"""Robustness checks: a model's predictions stay finite and in range on inputs serving will see.

Each check perturbs a sample of holdout rows the way production data goes wrong (missing
values, categories never seen in training, extreme numbers, columns in another order) and
checks every prediction. A check that raises fails with the error; nothing is skipped
silently. Column kinds come from the schema: ``numeric``, ``integer``, ``categorical``,
``boolean``, ``datetime``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import Task
from flywheel.evaluation._scores import predict_scores

__all__ = ["RobustnessCheck", "check_predictions", "predict_fn", "run_robustness"]

UNSEEN = "__flywheel_unseen__"
EXTREME = 1e12
_PROBA_TOL = 1e-6
_SAMPLE = 200

Predict = Callable[[pd.DataFrame], np.ndarray]


@dataclasses.dataclass(frozen=True)
class RobustnessCheck:
    """One perturbation and what the model did with it."""

    name: str
    passed: bool
    detail: str
    failing_columns: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "failing_columns": list(self.failing_columns)}


def predict_fn(model: Any, task: Task) -> Predict:
    """What a gate calls to score a frame: ``predict_scores`` bound to ``model``."""
    return lambda frame: predict_scores(model, frame, task)


def check_predictions(pred: np.ndarray, rows: int, task: Task,
                      value_range: tuple[float, float] | None) -> str | None:
    """Why ``pred`` is not a valid prediction of ``rows`` rows, or ``None`` if it is.

    Classifiers: one row per input, probabilities in [0, 1] summing to 1. Regression: finite
    values, within ``value_range`` when given.
    """
    pred = np.asarray(pred, dtype=float)
    if pred.shape[0] != rows:
        return f"{pred.shape[0]} predictions for {rows} rows"
    if not np.all(np.isfinite(pred)):
        return f"{int(np.sum(~np.isfinite(pred)))} prediction(s) are NaN or infinite"
    if task != "regression":
        if pred.min() < -_PROBA_TOL or pred.max() > 1 + _PROBA_TOL:
            return f"probabilities outside [0, 1] (min {pred.min():.3g}, max {pred.max():.3g})"
        sums = pred.sum(axis=1) if pred.ndim == 2 else None
        if sums is not None and np.max(np.abs(sums - 1)) > _PROBA_TOL:
            return f"probabilities sum to {sums.min():.6g}..{sums.max():.6g}, not 1"
    elif value_range is not None:
        lo, hi = value_range
        outside = int(np.sum((pred < lo) | (pred > hi)))
        if outside:
            return (f"{outside} prediction(s) outside [{lo:.4g}, {hi:.4g}] "
                    f"(min {pred.min():.4g}, max {pred.max():.4g})")
    return None


def run_robustness(predict: Predict, frame: pd.DataFrame, kinds: Mapping[str, str], *,
                   task: Task, value_range: tuple[float, float] | None = None,
                   seed: int = 0, sample: int = _SAMPLE) -> list[RobustnessCheck]:
    """Run every robustness check on up to ``sample`` rows of ``frame``.

    Args:
        predict: Scores a frame with the model's feature columns.
        frame: Holdout rows, the model's raw feature columns.
        kinds: Schema kind of each column of ``frame``.
        value_range: For regression, the range predictions must stay in.

    Returns:
        One entry per check, in a fixed order.
    """
    rng = np.random.default_rng(seed)
    rows = frame if len(frame) <= sample else frame.iloc[np.sort(
        rng.choice(len(frame), size=sample, replace=False))]
    rows = rows.reset_index(drop=True)
    columns = list(rows.columns)
    numeric = [c for c in columns if kinds.get(c) in ("numeric", "integer")]
    categorical = [c for c in columns if kinds.get(c) == "categorical"]

    def valid(data: pd.DataFrame) -> str | None:
        return check_predictions(predict(data), len(data), task, value_range)

    checks: list[RobustnessCheck] = []
    baseline: np.ndarray | None = None

    def run(name: str, body: Callable[[], RobustnessCheck]) -> None:
        try:
            checks.append(body())
        except Exception as exc:  # a crash is a failed check, with the error kept
            checks.append(RobustnessCheck(name, False, "the model raised",
                                          error=f"{type(exc).__name__}: {exc}"))

    def check_baseline() -> RobustnessCheck:
        nonlocal baseline
        baseline = predict(rows)
        problem = check_predictions(baseline, len(rows), task, value_range)
        return RobustnessCheck("baseline", problem is None,
                               problem or f"{len(rows)} holdout rows predict validly")

    def per_column(name: str, targets: list[str], perturb: Callable[[pd.DataFrame, str], None],
                   what: str) -> Callable[[], RobustnessCheck]:
        def body() -> RobustnessCheck:
            if not targets:
                return RobustnessCheck(name, True, f"no {what} columns to perturb")
            failing, notes, errors = [], [], []
            for column in targets:
                data = rows.copy()
                perturb(data, column)
                try:
                    problem = valid(data)
                except Exception as exc:
                    problem = None
                    errors.append(f"{column}: {type(exc).__name__}: {exc}")
                    failing.append(column)
                    continue
                if problem:
                    failing.append(column)
                    notes.append(f"{column}: {problem}")
            detail = (f"{len(targets)} column(s) one at a time, {len(rows)} rows: "
                      + ("all valid" if not failing else "; ".join(notes + errors)[:500]))
            return RobustnessCheck(name, not failing, detail, tuple(failing),
                                   "; ".join(errors)[:500] or None)
        return body

    def set_missing(data: pd.DataFrame, column: str) -> None:
        data[column] = np.nan if column in numeric else None

    def set_unseen(data: pd.DataFrame, column: str) -> None:
        data[column] = UNSEEN

    def set_extreme(data: pd.DataFrame, column: str) -> None:
        half = len(data) // 2
        data[column] = np.r_[np.full(half, EXTREME), np.full(len(data) - half, -EXTREME)]

    def check_all_missing() -> RobustnessCheck:
        data = rows.copy()
        for column in columns:
            set_missing(data, column)
        problem = valid(data)
        return RobustnessCheck("missing_all", problem is None,
                               problem or f"every one of {len(columns)} feature(s) missing: "
                                          "valid predictions")

    def check_order() -> RobustnessCheck:
        if baseline is None:
            raise RuntimeError("the baseline prediction failed")
        orders = [columns[::-1], list(rng.permutation(columns))]
        for order in orders:
            shuffled = predict(rows[order])
            if shuffled.shape != baseline.shape or not np.allclose(shuffled, baseline,
                                                                   rtol=1e-9, atol=1e-12):
                return RobustnessCheck("shuffled_columns", False,
                                       "columns in another order change the predictions")
        return RobustnessCheck("shuffled_columns", True,
                               "reversed and shuffled column order give the same predictions")

    def check_single_rows() -> RobustnessCheck:
        if baseline is None:
            raise RuntimeError("the baseline prediction failed")
        picks = range(min(20, len(rows)))
        single = np.vstack([np.atleast_2d(predict(rows.iloc[[i]])) for i in picks])
        batch = np.atleast_2d(baseline[list(picks)])
        same = single.reshape(batch.shape) if single.size == batch.size else None
        if same is None or not np.allclose(same, batch, rtol=1e-9, atol=1e-12):
            return RobustnessCheck("single_row", False,
                                   "a row predicted alone differs from the same row in a batch")
        return RobustnessCheck("single_row", True,
                               f"{len(picks)} rows predicted alone match the batch")

    run("baseline", check_baseline)
    run("missing_all", check_all_missing)
    run("missing_each", per_column("missing_each", columns, set_missing, "feature"))
    run("unseen_categories", per_column("unseen_categories", categorical, set_unseen,
                                        "categorical"))
    run("extreme_numeric", per_column("extreme_numeric", numeric, set_extreme, "numeric"))
    run("shuffled_columns", check_order)
    run("single_row", check_single_rows)
    return checks
