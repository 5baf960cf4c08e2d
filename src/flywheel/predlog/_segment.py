"""A converter's segments: one Parquet file per hour for its last minute of spool files.

A file per spool file meant an hour being written held one small file per second per replica,
and a reader of the last few thousand rows opened fifty of them. Instead, a converter keeps
one *open segment* per hour and kind: each round it writes the segment again with the new
spool files' rows added, under the name ``seg-<replica>-<first>-<last>.parquet``, and only
then deletes the segment's previous version and the spool files. The footer lists the spool
files it holds (``flywheel.sources``, like a compact), so a reader skips a previous version
that is still there (its sources are a subset) and every spool file a segment holds.

A segment closes ``SEGMENT_SECONDS`` after it opened (by this converter's clock), or at
``SEGMENT_ROWS`` rows, so rewriting it stays cheap. The loop merges only files written more
than two minutes ago (``_upkeep.SETTLE``), so a segment that may still grow is never merged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.fs as pafs

from flywheel.predlog._dataset import (
    SOURCES_KEY,
    partition_path,
    segment_name,
    split_by_hour,
    write_file,
)

SEGMENT_SECONDS = 60.0
"""A segment is written again for this long after it opened, then left as it is."""
SEGMENT_ROWS = 50_000
"""A segment holds at most this many rows (at high traffic it closes sooner)."""


@dataclasses.dataclass(frozen=True)
class _Segment:
    first: int
    last: int
    opened: float
    sources: tuple[str, ...]
    tables: tuple[pa.Table, ...]
    schema: pa.Schema
    rows: int
    path: str = ""

    def add(self, seq: int, stem: str, rows: pa.Table) -> _Segment | None:
        """This segment with ``rows`` added; None if they do not fit (too many rows, or a
        column logged with another type)."""
        if self.rows + rows.num_rows > SEGMENT_ROWS:
            return None
        try:
            schema = pa.unify_schemas([self.schema, rows.schema], promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        sources = self.sources if stem in self.sources else (*self.sources, stem)
        return dataclasses.replace(self, last=max(self.last, seq), sources=sources,
                                   tables=(*self.tables, rows), schema=schema,
                                   rows=self.rows + rows.num_rows)


def _opened(seq: int, stem: str, rows: pa.Table, now: float) -> _Segment:
    return _Segment(seq, seq, now, (stem,), (rows,), rows.schema, rows.num_rows)


@dataclasses.dataclass(frozen=True)
class SpoolRows:
    """One spool file's rows, as a segment takes them."""

    seq: int
    stem: str
    kind: str
    """The partition kind the rows go to (predictions or feedback)."""
    batch: pa.RecordBatch


class SegmentWriter:
    """The open segments of one converter (spool files of one replica, ``prefix``).

    Args:
        clock: Seconds, for the segments' age (monotonic; tests pass their own).
    """

    def __init__(self, filesystem: pafs.FileSystem, base: str, prefix: str, *,
                 clock: Callable[[], float]) -> None:
        self.filesystem, self.base, self.prefix = filesystem, base, prefix
        self.clock = clock
        self._open: dict[tuple[str, dt.datetime], _Segment] = {}

    def write(self, spooled: Sequence[SpoolRows]) -> None:
        """Write the segments ``spooled`` adds rows to: every new version in full, then the
        versions they replace are deleted. On an error nothing is deleted, and the open
        segments stay as they were (a version already written is a superset, harmless).

        Raises:
            OSError: If the log's store refused a write.
        """
        now = self.clock()
        for key, segment in list(self._open.items()):
            if now - segment.opened >= SEGMENT_SECONDS or segment.rows >= SEGMENT_ROWS:
                del self._open[key]
        staged: dict[tuple[str, dt.datetime], _Segment] = {}
        closed: list[tuple[tuple[str, dt.datetime], _Segment]] = []  # full within this round
        for item in spooled:
            for hour, rows in split_by_hour(item.batch):
                key = (item.kind, hour)
                current = staged.get(key) or self._open.get(key)
                grown = current.add(item.seq, item.stem, rows) if current else None
                if grown is None and key in staged:
                    closed.append((key, staged[key]))
                staged[key] = grown or _opened(item.seq, item.stem, rows, now)
        written = [(key, self._write(key, segment)) for key, segment in
                   [*closed, *staged.items()]]
        for key, segment in written:
            previous = self._open.get(key)
            if previous is not None and previous.path != segment.path and \
                    previous.first == segment.first:
                with contextlib.suppress(FileNotFoundError):
                    self.filesystem.delete_file(previous.path)
        for key, segment in written[len(closed):]:
            self._open[key] = segment
        self._close_past_hours()

    def _write(self, key: tuple[str, dt.datetime], segment: _Segment) -> _Segment:
        kind, hour = key
        path = (f"{partition_path(self.base, kind, hour)}/"
                f"{segment_name(self.prefix, segment.first, segment.last)}")
        table = pa.concat_tables(segment.tables, promote_options="default")
        write_file(self.filesystem, path, table,
                   {SOURCES_KEY: json.dumps(sorted(segment.sources)).encode()})
        return dataclasses.replace(segment, path=path)

    def _close_past_hours(self) -> None:
        newest: dict[str, dt.datetime] = {}
        for kind, hour in self._open:
            newest[kind] = max(hour, newest.get(kind, hour))
        for kind, hour in list(self._open):
            if hour < newest[kind]:
                del self._open[(kind, hour)]
