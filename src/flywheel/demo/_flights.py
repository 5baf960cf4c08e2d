"""The demo's prediction problem on nycflights13: will a flight arrive more than 15 minutes late?

Features are what is known before departure: the schedule (hour, minute, day of week), carrier,
route (origin, destination, distance) and the weather at the origin in the hour of scheduled
departure. Cancelled and diverted flights (no arrival delay) have no outcome and are dropped.

The demo keeps the weather in a feature view (`load_weather`: the hourly observations keyed by
origin and observation hour): training joins it to the flights (`load_flights(weather=False)`,
the spine) as of each scheduled departure, and the server reads it from the online store.
`load_flights()` is the same table with the weather joined on (origin, scheduled hour), for a
backtest of the flights as one plain table.
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


def load_weather(folder: str | Path | None = None) -> pd.DataFrame:
    """The hourly weather observations at the three New York airports in 2013.

    Columns: ``origin``, ``time_hour`` (UTC timestamp of the observation hour) and `WEATHER`;
    one row per origin and hour.
    """
    folder = Path(folder) if folder is not None else data_folder()
    weather = pd.read_parquet(folder / "nycflights13_weather.parquet")
    weather = weather.assign(time_hour=pd.to_datetime(weather["time_hour"], utc=True))
    weather = weather.drop_duplicates(["origin", "time_hour"])[["origin", "time_hour", *WEATHER]]
    return weather.sort_values(["time_hour", "origin"], kind="stable").reset_index(drop=True)


def load_flights(folder: str | Path | None = None, *, weather: bool = True) -> pd.DataFrame:
    """Flights of 2013 from New York, sorted by scheduled departure.

    Columns: ``scheduled`` (UTC timestamp), ``month``, the features in `FEATURES` (without
    `WEATHER` when ``weather`` is false) and the boolean target ``late`` (arrival delay over
    15 minutes). The weather is joined on (origin, scheduled hour): the observation of that
    hour, taken at or before the departure, so nothing looks ahead.
    """
    folder = Path(folder) if folder is not None else data_folder()
    flights = pd.read_parquet(folder / "nycflights13_flights.parquet")
    flights = flights[flights["arr_delay"].notna()].copy()
    hour_utc = pd.to_datetime(flights["time_hour"], utc=True)
    flights[TIME_COLUMN] = hour_utc + pd.to_timedelta(flights["minute"], unit="m")
    flights["day_of_week"] = pd.to_datetime(
        flights[["year", "month", "day"]]).dt.day_name().str[:3].to_numpy()
    joined = flights.assign(time_hour=hour_utc)
    if weather:
        joined = joined.merge(load_weather(folder), on=["origin", "time_hour"], how="left")
    joined[TARGET] = joined["arr_delay"] > 15
    columns = [TIME_COLUMN, "month", *(FEATURES if weather else SCHEDULE), TARGET]
    out = joined[columns].sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    out["distance"] = out["distance"].astype(np.float64)
    return out


def months(frame: pd.DataFrame, *which: int) -> pd.DataFrame:
    """The rows of the given months (1-12)."""
    return frame[frame["month"].isin(which)].reset_index(drop=True)
