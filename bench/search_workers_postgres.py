"""Eight search workers on one Optuna study in PostgreSQL, logging every trial as a child run
to an `mlflow server` on PostgreSQL (artifacts proxied to moto's S3 server).

Each worker is its own process, as a worker on another host would be: it opens the study
through flywheel's storage (``training.open_storage``: one engine, its pool bounded by
``tracking.pool_size`` and ``tracking.max_overflow``) and the tracking server through
``MlflowRegistry``, then asks, evaluates and tells trials and logs each with ``log_trial``.
The objective is trivial (a quadratic of two suggested numbers) so that 2,000 trials take
minutes, and what is measured is the storage: seconds in ``ask`` + ``suggest`` + ``tell`` per
trial, by trial number. While they run the database's connections are counted
(``pg_stat_activity``) against the configured bound.

    python bench/search_workers_postgres.py [--workers 8] [--trials 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PASSWORD_VAR = "FW_BENCH_PG_PASSWORD"
POOL_SIZE, MAX_OVERFLOW = 2, 1  # per worker engine (tracking.pool_size / max_overflow)
SERVER_POOL_SIZE, SERVER_MAX_OVERFLOW = 4, 2  # the mlflow server's (two engines)
console = Console(width=150)


def _spec(storage: str) -> Any:
    from flywheel.core.spec import parse_spec

    return parse_spec({"name": "bench", "data": {"path": "unused.csv"},
                       "target": {"column": "y", "task": "binary"},
                       "training": {"search": {"storage": storage}},
                       "tracking": {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}})


def _worker(index: int, storage: str, tracking_uri: str, trials: int, barrier: Any,
            results: Any) -> None:
    import optuna

    from flywheel.registry import MlflowRegistry
    from flywheel.training import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Ask-and-tell on a storage with heartbeats: Optuna warns that they serve optimize().
    warnings.filterwarnings("ignore", message="Heartbeat of storage")
    timings: list[tuple[int, float]] = []
    errors: list[str] = []
    try:
        study = optuna.load_study(study_name="bench", storage=open_storage(storage,
                                                                           _spec(storage)),
                                  sampler=optuna.samplers.RandomSampler(seed=index))
        registry = MlflowRegistry(tracking_uri, artifact_location=None, experiment="bench",
                                  model_name="bench")
        barrier.wait(timeout=300)
        with registry.parent_run(f"worker-{index}") as parent:
            for _ in range(trials):
                started = time.perf_counter()
                trial = study.ask()
                x = trial.suggest_float("x", -10, 10)
                y = trial.suggest_int("y", -5, 5)
                value = (x - 2) ** 2 + (y + 1) ** 2
                study.tell(trial, value)
                storage_s = time.perf_counter() - started
                timings.append((trial.number, storage_s))
                try:
                    registry.log_trial(parent, trial.number, params={"x": x, "y": y},
                                       metrics={"value": value}, state="complete",
                                       duration_s=storage_s)
                except Exception as exc:  # noqa: BLE001 - counted, the bench goes on
                    errors.append(f"{type(exc).__name__}: {exc}")
    except Exception:  # noqa: BLE001 - reported by the parent
        errors.append(traceback.format_exc())
    results.put((index, timings, errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=2000, help="Trials in all.")
    args = parser.parse_args()

    import optuna

    from flywheel.testing import MlflowServer, PostgresCluster, S3Server
    from flywheel.training import open_storage

    work = Path(tempfile.mkdtemp(prefix="flywheel-search-bench-"))
    os.chmod(work, 0o755)  # the PostgreSQL server user reaches its folder through it
    with PostgresCluster(work / "pg", max_connections=300) as pg, S3Server(work / "s3") as s3:
        os.environ[PASSWORD_VAR] = pg.password
        os.environ.update(s3.env())
        server_db = pg.create_database("mlflow_server")
        server_env = {**s3.env(), "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(SERVER_POOL_SIZE),
                      "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(SERVER_MAX_OVERFLOW)}
        with MlflowServer(work / "mlflow", backend_store_uri=server_db,
                          artifacts_destination="s3://flywheel/mlartifacts",
                          env=server_env) as server:
            storage = (f"postgresql://{pg.user}:${{{PASSWORD_VAR}}}@{pg.host}:{pg.port}/"
                       f"{pg.database}")
            optuna.create_study(study_name="bench", storage=open_storage(storage,
                                                                         _spec(storage)))
            rows = _run(args, pg, storage, server.uri)
    _report(args, *rows)


def _run(args: argparse.Namespace, pg: Any, storage: str, tracking_uri: str) -> tuple[Any, ...]:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(args.workers), context.Queue()
    per_worker = args.trials // args.workers
    procs = [context.Process(target=_worker, args=(i, storage, tracking_uri, per_worker,
                                                   barrier, results))
             for i in range(args.workers)]
    peak = {"study": 0, "server": 0}
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            try:
                peak["study"] = max(peak["study"], pg.connection_count())
                peak["server"] = max(peak["server"],
                                     pg.connection_count(database="mlflow_server"))
            except RuntimeError:
                pass
            stop.wait(0.5)

    counter = threading.Thread(target=count, daemon=True)
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    counter.start()
    got = [results.get(timeout=3600) for _ in procs]
    wall = time.perf_counter() - started
    stop.set()
    counter.join()
    for proc in procs:
        proc.join(timeout=60)
    timings = sorted(t for _, worker_timings, _ in got for t in worker_timings)
    errors = [e for _, _, worker_errors in got for e in worker_errors]
    return timings, errors, peak, wall


def _window(timings: list[tuple[int, float]], centre: int, half: int = 50) -> float:
    chosen = [s for number, s in timings if abs(number - centre) <= half]
    return statistics.median(chosen) if chosen else float("nan")


def _report(args: argparse.Namespace, timings: list[tuple[int, float]], errors: list[str],
            peak: dict[str, int], wall: float) -> None:
    last = max((n for n, _ in timings), default=0)
    early, late = _window(timings, 100), _window(timings, min(2000, last - 50))
    # One engine per worker process and one in this process (it created the study); the
    # counter's own psql session is on the postgres database, not counted.
    study_bound = (args.workers + 1) * (POOL_SIZE + MAX_OVERFLOW)
    server_bound = 2 * (SERVER_POOL_SIZE + SERVER_MAX_OVERFLOW)
    table = Table(title=f"{args.workers} search workers, one study on PostgreSQL, child runs "
                        f"on an mlflow server on PostgreSQL ({len(timings):,} trials, "
                        f"{wall:.0f} s; a shared, loaded machine)")
    for name in ("measure", "value", "bound / anchor", "ratio", "verdict"):
        table.add_column(name, justify="right" if name != "measure" else "left")
    table.add_row("client errors", str(len(errors)), "0", "", _ok(not errors))
    table.add_row("max connections, study database", str(peak["study"]), str(study_bound),
                  f"{peak['study'] / study_bound:.2f}", _ok(peak["study"] <= study_bound))
    table.add_row("max connections, mlflow server's database", str(peak["server"]),
                  str(server_bound), f"{peak['server'] / server_bound:.2f}",
                  _ok(peak["server"] <= server_bound))
    table.add_row("storage ms per trial at trial ~100 (median)", f"{early * 1e3:.1f}", "anchor",
                  "1.00", "")
    table.add_row(f"storage ms per trial at trial ~{min(2000, last - 50):,} (median)",
                  f"{late * 1e3:.1f}", f"{early * 1e3:.1f}", f"{late / early:.2f}",
                  _ok(late / early <= 1.5))
    table.add_row("trials per second (all workers)", f"{len(timings) / wall:.1f}", "", "", "")
    console.print(table)
    for error in errors[:5]:
        console.print(f"[red]error:[/red] {error}")


def _ok(passed: bool) -> str:
    return "[green]ok[/green]" if passed else "[red]FAIL[/red]"


if __name__ == "__main__":
    main()
