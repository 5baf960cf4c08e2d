"""Spool files, and the converter that turns them into the log's Parquet partitions.

A server never converts its log itself: once a second its writer thread writes what arrived as
one JSON-lines *spool file* per input layout (written under a temporary name, fsynced, then
renamed, so a spool file is complete or absent) in a local spool folder. A converter adds its
server's spool files to its open *segments*, one Parquet file per hour holding up to a minute
of spool files (``_segment.py``), and deletes the spool files once the segment is written; a
spool file it adopts becomes one Parquet file per hour its rows span, named after it
(``_dataset.py``).

The converter is a child process at idle CPU priority (``python -m flywheel.predlog SPOOL
LOCATION PREFIX``; at nice 19 instead while it is more than 30 files behind, so that cores that
are never idle cannot starve it). Turning Python values or JSON into Arrow costs CPU in
proportion to the traffic (about 35 ms a second at 4,000 requests a second); inside the server
that time, and the GIL it holds, is what the requests behind it wait for. In another process at
idle priority the kernel sets it aside whenever a request arrives.

Nothing depends on the converter keeping up. Readers read the partitions and every spool file
whose rows no partition file holds yet, so a window always includes the last flush. A spool
file converted twice (a converter killed between its write and the delete, a slow converter
overtaken by one adopting its files) is read once: a segment's footer lists the spool files
it holds, and a second conversion rewrites the same files. Spool files left by a converter
that died are adopted by any other converter using the same spool folder after a minute.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import select
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from flywheel.core.crashpoints import crash_point
from flywheel.predlog._dataset import (
    FEEDBACK_KIND,
    PREDICTIONS,
    partition_path,
    split_by_hour,
    write_file,
)
from flywheel.predlog._location import open_location
from flywheel.predlog._rows import Features, error_batch, feedback_batch, prediction_batch
from flywheel.predlog._segment import SegmentWriter, SpoolRows

log = logging.getLogger("flywheel.predlog")

SPOOL_GLOB = "spool-*.jsonl"
ORPHAN_SECONDS = 60.0
"""A spool file older than this is converted by whichever converter finds it."""
BACKLOG_FILES = 30
"""Spool files waiting (about seconds behind) before the converter leaves idle priority."""


def spool_name(prefix: str, seq: int, kind: str) -> str:
    """``kind``: ``pred<n>`` (predictions of layout n), ``error`` or ``feedback``."""
    return f"spool-{prefix}-{seq:010d}-{kind}.jsonl"


def spool_kind(name: str) -> str:
    return name.rsplit("-", 1)[-1].removesuffix(".jsonl")


def spool_prefix(name: str) -> str:
    return name.removeprefix("spool-").rsplit("-", 2)[0]


def spool_seq(name: str) -> int:
    return int(name.removeprefix("spool-").rsplit("-", 2)[1])


def write_spool(folder: Path, name: str, header: dict[str, object],
                lines: Sequence[bytes]) -> Path:
    """Write one spool file atomically (temporary name, fsync, rename).

    ``lines`` end with a newline. They go to the kernel with ``writev``, 512 at a time: no
    joined copy is built, and the GIL is free while the kernel copies (joining a second's
    lines meant megabytes allocated and copied while every request waited).
    """
    path = folder / name
    temporary = folder / f".{name}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(handle, [orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE)])
        for start in range(0, len(lines), 512):
            _write_all(handle, lines[start:start + 512])
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(temporary, path)
    return path


def _write_all(handle: int, buffers: Sequence[bytes]) -> None:
    written = os.writev(handle, buffers)
    total = sum(len(b) for b in buffers)
    if written < total:  # a short write (rare on files): write the rest plainly
        os.write(handle, b"".join(buffers)[written:])


def spool_batch(data: bytes) -> tuple[str, Features, pa.RecordBatch]:
    """(kind, layout, batch) of a spool file's bytes; kind is pred, error or feedback.

    Raises:
        ValueError: If the file is not a spool file (bad header or lines).
    """
    header_line, _, body = data.partition(b"\n")
    try:
        header = orjson.loads(header_line)
        kind = header["kind"]
        if kind == "pred":
            features: Features = tuple((str(n), bool(k)) for n, k in header["layout"])
            return kind, features, prediction_batch(features, body)
        if kind == "error":
            return kind, (), error_batch(body)
        if kind == "feedback":
            return kind, (), feedback_batch(body)
    except (orjson.JSONDecodeError, KeyError, TypeError, pa.ArrowException) as exc:
        raise ValueError(f"not a readable spool file: {exc}") from None
    raise ValueError(f"not a readable spool file: unknown kind {kind!r}")


def spool_stem(name: str) -> str:
    """``<prefix>-<seq>-<kind>``: what the files converted from spool file ``name`` are named."""
    return name.removeprefix("spool-").removesuffix(".jsonl")


def converted_path(base: str, kind: str, hour: dt.datetime, spool: str) -> str:
    """Where the rows of spool file ``spool`` logged in ``hour`` go (kind: the spool's)."""
    folder = FEEDBACK_KIND if kind == "feedback" else PREDICTIONS
    return f"{partition_path(base, folder, hour)}/{spool_stem(spool)}.parquet"


class Converter:
    """Writes spool files of ``spool`` into the log's hour partitions at ``location``, then
    deletes them: its own (``prefix``'s) into segments (``_segment.py``), those it adopts
    from a converter that died as one file per spool file and hour.

    Args:
        spool: The local spool folder.
        location: The log (a folder or an object-store URI).
        prefix: The spool files this converter owns (its server's).
        clock: Seconds (monotonic) for the age of its segments.
    """

    def __init__(self, spool: str | Path, location: str | Path, prefix: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spool = Path(spool)
        self.location = str(location)
        self.prefix = prefix
        self.clock = clock
        self._fs: pafs.FileSystem | None = None
        self._base = ""
        self._segments: SegmentWriter | None = None

    def own(self) -> list[Path]:
        return sorted(self.spool.glob(f"spool-{self.prefix}-*.jsonl"))

    def orphans(self, older_than: float = ORPHAN_SECONDS) -> list[Path]:
        cutoff = time.time() - older_than
        found = []
        for path in self.spool.glob(SPOOL_GLOB):
            if spool_prefix(path.name) == self.prefix:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    found.append(path)
        return sorted(found)

    def convert(self, paths: Iterable[Path]) -> int:
        """Convert ``paths`` (in order) and delete them; the number converted.

        A file that cannot be written (the store is down) stays in the spool for the next
        round; the rest of this round waits too, so files land in order.
        """
        if self._fs is None:
            self._fs, self._base = open_location(self.location)
        paths = list(paths)
        own = [p for p in paths if spool_prefix(p.name) == self.prefix]
        owned = set(own)
        done = self._convert_own(own) if own else 0
        for path in paths:
            if path in owned:
                continue
            read = _read_spool(path)
            if read is None:
                continue
            kind, batch = read
            try:
                for hour, rows in split_by_hour(batch):
                    write_file(self._fs, converted_path(self._base, kind, hour, path.name),
                               rows)
            except OSError as exc:
                log.warning("cannot write the prediction log at %s (%s); %s waits in the "
                            "spool", self.location, exc, path.name)
                break
            crash_point("predlog.spool_converted")
            path.unlink(missing_ok=True)
            crash_point("predlog.spool_deleted")
            done += 1
        return done

    def _convert_own(self, paths: list[Path]) -> int:
        """Add this converter's spool files to its segments, then delete them."""
        if self._fs is None:
            self._fs, self._base = open_location(self.location)
        if self._segments is None:
            self._segments = SegmentWriter(self._fs, self._base, self.prefix, clock=self.clock)
        spooled, taken = [], []
        for path in paths:
            read = _read_spool(path)
            if read is None:
                continue
            kind, batch = read
            spooled.append(SpoolRows(spool_seq(path.name), spool_stem(path.name),
                                     FEEDBACK_KIND if kind == "feedback" else PREDICTIONS,
                                     batch))
            taken.append(path)
        try:
            self._segments.write(spooled)
        except OSError as exc:
            log.warning("cannot write the prediction log at %s (%s); %d spool files wait",
                        self.location, exc, len(taken))
            return 0
        crash_point("predlog.spool_converted")
        for path in taken:
            path.unlink(missing_ok=True)
        crash_point("predlog.spool_deleted")
        return len(taken)

    def close(self) -> None:
        """Nothing stays open between rounds (kept for the writer's interface)."""


def run_converter(spool: str | Path, location: str | Path, prefix: str, *, interval: float = 0.5,
                  orphan_interval: float = 30.0, backlog: int = BACKLOG_FILES) -> None:
    """Convert ``prefix``'s spool files until standard input closes (the server stopped or
    died), then convert what is left and return. Orphans are adopted now and then.

    The converter runs at idle priority, and at the lowest normal priority (nice 19) while
    more than ``backlog`` of its spool files wait: on cores that are never idle it still gets
    a small share, so the spool cannot grow without end.
    """
    converter = Converter(spool, location, prefix)
    stdin = sys.stdin.fileno()
    next_orphans = 0.0
    idle = _set_priority(idle=True)
    try:
        while True:
            ready, _, _ = select.select([stdin], [], [], interval)
            closed = bool(ready) and not os.read(stdin, 4096)
            waiting = converter.own()
            behind = len(waiting) > backlog
            if behind == idle:
                idle = _set_priority(idle=not behind)
            converter.convert(waiting)
            if time.monotonic() >= next_orphans:
                converter.convert(converter.orphans())
                next_orphans = time.monotonic() + orphan_interval
            if closed:
                converter.convert(converter.own())
                return
    finally:
        converter.close()


def _set_priority(*, idle: bool) -> bool:
    """Idle priority (Linux SCHED_IDLE: run only when nothing else wants the CPU), or the
    lowest normal one (nice 19); whether idle priority is now in force."""
    policy = getattr(os, "SCHED_IDLE" if idle else "SCHED_OTHER", None)
    if policy is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    return idle


def _read_spool(path: Path) -> tuple[str, pa.RecordBatch] | None:
    """A spool file's kind and rows; None if another converter took it meanwhile, or if it
    cannot be read (then it is set aside as ``.unreadable``, with a warning)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        kind, _, batch = spool_batch(data)
    except ValueError as exc:
        log.warning("setting aside %s: %s", path.name, exc)
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(".unreadable"))
        return None
    return kind, batch
