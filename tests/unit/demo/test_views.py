"""A backtest's feature views: the spine project they make, and the online store materialized
on the replay's clock (issue 17 item 6, the demo's weather)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.core.errors import DataError
from flywheel.demo import BacktestView
from flywheel.demo._views import ViewClock, init_spine_project
from flywheel.featurestore import FeatureStore
from flywheel.pipelines.project import Project

START = pd.Timestamp("2013-01-01", tz="UTC")


def _weather() -> BacktestView:
    """Hourly readings at two airports; ``temp`` is the hour's number, so a value names its
    observation."""
    hours = pd.date_range(START, periods=48, freq="h")
    table = pd.DataFrame({"origin": np.repeat(["EWR", "JFK"], len(hours)),
                          "time_hour": np.tile(hours, 2),
                          "temp": np.tile(np.arange(len(hours), dtype=float), 2)})
    return BacktestView(name="weather", table=table, entities=("origin",),
                        event_time="time_hour", features=("temp",), ttl=dt.timedelta(hours=3))


def _spine(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    times = START + pd.to_timedelta(np.sort(rng.uniform(1, 40, n)), unit="h")
    return pd.DataFrame({"scheduled": times, "origin": rng.choice(["EWR", "JFK"], n),
                         "distance": rng.uniform(100, 2000, n),
                         "late": rng.random(n) > 0.6})


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("views") / "flights"
    root.mkdir()
    init_spine_project(root, _spine(), "late", "scheduled", [_weather()], "flights")
    return Project.load(root / "flywheel.yaml")


def test_a_backtest_with_a_view_trains_on_the_spine_joined_as_of_each_rows_time(
        project: Project) -> None:
    assert project.spec.data.spine is not None
    assert project.spec.data.spine.views == ["weather"]
    assert project.schema.feature_columns == ["origin", "distance", "temp"]
    assert project.schema.columns["scheduled"].role == "ignore"
    joined = project.load_data()
    hours = (joined["scheduled"] - START).dt.total_seconds() // 3600
    assert (joined["temp"] == hours).all()  # the observation of the row's hour, never later


def test_the_replay_clock_writes_the_online_store_as_of_the_replay_not_of_now(
        project: Project, tmp_path: Path) -> None:
    clock = ViewClock(project, dt.timedelta(hours=1))
    store = FeatureStore(project.spec, project.workspace)
    try:
        clock.advance(START + pd.Timedelta(hours=5, minutes=20))
        assert store.get(["EWR"])["weather"] == {"temp": 5.0}
        clock.advance(START + pd.Timedelta(hours=5, minutes=59))  # the same step: no write
        assert clock.runs == 1
        # A row dated one second after the replay's time is not served.
        clock.advance(START + pd.Timedelta(hours=6) - pd.Timedelta(seconds=1))
        assert clock.runs == 1 and store.get(["JFK"])["weather"] == {"temp": 5.0}
        clock.advance(START + pd.Timedelta(hours=6))
        assert clock.runs == 2 and store.get(["JFK"])["weather"] == {"temp": 6.0}
        clock.advance(START + pd.Timedelta(hours=30, minutes=1))
        assert store.get(["EWR"])["weather"] == {"temp": 30.0}
        assert "materialized weather 3 times" in clock.summary()
    finally:
        store.close()
        clock.close()


def test_a_view_table_without_a_declared_column_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    view = _weather()
    broken = BacktestView(name="weather", table=view.table.drop(columns=["temp"]),
                          entities=("origin",), event_time="time_hour", features=("temp",))
    with pytest.raises(DataError, match=r"feature view 'weather' has no column\(s\) \['temp'\]"):
        init_spine_project(tmp_path, _spine(), "late", "scheduled", [broken], "flights")
    assert list(tmp_path.iterdir()) == []


def test_a_history_holding_a_views_feature_is_refused_with_what_to_drop(tmp_path: Path) -> None:
    spine = _spine().assign(temp=1.0)
    with pytest.raises(DataError, match=r"the history holds \['temp'\].*drop them"):
        init_spine_project(tmp_path, spine, "late", "scheduled", [_weather()], "flights")
