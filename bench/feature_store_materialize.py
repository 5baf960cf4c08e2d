"""Materializing 1 M entities x 20 features into the SQLite online store: peak memory and time
for a 7-day and a 60-day window (the same entities, 8x the source rows), and a 60-day run
killed midway (SIGKILL after slice 4 of 8) then restarted: what the restart redid.

The view runs with chunks: 8 and memory_limit_mb: 256. Each run is `flywheel features
materialize` in a fresh process (peak resident memory of that
process); the source is one Parquet file with a row per entity every 6 days over 60 days,
in row groups of 200,000 rows (DuckDB reads a row group's columns whole: with pyarrow's
default of 1 M rows, two threads' buffers alone pass the 256 MB limit).

    python bench/feature_store_materialize.py [--entities 1000000] [--keep DIR]
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
FEATURES = 20
EVERY_DAYS = 6
DAYS = 60
END = "2024-03-01T00:00:00+00:00"
console = Console(width=150)


def build(work: Path, entities: int) -> int:
    """The source (rows per entity every 6 days, offset per entity) and flywheel.yaml."""
    rng = np.random.default_rng(0)
    end = np.datetime64("2024-03-01T00:00:00", "s")
    writer = None
    rows = 0
    for step in range(DAYS // EVERY_DAYS):
        offset = rng.integers(0, EVERY_DAYS * 86_400, entities)
        when = end - np.timedelta64(DAYS * 86_400, "s") + \
            (step * EVERY_DAYS * 86_400 + offset).astype("timedelta64[s]")
        columns = {"customer": np.arange(entities),
                   "ts": pa.array(when.astype("datetime64[us]"), pa.timestamp("us", tz="UTC"))}
        for f in range(FEATURES):
            columns[f"f{f}"] = rng.normal(size=entities).astype(np.float32)
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(work / "source.parquet", table.schema)
        writer.write_table(table, row_group_size=200_000)
        rows += entities
    if writer is not None:
        writer.close()
    spec = {"name": "materialize", "data": {"path": "spine.parquet"},
            "target": {"column": "y", "task": "binary"},
            "feature_store": {"views": [{
                "name": "activity", "entities": ["customer"], "event_time": "ts",
                "source": "source.parquet", "features": [f"f{f}" for f in range(FEATURES)]}],
                "chunks": 8, "memory_limit_mb": 256}}
    (work / "flywheel.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return rows


def materialize(work: Path, start: str, *, crash: str | None = None) -> dict[str, object]:
    """One `flywheel features materialize` in a fresh process: its JSON, seconds, peak MB."""
    code = ("import json, resource, sys, time; from flywheel.cli.main import main; "
            "t = time.perf_counter(); rc = main(sys.argv[1:]); "
            "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t, 'peak_mb': "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    env = {**os.environ, **({"FLYWHEEL_CRASH_AT": crash} if crash else {})}
    done = subprocess.run([sys.executable, "-c", code, "features", "materialize", "--start",
                           start, "--end", END, "--json", "-c", str(work / "flywheel.yaml")],
                          capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        return {"killed": done.returncode}
    lines = done.stdout.strip().splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("[")), None)
    if first is None:
        raise RuntimeError(f"no JSON from materialize: {done.stdout[:300]!r} "
                           f"{done.stderr[-300:]!r}")
    result = json.loads(lines[-1])
    result["runs"] = json.loads("\n".join(lines[first:-1]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="flywheel-materialize-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = build(work, args.entities)
        console.print(f"Source: {rows:,} rows ({args.entities:,} entities x {FEATURES} "
                      f"features, one row per entity every {EVERY_DAYS} days)")
        table = Table(title=f"Materializing {args.entities:,} entities x {FEATURES} features "
                            "into SQLite; loaded shared machine")
        for heading in ("run", "window", "seconds", "peak MB", "slices done / resumed",
                        "entities written"):
            table.add_column(heading)
        windows = {"7-day": "2024-02-23T00:00:00Z", "60-day": "2023-12-31T00:00:00Z"}
        for name, start in windows.items():
            result = materialize(work, start)
            [run] = result["runs"]  # type: ignore[misc]
            table.add_row("whole", name, f"{result['seconds']:.1f}", f"{result['peak_mb']:.0f}",
                          f"{run['chunks']} / {run['resumed_chunks']}", f"{run['rows']:,}")
            (work / ".flywheel" / "features" / "online.db").unlink()
        killed = materialize(work, windows["60-day"], crash="materialize.chunk_3")
        table.add_row("killed after slice 4", "60-day", "-", "-", "4 / 0",
                      f"(exit {killed.get('killed')})")
        resumed = materialize(work, windows["60-day"])
        [run] = resumed["runs"]  # type: ignore[misc]
        table.add_row("restarted", "60-day", f"{resumed['seconds']:.1f}",
                      f"{resumed['peak_mb']:.0f}",
                      f"{run['chunks'] - run['resumed_chunks']} / {run['resumed_chunks']}",
                      f"{run['rows']:,}")
        console.print(table)
        console.print("The issue asks peak memory at most 500 MB for both windows, and a "
                      "restart that does not redo finished slices.")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
