"""The log's data set: Parquet files in hive-style partitions by the hour a row was logged.

::

    <location>/kind=predictions/date=2026-12-01/hour=13/seg-<replica>-<first>-<last>.parquet
    <location>/kind=predictions/date=2026-12-01/hour=13/<replica>-<seq>-<kind>.parquet
    <location>/kind=feedback/date=2026-12-01/hour=13/<replica>-<seq>-feedback.parquet
    <location>/kind=predictions/date=2026-12-01/hour=12/compact-<hash>.parquet

``date`` and ``hour`` are the UTC hour of the row's ``ts`` (when it was answered, or for
feedback when the label arrived); the files do not repeat them, readers take them from the
path (DuckDB ``hive_partitioning``, pandas/pyarrow ``partitioning="hive"``, Spark, Ray Data).
A spool file adopted from a converter that died becomes one file per hour it spans, named
after it, so converting a spool file twice rewrites the same file and a reader that holds both
sees the name once.

A server's converter writes its own spool files into *segments* instead
(``seg-<replica>-<first>-<last>.parquet``, a minute of spool files; ``_segment.py``): an hour
being written holds a few files per replica, not one a second. Like a compact, a segment's
footer lists what it holds (the spool files), so the rules below cover it too: a previous
version of a segment, and a spool file a segment holds, are never read twice.

A *compact* file merges a closed hour's small files. Its footer lists the files it holds
(``flywheel.sources``, transitively: a compact that merged an older compact lists that one's
sources too). A reader skips every file a present compact lists, and a compact whose sources
another one holds entirely; so between the compact's write and the deletion of its sources
nothing is read twice, and nothing is missed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from flywheel.core.crashpoints import crash_point

log = logging.getLogger("flywheel.predlog")

PREDICTIONS, FEEDBACK_KIND = "predictions", "feedback"
COMPACT_PREFIX = "compact-"
SEGMENT_PREFIX = "seg-"
_LISTS_SOURCES = (COMPACT_PREFIX, SEGMENT_PREFIX)
"""Files whose footer lists the files (or spool files) whose rows they hold."""
SOURCES_KEY = b"flywheel.sources"
_HOUR = dt.timedelta(hours=1)
_UTC = pa.timestamp("us", tz="UTC")


@dataclasses.dataclass(frozen=True)
class Partition:
    """One hour of one kind: its folder on the file system and the hour it starts."""

    path: str
    hour: dt.datetime


def segment_name(prefix: str, first: int, last: int) -> str:
    """The file of replica ``prefix``'s spool files ``first`` to ``last``."""
    return f"{SEGMENT_PREFIX}{prefix}-{first:010d}-{last:010d}.parquet"


@dataclasses.dataclass
class PartitionFiles:
    """What a partition holds for a reader: the files to read, and every file name (stem) whose
    rows those files hold (the files themselves and what the compacts among them merged)."""

    read: list[str]
    covered: set[str]
    stale: list[str] = dataclasses.field(default_factory=list)
    """Files a compact holds that are still there (a compaction stopped before deleting)."""
    modified: dict[str, float] = dataclasses.field(default_factory=dict)
    """When each file to read was written (Unix time; a file holds no row logged later)."""


def partition_path(base: str, kind: str, hour: dt.datetime) -> str:
    return f"{base}/kind={kind}/date={hour:%Y-%m-%d}/hour={hour:%H}"


def split_by_hour(table: pa.Table | pa.RecordBatch) -> list[tuple[dt.datetime, pa.Table]]:
    """``table``'s rows grouped by the UTC hour of ``ts``, oldest first."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if table.num_rows == 0:
        return []
    micros = table.column("ts").cast(_UTC).cast(pa.int64())
    hours = pc.divide(micros, pa.scalar(3_600_000_000, pa.int64()))
    # integer division rounds toward zero: rows before 1970 do not occur in a log
    distinct = sorted(h for h in pc.unique(hours).to_pylist() if h is not None)
    if len(distinct) == 1:
        return [(_hour_of(distinct[0]), table)]
    return [(_hour_of(h), table.filter(pc.equal(hours, h))) for h in distinct]


def _hour_of(index: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(index * 3600, dt.UTC)


def write_file(filesystem: pafs.FileSystem, path: str, table: pa.Table,
               metadata: dict[bytes, bytes] | None = None) -> None:
    """Write ``table`` as one Parquet file at ``path``, all or nothing.

    On a local file system the bytes go to a temporary name, are fsynced and renamed; an
    object store's PUT is atomic by itself.
    """
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    folder, _, name = path.rpartition("/")
    if isinstance(filesystem, pafs.LocalFileSystem):
        os.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/.{name}.tmp"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(handle, data.to_pybytes())
            os.fsync(handle)
        finally:
            os.close(handle)
        crash_point("predlog.parquet_temporary")
        os.replace(temporary, path)
        return
    filesystem.create_dir(folder, recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(data)


def list_partitions(filesystem: pafs.FileSystem, base: str, kind: str, *,
                    since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[Partition]:
    """The hour partitions of ``kind`` that may hold rows in ``[since, until)``, oldest first.

    Lists the date folders, then the hour folders of the dates in range only.
    """
    found = []
    for date_path, day in _children(filesystem, f"{base}/kind={kind}", "date"):
        try:
            start = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        if (since is not None and start + dt.timedelta(days=1) <= since) or \
                (until is not None and start >= until):
            continue
        for hour_path, hour in _children(filesystem, date_path, "hour"):
            if not hour.isdigit():
                continue
            begins = start + dt.timedelta(hours=int(hour))
            if (since is not None and begins + _HOUR <= since) or \
                    (until is not None and begins >= until):
                continue
            found.append(Partition(hour_path, begins))
    return sorted(found, key=lambda p: p.hour)


def _children(filesystem: pafs.FileSystem, path: str, key: str) -> list[tuple[str, str]]:
    """(path, value) of the ``key=value`` folders in ``path``."""
    prefix = key + "="
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except FileNotFoundError:
        return []
    return [(info.path, info.base_name.removeprefix(prefix)) for info in infos
            if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix)]


def partition_files(filesystem: pafs.FileSystem, partition: str) -> PartitionFiles:
    """The files a reader reads in ``partition``, compacted sources left out."""
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(partition, allow_not_found=True))
    except FileNotFoundError:
        infos = []
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File
                   and i.base_name.endswith(".parquet") and not i.base_name.startswith(("_", ".")))
    sources: dict[str, frozenset[str]] = {}
    for name in names:
        if name.startswith(_LISTS_SOURCES):
            # gone (read as gone below) or torn (read as unreadable below): no sources
            with contextlib.suppress(pa.ArrowInvalid, OSError):
                sources[name] = _sources(filesystem, f"{partition}/{name}")
    covered: set[str] = set().union(*sources.values()) if sources else set()
    for name, held in sources.items():
        # Two compactions of one hour that saw different files, or two versions of a segment:
        # the larger one holds all.
        if any(other != name and held < more for other, more in sources.items()):
            covered.add(name)
    read = [n for n in names if n.removesuffix(".parquet") not in covered and n not in covered]
    stems = {n.removesuffix(".parquet") for n in names} | {
        s.removesuffix(".parquet") for s in covered}
    stale = [f"{partition}/{n}" for n in names if n not in read]
    modified = {i.path: i.mtime.timestamp() for i in infos if i.mtime is not None}
    paths = [f"{partition}/{n}" for n in read]
    return PartitionFiles(paths, stems, stale, {p: modified.get(p, math.inf) for p in paths})


def _sources(filesystem: pafs.FileSystem, path: str) -> frozenset[str]:
    with filesystem.open_input_file(path) as handle:
        metadata = pq.read_metadata(handle).metadata or {}
    return frozenset(json.loads(metadata.get(SOURCES_KEY, b"[]")))


def read_file(filesystem: pafs.FileSystem, path: str,
              columns: Sequence[str] | None = None) -> pa.Table:
    """One file's rows (no partition columns added; only ``columns`` that it has)."""
    with filesystem.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        wanted = None if columns is None else [c for c in columns
                                               if c in parquet.schema_arrow.names]
        table = parquet.read(columns=wanted)
    return table.replace_schema_metadata(None)


def read_partition(filesystem: pafs.FileSystem, partition: str,
                   columns: Sequence[str] | None = None, *,
                   written_after: float | None = None) -> tuple[list[pa.Table], set[str]]:
    """The tables of a partition and the stems they cover.

    Args:
        written_after: Skip the files written before this Unix time (they hold only rows
            logged before it).

    A file deleted under the reader (a compaction finished meanwhile) means the listing is
    stale: it is listed again, up to three times.
    """
    for _ in range(3):
        files = partition_files(filesystem, partition)
        if written_after is not None:
            files.read = [p for p in files.read if files.modified[p] >= written_after]
        try:
            tables = [read_file(filesystem, path, columns) for path in files.read]
        except FileNotFoundError:
            continue
        except (pa.ArrowInvalid, OSError) as exc:
            log.warning("skipping unreadable prediction log partition %s: %s", partition, exc)
            return _readable(filesystem, files, columns), files.covered
        return tables, files.covered
    raise FileNotFoundError(f"the prediction log partition {partition} kept changing while "
                            "it was read; try again")


def _readable(filesystem: pafs.FileSystem, files: PartitionFiles,
              columns: Sequence[str] | None) -> list[pa.Table]:
    tables = []
    for path in files.read:
        try:
            tables.append(read_file(filesystem, path, columns))
        except (pa.ArrowInvalid, OSError) as exc:
            log.warning("skipping unreadable prediction log file %s: %s", path, exc)
    return tables


def footer_rows(filesystem: pafs.FileSystem, path: str) -> int:
    """The rows of one file, from its footer (0 if it is gone or unreadable)."""
    try:
        with filesystem.open_input_file(path) as handle:
            return int(pq.read_metadata(handle).num_rows)
    except FileNotFoundError:
        return 0
    except (pa.ArrowInvalid, OSError) as exc:
        log.warning("skipping unreadable prediction log file %s: %s", path, exc)
        return 0


def compact_partition(filesystem: pafs.FileSystem, partition: str, *,
                      written_before: float | None = None, min_files: int = 2) -> int:
    """Merge the partition's files into one compact file, then delete them; the number merged.

    Args:
        written_before: Merge only the small files written before this Unix time, leaving
            the compact files alone (an hour still being written: its readers then open a
            few files, not one a second); None: everything (a closed hour).
        min_files: Merge nothing unless at least this many files would be merged.

    Run by one process at a time (the retraining loop). The compact file is written whole
    before any source is deleted, and lists its sources, so a reader at any moment sees every
    row once.
    """
    files = partition_files(filesystem, partition)
    merging = files.read
    if written_before is not None:
        merging = [p for p in files.read if files.modified[p] < written_before
                   and not p.rpartition("/")[2].startswith(COMPACT_PREFIX)]
    if len(merging) < max(2, min_files):
        _delete(filesystem, files.stale)
        return 0
    tables, held = [], set()
    for path in merging:
        name = path.rpartition("/")[2]
        try:
            tables.append(read_file(filesystem, path))
        except FileNotFoundError:
            return 0  # another compaction is at work
        except (pa.ArrowInvalid, OSError) as exc:
            log.warning("not compacting unreadable prediction log file %s: %s", path, exc)
            continue
        held.add(name)
        if name.startswith(_LISTS_SOURCES):
            held |= _sources(filesystem, path)
    table = pa.concat_tables(tables, promote_options="default")
    if "ts" in table.column_names:
        table = table.sort_by("ts")
    listed = sorted(held)
    digest = hashlib.sha256("\n".join(listed).encode()).hexdigest()[:20]
    target = f"{partition}/{COMPACT_PREFIX}{digest}.parquet"
    write_file(filesystem, target, table, {SOURCES_KEY: json.dumps(listed).encode()})
    crash_point("predlog.compact_written")
    _delete(filesystem, [p for p in [*merging, *files.stale] if p != target])
    return len(merging)


def _delete(filesystem: pafs.FileSystem, paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            filesystem.delete_file(path)


def expire_partitions(filesystem: pafs.FileSystem, base: str, kind: str,
                      before: dt.datetime) -> int:
    """Delete the hours of ``kind`` that ended before ``before``; the number deleted."""
    deleted = 0
    for date_path, day in _children(filesystem, f"{base}/kind={kind}", "date"):
        try:
            start = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        if start >= before:
            continue
        hours = _children(filesystem, date_path, "hour")
        old = [p for p, h in hours if h.isdigit() and start + dt.timedelta(hours=int(h) + 1)
               <= before]
        if len(old) == len(hours):
            filesystem.delete_dir(date_path)
        else:
            for path in old:
                filesystem.delete_dir(path)
        deleted += len(old)
    return deleted


def closed_partitions(filesystem: pafs.FileSystem, base: str, kind: str, *,
                      now: dt.datetime, grace: dt.timedelta,
                      lookback: dt.timedelta) -> Iterator[Partition]:
    """Hours that ended more than ``grace`` ago, within ``lookback`` of ``now``."""
    for partition in list_partitions(filesystem, base, kind, since=now - lookback,
                                     until=now - grace - _HOUR):
        if partition.hour + _HOUR + grace <= now:
            yield partition
