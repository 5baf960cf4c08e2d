"""Keeping the log small: compaction of closed hours and deletion of expired ones."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from flywheel.predlog._dataset import (
    FEEDBACK_KIND,
    PREDICTIONS,
    closed_partitions,
    compact_partition,
    expire_partitions,
    list_partitions,
)
from flywheel.predlog._location import open_location

_HOUR = dt.timedelta(hours=1)

GRACE = dt.timedelta(minutes=10)
"""An hour is compacted this long after it ends (spool files a dead converter left are adopted
after a minute)."""
SETTLE = dt.timedelta(minutes=2)
"""In an hour still being written, small files older than this are merged (each tick)."""
SETTLED_FILES = 10
"""... once there are this many of them (a converter's segments span a minute each, so an
hour being written holds a compact per ten minutes or so, not one per tick)."""
LOOKBACK = dt.timedelta(hours=48)
"""Hours older than this are not looked at again (they were compacted when they closed)."""


@dataclasses.dataclass(frozen=True)
class LogUpkeep:
    """What one ``maintain_log`` did."""

    compacted_files: int = 0
    """Small files merged into compact ones."""
    compacted_hours: int = 0
    expired_hours: int = 0
    """Hour partitions deleted by ``monitoring.log_retention_days``."""


def maintain_log(location: str | Path, *, retention_days: float | None = None,
                 now: dt.datetime | None = None) -> LogUpkeep:
    """Compact the hours that closed (within the last two days) into one file each, merge the
    settled small files of the hours still being written (``SETTLED_FILES`` at a time), and
    delete the hours older than ``retention_days``.

    Run it from one process at a time (the retraining loop does, each tick): two compactions
    of one hour at once are safe for readers but may leave both compact files.
    """
    now = now or dt.datetime.now(dt.UTC)
    filesystem, base = open_location(location)
    files = hours = expired = 0
    for kind in (PREDICTIONS, FEEDBACK_KIND):
        if retention_days is not None:
            expired += expire_partitions(filesystem, base, kind,
                                         now - dt.timedelta(days=retention_days))
        closed = set()
        for partition in closed_partitions(filesystem, base, kind, now=now, grace=GRACE,
                                           lookback=LOOKBACK):
            closed.add(partition.path)
            merged = compact_partition(filesystem, partition.path)
            files += merged
            hours += bool(merged)
        settled = (now - SETTLE).timestamp()
        for partition in list_partitions(filesystem, base, kind, since=now - GRACE - _HOUR):
            if partition.path not in closed:  # still written: merge what has settled
                merged = compact_partition(filesystem, partition.path, written_before=settled,
                                           min_files=SETTLED_FILES)
                files += merged
                hours += bool(merged)
    return LogUpkeep(files, hours, expired)
