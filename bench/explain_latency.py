"""POST /explain against POST /predict (the anchor) on the same flywheel server and model.

One LightGBM pipeline for mlc_churn trained by `flywheel train` (10 trials); one server worker
pinned to core 0, wrk pinned to core 1, one record per request, alternating rounds of
``--seconds`` (medians shown). Also checks, in process, that the explanation of every holdout
row sums to the model's raw score (the log-odds of the served probability) within 1e-6, and
times one record through the explainer alone.

    apt-get install wrk
    python bench/explain_latency.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from flywheel.demo import free_port
from serving_vs_mlflow import steal_ticks, wait_ready, wrk

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"
BIN = Path(sys.executable).parent


def _holdout_check(project: object, frame: pd.DataFrame) -> tuple[int, float, float]:
    """(rows, largest |sum - raw score|, median µs per single-record explanation)."""
    from flywheel.features import contribution_explainer

    registry = project.registry()  # type: ignore[attr-defined]
    schema = project.schema  # type: ignore[attr-defined]
    model = registry.load_model("champion")
    explainer = contribution_explainer(model, schema, task="binary")
    x = frame[schema.feature_columns]
    p = model.predict_proba(x)[:, 1]
    log_odds = np.log(p / (1 - p))
    parts = explainer.explain_columns({c: x[c] for c in x.columns}, len(x))
    worst = float(np.abs(parts.raw[:, 0] - log_odds).max())
    records = json.loads(x.head(300).to_json(orient="records"))
    times = []
    for i, record in enumerate(records):
        began = time.perf_counter()
        one = explainer.explain_records([record])
        times.append(time.perf_counter() - began)
        worst = max(worst, float(abs(one.raw[0, 0] - log_odds[i])))
    return len(x), worst, statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    from flywheel import Project

    work = Path(tempfile.mkdtemp(prefix="flywheel-explain-bench-"))
    shutil.copy(CHURN, work / "churn.parquet")
    Project.init(work / "churn.parquet", "churn", directory=work, name="churn")
    spec = yaml.safe_load((work / "flywheel.yaml").read_text())
    spec["training"]["learners"] = ["lightgbm"]  # explanations are LightGBM's contributions
    (work / "flywheel.yaml").write_text(yaml.safe_dump(spec))
    project = Project.load(work / "flywheel.yaml")
    Console().print("training a LightGBM pipeline for mlc_churn ...")
    project.train(trials=10, seed=0)
    frame = pd.read_parquet(CHURN).sample(1500, random_state=1)
    rows, worst, single_us = _holdout_check(project, frame)
    record = json.loads(frame[project.schema.feature_columns].head(1)
                        .to_json(orient="records"))[0]
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(["taskset", "-c", "0", str(BIN / "flywheel"), "serve", "--config",
                             str(work), "--port", str(port)], env=env, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    targets = {"/predict (anchor)": ("/predict", record),
               "/explain": ("/explain", record),
               "/predict with explain: true": ("/predict", {**record, "explain": True})}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    try:
        wait_ready(url + "/readyz", proc)
        answer = httpx.post(url + "/explain", json=record).json()["explanations"][0]
        for path, body in targets.values():
            wrk(url + path, json.dumps(body), 1, 2)  # warm-up
        load0 = os.getloadavg()[0]
        stolen0, total0 = steal_ticks()
        for round_ in range(args.rounds):
            Console().print(f"round {round_ + 1} of {args.rounds} ...")
            for name, (path, body) in targets.items():
                runs[name].append(wrk(url + path, json.dumps(body), 1, args.seconds))
        stolen1, total1 = steal_ticks()
        load1 = os.getloadavg()[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    steal = 100.0 * (stolen1 - stolen0) / max(1, total1 - total0)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    anchor = med("/predict (anchor)", "p99")
    table = Table(title=f"One worker on core 0, wrk on core 1 (c=1), one churn record per "
                        f"request; medians of {args.rounds} rounds of {args.seconds} s; load "
                        f"average {load0:.1f} -> {load1:.1f}; CPU stolen {steal:.1f} %")
    for heading in ("endpoint", "c=1 p50 ms", "c=1 p99 ms", "p99 range", "req/s", "non-2xx",
                    "p99 vs /predict"):
        table.add_column(heading, justify="right")
    for name in targets:
        p99s = [r["p99"] for r in runs[name]]
        errors = sum(r["errors"] for r in runs[name])
        table.add_row(name, f"{med(name, 'p50'):.2f}", f"{med(name, 'p99'):.2f}",
                      f"{min(p99s):.2f}-{max(p99s):.2f}", f"{med(name, 'rps'):,.0f}",
                      f"{errors:.0f}", f"{med(name, 'p99') / anchor:.1f}x")
    console = Console(width=160)
    console.print(table)
    console.print(f"explanations of {rows:,} holdout rows (batch) and 300 single records: "
                  f"largest |sum of contributions + bias - log-odds| = {worst:.2e} "
                  f"({'within' if worst <= 1e-6 else 'OVER'} 1e-6); one record through the "
                  f"explainer alone: {single_us:.0f} µs (median); "
                  f"{len(answer['contributions'])} columns explained")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
