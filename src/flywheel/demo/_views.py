"""Feature views in a backtest: the history is a spine, the views' tables are joined to it as of
each row's time for training, and the replay materializes the online store on its own clock.

Training joins each view point in time (`flywheel.featurestore`); the served requests carry the
entity keys and the server reads the features from the online store. The online store holds
the latest values per entity, so a replay of history in accelerated time must write them as of
the replay's time, not of now: before a request whose time is in a later ``step`` than the
last write, the views are materialized incrementally up to that request's time (rows at or
before it). A request therefore never sees a row dated after its first row, and at most one
``step`` of rows is held back from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flywheel.core.errors import DataError
from flywheel.core.spec import load_spec
from flywheel.core.workspace import Workspace
from flywheel.core.yamlio import dump_yaml, read_yaml
from flywheel.featurestore import FeatureStore
from flywheel.pipelines.project import Project

__all__ = ["BacktestView", "ViewClock", "init_spine_project"]

_FOLDER = "views"


@dataclasses.dataclass(frozen=True)
class BacktestView:
    """A table of feature values keyed by entity and event time (the weather at an airport in
    an hour), which the backtest declares as a feature view."""

    name: str
    table: pd.DataFrame
    entities: tuple[str, ...]
    event_time: str
    features: tuple[str, ...]
    ttl: dt.timedelta | None = None
    """How long a row stays valid after its event time; None: forever."""

    def spec(self) -> dict[str, Any]:
        """The view's entry under ``feature_store.views``."""
        return {"name": self.name, "entities": list(self.entities),
                "event_time": self.event_time, "source": f"{_FOLDER}/{self.name}.parquet",
                "ttl": None if self.ttl is None else self.ttl.total_seconds(),
                "features": list(self.features)}


def init_spine_project(directory: Path, spine: pd.DataFrame, target: str, time_column: str,
                       views: Sequence[BacktestView], name: str) -> None:
    """Write a project in ``directory`` whose data is the spine ``spine`` joined to ``views``.

    The schema is inferred from the point-in-time training set (the spine with the views'
    features); the spine's time column is kept for the join and left out of the features.

    Raises:
        DataError: If a view lacks a declared column or the spine shares its feature names.
    """
    for view in views:
        missing = [c for c in (*view.entities, view.event_time, *view.features)
                   if c not in view.table.columns]
        if missing:
            raise DataError(f"feature view {view.name!r} has no column(s) {missing}; its "
                            f"table has {list(view.table.columns)}.")
        clash = sorted(set(view.features) & set(spine.columns))
        if clash:
            raise DataError(f"the history holds {clash}, which feature view {view.name!r} "
                            "provides; drop them from the history (the view supplies them).")
    (directory / _FOLDER).mkdir()
    for view in views:
        view.table.to_parquet(directory / _FOLDER / f"{view.name}.parquet", index=False)
    spine_path = directory / "train.parquet"
    spine.to_parquet(spine_path, index=False)
    sections = {"spine": {"event_time": time_column, "views": [v.name for v in views]},
                "feature_store": {"views": [v.spec() for v in views], "chunks": 1}}
    Project.init(spine_path, target, directory=directory, name=name)
    _point_at_spine(directory, sections)
    store = FeatureStore(load_spec(directory / "flywheel.yaml"), Workspace(directory))
    try:
        joined, _, _ = store.training_set(spine)
    finally:
        store.close()
    joined_path = directory / "joined.parquet"
    joined.to_parquet(joined_path, index=False)
    # The schema must cover the views' features: inferred from the joined set, then the data
    # points back at the spine.
    Project.init(joined_path, target, directory=directory, name=name, force=True)
    joined_path.unlink()
    _point_at_spine(directory, sections)
    schema_path = directory / "schema.yaml"
    schema = read_yaml(schema_path)
    schema["columns"][time_column] = {
        **schema["columns"][time_column], "role": "ignore",
        "reason": "the spine's event time: feature views are joined as of it"}
    schema_path.write_text(dump_yaml(schema), encoding="utf-8")


def _point_at_spine(directory: Path, sections: dict[str, Any]) -> None:
    spec_path = directory / "flywheel.yaml"
    spec = read_yaml(spec_path)
    spec["data"] = {**spec["data"], "path": "train.parquet", "spine": sections["spine"]}
    spec["feature_store"] = sections["feature_store"]
    spec_path.write_text(dump_yaml(spec), encoding="utf-8")


class ViewClock:
    """The online store materialized on the replay's clock; see the module docstring.

    Args:
        project: The backtest's project (its feature views).
        step: Write at most once per step of simulated time.
    """

    def __init__(self, project: Project, step: dt.timedelta) -> None:
        self.store = FeatureStore(project.spec, project.workspace)
        # Held for the whole replay rather than taken for each of its thousands of writes.
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(self.store.materialize_lock())
        self.step = pd.Timedelta(step)
        self.until: pd.Timestamp | None = None
        """Rows before this time are in the online store."""
        self.runs = 0
        self.rows = 0
        self.seconds = 0.0

    def advance(self, moment: pd.Timestamp) -> None:
        """Make the online store hold the latest rows at or before ``moment``, if ``moment``
        is in a later step than the last write."""
        if self.until is not None and moment.floor(self.step) <= (
                self.until - pd.Timedelta(microseconds=1)).floor(self.step):
            return
        started = time.monotonic()
        end = moment + pd.Timedelta(microseconds=1)  # materialize takes rows before its end
        results = self.store.materialize(end=end.to_pydatetime(), locked=True)
        self.until = end
        self.runs += 1
        self.rows += sum(r.rows for r in results)
        self.seconds += time.monotonic() - started

    def summary(self) -> str:
        """What the clock did, for the replay's last lines."""
        views = ", ".join(self.store.catalog.names())
        return (f"materialized {views} {self.runs:,} times on the replay's clock ({self.rows:,} "
                f"entity rows written, {self.seconds:.1f} s)")

    def close(self) -> None:
        self._lock.close()
        self.store.close()
