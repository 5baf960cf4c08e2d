"""`flywheel demo`: the whole loop on a real year of New York flights.

A backtest (`flywheel.demo.run_backtest`) of the bundled flights: train on January and
February; serve; replay March to December as live traffic in accelerated time with each
flight's true outcome as feedback some hours of simulated time later; the retraining loop
detects drift or decay, retrains on the recent window, rolls the new version out and decides.
Midway the server is restarted, as happens in production. The delivery report closes the run.

The weather is a feature view keyed by origin and observation hour: training joins it to the
flights (the spine) as of each scheduled departure; the requests carry the origin and the
scheduled time (the event-time header), not weather values, and the server reads the weather
from the online store, which the replay materializes hour by hour of simulated time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from flywheel.demo._backtest import BacktestSettings, Say, run_backtest
from flywheel.demo._flights import (
    SCHEDULE,
    TARGET,
    TIME_COLUMN,
    WEATHER,
    load_flights,
    load_weather,
)
from flywheel.demo._views import BacktestView
from flywheel.pipelines.project import Project

__all__ = ["DemoSettings", "run_demo"]

_REPLAY_FROM = dt.datetime(2013, 3, 1, 5, tzinfo=dt.UTC)  # midnight of March 1st in New York


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

    def backtest(self) -> BacktestSettings:
        """The same replay as backtest settings."""
        end = dt.datetime(2014, 1, 1, tzinfo=dt.UTC)
        restart = dt.datetime(2013, self.restart_month, 1, tzinfo=dt.UTC)
        return BacktestSettings(
            feedback_delay=dt.timedelta(hours=self.label_delay_hours),
            step=dt.timedelta(days=self.tick_days), every=self.every,
            rows_per_request=self.flights_per_request, trials=self.trials,
            timeout=self.timeout, retrain_trials=self.retrain_trials,
            retrain_timeout=self.retrain_timeout, cooldown=dt.timedelta(days=self.cooldown_days),
            window_rows=self.window_rows, min_labels=self.min_labels, data_rows=self.data_rows,
            canary_requests=self.canary_requests, canary_labels=self.canary_labels,
            restart_at=(restart - _REPLAY_FROM) / (end - _REPLAY_FROM))


def run_demo(directory: Path, *, settings: DemoSettings | None = None,
             say: Say = print) -> Project:
    """Run the demo in ``directory`` (emptied first) and return its project."""
    settings = settings or DemoSettings()
    say(f"Project in {directory}: predict `late` (arrival > 15 min late) from the schedule, "
        "route and origin weather (a feature view keyed by origin and hour)")
    flights = load_flights(weather=False)[[TIME_COLUMN, *SCHEDULE, TARGET]]
    return run_backtest(directory, flights, target=TARGET, time_column=TIME_COLUMN,
                        train_until=_REPLAY_FROM, settings=settings.backtest(),
                        edit_spec=_flights_spec, name="flights", views=[weather_view()],
                        say=say)


def weather_view() -> BacktestView:
    """The hourly weather at each origin as a feature view: a flight sees the latest
    observation at or before its scheduled departure, at most three hours old."""
    return BacktestView(name="weather", table=load_weather(), entities=("origin",),
                        event_time="time_hour", features=tuple(WEATHER),
                        ttl=dt.timedelta(hours=3))


def _flights_spec(spec: dict[str, Any]) -> None:
    spec["training"]["learners"] = ["lightgbm"]
    spec["retraining"]["triggers"] = ["dataset_drift > 0", "roc_auc_drop > 0.03"]
    spec["retraining"]["rollout"] = "canary"
