"""The Optuna search on Ray: 1 worker against 2, and Ray Tune's OptunaSearch on the same
objective, in the same run.

The objective is flywheel's own (3-fold cross-validated LightGBM, one thread, pruning off so
every trial runs all its folds) on a synthetic table sized so that a trial takes about a
second. Each search runs ``--trials`` trials on a fresh study (its own SQLite file, whose
creation is in its time) with the same TPE seed, on a local Ray of ``--cpus`` CPUs started for
it, so every search starts from cold worker processes.
Ray's start-up and the workers' warm-up (``ray_search_workers``: the workers import flywheel,
scikit-learn and LightGBM) are timed apart and not in the wall time: ``flywheel train`` opens
the same ``ray_search_workers`` before it reads and validates the data and opens the tracking
store, so a user's search starts on warmed workers too. The "incl. warm-up" column adds the
warm-up to every worker's slot, for a search whose workers start cold.

Anchor: the 1-worker search. Targets: 2 workers at most 0.6x its wall time; orchestration
overhead per trial at most 50 ms, where overhead = (wall x workers - sum of trial durations) /
trials: the CPU-slot time not spent inside a trial (the workers' start-up, Ray scheduling, the
object store, the study's storage round trips, TPE's sampling); "steady gap" is the median time
between one of a worker's trials ending and its next starting, without the start-up. Ray Tune
runs the same objective through ``optuna.trial.FixedTrial`` with OptunaSearch's define-by-run
space and the same seed, ``max_concurrent_trials`` = 2, actors reused (its fastest setting),
for at most ``--tune-cap`` seconds (default 4x the 1-worker wall time; it has taken 8.5x):
the trials it finished by then are in its row.

    python bench/ray_search.py [--trials 60] [--rows 1500] [--cpus 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from rich.console import Console
from rich.table import Table

from flywheel.core.spec import ProjectSpec
from flywheel.data import infer_schema
from flywheel.training import (
    SearchProblem,
    cv_folds,
    encode_target,
    ray_search_workers,
    resolve_learners,
    run_ray_search,
)
from flywheel.training._search import make_objective


def problem(root: Path, rows: int, workers: int, trials: int, name: str) -> SearchProblem:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(20)})
    frame["colour"] = rng.choice(["red", "green", "blue", "grey"], size=rows)
    logit = frame["x0"] + 0.5 * frame["x1"] * frame["x2"] + (frame["colour"] == "red")
    frame["y"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    spec = ProjectSpec.model_validate({
        "name": "bench", "data": {"path": "bench.csv"},
        "target": {"column": "y", "task": "binary"},
        "training": {"cv_folds": 3, "learners": ["lightgbm"],
                     "search": {"trials": trials, "seed": 0, "pruning": False,
                                "backend": "ray", "workers": workers}},
    })
    y, _ = encode_target(frame["y"], spec.target)
    features = [c for c in frame.columns if c != "y"]
    return SearchProblem(frame=frame[features], y=y,
                         folds=cv_folds(y, task="binary", k=3, seed=0),
                         schema=infer_schema(frame, "y"), spec=spec, metric_name="roc_auc",
                         storage_url=f"sqlite:///{root / name}.db", study_name=name,
                         n_jobs=1)


def durations(trials: list[optuna.trial.FrozenTrial]) -> list[float]:
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
            if t.datetime_complete and t.datetime_start]


def median_gap(trials: list[optuna.trial.FrozenTrial]) -> float:
    """Median seconds between a worker's trial ending and its next starting (sampling, storage
    round trips): the steady per-trial overhead, without the workers' one-off start-up."""
    by_worker: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        by_worker.setdefault(str(t.user_attrs.get("flywheel.worker", "")).split(":")[0],
                             []).append(t)
    gaps = []
    for runs in by_worker.values():
        runs.sort(key=lambda t: t.datetime_start or 0)
        gaps += [(b.datetime_start - a.datetime_complete).total_seconds()
                 for a, b in zip(runs, runs[1:], strict=False)
                 if a.datetime_complete and b.datetime_start]
    return statistics.median(gaps) if gaps else float("nan")


def flywheel_search(root: Path, rows: int, workers: int, trials: int) -> dict[str, Any]:
    p = problem(root, rows, workers, trials, f"bench-{workers}")
    began = time.perf_counter()
    with ray_search_workers(p.spec.training.search) as warming:
        if warming is None:
            raise SystemExit("the bench's spec must say backend: ray")
        startup = warming.started - began
        warming.wait()
        warm = time.perf_counter() - warming.started
        started = time.perf_counter()
        result = run_ray_search(p)
        wall = time.perf_counter() - started
    spent = durations(result.trials)
    n = len(result.trials)
    return {"wall": wall, "trials": n, "mean_trial": statistics.mean(spent),
            "overhead": (wall * workers - sum(spent)) / n,
            "cold": ((wall + warm) * workers - sum(spent)) / n,
            "steady": median_gap(result.trials), "best": result.best_value,
            "startup": startup, "warm": warm}


class LearnerSpace:
    """OptunaSearch's define-by-run space: the learner's own suggestions (picklable, since
    Tune checkpoints the searcher)."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner

    def __call__(self, trial: optuna.Trial) -> None:
        self.learner.suggest(trial)


def trainable(config: dict[str, Any], problem: SearchProblem) -> dict[str, float]:
    """One Tune trial: flywheel's objective on the parameters Tune's OptunaSearch chose."""
    fixed = optuna.trial.FixedTrial(config)
    begun = time.perf_counter()
    score = make_objective(problem)(fixed)  # type: ignore[arg-type]
    return {"roc_auc": score, "seconds": time.perf_counter() - begun}


def tune_search(root: Path, rows: int, trials: int, concurrent: int,
                cap_s: float) -> dict[str, Any]:
    from ray.tune.search.optuna import OptunaSearch

    from ray import tune

    p = problem(root, rows, concurrent, trials, "bench-tune")
    (learner,) = resolve_learners(p.spec.training)
    search = OptunaSearch(space=LearnerSpace(learner), metric="roc_auc", mode="max",
                          sampler=optuna.samplers.TPESampler(seed=0, multivariate=True))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, problem=p), {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials,
                                    max_concurrent_trials=concurrent, reuse_actors=True,
                                    time_budget_s=cap_s),
        run_config=tune.RunConfig(storage_path=str(root / "tune"), verbose=0))
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    spent = [r.metrics["seconds"] for r in results if r.metrics and "seconds" in r.metrics]
    best = results.get_best_result(metric="roc_auc", mode="max").metrics["roc_auc"]
    done = len(spent)  # trials that reported; the time cap may stop the search early
    overhead = (wall * concurrent - sum(spent)) / done
    return {"wall": wall, "trials": done, "mean_trial": statistics.mean(spent),
            "overhead": overhead, "cold": overhead, "steady": float("nan"), "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--tune-cap", type=float, default=None,
                        help="seconds Ray Tune may run (default: 4x the 1-worker wall time)")
    parser.add_argument("--quick", action="store_true",
                        help="development run: 12 trials, no Ray Tune")
    args = parser.parse_args()
    if args.quick:
        args.trials = 12
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    console = Console()
    console.print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs: dict[str, dict[str, Any]] = {}
        plan = [("flywheel on Ray, 1 worker (anchor)",
                 lambda: flywheel_search(root, args.rows, 1, args.trials)),
                ("flywheel on Ray, 2 workers",
                 lambda: flywheel_search(root, args.rows, 2, args.trials))]
        if not args.quick:
            plan.append(("Ray Tune + OptunaSearch, 2 concurrent",
                         lambda: tune_search(root, args.rows, args.trials, 2, args.tune_cap or
                                             4 * runs["flywheel on Ray, 1 worker (anchor)"]
                                             ["wall"])))
        for name, run in plan:
            if name.startswith("Ray Tune"):
                ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR",
                         log_to_driver=False)
            runs[name] = run()
            ray.shutdown()
            console.print(f"{name}: {runs[name]}", highlight=False)  # kept if a later run fails
    console.print(f"load average {os.getloadavg()[0]:.2f} at the end")
    anchor = next(iter(runs.values()))["wall"]
    table = Table(title=f"Search of {args.trials} trials, 3-fold LightGBM on {args.rows:,} rows")
    for column in ("search", "trials", "wall s", "vs anchor", "mean trial s",
                   "overhead ms/trial", "incl. warm-up", "steady gap ms", "Ray up + warm-up s",
                   "best roc_auc"):
        table.add_column(column, justify="left" if column == "search" else "right")
    for name, run in runs.items():
        table.add_row(name, str(run["trials"]), f"{run['wall']:.1f}",
                      f"{run['wall'] / anchor:.2f}x", f"{run['mean_trial']:.2f}",
                      f"{run['overhead'] * 1000:.0f}", f"{run['cold'] * 1000:.0f}",
                      f"{run['steady'] * 1000:.0f}",
                      f"{run['startup']:.1f} + {run['warm']:.1f}" if "warm" in run else "",
                      f"{run['best']:.4f}")
    console.print(table)
    two = runs["flywheel on Ray, 2 workers"]
    console.print(f"2 workers / 1 worker: {two['wall'] / anchor:.2f}x (target <= 0.60); "
                  f"overhead per trial {two['overhead'] * 1000:.0f} ms with 2 workers, "
                  f"{runs['flywheel on Ray, 1 worker (anchor)']['overhead'] * 1000:.0f} ms "
                  "with 1 (target <= 50 ms)")


if __name__ == "__main__":
    main()
