"""Upgrading a flat log: the Arrow streams (``pred-*.arrows``, ``fb-*.arrows``) and spool files
that earlier versions kept directly in ``.flywheel/predictions`` become hour partitions.

Runs when a writer opens the log and before a read, and costs one folder listing when there is
nothing to do. Crash-safe and idempotent: every output file's name follows from its source
(``legacy-<stream>-<chunk>.parquet`` in each hour the stream spans; a spool file's usual name),
it is written whole before any source is deleted, and a second run rewrites the same files. Streams
are deleted only after all of them are written, so a batch that two streams hold (a spool file
converted twice) is still recognized as one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from flywheel.predlog._dataset import (
    FEEDBACK_KIND,
    PREDICTIONS,
    partition_path,
    split_by_hour,
    write_file,
)
from flywheel.predlog._location import open_location
from flywheel.predlog._spool import converted_path, spool_batch

log = logging.getLogger("flywheel.predlog")

_STREAMS = ("pred-", "fb-")
CHUNK_ROWS = 500_000
"""Rows per migrated file at most: a stream is moved a batch at a time, not read whole."""


def migrate_flat_log(location: str | Path) -> int:
    """Move a flat log at the local folder ``location`` into partitions; files migrated."""
    folder = Path(location)
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return 0
    streams = [n for n in names if n.startswith(_STREAMS) and n.endswith(".arrows")]
    spools = [n for n in names if n.startswith("spool-") and n.endswith(".jsonl")]
    if not streams and not spools:
        return 0
    filesystem, base = open_location(folder)
    seen: set[str] = set()
    for name in streams:
        kind = FEEDBACK_KIND if name.startswith("fb-") else PREDICTIONS
        _migrate_stream(filesystem, base, kind, folder / name, seen)
    for name in spools:
        if name in seen:
            continue
        try:
            kind, _, batch = spool_batch((folder / name).read_bytes())
        except FileNotFoundError:
            continue
        except ValueError as exc:
            log.warning("setting aside %s: %s", name, exc)
            with contextlib.suppress(OSError):
                (folder / name).rename((folder / name).with_suffix(".unreadable"))
            continue
        for hour, rows in split_by_hour(batch):
            write_file(filesystem, converted_path(base, kind, hour, name), rows)
    _remove(folder, [*streams, *spools])
    log.info("moved the flat prediction log in %s into hour partitions (%d files)", folder,
             len(streams) + len(spools))
    return len(streams) + len(spools)


def _migrate_stream(filesystem: pafs.FileSystem, base: str, kind: str, path: Path,
                    seen: set[str]) -> None:
    """Write one stream's rows into the hours they belong to, at most ``CHUNK_ROWS`` a file."""
    stem = path.name.removesuffix(".arrows")
    pending: dict[dt.datetime, list[pa.Table]] = {}
    chunks: dict[dt.datetime, int] = {}

    def flush(hour: dt.datetime) -> None:
        chunk = chunks[hour] = chunks.get(hour, -1) + 1
        rows = pa.concat_tables(pending.pop(hour), promote_options="default")
        write_file(filesystem, f"{partition_path(base, kind, hour)}/legacy-{stem}-{chunk:04d}"
                   ".parquet", rows)

    for batch in _stream_batches(path, seen):
        for hour, rows in split_by_hour(batch):
            pending.setdefault(hour, []).append(rows)
            if sum(t.num_rows for t in pending[hour]) >= CHUNK_ROWS:
                flush(hour)
        newest = max(pending, default=None)
        for hour in [h for h in pending if newest is not None and h < newest]:
            flush(hour)  # a stream is in time order: an older hour is complete
    for hour in list(pending):
        flush(hour)


def _stream_batches(path: Path, seen: set[str]) -> Iterator[pa.RecordBatch]:
    """A stream's batches, one at a time (a batch from a spool file already ``seen`` is
    skipped; a batch torn by a crash ends the file early)."""
    try:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_stream(source)
            with contextlib.suppress(pa.ArrowInvalid, OSError, StopIteration):
                while True:
                    batch, metadata = reader.read_next_batch_with_custom_metadata()
                    spool = metadata.get(b"spool") if metadata else None
                    if spool is not None:
                        if spool.decode() in seen:
                            continue
                        seen.add(spool.decode())
                    yield batch
    except FileNotFoundError:
        return  # migrated by another process meanwhile
    except (pa.ArrowInvalid, OSError) as exc:
        log.warning("setting aside unreadable prediction log segment %s: %s", path.name, exc)
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(".unreadable"))


def _remove(folder: Path, names: Iterable[str]) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)
