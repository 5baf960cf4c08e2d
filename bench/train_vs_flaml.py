"""flywheel's training against FLAML (the fast AutoML library) with the same budget and split.

For each data set: `Project.train` with a search time budget, then FLAML's AutoML with the same
time budget on exactly the rows flywheel used for its search (flywheel's own holdout split), both
scored once on the same holdout rows. Anchors (training issue): holdout ROC AUC within 0.01 of
FLAML's on binary tasks, RMSE within 3 % of FLAML's on regression.

    pip install -e ".[bench]"      # FLAML is a benchmark-only dependency
    python bench/train_vs_flaml.py [--budget 60] [--only churn]   # bench/automl.py: more
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

# The bundled data sets, loaded as bench/automl.py loads them (this folder is on sys.path
# when a script in it runs).
from automl import DATASETS
from flywheel import Project
from flywheel.evaluation import compute_metrics
from flywheel.training import encode_target, holdout_split


def run_flywheel(frame: pd.DataFrame, target: str, name: str, budget: float,
                 workdir: Path) -> dict[str, object]:
    frame.to_parquet(workdir / f"{name}.parquet")
    project = Project.init(workdir / f"{name}.parquet", target, directory=workdir, name=name)
    started = time.perf_counter()
    result = project.train(timeout=budget, trials=100_000, seed=0)
    wall = time.perf_counter() - started
    return {"project": project, "result": result, "wall": wall}


def run_flaml(frame: pd.DataFrame, target: str, project: Project, budget: float
              ) -> dict[str, object]:
    from flaml import AutoML

    spec = project.spec
    y, _ = encode_target(frame[target], spec.target)
    search, holdout = holdout_split(y, task=spec.target.task,
                                    fraction=spec.training.holdout_fraction,
                                    seed=spec.training.search.seed)
    features = project.schema.feature_columns
    x = frame[features].copy()
    for column in x.columns:
        if not pd.api.types.is_numeric_dtype(x[column]):
            x[column] = x[column].astype("category")
    task = "regression" if spec.target.task == "regression" else "classification"
    metric = "rmse" if task == "regression" else "roc_auc"
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(x.iloc[search], y[search], task=task, metric=metric, time_budget=budget,
               seed=0, verbose=0, n_jobs=2)
    wall = time.perf_counter() - started
    if task == "regression":
        prediction = np.asarray(automl.predict(x.iloc[holdout]), dtype=float)
    else:
        prediction = np.asarray(automl.predict_proba(x.iloc[holdout]), dtype=float)
    scores = compute_metrics(spec.target.task, y[holdout], prediction)
    return {"scores": scores, "wall": wall, "learner": automl.best_estimator}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--only", choices=sorted(DATASETS), action="append")
    args = parser.parse_args()
    try:
        import flaml  # noqa: F401
    except ImportError:
        raise SystemExit('FLAML is not installed; run `pip install -e ".[bench]"` first.') from None
    console = Console(width=180)  # a table meant to be pasted into notes, not wrapped
    table = Table(title=f"flywheel vs FLAML, {args.budget:.0f} s search budget each, same holdout")
    for heading in ("data", "rows", "metric", "flywheel", "FLAML", "difference", "anchor",
                    "flywheel learner / trials", "FLAML learner", "wall flywheel / FLAML"):
        table.add_column(heading)
    for name in args.only or list(DATASETS):
        frame, target = DATASETS[name]()
        with tempfile.TemporaryDirectory() as tmp:
            console.print(f"[bold]{name}[/bold]: flywheel ...")
            ours = run_flywheel(frame, target, name, args.budget, Path(tmp))
            result = ours["result"]
            console.print(f"[bold]{name}[/bold]: FLAML ...")
            theirs = run_flaml(frame, target, ours["project"], args.budget)  # type: ignore[arg-type]
        metric = result.metric  # type: ignore[attr-defined]
        mine = result.holdout_metrics[metric]  # type: ignore[attr-defined]
        other = theirs["scores"][metric]  # type: ignore[index]
        if metric == "rmse":
            diff = f"{mine / other - 1:+.2%}"
            ok = mine <= other * 1.03
            anchor = "within 3 %"
        else:
            diff = f"{mine - other:+.4f}"
            ok = mine >= other - 0.01
            anchor = "within 0.01"
        trials = result.trials  # type: ignore[attr-defined]
        table.add_row(
            name, f"{len(frame):,}", metric, f"{mine:.4f}", f"{other:.4f}", diff,
            f"[green]{anchor} ✓[/green]" if ok else f"[red]{anchor} ✗[/red]",
            f"{result.learner} / {trials['complete']}+{trials['pruned']}p",  # type: ignore[attr-defined]
            str(theirs["learner"]), f"{ours['wall']:.0f} s / {theirs['wall']:.0f} s",
        )
    console.print(table)


if __name__ == "__main__":
    main()
