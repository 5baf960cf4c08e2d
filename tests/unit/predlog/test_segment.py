"""A converter's segments: a minute of flushes in one file per hour, every row read once."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from flywheel.predlog import PredictionLog, count_rows, maintain_log, read_predictions
from flywheel.predlog._segment import SEGMENT_SECONDS
from flywheel.predlog._spool import Converter

LAYOUT = (("tenure", True), ("plan", False))
OTHER = (("tenure", True),)


def _append(log: PredictionLog, rid: str, layout: tuple[tuple[str, bool], ...] = LAYOUT,
            ) -> None:
    record = {"tenure": 3, "plan": "p"} if layout == LAYOUT else {"tenure": 3}
    log.append(layout, rid, time.time(), "1", 1.0, [record], ["no"], [[0.5, 0.5]])


def _files(folder: Path, kind: str = "predictions") -> list[Path]:
    return sorted(folder.glob(f"kind={kind}/*/*/*.parquet"))


def _spools(folder: Path) -> list[Path]:
    return sorted((folder / "_spool").glob("spool-*.jsonl"))


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_minute_of_flushes_lands_in_one_file_per_hour_and_kind_with_every_row_once(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder)
    for i in range(40):  # forty flushes, as forty seconds of a server's traffic
        _append(log, f"r{i}", LAYOUT if i % 3 else OTHER)
        if i % 2:
            log.append_feedback([(f"r{i}", "yes")])
        log.flush()
    log.close()
    assert len(_files(folder)) == 1 and len(_files(folder, "feedback")) == 1
    assert _files(folder)[0].name.startswith("seg-")
    assert _spools(folder) == []
    frame = read_predictions(folder)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(40))
    assert frame["label"].notna().sum() == 20
    assert read_predictions(folder, last=5)["request_id"].tolist() == [
        f"r{i}" for i in range(35, 40)]
    assert count_rows(folder) == 40 and count_rows(folder, kind="feedback") == 20


def test_a_segment_closes_segment_seconds_after_it_opened_and_the_next_one_starts(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder)
    log._inline = None  # spool only; the converter below converts
    clock = _Clock()
    converter = Converter(folder / "_spool", folder, log.prefix, clock=clock)
    for i in range(6):
        _append(log, f"r{i}")
        log.flush()
        converter.convert(converter.own())
        clock.now += SEGMENT_SECONDS / 4
    names = [p.name for p in _files(folder)]
    assert len(names) == 2  # the first four rounds, then the next two
    assert names[0].endswith("-0000000001-0000000004.parquet")
    assert names[1].endswith("-0000000005-0000000006.parquet")
    assert sorted(read_predictions(folder)["request_id"]) == [f"r{i}" for i in range(6)]


def test_a_converter_killed_before_deleting_the_previous_segment_and_spool_double_counts_nothing(
        tmp_path: Path) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder)
    log._inline = None
    converter = Converter(folder / "_spool", folder, log.prefix)
    _append(log, "a")
    log.flush()
    converter.convert(converter.own())
    previous = _files(folder)[0]
    kept = tmp_path / previous.name
    shutil.copy(previous, kept)
    _append(log, "b")
    log.append_feedback([("a", "yes")])
    log.flush()
    spooled = {p.name: p.read_bytes() for p in _spools(folder)}
    converter.convert(converter.own())
    # As if killed after writing the new version: the previous one and the spool files remain.
    shutil.copy(kept, previous)
    for name, data in spooled.items():
        (folder / "_spool" / name).write_bytes(data)
    assert len(_files(folder)) == 2
    frame = read_predictions(folder)
    assert frame["request_id"].tolist() == ["a", "b"]
    assert frame["label"].tolist()[0] == "yes" and frame["label"].isna().tolist()[1]
    assert count_rows(folder) == 2 and count_rows(folder, kind="feedback") == 1
    adopter = Converter(folder / "_spool", folder, "adopter")  # adopts the spool files
    adopter.convert(adopter.orphans(0))
    assert sorted(read_predictions(folder)["request_id"]) == ["a", "b"]
    maintain_log(folder, now=None)
    assert sorted(read_predictions(folder)["request_id"]) == ["a", "b"]


def test_last_n_reads_the_newest_segment_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder)
    log._inline = None
    clock = _Clock()
    converter = Converter(folder / "_spool", folder, log.prefix, clock=clock)
    # A row every 15 s over five minutes, a segment a minute, all inside the last full hour
    # (rows crossing an hour would make a partition, and a file, more).
    start = (time.time() // 3600 - 1) * 3600 + 60
    for i in range(20):
        log.append(LAYOUT, f"r{i}", start + 15 * i, "1", 1.0, [{"tenure": 3, "plan": "p"}],
                   ["no"], [[0.5, 0.5]])
        log.flush()
        converter.convert(converter.own())
        clock.now += SEGMENT_SECONDS / 4
    files = _files(folder)
    assert len(files) == 5
    for index, path in enumerate(files):
        if path != files[-1]:  # would be reported if a read opened them
            path.write_bytes(b"not parquet")
        written = start + 15 * (4 * index + 3) + 1  # a second after its newest row
        os.utime(path, (written, written))
    with caplog.at_level(logging.WARNING, logger="flywheel.predlog"):
        frame = read_predictions(folder, last=3)
    assert frame["request_id"].tolist() == ["r17", "r18", "r19"]
    assert "unreadable" not in caplog.text
