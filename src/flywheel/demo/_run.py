"""`flywheel demo`: the whole loop on a real year of New York flights.

Train on January and February; start the server; replay March to December as live traffic in
accelerated time (each request carries its flights' scheduled time as event time), post each
flight's true outcome as feedback some hours of simulated time later, and let the retraining
loop detect drift or decay, retrain on the recent window, roll the new version out and decide.
Midway the server is restarted, as happens in production. The delivery report closes the run.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from flywheel.core.yamlio import dump_yaml, read_yaml
from flywheel.demo._flights import FEATURES, TARGET, load_flights, months
from flywheel.demo._server import ServerProcess
from flywheel.pipelines.loop import LoopState, RetrainingLoop, TickResult
from flywheel.pipelines.project import Project

__all__ = ["DemoSettings", "run_demo"]

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """How big the demo is; ``quick()`` fits in about three minutes."""

    every: int = 1
    """Replay every n-th flight."""
    flights_per_request: int = 10
    label_delay_hours: float = 6.0
    tick_days: int = 7
    trials: int = 16
    timeout: float = 40.0
    retrain_trials: int = 8
    retrain_timeout: float = 20.0
    cooldown_days: float = 45.0
    window_rows: int = 6000
    min_labels: int = 15000
    data_rows: int = 60_000
    canary_requests: int = 150
    canary_labels: int = 60
    restart_month: int = 7

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(every=4, trials=6, timeout=10.0, retrain_trials=4, retrain_timeout=8.0,
                   cooldown_days=60.0, tick_days=14, window_rows=2500, min_labels=4000,
                   data_rows=20_000, canary_requests=40, canary_labels=15)


def run_demo(directory: Path, *, settings: DemoSettings | None = None,
             say: Say = print) -> Project:
    """Run the demo in ``directory`` (emptied first) and return its project."""
    settings = settings or DemoSettings()
    flights = load_flights()
    project = _prepare(directory, flights, settings, say)
    say(f"Training on January-February ({len(months(flights, 1, 2).iloc[::settings.every]):,} "
        "flights) ...")
    started = time.monotonic()
    result = project.train(trials=settings.trials, timeout=settings.timeout)
    say(f"  version {result.version.version} is champion: holdout "
        f"{_metrics_text(result.holdout_metrics)} ({time.monotonic() - started:.0f} s)")
    server = ServerProcess(directory, poll=0.5, log_file=directory / "server.log",
                           env={"FLYWHEEL_LOG_FLUSH_SECONDS": "0.2"}).start()
    say(f"Serving at {server.url}; replaying March-December as live traffic ...")
    try:
        _replay(project, server, months(flights, *range(3, 13)), settings, say)
    finally:
        server.stop()
    return project


def _prepare(directory: Path, flights: pd.DataFrame, settings: DemoSettings,
             say: Say) -> Project:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    data = directory / "flights_jan_feb.parquet"
    months(flights, 1, 2).iloc[::settings.every][[*FEATURES, TARGET]].to_parquet(data,
                                                                                index=False)
    Project.init(data, TARGET, directory=directory, name="flights")
    spec_path = directory / "flywheel.yaml"
    spec = read_yaml(spec_path)
    spec["training"]["learners"] = ["lightgbm"]
    spec["training"]["cv_folds"] = 3
    # Weather is seasonal and summer brings routes winter did not have: in retraining data
    # those are expected, so they are reported rather than refused.
    spec["validation"]["severity"] = {**spec["validation"].get("severity", {}),
                                      "out_of_range": "warning", "unseen_category": "warning",
                                      "null_rate": "warning"}
    monitoring = spec.setdefault("monitoring", {})
    monitoring["window_rows"] = settings.window_rows
    monitoring["alerts"] = {**monitoring.get("alerts", {}), "sinks": [{"kind": "file"}]}
    spec["retraining"] = {
        **spec.get("retraining", {}),
        "triggers": ["dataset_drift > 0", "roc_auc_drop > 0.03"],
        "cooldown_hours": 24 * settings.cooldown_days, "window_rows": settings.window_rows,
        # Retraining learns from January-February and the latest labelled traffic.
        "min_window_rows": settings.window_rows // 3, "data_days": None,
        "data_rows": settings.data_rows, "include_training_data": True,
        "min_labels": settings.min_labels, "trials": settings.retrain_trials,
        "timeout_seconds": settings.retrain_timeout, "rollout": "canary"}
    rollout = spec.setdefault("rollout", {})
    rollout["tick_seconds"] = 1.0
    # A model retrained under drift is meant to answer differently from the champion: the
    # labelled metric, not the divergence of the two prediction distributions, decides.
    rollout["limits"] = {**rollout.get("limits", {}), "max_divergence": None}
    rollout["canary"] = {**rollout.get("canary", {}), "stages": [10.0, 50.0, 100.0],
                         "min_requests": settings.canary_requests,
                         "min_labels": settings.canary_labels}
    spec_path.write_text(dump_yaml(spec), encoding="utf-8")
    say(f"Project in {directory}: predict `late` (arrival > 15 min late) from the schedule, "
        "route and origin weather")
    return Project.load(spec_path)


@dataclasses.dataclass
class _Traffic:
    sent: int = 0
    failed: int = 0
    labels: int = 0
    requests: int = 0


def _replay(project: Project, server: ServerProcess, replay: pd.DataFrame,
            settings: DemoSettings, say: Say) -> _Traffic:
    replay = replay.iloc[::settings.every]
    now = [replay["scheduled"].iloc[0].to_pydatetime()]
    loop = RetrainingLoop(project, clock=lambda: now[0], on_event=_reporter(say, now))
    traffic = _Traffic()
    due: collections.deque[tuple[pd.Timestamp, str, bool]] = collections.deque()
    delay = pd.Timedelta(hours=settings.label_delay_hours)
    client = httpx.Client(base_url=server.url, timeout=60)
    records = json.loads(replay[FEATURES].to_json(orient="records"))
    labels = replay[TARGET].to_numpy()
    times = replay["scheduled"].reset_index(drop=True)
    days = times.dt.floor("D")
    day_starts = np.flatnonzero(np.r_[True, days.to_numpy()[1:] != days.to_numpy()[:-1]])
    restarted = False
    for number, (start, end) in enumerate(zip(day_starts, [*day_starts[1:], len(times)],
                                                          strict=True)):
        for first in range(start, end, settings.flights_per_request):
            last = min(first + settings.flights_per_request, end)
            request_id = f"f{first:07d}"
            answer = _post(client, "/predict", records[first:last], {
                "x-request-id": request_id,
                "x-flywheel-event-time": str(times.iloc[first].timestamp())})
            traffic.requests += 1
            traffic.sent += last - first
            if answer is None:
                traffic.failed += last - first
                continue
            for i in range(first, last):
                row_id = request_id if last - first == 1 else f"{request_id}:{i - first}"
                due.append((times.iloc[i] + delay, row_id, bool(labels[i])))
        now[0] = (days.iloc[start] + pd.Timedelta(days=1)).to_pydatetime()
        traffic.labels += _post_labels(client, due, now[0])
        day = days.iloc[start]
        if not restarted and day.month >= settings.restart_month:
            say(f"[{day:%Y-%m-%d}] restarting the server (as a deploy would) ...")
            server.stop()
            server.start()
            restarted = True
        if number % settings.tick_days == settings.tick_days - 1 or _rolling_out(loop):
            time.sleep(0.3)  # the server writes its log every 0.2 s
            loop.tick()
    traffic.labels += _post_labels(client, due, None)
    time.sleep(0.5)
    for _ in range(3):  # let a rollout still running see its last labels
        if not _rolling_out(loop):
            break
        loop.tick()
    say(f"Replayed {traffic.sent:,} flights in {traffic.requests:,} requests "
        f"({traffic.failed:,} failed); {traffic.labels:,} labels posted")
    (project.workspace.root / "demo.json").write_text(json.dumps(
        {k: int(v) for k, v in dataclasses.asdict(traffic).items()}))
    return traffic


def _rolling_out(loop: RetrainingLoop) -> bool:
    return LoopState.read(loop.state_path).phase != "idle"


def _post(client: httpx.Client, path: str, body: Any, headers: dict[str, str]) -> Any:
    for attempt in range(5):
        try:
            response = client.post(path, json=body, headers=headers)
        except httpx.HTTPError:
            time.sleep(0.2 * (attempt + 1))
            continue
        if response.status_code < 300:
            return response.json()
        if response.status_code < 500:
            return None
        time.sleep(0.2 * (attempt + 1))
    return None


def _post_labels(client: httpx.Client, due: collections.deque[tuple[pd.Timestamp, str, bool]],
                 now: dt.datetime | None) -> int:
    batch = []
    while due and (now is None or due[0][0] <= now):
        _, row_id, label = due.popleft()
        batch.append({"request_id": row_id, "label": label})
    for chunk in _chunks(batch, 2000):
        _post(client, "/feedback", chunk, {})
    return len(batch)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _reporter(say: Say, now: list[dt.datetime]) -> Callable[[TickResult], None]:
    def report(result: TickResult) -> None:
        if result.action in ("waiting",):
            return
        if result.action == "checked":
            metrics = result.evidence.get("metrics", {})
            shown = {k: metrics[k] for k in ("drift_share", "roc_auc", "estimated_roc_auc")
                     if k in metrics}
            say(f"[{now[0]:%Y-%m-%d}] check: no trigger ({_metrics_text(shown)})")
            return
        say(f"[{now[0]:%Y-%m-%d}] {result.action}: {result.detail}")
    return report


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
