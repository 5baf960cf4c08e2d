"""Point-in-time training set: 10 M spine rows joined to 2 feature views (1 M feature rows,
100 k entities, 20 features), flywheel against a bare DuckDB ASOF JOIN on the same files and
Feast 0.67 (in its own virtual environment), each in a fresh process (time, peak memory);
flywheel's result checked row by row against a brute-force join on a 10 k-row sample.

    python bench/feature_store_pit.py [--spine 10000000] [--feast /tmp/feast-venv/bin/python]
                                      [--feast-timeout 600] [--keep DIR]

The views have no TTL (a bare ASOF JOIN has none); flywheel also keeps the spine's row order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ENTITIES = 100_000
VIEW_ROWS = 500_000
DAYS = 60
START = np.datetime64("2024-01-01T00:00:00", "us")
console = Console(width=150)


def build(work: Path, spine_rows: int, seed: int = 0) -> None:
    """The spine and the two views as Parquet, and a flywheel.yaml declaring them."""
    rng = np.random.default_rng(seed)
    span = DAYS * 86_400 * 1_000_000
    for name, prefix in (("activity", "a"), ("profile", "b")):
        columns = {"customer": rng.integers(0, ENTITIES, VIEW_ROWS),
                   "ts": pa.array(START + rng.integers(0, span, VIEW_ROWS)
                                  .astype("timedelta64[us]"), pa.timestamp("us", tz="UTC"))}
        for i in range(10):
            columns[f"{prefix}{i}"] = rng.normal(size=VIEW_ROWS)
        pq.write_table(pa.table(columns), work / f"{name}.parquet")
    chunk = 2_000_000
    writer = None
    for first in range(0, spine_rows, chunk):
        n = min(chunk, spine_rows - first)
        table = pa.table({
            "customer": rng.integers(0, ENTITIES, n),
            "ts": pa.array(START + rng.integers(0, span, n).astype("timedelta64[us]"),
                           pa.timestamp("us", tz="UTC")),
            "label": rng.integers(0, 2, n)})
        writer = writer or pq.ParquetWriter(work / "spine.parquet", table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    views = [{"name": name, "entities": ["customer"], "event_time": "ts",
              "source": f"{name}.parquet", "features": [f"{p}{i}" for i in range(10)]}
             for name, p in (("activity", "a"), ("profile", "b"))]
    spec = {"name": "pit", "data": {"path": "spine.parquet", "spine": {"event_time": "ts"}},
            "target": {"column": "label", "task": "binary"},
            "feature_store": {"views": views, "memory_limit_mb": 1024}}
    (work / "flywheel.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def measure(command: list[str], timeout: float) -> dict[str, object]:
    """Run one measured child; its JSON line, or how it failed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"failed": f"did not finish within {timeout:.0f} s (stopped)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
        how = "killed (out of memory?)" if done.returncode in (-9, 137) else \
            f"exit {done.returncode}"
        return {"failed": f"{how}: {tail}"}
    return json.loads(lines[-1])


def brute_force_check(work: Path, output: Path, sample: int = 10_000) -> int:
    """Values of a random sample of rows where flywheel's join differs from a brute-force
    join (for each row: every row of its entity, the latest at or before its time)."""
    spine = pq.read_table(work / "spine.parquet")
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(spine.num_rows, sample, replace=False))
    picked = spine.take(pa.array(rows))
    joined = pq.read_table(output).take(pa.array(rows))
    customers = picked["customer"].to_numpy()
    times = picked["ts"].cast(pa.int64()).to_numpy()
    wrong = 0
    for name, prefix in (("activity", "a"), ("profile", "b")):
        view = pq.read_table(work / f"{name}.parquet")
        keys = view["customer"].to_numpy()
        stamps = view["ts"].cast(pa.int64()).to_numpy()
        values = np.column_stack([view[f"{prefix}{j}"].to_numpy() for j in range(10)])
        got = np.column_stack([joined[f"{prefix}{j}"].to_numpy(zero_copy_only=False)
                               for j in range(10)])
        order = np.argsort(keys, kind="stable")
        bounds = np.searchsorted(keys[order], np.arange(ENTITIES + 1))
        for i, (customer, at) in enumerate(zip(customers, times, strict=True)):
            mine = order[bounds[customer]:bounds[customer + 1]]  # every row of the entity
            earlier = mine[stamps[mine] <= at]
            if earlier.size == 0:
                wrong += int((~np.isnan(got[i])).sum())
                continue
            expected = values[earlier[np.argmax(stamps[earlier])]]
            wrong += int((expected != got[i]).sum())
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spine", type=int, default=10_000_000)
    parser.add_argument("--feast", default="/tmp/feast-venv/bin/python")
    parser.add_argument("--feast-timeout", type=float, default=600)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="flywheel-pit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not (work / "spine.parquet").exists():
            console.print(f"Building {args.spine:,} spine rows and 2 x {VIEW_ROWS:,} feature "
                          f"rows in {work} ...")
            build(work, args.spine)
        results: dict[str, dict[str, object]] = {}
        child = [sys.executable, str(HERE / "_feature_store_child.py")]
        results["bare DuckDB ASOF JOIN"] = measure([*child, "duckdb", str(work),
                                                    str(work / "duckdb.parquet")], 600)
        results["flywheel"] = measure([*child, "flywheel", str(work),
                                       str(work / "flywheel.parquet")], 600)
        if Path(args.feast).exists():
            results["Feast 0.67 (local, get_historical_features)"] = measure(
                [args.feast, str(HERE / "_feature_store_feast.py"), str(work)],
                args.feast_timeout)
        else:
            results["Feast 0.67"] = {"failed": f"no Feast venv at {args.feast}"}
        wrong = brute_force_check(work, work / "flywheel.parquet") \
            if "failed" not in results["flywheel"] else -1
        anchor = results["bare DuckDB ASOF JOIN"].get("seconds")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        table = Table(title=f"Point-in-time join: {args.spine:,} spine rows x 2 views "
                            f"({2 * VIEW_ROWS:,} rows, {ENTITIES:,} entities, 20 features); "
                            f"load average after the runs {load}")
        for heading in ("engine", "seconds", "peak MB", "x bare DuckDB", "note"):
            table.add_column(heading)
        for name, r in results.items():
            seconds = r.get("seconds")
            ratio = f"{seconds / anchor:.2f}" if isinstance(seconds, float) and \
                isinstance(anchor, float) else "-"
            table.add_row(name, f"{seconds:.1f}" if isinstance(seconds, float) else "-",
                          f"{r['peak_mb']:.0f}" if isinstance(r.get("peak_mb"), float) else "-",
                          ratio, str(r.get("failed", r.get("note", ""))))
        console.print(table)
        console.print(f"brute force on a 10,000-row sample: {wrong} differing value(s)")
        (work / "results.json").write_text(json.dumps({**results, "wrong": wrong}, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
