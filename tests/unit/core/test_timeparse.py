from __future__ import annotations

import datetime as dt

import pytest

from flywheel.core.timeparse import parse_iso_time


@pytest.mark.parametrize("text", ["2024-07-01T12:00Z", "2024-07-01T12:00",
                                  " 2024-07-01T12:00:00+00:00 ", "2024-07-01T14:00+02:00"])
def test_iso_times_with_z_an_offset_or_no_zone_read_as_the_same_utc_instant(text: str) -> None:
    assert parse_iso_time(text) == dt.datetime(2024, 7, 1, 12, tzinfo=dt.UTC)


def test_a_date_alone_is_midnight_utc() -> None:
    assert parse_iso_time("2024-07-01").tzinfo is not None
    assert parse_iso_time("2024-07-01") == dt.datetime(2024, 7, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("text", ["yesterday", "", "2024-13-01", "12:00 July 1st"])
def test_text_that_is_not_an_iso_time_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso_time(text)
