"""Spool files, and the converter that turns them into Arrow.

A server never converts its log itself: once a second its writer thread writes what arrived as
one JSON-lines *spool file* per input layout (written under a temporary name, fsynced, then
renamed, so a spool file is complete or absent). A converter appends each spool file to the
server's Arrow IPC streams as one record batch that carries the spool file's name, fsyncs,
and deletes the spool file.

The converter is a child process at idle CPU priority (``python -m flywheel.predlog FOLDER
PREFIX``; at nice 19 instead while it is more than 30 files behind, so that cores that are never
idle cannot starve it). Turning Python values or JSON into Arrow costs CPU in proportion to the
traffic (about 35 ms a second at 4,000 requests a second); inside the server that time, and the
GIL it holds, is what the requests behind it wait for. In another process at idle priority the
kernel sets it aside whenever a request arrives.

Nothing depends on the converter keeping up. Readers read the Arrow streams and every spool
file whose name no batch carries yet, so a window always includes the last flush. A batch
whose spool file was converted twice (a converter killed between its fsync and the delete, a
slow converter overtaken by one adopting its files) is read once. Spool files left by a
converter that died are adopted by any other converter after a minute.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson
import pyarrow as pa

from flywheel.predlog._rows import (
    FEEDBACK,
    Features,
    error_batch,
    feedback_batch,
    prediction_batch,
    prediction_schema,
)

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


class _Stream:
    """One Arrow IPC stream file, opened on first write."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self._sink: object = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def write(self, batch: pa.RecordBatch, spool: str) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = open(self.path, "ab")  # noqa: SIM115 - closed in close()
            self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._writer.write_batch(batch, custom_metadata={"spool": spool})

    def sync(self) -> None:
        if self._writer is not None:
            self._sink.flush()  # type: ignore[attr-defined]
            os.fsync(self._sink.fileno())  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()  # type: ignore[attr-defined]
            self._writer = None


class Converter:
    """Appends spool files to the Arrow streams named after ``prefix`` and deletes them."""

    def __init__(self, folder: str | Path, prefix: str) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self._pred: dict[Features, _Stream] = {}
        self._fb = _Stream(self.folder / f"fb-{prefix}.arrows", FEEDBACK)

    def own(self) -> list[Path]:
        return sorted(self.folder.glob(f"spool-{self.prefix}-*.jsonl"))

    def orphans(self, older_than: float = ORPHAN_SECONDS) -> list[Path]:
        cutoff = time.time() - older_than
        found = []
        for path in self.folder.glob(SPOOL_GLOB):
            if spool_prefix(path.name) == self.prefix:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    found.append(path)
        return sorted(found)

    def convert(self, paths: Iterable[Path]) -> int:
        """Convert ``paths`` (in order), fsync, delete them; the number converted."""
        done: list[Path] = []
        touched: dict[int, _Stream] = {}
        for path in paths:
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # converted by another converter meanwhile
                continue
            try:
                kind, features, batch = spool_batch(data)
            except ValueError as exc:
                log.warning("setting aside %s: %s", path.name, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".unreadable"))
                continue
            stream = self._fb if kind == "feedback" else self._stream(features)
            if batch.num_rows:
                stream.write(batch, path.name)
                touched[id(stream)] = stream
            done.append(path)
        for stream in touched.values():
            stream.sync()
        for path in done:
            path.unlink(missing_ok=True)
        return len(done)

    def close(self) -> None:
        for stream in self._pred.values():
            stream.close()
        self._fb.close()

    def _stream(self, features: Features) -> _Stream:
        stream = self._pred.get(features)
        if stream is None:
            name = f"pred-{self.prefix}-{len(self._pred)}.arrows"
            stream = self._pred[features] = _Stream(self.folder / name,
                                                    prediction_schema(features))
        return stream


def run_converter(folder: str | Path, prefix: str, *, interval: float = 0.5,
                  orphan_interval: float = 30.0, backlog: int = BACKLOG_FILES) -> None:
    """Convert ``prefix``'s spool files until standard input closes (the server stopped or
    died), then convert what is left and return. Orphans are adopted now and then.

    The converter runs at idle priority, and at the lowest normal priority (nice 19) while
    more than ``backlog`` of its spool files wait: on cores that are never idle it still gets
    a small share, so the spool cannot grow without end.
    """
    converter = Converter(folder, prefix)
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
