from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flywheel.predlog import PredictionLog, read_feedback, read_predictions
from flywheel.predlog._spool import Converter

LAYOUT = (("tenure", True), ("plan", False))


def _log(tmp_path, **kwargs) -> PredictionLog:
    return PredictionLog(tmp_path / "predictions", **kwargs)


def test_classifier_rows_round_trip_with_inputs_probabilities_and_arm(tmp_path) -> None:
    log = _log(tmp_path)
    now = time.time()
    log.append(LAYOUT, "a", now, "3", 0.25, [{"tenure": 12, "plan": "gold"}], ["yes"],
               [[0.2, 0.8]])
    log.append(LAYOUT, "b", now, "4", 0.5, [{"tenure": 1.5, "plan": None}], ["no"],
               np.array([[0.9, 0.1]]), arm="challenger")
    log.close()
    frame = read_predictions(tmp_path / "predictions").set_index("request_id")
    assert frame.loc["a", "prediction"] == "yes"
    assert frame.loc["b", "model_version"] == "4"
    assert frame.loc["b", "arm"] == "challenger" and frame.loc["a", "arm"] == "champion"
    assert frame.loc["a", "in.tenure"] == 12.0 and frame.loc["a", "in.plan"] == "gold"
    assert pd.isna(frame.loc["b", "in.plan"])
    assert list(frame.loc["b", "probabilities"]) == pytest.approx([0.9, 0.1])
    assert frame["error"].isna().all()
    assert abs(frame.loc["a", "ts"].timestamp() - now) < 1e-3


def test_multi_row_requests_get_one_row_each_with_suffixed_ids(tmp_path) -> None:
    log = _log(tmp_path)
    rows = [{"tenure": i, "plan": "p"} for i in range(3)]
    log.append(LAYOUT, "r", time.time(), "1", 1.0, rows, ["x", "y", "z"],
               [[0.1, 0.9]] * 3)
    log.close()
    frame = read_predictions(tmp_path / "predictions")
    assert sorted(frame["request_id"]) == ["r:0", "r:1", "r:2"]
    assert frame.sort_values("request_id")["in.tenure"].tolist() == [0.0, 1.0, 2.0]


def test_thousands_of_rows_keep_each_row_aligned_across_write_chunks(tmp_path) -> None:
    log = _log(tmp_path)
    now = time.time()
    for i in range(5000):  # more than two 2,048-row chunks; some requests carry 3 records
        n = 3 if i % 7 == 0 else 1
        rows = [{"tenure": i, "plan": f"p{i}"}] * n
        log.append(LAYOUT, f"r{i}", now + i, "1", 1.0, rows, [f"L{i}"] * n,
                   [[i / 10_000, 1 - i / 10_000]] * n)
    log.close()
    frame = read_predictions(tmp_path / "predictions")
    assert len(frame) == 5000 + 2 * len(range(0, 5000, 7))
    tenure = frame["in.tenure"].astype(int)
    assert (frame["prediction"] == "L" + tenure.astype(str)).all()
    assert (frame["in.plan"] == "p" + tenure.astype(str)).all()
    first = frame["probabilities"].map(lambda p: float(p[0]))
    assert np.allclose(first, tenure / 10_000, atol=1e-6)
    assert np.allclose(frame["ts"].map(lambda t: t.timestamp()) - now, tenure, atol=1e-3)


def test_waiting_rows_hold_no_per_row_objects_for_the_garbage_collector(tmp_path) -> None:
    import gc

    log = _log(tmp_path)
    record = {"tenure": 3.0, "plan": "gold"}
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(2000):
        log.append(LAYOUT, "same-id", 1.0, "1", 1.0, [record], ["no"], [[0.5, 0.5]])
    assert len(gc.get_objects()) - before < 50
    log.close()


def test_a_layout_shared_by_a_regressor_and_a_classifier_keeps_both_kinds(tmp_path) -> None:
    log = _log(tmp_path)
    log.append(LAYOUT, "c", time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"],
               [[0.5, 0.5]])
    log.append(LAYOUT, "r", time.time(), "2", 1.0, [{"tenure": 3, "plan": "p"}], [12.5], None)
    log.close()
    frame = read_predictions(tmp_path / "predictions").set_index("request_id")
    assert frame.loc["c", "prediction"] == "no" and pd.isna(frame.loc["c", "value"])
    assert frame.loc["r", "value"] == 12.5 and frame.loc["r", "prediction"] == "12.5"
    assert frame.loc["r", "probabilities"] is None
    assert list(frame.loc["c", "probabilities"]) == [0.5, 0.5]


def test_regression_rows_store_values_and_no_probabilities(tmp_path) -> None:
    log = _log(tmp_path)
    log.append(LAYOUT, "a", time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], [123.5], None)
    log.close()
    frame = read_predictions(tmp_path / "predictions")
    assert frame["value"].tolist() == [123.5]
    assert frame["probabilities"].isna().all()


def test_mixed_types_in_a_text_column_are_kept_as_text(tmp_path) -> None:
    log = _log(tmp_path)
    log.append(LAYOUT, "a", time.time(), "1", 1.0, [{"tenure": 3, "plan": 415}], ["no"],
               [[0.5, 0.5]])
    log.append(LAYOUT, "b", time.time(), "1", 1.0, [{"tenure": 3, "plan": "415"}], ["no"],
               [[0.5, 0.5]])
    log.append(LAYOUT, "c", time.time(), "1", 1.0, [{"tenure": 3, "plan": True}], [True],
               [[0.5, 0.5]])
    log.close()
    frame = read_predictions(tmp_path / "predictions").set_index("request_id")
    assert frame["in.plan"].tolist() == ["415", "415", "true"]
    assert frame.loc["c", "prediction"] == "true"


def test_failed_model_calls_are_logged_as_error_rows_against_their_version(tmp_path) -> None:
    log = _log(tmp_path)
    log.append(LAYOUT, "a", time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"],
               [[0.5, 0.5]])
    log.append_error("a", time.time(), "2", 3.0, "challenger", "ValueError: boom")
    log.close()
    frame = read_predictions(tmp_path / "predictions")
    errors = frame[frame["error"].notna()]
    assert errors[["request_id", "model_version", "arm", "error"]].values.tolist() == [
        ["a", "2", "challenger", "ValueError: boom"]]
    assert errors["prediction"].isna().all()


def test_feedback_joins_the_latest_label_per_request(tmp_path) -> None:
    log = _log(tmp_path)
    log.append(LAYOUT, "a", time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"],
               [[0.5, 0.5]])
    log.append_feedback([("a", "no")])
    log.flush()
    log.append_feedback([("a", "yes"), ("unknown", 1)])
    log.close()
    frame = read_predictions(tmp_path / "predictions")
    assert frame["label"].tolist() == ["yes"]
    assert set(read_feedback(tmp_path / "predictions")["request_id"]) == {"a", "unknown"}


def test_background_thread_writes_within_the_flush_interval(tmp_path) -> None:
    log = _log(tmp_path, flush_interval=0.05).start()
    try:
        log.append(LAYOUT, "a", time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"],
                   [[0.5, 0.5]])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and read_predictions(tmp_path / "predictions").empty:
            time.sleep(0.05)
        assert read_predictions(tmp_path / "predictions")["request_id"].tolist() == ["a"]
    finally:
        log.close()


@pytest.mark.usefixtures("one_file_per_flush")
def test_a_torn_file_is_skipped_with_a_warning_and_the_other_files_stay_readable(
        tmp_path, caplog) -> None:
    log = _log(tmp_path)
    for rid in ("a", "b"):
        log.append(LAYOUT, rid, time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"],
                   [[0.5, 0.5]])
        log.flush()
    log.close()
    files = sorted((tmp_path / "predictions").glob("kind=predictions/*/*/*.parquet"))
    assert len(files) == 2
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) - 40])
    frame = read_predictions(tmp_path / "predictions")
    assert frame["request_id"].tolist() == ["a"]
    assert "unreadable" in caplog.text


def test_a_flat_log_of_an_earlier_version_is_moved_into_partitions_and_reads_the_same(
        tmp_path) -> None:
    folder = tmp_path / "predictions"
    folder.mkdir()
    schema = pa.schema([("request_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
                        ("model_version", pa.string()), ("prediction", pa.string())])
    with pa.OSFile(str(folder / "pred-old-0.arrows"), "wb") as sink, \
            pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch([pa.array(["old"]), pa.array([0], pa.timestamp(
            "us", tz="UTC")), pa.array(["1"]), pa.array(["no"])], schema=schema))
    frame = read_predictions(folder)
    assert frame["request_id"].tolist() == ["old"]
    assert frame["arm"].tolist() == ["champion"]
    assert frame["error"].isna().all()
    assert not list(folder.glob("*.arrows"))
    assert list(folder.glob("kind=predictions/date=1970-01-01/hour=00/legacy-pred-old-0-0000.parquet"))


def test_event_time_is_kept_when_given_and_defaults_to_the_request_time(tmp_path) -> None:
    log = _log(tmp_path)
    now = time.time()
    log.append(LAYOUT, "a", now, "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"], [[0.5, 0.5]],
               event_time=1_362_000_000.0)
    log.append(LAYOUT, "b", now, "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"], [[0.5, 0.5]])
    log.close()
    frame = read_predictions(tmp_path / "predictions").set_index("request_id")
    assert frame.loc["a", "event_ts"].timestamp() == 1_362_000_000.0
    assert frame.loc["b", "event_ts"] == frame.loc["b", "ts"]


def test_two_logs_opened_in_one_process_keep_separate_files(tmp_path) -> None:
    first, second = _log(tmp_path), _log(tmp_path)
    for log, rid in ((first, "a"), (second, "b")):
        log.append(LAYOUT, rid, time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"],
                   [[0.5, 0.5]])
        log.append_feedback([(rid, "yes")])
        log.close()
    frame = read_predictions(tmp_path / "predictions")
    assert sorted(frame["request_id"]) == ["a", "b"]
    assert frame["label"].tolist() == ["yes", "yes"]


def _spools(folder) -> list:
    return sorted((folder / "_spool").glob("spool-*.jsonl"))


def _files(folder) -> list:
    return sorted(folder.glob("kind=*/date=*/hour=*/*.parquet"))


def _append(log: PredictionLog, rid: str) -> None:
    log.append(LAYOUT, rid, time.time(), "1", 1.0, [{"tenure": 3, "plan": "p"}], ["no"],
               [[0.5, 0.5]])


def test_rows_not_yet_converted_are_read_from_the_spool_and_once_after_conversion(
        tmp_path) -> None:
    folder = tmp_path / "predictions"
    log = _log(tmp_path)
    log._inline = None  # as in a server whose converter has not caught up
    _append(log, "a")
    log.append_feedback([("a", "yes")])
    log.flush()
    assert len(_spools(folder)) == 2
    assert read_predictions(folder)[["request_id", "label"]].values.tolist() == [["a", "yes"]]
    copies = {p.name: p.read_bytes() for p in _spools(folder)}
    spool = folder / "_spool"
    other = Converter(spool, folder, "other")
    assert other.convert(other.orphans(0)) == 2
    assert _spools(folder) == [] and len(_files(folder)) == 2
    for name, data in copies.items():  # converted a second time by a converter killed late
        (spool / name).write_bytes(data)
    assert read_predictions(folder)[["request_id", "label"]].values.tolist() == [["a", "yes"]]
    Converter(spool, folder, "third").convert(_spools(folder))
    frame = read_predictions(folder)
    assert frame[["request_id", "label"]].values.tolist() == [["a", "yes"]]
    assert len(_files(folder)) == 2


def test_an_unreadable_spool_file_is_skipped_and_set_aside(tmp_path) -> None:
    folder = tmp_path / "predictions"
    log = _log(tmp_path)
    _append(log, "a")
    log.close()
    (folder / "_spool" / "spool-9-x-0000000001-pred0.jsonl").write_bytes(b"not json\n{}\n")
    assert read_predictions(folder)["request_id"].tolist() == ["a"]
    Converter(folder / "_spool", folder, "adopter").convert(_spools(folder))
    assert _spools(folder) == [] and list((folder / "_spool").glob("*.unreadable"))
    assert read_predictions(folder)["request_id"].tolist() == ["a"]


def test_the_converter_process_drains_the_spool_after_a_graceful_stop(tmp_path) -> None:
    folder = tmp_path / "predictions"
    log = _log(tmp_path, flush_interval=0.05).start()
    for i in range(200):
        _append(log, f"r{i}")
    log.close()
    assert _spools(folder) == []
    assert len(read_predictions(folder)) == 200
    assert _files(folder)


def test_after_sigkill_of_the_server_the_converter_converts_what_was_written(tmp_path) -> None:
    folder = tmp_path / "predictions"
    script = f"""
import os, signal, time
from flywheel.predlog import PredictionLog
log = PredictionLog({str(folder)!r}, flush_interval=0.05).start()
for i in range(50):
    log.append({LAYOUT!r}, f"r{{i}}", time.time(), "1", 1.0, [{{"tenure": 3, "plan": "p"}}],
               ["no"], [[0.5, 0.5]])
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    deadline = time.monotonic() + 30
    while _spools(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _spools(folder) == []
    assert sorted(read_predictions(folder)["request_id"]) == sorted(f"r{i}" for i in range(50))


def test_the_converter_leaves_idle_priority_while_it_is_behind_and_returns_to_it() -> None:
    script = """
import os
from flywheel.predlog._spool import _set_priority
_set_priority(idle=True)
first = os.sched_getscheduler(0)
_set_priority(idle=False)
print(first == os.SCHED_IDLE, os.sched_getscheduler(0) == os.SCHED_OTHER,
      os.getpriority(os.PRIO_PROCESS, 0))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["True", "True", "19"]


def test_upgrading_a_flat_log_keeps_every_row_once_across_hours_streams_and_the_spool(
        tmp_path) -> None:
    from flywheel.predlog._rows import prediction_batch, prediction_line, prediction_schema
    from flywheel.predlog._spool import write_spool

    folder = tmp_path / "predictions"
    folder.mkdir()

    def line(rid: str, when: float) -> bytes:
        return prediction_line(rid, when, "1", 1.0, [{"tenure": 1, "plan": "p"}], ["no"],
                               [[0.5, 0.5]], "champion", None)

    hour = 3600.0
    base = time.time() - 5 * hour
    batches = {"s1": ("a", base), "s2": ("b", base + hour), "s3": ("c", base + 2 * hour)}
    # Stream B converted s2 a second time (a converter killed between its fsync and delete).
    for stream, spools in (("pred-A-0.arrows", ["s1", "s2"]), ("pred-B-0.arrows", ["s2", "s3"])):
        with pa.OSFile(str(folder / stream), "wb") as sink, \
                pa.ipc.new_stream(sink, prediction_schema(LAYOUT)) as writer:
            for spool in spools:
                rid, when = batches[spool]
                writer.write_batch(prediction_batch(LAYOUT, line(rid, when)),
                                   custom_metadata={"spool": spool})
    write_spool(folder, "spool-x-0000000009-pred0.jsonl", {"kind": "pred", "layout": LAYOUT},
                [line("d", base + 3 * hour)])
    frame = read_predictions(folder)
    assert frame["request_id"].tolist() == ["a", "b", "c", "d"]
    assert not list(folder.glob("*.arrows")) and not list(folder.glob("spool-*"))
    assert len(list(folder.glob("kind=predictions/*/*/*.parquet"))) == 4
    assert read_predictions(folder)["request_id"].tolist() == ["a", "b", "c", "d"]
