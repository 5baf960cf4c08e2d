"""flywheel's single best trial against its greedy ensemble, from the same search, on churn.

One search (``--trials`` trials of ``--learners``, 5-fold CV, TPE seed 0) on the search rows of
churn's 20 % holdout split, exactly as ``flywheel train`` splits it. Then the single best trial
refit on all search rows (today's model) and the ensemble ``training.ensemble.size`` selects
from the same trials' out-of-fold predictions, refit the same way; both are scored on the
holdout, which neither the search nor the selection saw. Also: the ensemble's compiled
predictor, checked against the estimator on the holdout as training checks it
(``verify_compiled``), its single-row latency in this process (p50/p99 over ``--calls`` calls,
one thread) and each member's, the cost of the selection and of the members' refit.

Measured 2026-12-02 with the defaults (load 0.94 at the start): 40 trials (24 complete, 16
pruned) in 493 s; best trial 34 (hist_gradient_boosting). The selection kept 4 members at
size 5 (trials 34, 25 and 17 hist_gradient_boosting, 1 linear; weights 0.263, 0.526, 0.158,
0.053). roc_auc out of fold 0.9241 -> 0.9266, on the holdout 0.9165 -> 0.9190 (+0.0025 each);
refit 2.3 s single, 11.4 s ensemble (selection 1.0 s). The compiled ensemble matches the
estimator (max |diff| 1.1e-16), but its single row takes p50 48 ms, p99 67 ms: a
hist_gradient_boosting member compiles only to its own predict_proba (kind "sklearn"), 8.6-19.5
ms a row each, against 0.010 ms for the linear member.

    python bench/ensemble_gain.py [--trials 40] [--size 5] [--learners lightgbm,linear,...]
                                  [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import ProjectSpec
from flywheel.data import infer_schema
from flywheel.evaluation import get_metric, predict_scores
from flywheel.features import CompiledPredictor, compile_predictor, verify_compiled
from flywheel.pipelines._ensemble_fit import refit_model
from flywheel.training import (
    SearchProblem,
    cv_folds,
    encode_target,
    holdout_split,
    resolve_learners,
    run_search,
    select_from_search,
)

CHURN = Path(__file__).resolve().parents[1] / "examples" / "churn" / "mlc_churn.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--learners", default="lightgbm,linear,hist_gradient_boosting")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="8 trials, 300 calls")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.calls = 8, 300
    print(f"load average at start: {os.getloadavg()}")
    frame = pd.read_parquet(CHURN)
    schema = infer_schema(frame, "churn")
    spec = ProjectSpec.model_validate({
        "name": "churn", "data": {"path": str(CHURN)},
        "target": {"column": "churn", "task": "binary"},
        "training": {"learners": args.learners.split(","),
                     "search": {"seed": 0, "trials": args.trials},
                     "ensemble": {"size": args.size}},
    })
    y, _ = encode_target(frame["churn"], spec.target)
    search_rows, holdout_rows = holdout_split(y, task="binary", fraction=0.2, seed=0)
    features = schema.feature_columns
    x = frame.iloc[search_rows][features].reset_index(drop=True)
    x_holdout = frame.iloc[holdout_rows][features].reset_index(drop=True)
    y_search, y_holdout = y[search_rows], y[holdout_rows]
    metric = get_metric("binary", "roc_auc")
    learners = {lr.name: lr for lr in resolve_learners(spec.training)}
    with tempfile.TemporaryDirectory() as tmp:
        problem = SearchProblem(frame=x, y=y_search,
                                folds=cv_folds(y_search, task="binary", k=5, seed=0),
                                schema=schema, spec=spec, metric_name="roc_auc",
                                storage_url=f"sqlite:///{tmp}/optuna.db", study_name="bench",
                                n_jobs=1)
        started = time.perf_counter()
        result = run_search(problem)
        search_s = time.perf_counter() - started
        single_spec = spec.model_copy(update={"training": spec.training.model_copy(
            update={"ensemble": spec.training.ensemble.model_copy(update={"size": 1})})})
        started = time.perf_counter()
        single = refit_model(dataclasses.replace(problem, spec=single_spec), result, x,
                             y_search, learners, []).model
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        select_from_search(problem, result)  # timed alone; refit_model selects again
        selection_s = time.perf_counter() - started
        notes: list[str] = []
        started = time.perf_counter()
        fitted = refit_model(problem, result, x, y_search, learners, notes)
        ensemble_s = time.perf_counter() - started
    single_auc = metric.compute(y_holdout, predict_scores(single, x_holdout, "binary"))
    ensemble_auc = metric.compute(y_holdout, predict_scores(fitted.model, x_holdout, "binary"))
    selection = fitted.outcome.selection if fitted.outcome else None
    states = Counter(t.state.name.lower() for t in result.trials)
    print(f"search: {len(result.trials)} trials ({dict(states)}) of {args.learners} in "
          f"{search_s:.1f} s; best trial {result.best_number} ({result.learner}), CV roc_auc "
          f"{result.best_value:.4f} (mean of 5 folds)")
    if selection is None:
        raise SystemExit(f"no ensemble was selected: {' '.join(notes)}")
    print(f"ensemble: {len(selection.members)} members (size {args.size}), "
          f"{selection.steps} selection steps; out of fold on {selection.rows:,} rows; "
          f"{fitted.outcome.rescored if fitted.outcome else 0} candidates rescored")
    print("| member trial | learner | weight |\n|---|---|---|")
    for number, learner, weight in zip(selection.members, selection.learners,
                                       selection.weights, strict=True):
        print(f"| {number} | {learner} | {weight:.4f} |")
    print(*notes, sep="\n")
    print(f"| model | members | OOF roc_auc | holdout roc_auc | refit s |\n|---|---|---|---|---|\n"
          f"| single best trial ({result.learner}) | 1 | {selection.best_single:.4f} | "
          f"{single_auc:.4f} | {single_s:.1f} |\n"
          f"| ensemble (size {args.size}) | {len(selection.members)} | {selection.score:.4f} | "
          f"{ensemble_auc:.4f} | {ensemble_s:.1f} (selection {selection_s:.1f} and the "
          f"members' refit) |\n"
          f"gain: out of fold {selection.gain:+.4f}, on the holdout "
          f"{ensemble_auc - single_auc:+.4f}")
    compiled = compile_predictor(fitted.model, schema, task="binary")
    report = verify_compiled(compiled, fitted.model, x_holdout)
    print(f"compiled {compiled!r}: verified {report.verified} on {report.rows:,} holdout rows, "
          f"max |diff| {report.max_abs_diff:.3g} (atol {report.atol:g})")
    records = [{str(k): v for k, v in r.items()}
               for r in x_holdout.head(200).to_dict(orient="records")]
    p50, p99 = single_row_ms(compiled, records, args.calls)
    print(f"compiled single row: p50 {p50:.3f} ms, p99 {p99:.3f} ms over {args.calls} calls "
          "(one thread)")
    members = getattr(compiled, "members", [])
    for trial, member in zip(selection.members if members else (), members, strict=True):
        p50, p99 = single_row_ms(member, records, args.calls // 4)
        print(f"  member trial {trial} ({member.kind}): p50 {p50:.3f} ms, p99 {p99:.3f} ms "
              f"over {args.calls // 4} calls")
    print(f"load average at end: {os.getloadavg()}")


def single_row_ms(compiled: CompiledPredictor, records: list[dict[str, Any]],
                  calls: int) -> tuple[float, float]:
    """p50 and p99 in ms of ``calls`` single-record calls, after 50 unmeasured ones."""
    for record in records[:50]:
        compiled.predict_records([record])
    times = []
    for i in range(calls):
        record = records[i % len(records)]
        t0 = time.perf_counter()
        compiled.predict_records([record])
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


if __name__ == "__main__":
    main()
