"""A project's prediction log: where it is (``monitoring.log_location`` resolved against the
project folder, and the local spool its writer uses), and the windows one tick reads.

Readers read bounded windows, never the whole log: the loop counts new rows and labels up to
the number it waits for, monitoring reads its last N rows, the rollout controller the rows
since the rollout began (the columns its evidence needs), the delivery report the last
``REPORT_DAYS``. ``LogWindows`` holds what one tick read, so the loop, the monitor and the
controller running in one process share it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from flywheel.predlog import SPOOL_DIR, is_local, read_predictions, resolve_location

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext

__all__ = ["EVIDENCE_COLUMNS", "REPORT_DAYS", "LogWindows", "log_location", "spool_folder"]

EVIDENCE_COLUMNS = ("request_id", "ts", "model_version", "arm", "latency_ms", "prediction",
                    "value", "probabilities", "error", "event_ts")
"""What a rollout's evidence reads of each row (not the inputs)."""
REPORT_DAYS = 30
"""The delivery report covers this many days of the log, back from now."""


def log_location(project: ProjectContext) -> str:
    """The project's prediction log: an absolute folder or an object-store URI."""
    return resolve_location(project.spec.monitoring.log_location, project.spec.root)


def spool_folder(project: ProjectContext) -> Path:
    """Where this host's writer spools: inside a local log (so every reader of the folder sees
    the last second), or in the workspace when the log is in an object store."""
    location = log_location(project)
    if is_local(location):
        return Path(location) / SPOOL_DIR
    return project.workspace.predictions / SPOOL_DIR


@dataclasses.dataclass(frozen=True)
class _Key:
    since: dt.datetime | None
    until: dt.datetime | None
    last: int | None
    with_labels: bool
    columns: tuple[str, ...] | None


class LogWindows:
    """The prediction-log windows one tick reads, each read once.

    A window asked for again is the frame already read; a ``since`` window within one already
    read (same columns, labels) is cut from it. Build one per tick: the log moves on.
    """

    def __init__(self, project: ProjectContext) -> None:
        self.location = log_location(project)
        self.spool = spool_folder(project)
        self._read: dict[_Key, pd.DataFrame] = {}

    def read(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
             last: int | None = None, with_labels: bool = True,
             columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows as ``flywheel.predlog.read_predictions`` gives them for this window."""
        key = _Key(since, until, last, with_labels, None if columns is None else tuple(columns))
        frame = self._read.get(key)
        if frame is None and since is not None and until is None and last is None:
            frame = self._within(key)
        if frame is None:
            frame = self._read[key] = read_predictions(
                self.location, since=since, until=until, last=last, with_labels=with_labels,
                columns=columns, spool=self.spool)
        return frame

    def _within(self, key: _Key) -> pd.DataFrame | None:
        for held, frame in self._read.items():
            if held.until is None and held.last is None and held.since is not None and \
                    key.since is not None and held.since <= key.since and \
                    (held.with_labels, held.columns) == (key.with_labels, key.columns):
                return frame[frame["ts"] >= pd.Timestamp(key.since)]
        return None
