"""`flywheel serve` latency and throughput while a rollout runs, against no rollout.

Two registered LightGBM versions of mlc_churn; one server worker pinned to core 0, wrk pinned
to core 1 (as in serving_vs_mlflow.py), the rollout controller running in the server as in
production. Measured with no rollout, a 50 % canary (requests without a unit key, so both
versions answer), and a shadow of 100 % (every request scored again off the response path).
The rollouts are set never to decide during the run (a huge minimum of requests).

    python bench/rollout_serving.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from flywheel import Project
from flywheel.demo import free_port
from flywheel.pipelines.rollout import start_rollout, stop_rollout
from serving_vs_mlflow import BIN, CHURN, wait_ready, wrk

NEVER = 1_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    console = Console(width=140)
    work = Path(tempfile.mkdtemp(prefix="flywheel-rollout-bench-"))
    shutil.copy(CHURN, work / "churn.parquet")
    Project.init(work / "churn.parquet", "churn", directory=work, name="churn")
    spec = yaml.safe_load((work / "flywheel.yaml").read_text())
    spec["gates"]["champion"]["mode"] = "off"  # two near-equal versions: let both serve
    (work / "flywheel.yaml").write_text(yaml.safe_dump(spec))
    project = Project.load(work)
    console.print("training two LightGBM versions for mlc_churn ...")
    for seed in (0, 1):
        project.train(trials=5, seed=seed, on_stage=lambda s: console.print(f"  {s}"))
    record = json.loads(pd.read_parquet(CHURN)[project.schema.feature_columns]
                        .head(1).to_json(orient="records"))[0]
    body = json.dumps(record)
    modes = {
        "no rollout": None,
        "canary 50 % (both versions answer)": ("canary", {"stages": [50, 100],
                                                          "min_requests": NEVER}),
        "shadow 100 %": ("shadow", {"share": 1.0, "min_requests": NEVER}),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(["taskset", "-c", "0", str(BIN / "flywheel"), "serve", "--config",
                             str(work), "--port", str(port), "--poll-interval", "0.5"],
                            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ})
    results = {}
    try:
        wait_ready(url + "/readyz", proc)
        for name, mode in modes.items():
            if mode is not None:
                state = start_rollout(project, mode[0], "2", overrides=mode[1])
                _wait_applied(url, state.id)
            wrk(url + "/predict", body, 1, 2)  # warm-up
            results[name] = (wrk(url + "/predict", body, 1, args.seconds),
                             wrk(url + "/predict", body, 32, args.seconds))
            if mode is not None:
                stop_rollout(project, reason="benchmark mode done")
                _wait_applied(url, None)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title="One worker on core 0, wrk on core 1, one churn record per request")
    for heading in ("mode", "c=1 p50 ms", "c=1 p99 ms", "c=32 req/s", "c=32 p99 ms", "non-2xx"):
        table.add_column(heading, justify="right")
    for name, (c1, c32) in results.items():
        table.add_row(name, f"{c1['p50']:.3f}", f"{c1['p99']:.3f}", f"{c32['rps']:,.0f}",
                      f"{c32['p99']:.2f}", f"{c1['errors'] + c32['errors']:.0f}")
    console.print(table)


def _wait_applied(url: str, rollout: str | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        applied = httpx.get(url + "/readyz").json().get("rollout", {}).get("id")
        if applied == rollout:
            return
        time.sleep(0.2)
    raise SystemExit(f"the server did not apply rollout {rollout}")


if __name__ == "__main__":
    main()
