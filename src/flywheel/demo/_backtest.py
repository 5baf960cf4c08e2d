"""`flywheel backtest`: what the loop would have done on a team's own history.

Train on the first period of a time-ordered table; start a real server; replay the rest as live
traffic in accelerated time (each request carries its rows' time as event time), post each
row's true outcome as feedback a delay of simulated time later, tick the retraining loop every
step of simulated time and let it detect drift or decay, retrain, roll out and decide. Midway
the server is restarted, as a deploy would. The delivery report, against the version trained on
the first period and never retrained, closes the run. `flywheel demo` is this on the flights,
with the weather as a feature view (``views``: the history is then a spine, and the replay
materializes the online store on its own clock, see `flywheel.demo._views`).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from flywheel.core.errors import DataError
from flywheel.core.yamlio import dump_yaml, read_yaml
from flywheel.demo._server import ServerProcess
from flywheel.demo._views import BacktestView, ViewClock, init_spine_project
from flywheel.pipelines.loop import RetrainingLoop, TickResult
from flywheel.pipelines.project import Project

__all__ = ["BacktestSettings", "run_backtest", "split_history"]

Say = Callable[[str], None]
SpecEdit = Callable[[dict[str, Any]], None]
# Sections of a user's spec that point at shared services: a backtest keeps its own workspace.
_SHARED_SECTIONS = ("tracking", "coordination", "feature_store", "deploy")


@dataclasses.dataclass(frozen=True)
class BacktestSettings:
    """How the replay runs; None fields are sized from the history."""

    feedback_delay: dt.timedelta = dt.timedelta(hours=6)
    """Simulated time between a row's prediction and its true outcome."""
    step: dt.timedelta = dt.timedelta(days=7)
    """Simulated time between two ticks of the retraining loop."""
    every: int = 1
    """Replay every n-th row."""
    rows_per_request: int | None = None
    trials: int = 16
    timeout: float = 40.0
    retrain_trials: int = 8
    retrain_timeout: float = 20.0
    cooldown: dt.timedelta | None = None
    """Least simulated time between retrainings; None: a sixth of the replayed span."""
    window_rows: int | None = None
    min_labels: int | None = None
    data_rows: int | None = 60_000
    canary_requests: int | None = None
    canary_labels: int | None = None
    restart_at: float | None = 0.4
    """Restart the server once this fraction of the replayed span has passed; None: never."""
    feature_step: dt.timedelta = dt.timedelta(hours=1)
    """With feature views: the online store is materialized up to a request's time when it is
    in a later step of simulated time than the last write."""

    @classmethod
    def quick(cls) -> BacktestSettings:
        """Small budgets: a few minutes on a laptop."""
        return cls(trials=6, timeout=10.0, retrain_trials=4, retrain_timeout=8.0,
                   step=dt.timedelta(days=14))

    def sized(self, replay_rows: int, span: dt.timedelta) -> BacktestSettings:
        """These settings with every None field sized for ``replay_rows`` rows over ``span``."""
        rows = max(replay_rows // self.every, 1)
        per_request = self.rows_per_request or (1 if rows < 50_000 else 10)
        requests = max(rows // per_request, 1)
        window = self.window_rows or int(min(6000, max(300, rows // 30)))
        canary = self.canary_requests or max(15, requests // 175)
        return dataclasses.replace(
            self, rows_per_request=per_request, window_rows=window,
            cooldown=self.cooldown or max(span / 6, self.step),
            min_labels=self.min_labels or max(window, rows // 20), canary_requests=canary,
            canary_labels=self.canary_labels or max(5, canary * 2 // 5))


def split_history(frame: pd.DataFrame, time_column: str, train_until: dt.datetime | None
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """The history sorted by time and cut at ``train_until`` (default: a sixth of the span).

    The time column becomes UTC timestamps (a time without a zone is taken as UTC).

    Raises:
        DataError: If the column is missing or not times, or either side of the cut is empty.
    """
    if time_column not in frame.columns:
        raise DataError(f"the history has no column {time_column!r} (columns: "
                        f"{', '.join(map(str, frame.columns))}); pass --time-column with the "
                        "column holding each row's time.")
    try:
        times = pd.to_datetime(frame[time_column], utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(f"the time column {time_column!r} does not hold times ({exc}); give it "
                        "ISO 8601 times or timestamps.") from exc
    if times.isna().any():
        raise DataError(f"the time column {time_column!r} has {int(times.isna().sum())} empty "
                        "value(s); every row of a history needs its time.")
    frame = frame.assign(**{time_column: times}).sort_values(time_column, kind="stable")
    frame = frame.reset_index(drop=True)
    first, last = frame[time_column].iloc[0], frame[time_column].iloc[-1]
    cut = pd.Timestamp(train_until) if train_until is not None else first + (last - first) / 6
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    train, replay = frame[frame[time_column] < cut], frame[frame[time_column] >= cut]
    if train.empty or replay.empty:
        raise DataError(f"cutting the history at {cut:%Y-%m-%d %H:%M} leaves "
                        f"{len(train):,} row(s) to train on and {len(replay):,} to replay; the "
                        f"history runs from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}: "
                        "pick --train-until inside it.")
    return train.reset_index(drop=True), replay.reset_index(drop=True), cut


def run_backtest(directory: Path, history: pd.DataFrame, *, target: str, time_column: str,
                 train_until: dt.datetime | None = None,
                 settings: BacktestSettings | None = None, spec: dict[str, Any] | None = None,
                 edit_spec: SpecEdit | None = None, name: str = "backtest",
                 views: Sequence[BacktestView] = (), say: Say = print) -> Project:
    """Backtest the loop on ``history`` in ``directory`` (emptied first); return the project.

    With ``views``, ``history`` is a spine: training joins the views to it as of each row's
    time, the requests carry the views' entity keys, and the server reads the views' features
    from the online store, which the replay materializes on its own clock (see
    `flywheel.demo._views`).

    Args:
        spec: A project spec (the contents of a flywheel.yaml) whose training, validation,
            monitoring, retraining and rollout choices the backtest keeps; its data, tracking,
            coordination, feature store and deploy sections are replaced by the backtest's own.
        edit_spec: Called with the spec before it is written, after the backtest's budgets.

    Raises:
        DataError: If the history cannot be cut in two or lacks the target.
    """
    if target not in history.columns:
        raise DataError(f"the history has no target column {target!r}; pass --target with the "
                        "column to predict.")
    train, replay, cut = split_history(history, time_column, train_until)
    span = (replay[time_column].iloc[-1] - replay[time_column].iloc[0]).to_pytimedelta()
    settings = (settings or BacktestSettings()).sized(len(replay), span)
    project = _prepare(directory, train.iloc[::settings.every], target, time_column, name,
                       settings, spec, edit_spec, views)
    say(f"Training on the history before {cut:%Y-%m-%d %H:%M} "
        f"({len(train.iloc[::settings.every]):,} rows) ...")
    started = time.monotonic()
    result = project.train(trials=settings.trials, timeout=settings.timeout)
    say(f"  version {result.version.version} is champion: holdout "
        f"{_metrics_text(result.holdout_metrics)} ({time.monotonic() - started:.0f} s)")
    clock = ViewClock(project, settings.feature_step) if views else None
    if clock is not None:
        clock.advance(replay[time_column].iloc[0])
        say(f"  feature views {', '.join(v.name for v in views)} joined point in time for "
            "training; the replay materializes the online store on its clock every "
            f"{_duration_text(settings.feature_step)}")
    server = ServerProcess(directory, poll=0.5, log_file=directory / "server.log",
                           env={"FLYWHEEL_LOG_FLUSH_SECONDS": "0.2"}).start()
    say(f"Serving at {server.url}; replaying {len(replay.iloc[::settings.every]):,} rows from "
        f"{cut:%Y-%m-%d} as live traffic ...")
    try:
        _Replay(project, server, settings, say, target, time_column, clock).run(
            replay.iloc[::settings.every].reset_index(drop=True))
    finally:
        server.stop()
        if clock is not None:
            clock.close()
    return project


def _prepare(directory: Path, train: pd.DataFrame, target: str, time_column: str, name: str,
             settings: BacktestSettings, base: dict[str, Any] | None,
             edit_spec: SpecEdit | None, views: Sequence[BacktestView]) -> Project:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    if views:
        init_spine_project(directory, train, target, time_column, views, name)
    else:
        data = directory / "train.parquet"
        train.drop(columns=[time_column]).to_parquet(data, index=False)
        Project.init(data, target, directory=directory, name=name)
    spec_path = directory / "flywheel.yaml"
    spec = read_yaml(spec_path)
    for section, value in (base or {}).items():
        if section not in ("name", "data", "target", *_SHARED_SECTIONS):
            spec[section] = value
    if base and "target" in base:
        spec["target"] = {**spec["target"], **base["target"], "column": target}
    if "cv_folds" not in (base or {}).get("training", {}):
        spec.setdefault("training", {})["cv_folds"] = 3  # many trainings in one run
    # History drifts by nature (seasons, new categories): in retraining data that is expected,
    # so it is reported rather than refused.
    validation = spec.setdefault("validation", {})
    validation["severity"] = {**validation.get("severity", {}), "out_of_range": "warning",
                              "unseen_category": "warning", "null_rate": "warning"}
    monitoring = spec.setdefault("monitoring", {})
    monitoring["window_rows"] = settings.window_rows
    monitoring["alerts"] = {**monitoring.get("alerts", {}), "sinks": [{"kind": "file"}]}
    window = int(settings.window_rows or 0)
    cooldown = settings.cooldown or settings.step
    spec["retraining"] = {
        **spec.get("retraining", {}),
        "cooldown_hours": cooldown.total_seconds() / 3600, "window_rows": window,
        # Retraining learns from the first period and the latest labelled traffic.
        "min_window_rows": max(window // 3, 1), "data_days": None,
        "data_rows": settings.data_rows, "include_training_data": True,
        "min_labels": settings.min_labels, "trials": settings.retrain_trials,
        "timeout_seconds": settings.retrain_timeout}
    rollout = spec.setdefault("rollout", {})
    rollout["tick_seconds"] = 1.0
    # A model retrained under drift is meant to answer differently from the champion: the
    # labelled metric, not the divergence of the two prediction distributions, decides.
    rollout["limits"] = {**rollout.get("limits", {}), "max_divergence": None}
    rollout["canary"] = {**rollout.get("canary", {}), "stages": [10.0, 50.0, 100.0],
                         "min_requests": settings.canary_requests,
                         "min_labels": settings.canary_labels}
    if edit_spec is not None:
        edit_spec(spec)
    spec_path.write_text(dump_yaml(spec), encoding="utf-8")
    return Project.load(spec_path)


@dataclasses.dataclass
class _Traffic:
    sent: int = 0
    failed: int = 0
    labels: int = 0
    requests: int = 0


class _Replay:
    """The rows after the cut as live traffic, a day of simulated time at a time."""

    def __init__(self, project: Project, server: ServerProcess, settings: BacktestSettings,
                 say: Say, target: str, time_column: str, clock: ViewClock | None) -> None:
        self.project, self.server, self.settings, self.say = project, server, settings, say
        self.target, self.time_column, self.clock = target, time_column, clock
        self.now: list[dt.datetime] = []
        self.due: collections.deque[tuple[pd.Timestamp, str, Any]] = collections.deque()
        self.traffic = _Traffic()

    def run(self, replay: pd.DataFrame) -> _Traffic:
        settings, traffic = self.settings, self.traffic
        times = replay[self.time_column]
        self.now = [times.iloc[0].to_pydatetime()]
        loop = RetrainingLoop(self.project, clock=lambda: self.now[0],
                              on_event=_reporter(self.say, self.now))
        client = httpx.Client(base_url=self.server.url, timeout=60)
        features = [c for c in self.project.schema.feature_columns if c in replay.columns]
        records = json.loads(replay[features].to_json(orient="records", date_format="iso"))
        labels = [r[self.target] for r in
                  json.loads(replay[[self.target]].to_json(orient="records"))]
        days = times.dt.floor("D")
        day_starts = np.flatnonzero(np.r_[True, days.to_numpy()[1:] != days.to_numpy()[:-1]])
        restart = None if settings.restart_at is None else \
            times.iloc[0] + (times.iloc[-1] - times.iloc[0]) * settings.restart_at
        next_tick = times.iloc[0] + settings.step
        per_request = settings.rows_per_request or 1
        for start, end in zip(day_starts, [*day_starts[1:], len(times)], strict=True):
            for first in range(start, end, per_request):
                last = min(first + per_request, end)
                if self.clock is not None:
                    self.clock.advance(times.iloc[first])
                self._send(client, records, labels, times, first, last)
            self.now[0] = (days.iloc[start] + pd.Timedelta(days=1)).to_pydatetime()
            traffic.labels += _post_labels(client, self.due, self.now[0])
            if restart is not None and days.iloc[start] >= restart:
                self.say(f"[{days.iloc[start]:%Y-%m-%d}] restarting the server (as a deploy "
                         "would) ...")
                self.server.stop()
                self.server.start()
                restart = None
            if self.now[0] >= next_tick or _rolling_out(loop):
                while next_tick <= self.now[0]:
                    next_tick += settings.step
                time.sleep(0.3)  # the server writes its log every 0.2 s
                loop.tick()
        traffic.labels += _post_labels(client, self.due, None)
        time.sleep(0.5)
        for _ in range(3):  # let a rollout still running see its last labels
            if not _rolling_out(loop):
                break
            loop.tick()
        self.say(f"Replayed {traffic.sent:,} rows in {traffic.requests:,} requests "
                 f"({traffic.failed:,} failed); {traffic.labels:,} labels posted")
        if self.clock is not None:
            self.say(f"Features: {self.clock.summary()}; {_lookups_text(client)}")
        (self.project.workspace.root / "demo.json").write_text(json.dumps(
            {k: int(v) for k, v in dataclasses.asdict(traffic).items()}))
        return traffic

    def _send(self, client: httpx.Client, records: list[Any], labels: list[Any],
              times: pd.Series, first: int, last: int) -> None:
        request_id = f"r{first:08d}"
        answer = _post(client, "/predict", records[first:last], {
                           "x-request-id": request_id,
                           "x-flywheel-event-time": str(times.iloc[first].timestamp())})
        self.traffic.requests += 1
        self.traffic.sent += last - first
        if answer is None:
            self.traffic.failed += last - first
            return
        delay = pd.Timedelta(self.settings.feedback_delay)
        for i in range(first, last):
            row_id = request_id if last - first == 1 else f"{request_id}:{i - first}"
            self.due.append((times.iloc[i] + delay, row_id, labels[i]))


def _rolling_out(loop: RetrainingLoop) -> bool:
    return loop.read_state().phase != "idle"


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


def _post_labels(client: httpx.Client, due: collections.deque[tuple[pd.Timestamp, str, Any]],
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
            shown = {k: metrics[k] for k in ("drift_share", "roc_auc", "estimated_roc_auc",
                                             "rmse", "mae", "r2", "accuracy", "log_loss")
                     if k in metrics}
            say(f"[{now[0]:%Y-%m-%d}] check: no trigger ({_metrics_text(shown)})")
            return
        say(f"[{now[0]:%Y-%m-%d}] {result.action}: {result.detail}")
    return report


def _lookups_text(client: httpx.Client) -> str:
    try:
        stats = client.get("/readyz").json().get("features") or {}
    except (httpx.HTTPError, ValueError):
        return "the server's lookup counts are not available"
    lookups = sum(int(s.get("lookups", 0)) for s in stats.values())
    misses = sum(int(n) for s in stats.values() for n in s.get("misses", {}).values())
    return f"the server looked up {lookups:,} records since its restart ({misses:,} missed)"


def _duration_text(step: dt.timedelta) -> str:
    hours = step.total_seconds() / 3600
    return f"{hours:g} h" if hours < 48 else f"{hours / 24:g} d"


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
