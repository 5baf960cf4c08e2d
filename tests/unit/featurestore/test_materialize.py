"""Materialization into the SQLite online store: latest per entity, windows, TTL, resume."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pandas as pd

from flywheel.core.workspace import Workspace
from flywheel.featurestore import FeatureStore, SqliteOnlineStore

from .conftest import DAYS, START, STORES, sales_frame, view, write_project

UTC = dt.UTC


def _at(days: float) -> dt.datetime:
    return (START + pd.Timedelta(days=days)).to_pydatetime()


def _latest(sales: pd.DataFrame, store: str, end: dt.datetime) -> dict[str, object]:
    rows = sales[(sales["store"] == store) & (sales["day"] < end)].sort_values("day")
    last = rows.iloc[-1]
    return {"level": float(last["level"]), "footfall": int(last["footfall"])}


def test_materialize_writes_the_latest_values_per_entity_before_the_end(tmp_path) -> None:
    spec = write_project(tmp_path, views=[view(ttl=None)])
    store = FeatureStore(spec, Workspace(spec.root))
    [result] = store.materialize(end=_at(10))
    assert result.rows == STORES and result.chunks == spec.feature_store.chunks
    sales = sales_frame()
    for name in ("s00", "s07", "s39"):
        assert store.get([name]) == {"sales": _latest(sales, name, _at(10))}
    assert store.get(["unknown"]) == {"sales": None}


def test_a_later_window_updates_and_an_older_one_never_overwrites(tmp_path) -> None:
    spec = write_project(tmp_path, views=[view(ttl=None)])
    store = FeatureStore(spec, Workspace(spec.root))
    sales = sales_frame()
    store.materialize(end=_at(5))
    [later] = store.materialize(end=_at(20))  # incremental: starts where the last run ended
    assert later.start == _at(5) and later.rows == STORES
    assert store.get(["s03"]) == {"sales": _latest(sales, "s03", _at(20))}
    [older] = store.materialize(start=_at(0), end=_at(8))
    assert older.rows == 0
    assert store.get(["s03"]) == {"sales": _latest(sales, "s03", _at(20))}


def test_rows_older_than_the_ttl_at_the_windows_end_are_not_materialized(tmp_path) -> None:
    sales = sales_frame()
    sales = sales[~((sales["store"] == "s01") & (sales["day"] > START + pd.Timedelta(days=3)))]
    spec = write_project(tmp_path, sales=sales, views=[view(ttl="2d")])
    store = FeatureStore(spec, Workspace(spec.root))
    store.materialize(end=_at(DAYS))
    assert store.get(["s01"]) == {"sales": None}
    assert store.get(["s02"])["sales"] is not None


def test_a_killed_materialization_resumes_without_redoing_finished_chunks(tmp_path) -> None:
    spec = write_project(tmp_path, views=[view(ttl=None)],
                         extra={"feature_store": {"views": [view(ttl=None)], "chunks": 8}})
    command = [sys.executable, "-m", "flywheel.cli.main", "features", "materialize", "--end",
               "2024-01-20T00:00:00Z", "-c", str(spec.root / "flywheel.yaml")]
    env = {**os.environ, "FLYWHEEL_CRASH_AT": "materialize.chunk_2"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9
    online = SqliteOnlineStore(spec.root / ".flywheel" / "features" / "online.db")
    run = "sales__v1:-:2024-01-20T00:00:00+00:00:8"
    assert online.done_chunks(run) == {0, 1, 2}
    resumed = subprocess.run([*command[:5], "-c", command[-1], "--json"], capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert '"resumed_chunks": 3' in resumed.stdout
    assert online.done_chunks(run) == set(range(8))
    store = FeatureStore(spec, Workspace(spec.root))
    sales = sales_frame()
    for name in ("s00", "s13", "s39"):
        assert store.get([name]) == {"sales": _latest(sales, name, _at(19))}


def test_rows_of_one_entity_and_time_materialize_the_latest_written(tmp_path) -> None:
    day = START + pd.Timedelta(days=1)
    sales = pd.DataFrame({"store": ["s01"] * 3, "day": [day] * 3, "level": [1.0, 3.0, 2.0],
                          "footfall": [1, 3, 2],
                          "written": pd.to_datetime(["2024-01-02 01:00", "2024-01-02 03:00",
                                                     "2024-01-02 02:00"], utc=True)})
    spec = write_project(tmp_path, sales=sales, views=[view(ttl=None, created_time="written")])
    store = FeatureStore(spec, Workspace(spec.root))
    store.materialize(end=_at(5))
    assert store.get(["s01"]) == {"sales": {"level": 3.0, "footfall": 3}}
