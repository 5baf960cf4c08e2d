"""`/predict` on a real `flywheel serve` for a model trained on a feature view: the request
carrying the entity key (the server looks the view's features up in the SQLite online store)
against the same request with the features inline; single-record requests, alternated, p50
and p99 over the client's round trip. The server runs pinned to core 0 and this client to
core 1 (``taskset``), as the other serving benchmarks do.

    python bench/feature_store_serving.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from flywheel import Project
from flywheel.core.spec import load_spec
from flywheel.core.workspace import Workspace
from flywheel.demo import ServerProcess
from flywheel.featurestore import FeatureStore

console = Console(width=150)
STORES = 200
START = pd.Timestamp("2024-01-01", tz="UTC")


def build(root: Path) -> None:
    """A project whose spine (visits) joins a `sales` view of 200 stores; one version."""
    rng = np.random.default_rng(0)
    sales = pd.DataFrame([{"store": f"s{s:03d}", "day": START + pd.Timedelta(days=d),
                           **{f"f{i}": float(rng.normal(s % 7, 1)) for i in range(8)}}
                          for s in range(STORES) for d in range(30)])
    sales.to_parquet(root / "sales.parquet")
    n = 4000
    visits = pd.DataFrame({"store": [f"s{int(s):03d}" for s in rng.integers(0, STORES, n)],
                           "at": START + pd.to_timedelta(rng.uniform(1, 30, n), unit="D"),
                           "basket": rng.normal(0, 1, n)})
    visits["big"] = np.where(rng.normal(0, 1, n) + visits["basket"] > 0.5, "yes", "no")
    visits.to_parquet(root / "visits.parquet")
    view = {"name": "sales", "entities": ["store"], "event_time": "day",
            "source": "sales.parquet", "features": [f"f{i}" for i in range(8)]}
    spine = {"event_time": "at"}
    spec = {"name": "shop", "data": {"path": "visits.parquet", "spine": spine},
            "target": {"column": "big", "task": "binary"}, "feature_store": {"views": [view]}}
    (root / "flywheel.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    loaded = load_spec(root / "flywheel.yaml")
    store = FeatureStore(loaded, Workspace(root))
    joined, _, _ = store.training_set(visits)
    joined.drop(columns=["at"]).to_parquet(root / "joined.parquet")
    Project.init(root / "joined.parquet", "big", directory=root, force=True, name="shop")
    raw = yaml.safe_load((root / "flywheel.yaml").read_text())
    raw["data"] = {**raw["data"], "path": "visits.parquet", "spine": spine}
    raw["feature_store"] = {"views": [view]}
    raw["training"] = {**raw["training"], "cv_folds": 2, "learners": ["lightgbm"],
                       "search": {"trials": 2, "seed": 0}}
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    Project.load(root / "flywheel.yaml").train()
    store.materialize(end=(START + pd.Timedelta(days=31)).to_pydatetime())
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flywheel-fs-serving-bench-"))
    server = None
    try:
        console.print("Training a model on the spine and materializing the view ...")
        build(root)
        online = FeatureStore(load_spec(root / "flywheel.yaml"), Workspace(root))
        values = {f"s{s:03d}": online.get([f"s{s:03d}"])["sales"] for s in range(STORES)}
        online.close()
        server = ServerProcess(root, log_file=root / "serve.log").start()
        if server.proc is None or shutil.which("taskset") is None:
            raise SystemExit("taskset is missing (util-linux): it pins the server to one core")
        subprocess.run(["taskset", "-a", "-pc", "0", str(server.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        os.sched_setaffinity(0, {1})
        client = httpx.Client(base_url=server.url, timeout=30)
        rng = np.random.default_rng(1)
        times: dict[str, list[float]] = {"entity key (lookup)": [], "features inline": []}
        for i in range(args.requests + 200):
            store = f"s{int(rng.integers(0, STORES)):03d}"
            base = {"store": store, "basket": float(rng.normal())}
            for name, body in (("entity key (lookup)", base),
                               ("features inline", {**base, **(values[store] or {})})):
                started = time.perf_counter()
                answer = client.post("/predict", json=body)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise RuntimeError(answer.text)
                if i >= 200:
                    times[name].append(elapsed * 1000)
        stats = client.get("/readyz").json().get("features")
        table = Table(title=f"/predict, one record, {args.requests:,} requests each "
                            "(alternated); server on core 0, client on core 1")
        for heading in ("request", "p50 ms", "p99 ms"):
            table.add_column(heading)
        p99 = {}
        for name, values_ms in times.items():
            p99[name] = float(np.percentile(values_ms, 99))
            table.add_row(name, f"{np.percentile(values_ms, 50):.3f}", f"{p99[name]:.3f}")
        console.print(table)
        gap = p99["entity key (lookup)"] - p99["features inline"]
        console.print("load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
        console.print(f"p99 gap: {gap:.3f} ms (the issue asks at most 0.3 ms); lookups: {stats}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
