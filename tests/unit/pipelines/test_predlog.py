"""pipelines._predlog: a project's log location, and the windows one tick reads once."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from flywheel.core.spec import parse_spec
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._predlog import LogWindows, log_location, spool_folder
from flywheel.predlog import PredictionLog

LAYOUT = (("tenure", True),)


def _project(root: Path, **monitoring: object) -> ProjectContext:
    raw = {"name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"},
           "monitoring": monitoring}
    return ProjectContext(parse_spec(raw).at(root))


def test_the_log_location_resolves_against_the_project_folder_and_an_s3_log_spools_locally(
        tmp_path: Path) -> None:
    assert log_location(_project(tmp_path)) == str(tmp_path / ".flywheel" / "predictions")
    assert spool_folder(_project(tmp_path)) == tmp_path / ".flywheel" / "predictions" / "_spool"
    remote = _project(tmp_path, log_location="s3://bucket/log")
    assert log_location(remote) == "s3://bucket/log"
    assert spool_folder(remote) == tmp_path / ".flywheel" / "predictions" / "_spool"


def test_a_window_asked_for_twice_in_one_tick_is_read_once_and_a_later_since_is_cut_from_it(
        tmp_path: Path) -> None:
    project = _project(tmp_path)
    log = PredictionLog(log_location(project))
    now = time.time()
    for i in range(4):
        log.append(LAYOUT, f"r{i}", now - 30 + 10 * i, "1", 1.0, [{"tenure": i}], ["no"],
                   [[0.5, 0.5]])
    log.close()
    windows = LogWindows(project)
    start = dt.datetime.fromtimestamp(now - 60, dt.UTC)
    first = windows.read(since=start)
    assert windows.read(since=start) is first
    later = windows.read(since=dt.datetime.fromtimestamp(now - 15, dt.UTC))
    assert later["request_id"].tolist() == ["r2", "r3"]
    log = PredictionLog(log_location(project))  # rows logged after the tick read
    log.append(LAYOUT, "r9", now, "1", 1.0, [{"tenure": 9}], ["no"], [[0.5, 0.5]])
    log.close()
    assert len(windows.read(since=start)) == 4  # the tick's view stays one view
    assert len(LogWindows(project).read(since=start)) == 5  # the next tick sees it
