"""The prediction log in an object store (moto's S3 server), credentials from the environment."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from flywheel.core.errors import ConfigError
from flywheel.predlog import PredictionLog, _segment, maintain_log, read_feedback, read_predictions

pytestmark = pytest.mark.services

LAYOUT = (("tenure", True), ("plan", False))


@pytest.fixture
def s3_env(s3, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def _append(log: PredictionLog, rid: str, when: float) -> None:
    log.append(LAYOUT, rid, when, "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"], [[0.5, 0.5]])


def test_a_log_in_s3_is_written_by_the_converter_process_and_read_by_window(
        s3_env, tmp_path: Path) -> None:
    location = "s3://flywheel/predlog/windows"
    old = time.time() - 5 * 3600
    log = PredictionLog(location, spool=tmp_path / "spool", flush_interval=0.05).start()
    for i in range(20):
        _append(log, f"old{i}", old + i)
        _append(log, f"new{i}", time.time())
    log.append_feedback([("new3", "yes")])
    log.close()
    keys = s3_env.keys("flywheel", "predlog/windows/")
    assert any("/kind=predictions/date=" in k and "/hour=" in k and k.endswith(".parquet")
               for k in keys)
    assert not list((tmp_path / "spool").glob("spool-*.jsonl"))
    recent = read_predictions(location, since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert sorted(recent["request_id"]) == sorted(f"new{i}" for i in range(20))
    assert recent.set_index("request_id").loc["new3", "label"] == "yes"
    assert len(read_predictions(location, last=25)) == 25
    assert list(read_feedback(location)["request_id"]) == ["new3"]


def test_compaction_and_retention_work_in_the_object_store(
        s3_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Segments close after every round, so each flush is a file of its own and the closed
    # hour holds four small files to compact (one segment would leave nothing to merge).
    monkeypatch.setattr(_segment, "SEGMENT_SECONDS", 0.0)
    location = "s3://flywheel/predlog/upkeep"
    log = PredictionLog(location, spool=tmp_path / "spool")
    ten_days = time.time() - 10 * 86400
    three_hours = time.time() - 3 * 3600
    for i in range(4):
        _append(log, f"ancient{i}", ten_days + i)
        _append(log, f"closed{i}", three_hours + i)
        log.flush()
    log.close()
    done = maintain_log(location, retention_days=7)
    assert done.expired_hours == 1 and done.compacted_hours == 1 and done.compacted_files == 4
    assert sorted(read_predictions(location)["request_id"]) == [f"closed{i}" for i in range(4)]
    assert sum("compact-" in k for k in s3_env.keys("flywheel", "predlog/upkeep/")) == 1


def test_a_bucket_that_does_not_exist_is_one_clear_error_and_nothing_is_lost(
        s3_env, tmp_path: Path) -> None:
    location = "s3://no-such-bucket/log"
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket'.*does not exist"):
        PredictionLog(location, spool=tmp_path / "spool").start()
    with pytest.raises(ConfigError, match="does not exist"):
        read_predictions(location)
    log = PredictionLog(location, spool=tmp_path / "spool")
    _append(log, "kept", time.time())
    log.close()  # the write fails: the rows wait in the spool
    assert len(list((tmp_path / "spool").glob("spool-*.jsonl"))) == 1
