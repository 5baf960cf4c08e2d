"""pipelines._retrain_data: a retraining reads the window of the log it needs, not all of it."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import pytest

from flywheel.core.spec import parse_spec
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._predlog import log_location
from flywheel.pipelines._retrain_data import labelled_traffic
from flywheel.predlog import PredictionLog

LAYOUT = (("tenure", True),)
DAY = 86_400.0


def _project(root: Path, **retraining: object) -> ProjectContext:
    raw = {"name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"},
           "retraining": retraining}
    return ProjectContext(parse_spec(raw).at(root))


def _log(project: ProjectContext, ages_days: list[float], labelled_every: int = 1) -> float:
    """One row per age (days before now), labelled every ``labelled_every``-th; now."""
    now = time.time()
    log = PredictionLog(log_location(project))
    for i, age in enumerate(ages_days):
        log.append(LAYOUT, f"r{i}", now - age * DAY, "1", 1.0, [{"tenure": i}], ["no"],
                   [[0.5, 0.5]])
        log.flush()
    log.append_feedback([(f"r{i}", "yes") for i in range(len(ages_days))
                         if i % labelled_every == 0])
    log.close()
    return now


def _corrupt_older_than(project: ProjectContext, days: float) -> None:
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    for path in Path(log_location(project)).glob("kind=predictions/date=*/hour=*/*.parquet"):
        hour = dt.datetime.strptime(f"{path.parent.parent.name[5:]} {path.parent.name[5:]}",
                                    "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
        if hour + dt.timedelta(hours=1) < cutoff:
            path.write_bytes(b"not parquet")


def test_data_days_reads_only_the_hours_logged_within_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    project = _project(tmp_path, data_days=3)
    now = _log(project, [10, 8, 2, 1, 0.01])
    _corrupt_older_than(project, 5)  # a read of the whole log would report these
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        rows = labelled_traffic(project, now=dt.datetime.fromtimestamp(now, dt.UTC))
    assert rows["request_id"].tolist() == ["r2", "r3", "r4"]
    assert "unreadable" not in caplog.text


def test_data_rows_reads_the_newest_rows_until_they_hold_that_many_labelled_ones(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    project = _project(tmp_path, data_days=None, data_rows=2)
    ages = [40 - i for i in range(20)] + [0.5 - i / 100 for i in range(20)]
    now = _log(project, ages, labelled_every=5)  # labels on r0, r5, ... r35
    _corrupt_older_than(project, 20)
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        rows = labelled_traffic(project, now=dt.datetime.fromtimestamp(now, dt.UTC))
    assert rows["request_id"].tolist()[-2:] == ["r30", "r35"]
    assert "unreadable" not in caplog.text


def test_with_neither_bound_every_labelled_row_is_used(tmp_path: Path) -> None:
    project = _project(tmp_path, data_days=None)
    now = _log(project, [300, 100, 1])
    rows = labelled_traffic(project, now=dt.datetime.fromtimestamp(now, dt.UTC))
    assert rows["request_id"].tolist() == ["r0", "r1", "r2"]
