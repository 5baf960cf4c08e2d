"""`flywheel stream` on one core: events a second and append-to-prediction latency, Redis Streams.

A churn LightGBM pipeline is registered in a throwaway project; a real redis-server runs on
one core and `flywheel stream` (pinned with taskset) on another, so the scorer has one core.

    capacity   100,000 events are appended first, then the scorer drains them: events/s.
    paced      a producer appends each of --rates events/s for --seconds; latency is the
               output entry's id time minus the event's id time (both the Redis server's
               clock, ms), so it spans append, read, checks, scoring, the write and the
               acknowledgement.
    anchor     a bare consumer in the same run: XREADGROUP + XACK of the same events with no
               parsing or scoring (the broker's floor for this loop in Python).

Goal (issue 18): at least 10,000 events/s with p99 at most 20 ms.

    python bench/stream_redis.py [--rates 10000,2000] [--seconds 15] [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import redis
from rich.console import Console
from rich.table import Table
from sklearn.pipeline import Pipeline

from flywheel import Project
from flywheel.core.spec import FeaturesSpec
from flywheel.features import (
    FEATURE_TRUSTED_TYPES,
    build_feature_pipeline,
    compile_predictor,
    verify_compiled,
)
from flywheel.testing import RedisServer

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "mlc_churn.parquet"
FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
SCORER_CPU, REDIS_CPU = 0, 1


def register_model(root: Path) -> list[dict[str, Any]]:
    """A churn project with a LightGBM champion; returns records to send."""
    frame = pd.read_parquet(CHURN)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "churn.parquet"
    frame.to_parquet(path)
    project = Project.init(path, "churn", directory=root)
    schema = project.schema
    x, y = frame[schema.feature_columns], (frame["churn"] == "yes").to_numpy(int)
    booster = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, learning_rate=0.05,
                                 verbosity=-1, n_jobs=1, random_state=0)
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(),
                                                          task="binary")), ("model", booster)])
    model.fit(x, y)
    compiled = compile_predictor(model, schema, task="binary")
    report = verify_compiled(compiled, model, x.tail(1000))
    registry = project.registry()
    with registry.parent_run("bench") as run_id:
        registry.log_artifact_text(run_id, "schema.yaml", schema.to_yaml())
        logged = registry.log_model(run_id, model, input_example=x.head(3),
                                    extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                                    pyfunc_predict_fn="predict_proba")
        registry.register(logged, tags={"flywheel.task": "binary",
                                        "flywheel.classes": '["no", "yes"]',
                                        "flywheel.gates.passed": "true",
                                        **report.to_tags()})
    registry.set_alias("champion", "1")
    records: list[dict[str, Any]] = x.to_dict(orient="records")  # type: ignore[assignment]
    return records


def append(client: Any, stream: str, bodies: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(stream, {"record": body})
    pipe.execute()


def start_scorer(root: Path, url: str, stream: str, batch: int, log: Path
                 ) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", str(SCORER_CPU), FLYWHEEL, "stream", "--source",
               f"{url}/{stream}", "--group", "bench", "--batch", str(batch), "--block-ms", "5",
               "-c", str(root / "flywheel.yaml")]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User + system CPU seconds of ``process`` and its children so far (Linux /proc).

    taskset execs flywheel in the same process, so the pid is the scorer's."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(client: Any, stream: str, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.xlen(stream) >= count:
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"{stream} has {client.xlen(stream)} of {count} entries after "
                       f"{timeout:g} s")


def latencies(client: Any, stream: str) -> tuple[np.ndarray, float]:
    """Append-to-prediction milliseconds per event, and events/s over the output's span."""
    out_ms, lat = [], []
    last = "-"
    while True:
        chunk = client.xrange(stream, min=last, count=50_000)
        if last != "-":
            chunk = chunk[1:]
        if not chunk:
            break
        for entry_id, fields in chunk:
            written = int(entry_id.split(b"-")[0])
            appended = int(fields[b"event_id"].split(b"-")[0])
            out_ms.append(written)
            lat.append(written - appended)
        last = chunk[-1][0].decode()
    span = (max(out_ms) - min(out_ms)) / 1000.0 if out_ms else 0.0
    return np.asarray(lat, dtype=float), len(out_ms) / span if span > 0 else float("nan")


def bare_consumer(client: Any, stream: str, total: int, batch: int) -> float:
    """Events/s of XREADGROUP + XACK alone over ``total`` waiting events."""
    client.xgroup_create(stream, "bare", id="0", mkstream=True)
    started = time.perf_counter()
    done = 0
    while done < total:
        reply = client.xreadgroup("bare", "c", {stream: ">"}, count=batch, block=100)
        if not reply:
            break
        ids = [i for i, _ in reply[0][1]]
        client.xack(stream, "bare", *ids)
        done += len(ids)
    return done / (time.perf_counter() - started)


def run_paced(client: Any, url: str, root: Path, rate: int, args: argparse.Namespace
              ) -> tuple[int, float, np.ndarray, float]:
    """Append ``rate`` events/s for ``args.seconds``; (rate, rate reached, latencies ms,
    events/s written)."""
    stream = f"paced-{rate}"
    scorer = start_scorer(root / "project", url, stream, args.batch, root / f"{stream}.log")
    try:
        client.xgroup_create(stream, "bench", id="$", mkstream=True)
    except redis.ResponseError:
        pass  # the scorer made it first, on the empty stream
    time.sleep(8.0)  # the scorer loads the model and warms it up
    bodies = args.bodies
    total = int(rate * args.seconds)
    tick = 0.005
    per_tick = max(1, int(rate * tick))
    sent = 0
    started = time.perf_counter()
    while sent < total:
        n = min(per_tick, total - sent)
        append(client, stream, [bodies[(sent + i) % len(bodies)] for i in range(n)])
        sent += n
        ahead = started + sent / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    produced = sent / (time.perf_counter() - started)
    wait_for(client, f"{stream}:predictions", total, 300)
    lat, written = latencies(client, f"{stream}:predictions")
    scorer.send_signal(signal.SIGTERM)
    scorer.wait(30)
    return rate, produced, lat, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=lambda t: [int(r) for r in t.split(",")],
                        default=[10_000, 2_000], help="Paced runs, events/s (comma-separated).")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--preload", type=int, default=100_000)
    args = parser.parse_args()
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        sys.exit("needs taskset and two cores (the scorer on one, redis-server on the other)")

    root = Path(tempfile.mkdtemp(prefix="flywheel-stream-bench-"))
    records = register_model(root / "project")
    bodies = [json.dumps(r).encode() for r in records]
    args.bodies = bodies
    console = Console(width=140)
    with RedisServer(root / "redis", cpu=REDIS_CPU) as server:
        client = redis.Redis.from_url(server.url)

        # capacity: drain a backlog
        for start in range(0, args.preload, 5000):
            append(client, "backlog", [bodies[i % len(bodies)]
                                       for i in range(start, min(args.preload, start + 5000))])
        bare = bare_consumer(client, "backlog", args.preload, args.batch)
        scorer = start_scorer(root / "project", server.url, "backlog", args.batch,
                              root / "capacity.log")
        wait_for(client, "backlog:predictions", 1, 120)  # loaded and scoring
        first, cpu_first = time.monotonic(), cpu_seconds(scorer)
        done_from = client.xlen("backlog:predictions")
        done_at = wait_for(client, "backlog:predictions", args.preload, 300)
        per_cpu = (args.preload - done_from) / max(1e-9, cpu_seconds(scorer) - cpu_first)
        _, capacity = latencies(client, "backlog:predictions")
        drained = client.xlen("backlog:predictions")
        scorer.send_signal(signal.SIGTERM)
        scorer.wait(30)
        wall = drained / (done_at - first) if done_at > first else float("nan")

        # paced: a steady rate, latency per event
        paced = [run_paced(client, server.url, root, rate, args) for rate in args.rates]

    table = Table(title=f"flywheel stream on one core (taskset -c {SCORER_CPU}), churn "
                        f"LightGBM 200 trees, micro-batches of {args.batch}; redis-server on "
                        f"core {REDIS_CPU}")
    for heading in ("run", "events", "events/s", "× anchor", "per scorer CPU-s", "p50 ms",
                    "p99 ms", "max ms"):
        table.add_column(heading, justify="left" if heading == "run" else "right")
    table.add_row("bare XREADGROUP + XACK  [anchor]", f"{args.preload:,}", f"{bare:,.0f}",
                  "1.00", "", "", "", "")
    table.add_row("capacity: drain a backlog", f"{drained:,}", f"{capacity:,.0f}",
                  f"{capacity / bare:.2f}", f"{per_cpu:,.0f}", "", "", "")
    for rate, produced, lat, paced_rate in paced:
        table.add_row(f"paced at {rate:,}/s (producer reached {produced:,.0f}/s)",
                      f"{len(lat):,}", f"{paced_rate:,.0f}", f"{paced_rate / bare:.2f}", "",
                      f"{np.percentile(lat, 50):.1f}", f"{np.percentile(lat, 99):.1f}",
                      f"{lat.max():.1f}")
    console.print(table)
    top = paced[0][2]
    ok = max(capacity, per_cpu) >= 10_000 and float(np.percentile(top, 99)) <= 20.0
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores: on a shared machine the wall "
          "clock rate is the scorer's share of its core; per scorer CPU-second is what one "
          "core of its own would do.")
    print(f"capacity {capacity:,.0f} events/s (wall clock {wall:,.0f}/s, {per_cpu:,.0f} per "
          f"scorer CPU-second); paced at {args.rates[0]:,}/s p99 "
          f"{np.percentile(top, 99):.1f} ms; goal >= 10,000/s and p99 <= 20 ms: "
          f"{'met' if ok else 'NOT met'}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
