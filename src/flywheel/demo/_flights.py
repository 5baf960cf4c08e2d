"""The demo's prediction problem on nycflights13: will a flight arrive more than 15 minutes late?

Features are what is known before departure: the schedule (hour, minute, day of week), carrier,
route (origin, destination, distance) and the weather at the origin in the hour of scheduled
departure. Weather is joined on (origin, scheduled hour) from the hourly observations, which are
taken at or before that hour, so nothing looks ahead. Cancelled and diverted flights (no arrival
delay) have no outcome and are dropped.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "late"
TIME_COLUMN = "scheduled"
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
           "visib"]
SCHEDULE = ["carrier", "origin", "dest", "distance", "hour", "minute", "day_of_week"]
FEATURES = [*SCHEDULE, *WEATHER]


def data_folder() -> Path:
    """Where the bundled nycflights13 files are (inside the installed package)."""
    return Path(str(resources.files("flywheel.demo") / "data"))


def load_flights(folder: str | Path | None = None) -> pd.DataFrame:
    """Flights of 2013 from New York with weather joined, sorted by scheduled departure.

    Columns: ``scheduled`` (UTC timestamp), ``month``, the features in `FEATURES` and the
    boolean target ``late`` (arrival delay over 15 minutes).
    """
    folder = Path(folder) if folder is not None else data_folder()
    flights = pd.read_parquet(folder / "nycflights13_flights.parquet")
    weather = pd.read_parquet(folder / "nycflights13_weather.parquet")
    flights = flights[flights["arr_delay"].notna()].copy()
    hour_utc = pd.to_datetime(flights["time_hour"], utc=True)
    flights[TIME_COLUMN] = hour_utc + pd.to_timedelta(flights["minute"], unit="m")
    flights["day_of_week"] = pd.to_datetime(
        flights[["year", "month", "day"]]).dt.day_name().str[:3].to_numpy()
    weather = weather.assign(time_hour=pd.to_datetime(weather["time_hour"], utc=True))
    weather = weather.drop_duplicates(["origin", "time_hour"])[["origin", "time_hour", *WEATHER]]
    joined = flights.assign(time_hour=hour_utc).merge(weather, on=["origin", "time_hour"],
                                                      how="left")
    joined[TARGET] = joined["arr_delay"] > 15
    columns = [TIME_COLUMN, "month", *FEATURES, TARGET]
    out = joined[columns].sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    out["distance"] = out["distance"].astype(np.float64)
    return out


def months(frame: pd.DataFrame, *which: int) -> pd.DataFrame:
    """The rows of the given months (1-12)."""
    return frame[frame["month"].isin(which)].reset_index(drop=True)
