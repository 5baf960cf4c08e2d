"""Windows of a prediction log of 1 M, 10 M and 50 M rows: `flywheel monitor --last 5000` and
one loop tick, time and peak memory, against the whole-log read of the flat log before it.

The logs are built with pyarrow directly in the on-disk layout, as ten million predictions a
day (about 417,000 an hour) of mlc_churn records with a real model's probabilities and a label
for one in ten, as the server's converter and the loop's upkeep leave them: every closed hour
one compact file; in the hour being written a compact per ten minutes (the loop merges ten
settled segments at a time), then the last twelve minutes as one-minute segments of the
converter (``seg-...``, footers listing their spool files), the newest one written a moment
ago; files dated when they would have been written.
The anchor is the read before this layout (``_predlog_whole_read.py``: every Arrow stream read
whole, then sliced) on the same rows in flat streams; at 50 M rows it would need about 20 GB
of memory, so it runs at 1 M and 10 M only.

Each measurement is a fresh process (`flywheel monitor` as a user runs it, the tick and the
reads in ``_predlog_child.py``); peak memory is the process's maximum resident set.

The monitor runs as ``flywheel monitor --last 5000 --no-report --json`` in a fresh interpreter
(``_predlog_child.py monitor``: the same command through the CLI's entry function, with the
time spent importing, reading the log and computing split out).

    python bench/predlog_windows.py [--sizes 1,10,50] [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table

from flywheel import Project
from flywheel.evaluation import predict_scores
from flywheel.predlog._dataset import SOURCES_KEY
from flywheel.predlog._rows import INPUT_PREFIX, prediction_schema

HERE = Path(__file__).resolve().parent
CHURN = HERE.parent / "examples" / "churn" / "mlc_churn.parquet"
BIN = Path(sys.executable).parent
PER_HOUR = 10_000_000 // 24
SEGMENT_SECONDS = 60
TAIL_SEGMENTS = 12
"""Unmerged one-minute segments at the end (ten to merge, plus two minutes to settle)."""
OPEN_COMPACT_SECONDS = 600
ANCHOR_MAX_ROWS = 10_000_000
console = Console(width=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50", help="Millions of rows, comma-separated.")
    parser.add_argument("--keep", type=Path, default=None, help="Build here and keep it.")
    parser.add_argument("--quick", action="store_true",
                        help="0.2 M and 1 M rows only (a development run).")
    args = parser.parse_args()
    sizes = [int(float(s) * 1_000_000) for s in ("0.2,1" if args.quick else args.sizes)
             .split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="flywheel-predlog-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    console.print(f"working in {work}; disk free: {shutil.disk_usage(work).free / 1e9:.0f} GB; "
                  "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    try:
        project = _project(work)
        hour, feedback = _template(project)
        rows = []
        for size in sizes:
            log = work / f"log-{size / 1e6:g}M"
            started = time.perf_counter()
            flat = work / f"flat-{size / 1e6:g}M" if size <= ANCHOR_MAX_ROWS else None
            _build(log, flat, hour, feedback, size)
            console.print(f"built {size:,} rows in {time.perf_counter() - started:.0f} s "
                          f"({_du(log) / 1e9:.2f} GB partitioned)")
            rows.append(_measure(work, log, flat, size))
            if args.keep is None:  # the next size needs the disk
                shutil.rmtree(log, ignore_errors=True)
                if flat is not None:
                    shutil.rmtree(flat, ignore_errors=True)
        _report(rows)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _project(work: Path) -> Project:
    shutil.copy(CHURN, work / "churn.parquet")
    Project.init(work / "churn.parquet", "churn", directory=work, name="churn")
    spec = yaml.safe_load((work / "flywheel.yaml").read_text())
    spec["training"] = {**spec["training"], "cv_folds": 3, "search": {"trials": 3, "seed": 0}}
    spec["retraining"] = {**spec.get("retraining", {}), "enabled": False}
    spec["monitoring"] = {**spec.get("monitoring", {}),
                          "alerts": {"sinks": [{"kind": "log"}]}}
    (work / "flywheel.yaml").write_text(yaml.safe_dump(spec))
    project = Project.load(work)
    console.print("training one version of mlc_churn ...")
    project.train(trials=3, seed=0)
    return project


def _template(project: Project) -> tuple[pa.Table, pa.Table]:
    """An hour of logged rows (ids and times filled in per hour) and its feedback."""
    data = pd.read_parquet(CHURN)
    features = project.schema.feature_columns
    sample = data.sample(PER_HOUR, replace=True, random_state=0).reset_index(drop=True)
    model = project.registry().load_model("1", allow_pickle=True)
    proba = predict_scores(model, sample[features], "binary").astype(np.float32)
    layout = tuple((f, sample[f].dtype.kind in "fi") for f in features)
    schema = prediction_schema(layout)
    n = len(sample)
    classes = np.array(["no", "yes"])
    columns = {
        "request_id": pa.nulls(n, pa.string()), "ts": pa.nulls(n, schema.field("ts").type),
        "model_version": pa.array(["1"] * n), "arm": pa.array(["champion"] * n),
        "latency_ms": pa.array(np.full(n, 1.5, np.float32)),
        "prediction": pa.array(classes[proba.argmax(axis=1)]),
        "value": pa.nulls(n, pa.float64()),
        "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(proba.ravel()), 2).cast(
            pa.list_(pa.float32())),
        "error": pa.nulls(n, pa.string()), "event_ts": pa.nulls(n, schema.field("ts").type)}
    for name, numeric in layout:
        values = sample[name].astype(float) if numeric else sample[name].astype(str)
        columns[INPUT_PREFIX + name] = pa.array(values)
    hour = pa.table(columns, schema=schema)
    labelled = np.arange(0, n, 10)
    feedback = pa.table({"request_id": pa.nulls(len(labelled), pa.string()),
                         "ts": pa.nulls(len(labelled), schema.field("ts").type),
                         "label": pa.array(sample["churn"].to_numpy()[labelled].astype(str))})
    return hour, feedback


def _build(log: Path, flat: Path | None, hour: pa.Table, feedback: pa.Table,
           size: int) -> None:
    """``size`` rows ending now, at PER_HOUR an hour, partitioned (and flat, for the anchor)."""
    now = time.time()
    step = 3600 / PER_HOUR
    # Blocks, newest first: the converter's segments, the open hour's compacts, whole hours
    # (partial at the ends), none across an hour's start.
    blocks: list[tuple[float, int, str]] = []  # (start time, rows, kind)
    open_hour = math.floor(now / 3600) * 3600
    end, left = now, size
    while left > 0:
        boundary = math.floor((end - 1e-6) / 3600) * 3600
        if len(blocks) < TAIL_SEGMENTS:
            kind, span = "segment", SEGMENT_SECONDS
        elif end > open_hour:
            kind, span = "open", OPEN_COMPACT_SECONDS
        else:
            kind, span = "closed", 3600
        start = max(boundary, end - span)
        fit = max(1, round((end - start) / step))
        rows = min(left, fit)
        if rows < fit:
            start = end - rows * step
        blocks.append((start, rows, kind))
        end = start
        left -= rows
    sinks = []
    if flat is not None:
        flat.mkdir(parents=True, exist_ok=True)
        for prefix, schema in (("pred", hour.schema), ("fb", feedback.schema)):
            sinks.append(pa.OSFile(str(flat / f"{prefix}-bench-0.arrows"), "wb"))
            _STREAMS[prefix] = pa.ipc.new_stream(sinks[-1], schema)
    for index, (start, rows, kind) in enumerate(reversed(blocks)):
        # When each file was written: a segment as its last second arrived, an open hour's
        # compact when its ten segments had settled, a closed hour's 15 minutes after it.
        delay = {"segment": 0.5, "open": 150.0, "closed": 900.0}[kind]
        written = min(now, start + rows * step + delay)
        _write_block(log, flat, hour, feedback, index, start, rows, step, kind, written)
    for writer in _STREAMS.values():
        writer.close()
    for sink in sinks:
        sink.close()
    _STREAMS.clear()


def _write_block(log: Path, flat: Path | None, hour: pa.Table, feedback: pa.Table, index: int,
                 start: float, rows: int, step: float, kind: str, written: float) -> None:
    micros = np.int64(start * 1e6) + (np.arange(rows) * step * 1e6).astype(np.int64)
    ts = pa.array(micros).cast(pa.timestamp("us", tz="UTC"))
    ids = pc.binary_join_element_wise(pa.array([f"b{index}-"] * rows),
                                      pa.array(np.arange(rows)).cast(pa.string()), "")
    table = hour.slice(0, rows).set_column(0, "request_id", ids).set_column(1, "ts", ts)
    table = table.set_column(table.schema.get_field_index("event_ts"), "event_ts", ts)
    labelled = np.arange(0, rows, 10)
    fb = feedback.slice(0, len(labelled)).set_column(0, "request_id", ids.take(labelled))
    fb = fb.set_column(1, "ts", pa.array(micros[labelled] + 1).cast(
        pa.timestamp("us", tz="UTC")))
    when = dt.datetime.fromtimestamp(start, dt.UTC)
    part = f"date={when:%Y-%m-%d}/hour={when:%H}"
    for folder, rows_of in (("predictions", table), ("feedback", fb)):
        spool = f"bench-{index:010d}-{'pred0' if folder == 'predictions' else 'feedback'}"
        if kind == "segment":  # as the converter writes it: its footer lists its spool files
            name = f"seg-bench-{index:010d}-{index:010d}.parquet"
            rows_of = rows_of.replace_schema_metadata({SOURCES_KEY: json.dumps([spool])})
        else:
            name = f"compact-bench{index:07d}.parquet"
        path = log / f"kind={folder}" / part / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows_of, path, compression="zstd")
        os.utime(path, (written, written))
    if flat is not None:
        for prefix, rows_of in (("pred", table), ("fb", fb)):
            _STREAMS[prefix].write_table(rows_of)


_STREAMS: dict[str, pa.ipc.RecordBatchStreamWriter] = {}
"""The flat log's streams, one per kind, as one server process wrote them."""


def _measure(work: Path, log: Path, flat: Path | None, size: int) -> dict[str, float]:
    spec = yaml.safe_load((work / "flywheel.yaml").read_text())
    spec["monitoring"]["log_location"] = str(log)
    (work / "flywheel.yaml").write_text(yaml.safe_dump(spec))
    state = work / ".flywheel" / "loop" / "state.json"
    state.unlink(missing_ok=True)
    row: dict[str, float] = {"rows": size}
    monitor = _child([sys.executable, str(HERE / "_predlog_child.py"), "monitor",
                      str(work / "flywheel.yaml")], work)
    row["monitor_s"], row["monitor_mb"] = monitor["wall"], monitor["peak_mb"]
    row["monitor_log_s"] = monitor["log_s"]
    row["monitor_start_s"] = monitor["wall"] - monitor["seconds"]
    row["monitor_compute_s"] = monitor["seconds"] - monitor["log_s"]
    read = _child([sys.executable, str(HERE / "_predlog_child.py"), "read", str(log), "5000"],
                  work)
    row["read_s"], row["read_mb"] = read["seconds"], read["peak_mb"]
    tick = _child([sys.executable, str(HERE / "_predlog_child.py"), "tick",
                   str(work / "flywheel.yaml")], work)
    row["tick_s"], row["tick_log_s"], row["tick_mb"] = tick["seconds"], tick["log_s"], \
        tick["peak_mb"]
    row["tick_compute_s"] = tick["seconds"] - tick["log_s"]
    row["next_tick_s"], row["next_tick_log_s"] = tick["next_seconds"], tick["next_log_s"]
    console.print(f"  {size:,} rows: tick {tick.get('action')}: {tick.get('detail')}")
    if flat is not None:
        whole = _child([sys.executable, str(HERE / "_predlog_whole_read.py"), str(flat),
                        "5000"], work)
        row["whole_s"], row["whole_mb"] = whole["seconds"], whole["peak_mb"]
    return row


def _child(command: list[str], cwd: Path) -> dict[str, float]:
    """Run ``command`` under /usr/bin/time; its JSON output (if any) with wall time and peak
    memory (maximum resident set, from the kernel) added."""
    with tempfile.NamedTemporaryFile(suffix=".time") as measured:
        started = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", measured.name, *command],
                              cwd=cwd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        peak_kb = float(Path(measured.name).read_text().strip().splitlines()[-1])
    if proc.returncode not in (0, 3):  # 3: `flywheel monitor` saw an alert fire
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    found: dict[str, float] = {}
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if last.startswith("{") and command[1].endswith(".py"):
        found = json.loads(last)
    return {**found, "wall": wall, "peak_mb": peak_kb / 1024}


def _report(rows: list[dict[str, float]]) -> None:
    table = Table(title="Prediction log windows, 10 M predictions a day (loaded machine: other "
                        "engineers' jobs share its 2 cores)")
    for heading in ("log rows", "monitor --last 5000 s (fresh process)",
                    "of it start-up + imports s", "of it reading the log s",
                    "of it monitoring s", "monitor peak MB", "loop tick s",
                    "of it reading the log s", "of it monitoring s", "tick peak MB",
                    "next tick, same loop s", "of it reading the log s",
                    "read_predictions(last=5000) s", "its peak MB", "whole-log read s",
                    "its peak MB"):
        table.add_column(heading, justify="right")
    for r in rows:
        table.add_row(f"{r['rows']:,.0f}", f"{r['monitor_s']:.2f}",
                      f"{r['monitor_start_s']:.2f}", f"{r['monitor_log_s']:.3f}",
                      f"{r['monitor_compute_s']:.2f}", f"{r['monitor_mb']:.0f}",
                      f"{r['tick_s']:.2f}", f"{r['tick_log_s']:.3f}",
                      f"{r['tick_compute_s']:.2f}", f"{r['tick_mb']:.0f}",
                      f"{r['next_tick_s']:.2f}", f"{r['next_tick_log_s']:.3f}",
                      f"{r['read_s']:.3f}", f"{r['read_mb']:.0f}",
                      f"{r['whole_s']:.2f}" if "whole_s" in r else "-",
                      f"{r['whole_mb']:.0f}" if "whole_mb" in r else "- (needs ~20 GB)")
    console.print(table)
    first, last = rows[0], rows[-1]
    keys = ("monitor_s", "monitor_log_s", "monitor_mb", "tick_s", "tick_log_s", "tick_mb",
            "next_tick_s", "read_s", "read_mb")
    ratios = {k: last[k] / first[k] for k in keys}
    console.print(f"{last['rows']:,.0f} rows / {first['rows']:,.0f} rows: " + ", ".join(
        f"{k} {v:.2f}x" for k, v in ratios.items()))
    for r in rows:
        if "whole_s" in r:
            console.print(f"at {r['rows']:,.0f} rows: the window read takes "
                          f"{r['read_s'] / r['whole_s']:.3f}x the time and "
                          f"{r['read_mb'] / r['whole_mb']:.2f}x the memory of the whole-log read")
    flat = all(v <= 1.5 for v in ratios.values())
    fast = all(max(r["read_s"], r["monitor_log_s"], r["tick_log_s"]) < 1.0 for r in rows)
    console.print(f"flat in log size (<= 1.5x): {'yes' if flat else 'NO'}; reading the log "
                  f"under 1 s in every command: {'yes' if fast else 'NO'}")
    console.print("load average (1, 5, 15 min) at the end: "
                  + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    console.print(json.dumps(rows))


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    main()
