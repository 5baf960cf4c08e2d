"""The ``feature_store:`` section of flywheel.yaml and the ``data.spine`` it serves.

A feature view is a table of feature values keyed by one or more entity columns and an
event-time column: the weather at an airport in an hour, the spend of a customer on a day.
Training joins each view to the spine (``data.spine``) as of each event's time; the online
store keeps the latest values per entity for serving.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from flywheel.core._section import Section as _Section

__all__ = ["FeatureStoreSpec", "FeatureViewSpec", "SpineSpec", "parse_duration"]

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds or text such as ``90m``, ``2h``, ``7d``.

    Raises:
        ValueError: If ``value`` is neither.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as 2h, 30m or 7d, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value))
        if found is None:
            raise ValueError(f"must be a duration such as 2h, 30m or 7d (s, m, h, d, w), "
                             f"got {value!r}")
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


class FeatureViewSpec(_Section):
    """Feature columns keyed by entity and event time, read from a file, folder or query."""

    name: str = Field(pattern=_NAME)
    """How models, the CLI and the online store name the view."""
    entities: list[str] = Field(min_length=1)
    """The entity key column(s), such as [origin]; the spine carries columns of these names."""
    event_time: str = Field(min_length=1)
    """When each row's values became true; a training event sees only rows at or before it."""
    created_time: str | None = None
    """When each row was written; breaks ties between rows of the same entity and event time
    (the latest written wins)."""
    source: str | None = None
    """A Parquet or CSV file, or a folder of them; relative to flywheel.yaml."""
    query: str | None = None
    """A DuckDB query instead of ``source`` (it may read files: read_parquet('...'))."""
    ttl: float | None = None
    """How long a row stays valid after its event time (2h, 30m, 7d or seconds); a training
    event whose latest row is older gets nothing (imputed), and materialization writes only
    rows that young at the end of its window. null: forever."""
    features: list[str] = Field(min_length=1)
    """The feature columns the view provides."""

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl_seconds(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _check_view(self) -> FeatureViewSpec:
        if (self.source is None) == (self.query is None):
            raise ValueError(f"view {self.name!r}: set exactly one of `source` (a file or "
                             "folder) and `query` (a DuckDB query)")
        times = [self.event_time, *([self.created_time] if self.created_time else [])]
        keys = {*self.entities, *times}
        overlap = sorted(keys & set(self.features))
        if overlap:
            raise ValueError(f"view {self.name!r}: {overlap} are keys or times, not features; "
                             "list them once")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"view {self.name!r}: a feature is listed twice")
        return self

    @property
    def columns(self) -> list[str]:
        """Every column the view reads from its source."""
        times = [self.event_time, *([self.created_time] if self.created_time else [])]
        return [*self.entities, *times, *self.features]


class FeatureStoreSpec(_Section):
    views: list[FeatureViewSpec] = Field(default_factory=list)
    """The feature views; training joins those the spine names, serving looks them up."""
    online: str = "sqlite"
    """The online store: sqlite (a file in .flywheel/features/), sqlite:///PATH, or
    redis://HOST:PORT/DB (needs `pip install flywheel[redis]`)."""
    chunks: int = Field(16, ge=1, le=4096)
    """Materialization works on this many slices of the entities, one at a time: memory stays
    bounded whatever the window, and a killed run resumes at the first unfinished slice."""
    memory_limit_mb: int = Field(512, ge=64)
    """DuckDB's memory limit while joining and materializing (it spills to disk beyond)."""

    @field_validator("online")
    @classmethod
    def _check_online(cls, value: str) -> str:
        if value == "sqlite" or value.startswith(("sqlite:///", "redis://", "rediss://")):
            return value
        raise ValueError("must be sqlite, sqlite:///PATH or redis://HOST:PORT/DB")

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureStoreSpec:
        names = [view.name for view in self.views]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"views {twice} are defined more than once; names are unique")
        return self

    def view(self, name: str) -> FeatureViewSpec | None:
        """The view called ``name``, if defined."""
        return next((v for v in self.views if v.name == name), None)


class SpineSpec(_Section):
    """``data.path`` is a spine: entity keys, event times and labels, joined to feature views
    as of each row's event time."""

    event_time: str = Field(min_length=1)
    """The spine's event-time column."""
    views: list[str] | None = None
    """The feature views to join (in this order); null: every view of feature_store."""
