"""The log's hour partitions: windows read only what they need; compaction and retention."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flywheel.predlog import (
    PredictionLog,
    count_rows,
    maintain_log,
    read_feedback,
    read_predictions,
)
from flywheel.predlog._dataset import compact_partition
from flywheel.predlog._location import open_location
from flywheel.predlog._spool import Converter
from flywheel.predlog._upkeep import SETTLED_FILES

LAYOUT = (("tenure", True), ("plan", False))
NOW = dt.datetime(2026, 11, 20, 13, 30, tzinfo=dt.UTC)  # before the tests run: labels
# (logged at the time they are sent) arrive after it


def _write(folder: Path, hours_ago: list[float], *, per_hour: int = 3, spool: Path | None = None,
           prefix: str = "r") -> list[str]:
    """Rows ``per_hour`` at each of ``hours_ago`` before NOW, one flush (one file) per row."""
    log = PredictionLog(folder, spool=spool)
    ids = []
    for ago in hours_ago:
        for i in range(per_hour):
            when = (NOW - dt.timedelta(hours=ago)).timestamp() + i
            rid = f"{prefix}{ago}-{i}"
            log.append(LAYOUT, rid, when, "1", 1.0, [{"tenure": i, "plan": "p"}], ["no"],
                       [[0.5, 0.5]])
            log.flush()
            ids.append(rid)
    log.close()
    return ids


def _corrupt(folder: Path, hour: str) -> None:
    for path in folder.glob(f"kind=*/date=*/hour={hour}/*.parquet"):
        path.write_bytes(b"not parquet")


def _hour_files(folder: Path, kind: str = "predictions") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(folder.glob(f"kind={kind}/date=*/hour=*/*.parquet")):
        found.setdefault(f"{path.parent.parent.name}/{path.parent.name}", []).append(path.name)
    return found


def test_files_land_in_hive_style_hour_partitions_of_the_time_each_row_was_logged(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    _write(folder, [0, 1, 25])
    assert sorted(_hour_files(folder)) == ["date=2026-11-19/hour=12", "date=2026-11-20/hour=12",
                                           "date=2026-11-20/hour=13"]
    table = pq.read_table(folder / "kind=predictions", partitioning="hive")
    assert table.num_rows == 9 and {"date", "hour", "in.tenure"} <= set(table.column_names)


def test_a_time_window_reads_only_the_hours_it_spans(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "log"
    ids = _write(folder, [0, 3, 30])
    _corrupt(folder, "10")  # three hours ago: outside the window below
    _corrupt(folder, "07")  # thirty hours ago, the day before
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        frame = read_predictions(folder, since=NOW - dt.timedelta(minutes=30))
    assert frame["request_id"].tolist() == ids[:3]
    assert "unreadable" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        read_predictions(folder, since=NOW - dt.timedelta(hours=4))
    assert "unreadable" in caplog.text  # the window that spans it does open it


def test_last_n_walks_hours_newest_first_and_stops_when_it_holds_n_rows(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "log"
    ids = _write(folder, [0, 1, 50], per_hour=4)
    _corrupt(folder, "11")  # fifty hours ago
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        frame = read_predictions(folder, last=6)
    assert frame["request_id"].tolist() == [*ids[6:8], *ids[0:4]]
    assert "unreadable" not in caplog.text


def test_labels_join_from_feedback_received_since_the_window_began(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "log"
    ids = _write(folder, [0, 40])
    log = PredictionLog(folder)
    log.append_feedback([(ids[0], "yes"), (ids[4], "no")])
    log.close()
    for path in folder.glob("kind=feedback/**/*.parquet"):
        old = path.parent.parent.parent / "date=2026-11-18" / "hour=21"
        old.mkdir(parents=True)
        (old / "x.parquet").write_bytes(b"not parquet")  # feedback from before the window
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        frame = read_predictions(folder, last=3).set_index("request_id")
    assert frame.loc[ids[0], "label"] == "yes" and frame["label"].notna().sum() == 1
    assert "unreadable" not in caplog.text
    assert sorted(read_feedback(folder)["request_id"]) == sorted([ids[0], ids[4]])


def test_replicas_in_separate_folders_share_one_log_at_one_location(tmp_path: Path) -> None:
    shared = tmp_path / "shared-log"
    first = _write(shared, [0], spool=tmp_path / "a" / "spool", prefix="a")
    second = _write(shared, [0], spool=tmp_path / "b" / "spool", prefix="b")
    assert sorted(read_predictions(shared)["request_id"]) == sorted(first + second)


def test_compaction_merges_a_closed_hours_files_into_one_and_keeps_every_row_once(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    ids = _write(folder, [0, 2], per_hour=5)
    before = read_predictions(folder)
    written = _hour_files(folder)
    done = maintain_log(folder, now=NOW)
    closed = len(written["date=2026-11-20/hour=11"])
    assert closed > 1 and (done.compacted_hours, done.compacted_files) == (1, closed)
    files = _hour_files(folder)
    assert len(files["date=2026-11-20/hour=11"]) == 1  # closed: compacted
    assert files["date=2026-11-20/hour=13"] == written["date=2026-11-20/hour=13"]  # open
    after = read_predictions(folder)
    assert sorted(after["request_id"]) == sorted(ids)
    assert after.drop(columns="label").equals(before.drop(columns="label"))


@pytest.mark.usefixtures("one_file_per_flush")
def test_a_compaction_killed_before_it_deleted_its_sources_double_counts_nothing(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    ids = _write(folder, [2], per_hour=4)
    partition = next(folder.glob("kind=predictions/date=*/hour=*"))
    saved = tmp_path / "saved"
    shutil.copytree(partition, saved)
    filesystem, _ = open_location(folder)
    assert compact_partition(filesystem, str(partition)) == 4
    for path in saved.iterdir():  # as if killed between the compact write and the deletes
        shutil.copy(path, partition / path.name)
    assert sorted(read_predictions(folder)["request_id"]) == sorted(ids)
    late = _write(folder, [2.5], per_hour=1, prefix="late")  # a late file after compaction
    assert compact_partition(filesystem, str(partition)) == 2  # the compact and the late file
    assert sorted(read_predictions(folder)["request_id"]) == sorted(ids + late)
    assert len(list(partition.glob("*.parquet"))) == 1


def test_a_spool_file_half_converted_when_the_converter_died_is_read_once(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder)
    log._inline = None  # the converter has not caught up
    for ago in (1, 0):  # one spool file spanning two hours
        log.append(LAYOUT, f"r{ago}", (NOW - dt.timedelta(hours=ago)).timestamp(), "1", 1.0,
                   [{"tenure": 1, "plan": "p"}], ["no"], [[0.5, 0.5]])
    log.flush()
    spool = next((folder / "_spool").glob("spool-*.jsonl"))
    data = spool.read_bytes()
    Converter(folder / "_spool", folder, "other").convert([spool])
    next(folder.glob("kind=predictions/date=*/hour=13/*.parquet")).unlink()
    spool.write_bytes(data)  # killed after the first hour's file, before the delete
    assert sorted(read_predictions(folder)["request_id"]) == ["r0", "r1"]


def test_retention_deletes_the_hours_older_than_log_retention_days(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    ids = _write(folder, [0, 24 * 3, 24 * 9, 24 * 20])
    done = maintain_log(folder, retention_days=7, now=NOW)
    assert done.expired_hours == 2
    assert sorted(read_predictions(folder)["request_id"]) == sorted(ids[:6])
    assert sorted(p.name for p in (folder / "kind=predictions").iterdir()) == [
        "date=2026-11-17", "date=2026-11-20"]


def test_rows_since_a_time_are_counted_from_footers_and_the_hour_it_falls_in(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    _write(folder, [0, 1, 30])
    log = PredictionLog(folder)
    log._inline = None  # one more row, still in the spool
    log.append(LAYOUT, "spooled", NOW.timestamp() + 5, "1", 1.0, [{"tenure": 1, "plan": "p"}],
               ["no"], [[0.5, 0.5]])
    log.flush()
    assert count_rows(folder) == 10
    assert count_rows(folder, since=NOW - dt.timedelta(hours=2)) == 7
    assert count_rows(folder, since=NOW - dt.timedelta(hours=1) + dt.timedelta(seconds=1)) == 6
    assert count_rows(folder, kind="feedback") == 0


def test_a_count_up_to_a_threshold_stops_at_the_newest_hours_that_reach_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "log"
    _write(folder, [0, 1, 30, 31], per_hour=3)
    _corrupt(folder, f"{(NOW - dt.timedelta(hours=30)).hour:02d}")  # would warn if opened
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        assert count_rows(folder, at_most=5) == 6  # the two newest hours
    assert "unreadable" not in caplog.text
    assert count_rows(folder, at_most=100) == 9  # all of them (one hour unreadable)


@pytest.mark.usefixtures("one_file_per_flush")
def test_last_n_in_a_busy_hour_reads_its_newest_files_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder)
    start = NOW - dt.timedelta(minutes=30)
    for i in range(15):  # one file every two minutes
        when = (start + dt.timedelta(minutes=2 * i)).timestamp()
        log.append(LAYOUT, f"r{i}", when, "1", 1.0, [{"tenure": i, "plan": "p"}], ["no"],
                   [[0.5, 0.5]])
        log.flush()
    log.close()
    files = sorted(folder.glob("kind=predictions/*/*/*.parquet"))
    for i, path in enumerate(files):  # written a second after their row was logged
        written = (start + dt.timedelta(minutes=2 * i, seconds=1)).timestamp()
        os.utime(path, (written, written))
    files[0].write_bytes(b"not parquet")
    os.utime(files[0], ((start + dt.timedelta(seconds=1)).timestamp(),) * 2)
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        frame = read_predictions(folder, last=3)
    assert frame["request_id"].tolist() == ["r12", "r13", "r14"]
    assert "unreadable" not in caplog.text


@pytest.mark.usefixtures("one_file_per_flush")
def test_the_hour_being_written_has_its_settled_small_files_merged_each_upkeep(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder)
    now = dt.datetime.now(dt.UTC)
    def flushes(first: int, count: int) -> None:
        for i in range(first, first + count):
            log.append(LAYOUT, f"r{i}", now.timestamp(), "1", 1.0,
                       [{"tenure": i, "plan": "p"}], ["no"], [[0.5, 0.5]])
            log.flush()

    flushes(0, SETTLED_FILES)
    done = maintain_log(folder, now=now + dt.timedelta(minutes=3))
    assert done.compacted_files == SETTLED_FILES
    flushes(SETTLED_FILES, 3)  # too few settled files to merge yet
    assert maintain_log(folder, now=now + dt.timedelta(minutes=3)).compacted_files == 0
    flushes(SETTLED_FILES + 3, SETTLED_FILES - 3)  # enough: one more compact beside the first
    log.close()
    maintain_log(folder, now=now + dt.timedelta(minutes=3))
    names = [p.name for p in folder.glob("kind=predictions/*/*/*.parquet")]
    assert len(names) == 2 and all(n.startswith("compact-") for n in names)
    every = sorted(f"r{i}" for i in range(2 * SETTLED_FILES))
    assert sorted(read_predictions(folder)["request_id"]) == every
    assert len(read_predictions(folder, last=4)) == 4
    maintain_log(folder, now=now + dt.timedelta(hours=2))  # closed: one file
    assert len(list(folder.glob("kind=predictions/*/*/*.parquet"))) == 1
    assert sorted(read_predictions(folder)["request_id"]) == every
