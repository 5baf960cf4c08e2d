from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from flywheel.core.errors import DataError
from flywheel.demo import BacktestSettings, split_history


def _history() -> pd.DataFrame:
    times = pd.date_range("2011-01-01", periods=600, freq="h").astype(str)  # no zone: UTC
    return pd.DataFrame({"when": times[::-1], "x": range(600), "y": range(600)})


def test_the_history_is_sorted_by_time_and_cut_at_train_until() -> None:
    cut = dt.datetime(2011, 1, 5, tzinfo=dt.UTC)
    train, replay, at = split_history(_history(), "when", cut)
    assert at == pd.Timestamp(cut)
    assert train["when"].is_monotonic_increasing and replay["when"].is_monotonic_increasing
    assert train["when"].max() < at <= replay["when"].min()
    assert len(train) == 96 and len(train) + len(replay) == 600
    assert str(train["when"].dt.tz) == "UTC"


def test_without_train_until_the_first_sixth_of_the_span_is_trained_on() -> None:
    train, replay, _ = split_history(_history(), "when", None)
    assert len(train) == 100 and len(replay) == 500


@pytest.mark.parametrize(("column", "until", "expected"), [
    ("time", None, "no column 'time'"),
    ("x", None, "empty"),
    ("when", dt.datetime(2012, 1, 1, tzinfo=dt.UTC), "leaves 600 row(s) to train on and 0"),
])
def test_a_history_that_cannot_be_cut_is_a_data_error_naming_why(
        column: str, until: dt.datetime | None, expected: str) -> None:
    history = _history().assign(x=lambda f: f["x"].where(f["x"] > 0))  # one missing value
    with pytest.raises(DataError) as caught:
        split_history(history, column, until)
    assert expected in str(caught.value)


def test_settings_are_sized_from_the_history_where_not_given() -> None:
    sized = BacktestSettings(window_rows=None).sized(7200, dt.timedelta(days=300))
    assert sized.rows_per_request == 1 and sized.window_rows == 300
    assert sized.cooldown == dt.timedelta(days=50)
    assert sized.min_labels == 360 and sized.canary_requests == 41 and sized.canary_labels == 16
    given = BacktestSettings(window_rows=1000, rows_per_request=10).sized(7200,
                                                                           dt.timedelta(days=30))
    assert given.window_rows == 1000 and given.rows_per_request == 10
    assert given.cooldown == dt.timedelta(days=7)  # never under one step
