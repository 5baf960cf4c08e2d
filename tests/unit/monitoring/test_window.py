"""Windows from the prediction log and from data files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel.monitoring import operational_metrics, window_from_frame, window_from_log

CLASSES = ("no", "yes")


def _log(n: int = 6, **extra: object) -> pd.DataFrame:
    frame = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "ts": pd.date_range("2024-07-01", periods=n, freq="s", tz="UTC"),
        "model_version": ["3"] * n,
        "latency_ms": np.arange(1.0, n + 1),
        "prediction": ["yes"] * n,
        "value": [np.nan] * n,
        "probabilities": [[0.2, 0.8]] * n,
        "in.x": np.arange(n, dtype=float),
        "in.colour": ["red"] * n,
        "label": [None] * n,
    })
    for key, value in extra.items():
        frame[key] = value
    return frame


def _window(log: pd.DataFrame, **kw: object):  # type: ignore[no-untyped-def]
    return window_from_log(log, features=["x", "colour"], target="label_col", task="binary",
                           classes=CLASSES, version="3", source="test", **kw)


def test_a_log_without_arm_or_error_columns_counts_every_row_as_answered() -> None:
    window = _window(_log())
    assert window.rows == 6 and window.excluded == {}
    assert list(window.frame.columns) == ["x", "colour", "prediction.label", "prediction.score",
                                          "label_col"]
    assert window.frame["label_col"].isna().all()
    assert window.proba is not None and np.allclose(window.proba[:, 1], 0.8)


def test_shadow_rows_leave_the_window_and_errors_count_only_for_the_error_rate() -> None:
    log = _log(arm=["champion", "shadow", "challenger", "champion", "shadow", "champion"],
               error=[None, None, None, "timeout", None, None])
    log.loc[3, "probabilities"] = None
    window = _window(log)
    assert window.excluded == {"shadow": 2, "error": 1} and window.rows == 3
    assert window.log is not None and len(window.log) == 4
    ops = operational_metrics(window.log)
    assert ops["error_rate"] == 0.25 and ops["requests"] == 4


def test_rows_of_another_version_are_not_scored_for_this_one() -> None:
    window = _window(_log(model_version=["3", "4", "3", "4", "3", "3"]))
    assert window.excluded == {"other_versions": 2}
    assert window.scored is not None and window.scored.sum() == 4
    assert np.isnan(window.proba[1]).all() and pd.isna(window.frame["prediction.label"][1])


def test_labels_become_class_names_and_unknown_labels_are_noted() -> None:
    log = _log(label=["yes", "Yes", "no", "maybe", None, "NO"])
    window = window_from_log(log, features=["x"], target="churn", task="binary",
                             classes=CLASSES, version="3", source="test")
    assert window.frame["churn"].fillna("-").tolist() == ["yes", "yes", "no", "-", "-", "no"]
    assert any("1 label(s) name no class" in n and "'maybe'" in n for n in window.notes)


def test_a_feature_missing_from_the_log_is_noted() -> None:
    window = window_from_log(_log(), features=["x", "colour", "age"], target="t",
                             task="binary", classes=CLASSES, version="3", source="test")
    assert any("age" in n and "missing from the prediction log" in n for n in window.notes)


def test_multi_row_requests_count_once_for_latency_and_throughput() -> None:
    log = _log(4)
    log["request_id"] = ["a:0", "a:1", "a:2", "b"]
    log["latency_ms"] = [10.0, 10.0, 10.0, 2.0]
    ops = operational_metrics(log)
    assert ops["requests"] == 2 and ops["p50_ms"] == 6.0
    assert ops["span_seconds"] == 3.0 and ops["throughput_rps"] == 2 / 3


def test_an_empty_log_is_an_empty_window_not_an_error() -> None:
    window = _window(_log().iloc[:0])
    assert window.rows == 0 and operational_metrics(window.log) == {"requests": 0.0,
                                                                     "errors": 0.0}


def test_a_data_file_window_takes_labels_from_the_target_column() -> None:
    data = pd.DataFrame({"x": [1.0, 2.0], "colour": ["red", "blue"], "churn": [True, False]})
    window = window_from_frame(data, features=["x", "colour"], target="churn", task="binary",
                               classes=("false", "true"), source="file",
                               proba=np.array([[0.3, 0.7], [0.9, 0.1]]))
    assert window.frame["churn"].tolist() == ["true", "false"]
    assert window.frame["prediction.label"].tolist() == ["true", "false"]
