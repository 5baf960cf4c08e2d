"""The writing side of the prediction log: every answered request, and later its label, off
the request path.

The request path serializes the request to one JSON line (orjson, about 3 µs for a 20-feature
record) and appends the bytes to a list: no I/O, and no per-row Python objects for the garbage
collector to scan. A background thread, once a second, writes what arrived as spool files
(``_spool.py``) and fsyncs them; that is all the server process does. A converter child
process at idle priority turns spool files into the log's Parquet partitions. Consequences,
stated in the README:

- graceful stop (SIGTERM, Ctrl-C): everything is written, and the converter drains the spool
  before it exits;
- SIGKILL of the server or power loss: at most the last second (one flush interval) is lost;
  the converter notices its parent is gone, converts what was written and exits;
- a batch torn by a crash mid-write is skipped when reading; earlier batches stay readable.

Without ``start()`` (scripts, tests) nothing runs in the background: ``flush()`` writes and
converts in the calling thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.core.errors import ConfigError
from flywheel.core.periodic import PeriodicThread
from flywheel.core.workspace import fsync_dir
from flywheel.predlog._location import SPOOL_DIR, check_location, is_local
from flywheel.predlog._migrate import migrate_flat_log
from flywheel.predlog._rows import DEFAULT_ARM, Features, error_line, feedback_line, prediction_line
from flywheel.predlog._spool import Converter, spool_name, write_spool

log = logging.getLogger("flywheel.predlog")


class PredictionLog:
    """Append predictions and feedback; ``read_predictions`` reads windows back.

    Args:
        location: The log: a folder, or an object-store URI (``s3://bucket/prefix``).
        spool: The local folder for spool files; default ``<location>/_spool``, required when
            the log is not a local folder.
        flush_interval: Seconds between background writes (the most a SIGKILL can lose).

    Raises:
        ConfigError: If the log is in an object store and no spool folder is given.
    """

    def __init__(self, location: str | Path, *, spool: str | Path | None = None,
                 flush_interval: float = 1.0) -> None:
        self.location = str(location)
        if spool is None and not is_local(self.location):
            raise ConfigError(f"the prediction log at {self.location} is not a local folder, "
                              "so its writer needs a local spool folder; pass `spool=`.")
        self.folder = Path(spool) if spool is not None else Path(self.location) / SPOOL_DIR
        """The spool folder."""
        self.flush_interval = flush_interval
        self._pending: dict[Features, list[bytes]] = {}
        self._errors: list[bytes] = []
        self._feedback: list[bytes] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        # host, pid and time name this process's files (replicas write their own files); the
        # random part keeps two logs opened in one process within the same second apart.
        self.prefix = f"{_host()}-{os.getpid()}-{stamp}-{secrets.token_hex(3)}"
        self._layouts: dict[Features, int] = {}
        self._seq = 0
        self._inline: Converter | None = Converter(self.folder, self.location, self.prefix)
        self._converter: subprocess.Popen[bytes] | None = None
        self._thread: PeriodicThread | None = None
        if is_local(self.location):
            migrate_flat_log(self.location)

    def start(self) -> PredictionLog:
        """Write in a background thread and convert in a child process.

        Raises:
            ConfigError: If the log is in an object store whose bucket does not exist.
        """
        check_location(self.location)
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._converter = subprocess.Popen(
                [sys.executable, "-m", "flywheel.predlog", str(self.folder), self.location,
                 self.prefix],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            self._inline = None
        except OSError as exc:
            log.warning("no converter process (%s); the log is converted in the server", exc)
        self._thread = PeriodicThread(
            self.flush, self.flush_interval, name="flywheel-prediction-log", logger=log,
            failure="writing the prediction log failed; will retry",
            on_start=_lower_priority).start()
        return self

    # The request path: one orjson call and a list append, no I/O.
    def append(self, features: Features, request_id: str, when: float, version: str,
               latency_ms: float, records: Sequence[Mapping[str, Any]],
               predictions: Sequence[Any],
               probabilities: Sequence[Sequence[float]] | np.ndarray | None, *,
               arm: str = DEFAULT_ARM, event_time: float | None = None) -> None:
        line = prediction_line(request_id, when, version, latency_ms, records, predictions,
                               probabilities, arm, event_time)  # type: ignore[arg-type]
        with self._lock:
            lines = self._pending.get(features)
            if lines is None:
                lines = self._pending[features] = []
            lines.append(line)

    def append_error(self, request_id: str, when: float, version: str, latency_ms: float,
                     arm: str, error: str) -> None:
        """Record a model call that failed (no prediction): counted against ``version``."""
        line = error_line(request_id, when, version, latency_ms, arm, error)
        with self._lock:
            self._errors.append(line)

    def append_feedback(self, items: Iterable[tuple[str, Any]]) -> int:
        now = time.time()
        lines = [feedback_line(str(rid), now, str(label)) for rid, label in items]
        with self._lock:
            self._feedback.extend(lines)
        return len(lines)

    def flush(self) -> None:
        """Write what arrived since the last flush (and convert it, without a converter)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                errors, self._errors = self._errors, []
                feedback, self._feedback = self._feedback, []
            if not (pending or errors or feedback):
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            written = []
            for features, lines in pending.items():
                index = self._layouts.setdefault(features, len(self._layouts))
                written.append(write_spool(
                    self.folder, spool_name(self.prefix, self._seq, f"pred{index}"),
                    {"kind": "pred", "layout": features}, lines))
            if errors:
                written.append(write_spool(self.folder, spool_name(self.prefix, self._seq,
                                                                   "error"),
                                           {"kind": "error"}, errors))
            if feedback:
                written.append(write_spool(self.folder, spool_name(self.prefix, self._seq,
                                                                   "feedback"),
                                           {"kind": "feedback"}, feedback))
            fsync_dir(self.folder)
            if self._inline is not None:
                self._inline.convert(written)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything pending; let the converter drain the spool and exit (graceful
        stop). A converter still busy after ``timeout`` seconds finishes on its own."""
        if self._thread is not None:
            self._thread.stop(timeout=10)
        self.flush()
        if self._inline is not None:
            self._inline.close()
        if self._converter is not None:
            with contextlib.suppress(OSError):
                self._converter.stdin.close()  # type: ignore[union-attr]
            try:
                self._converter.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("the prediction log converter is still draining; it finishes on "
                            "its own, and readers read what it has not converted yet")


def _host() -> str:
    """This host's name as it can appear in a file name."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:40] or "host"


def _lower_priority(niceness: int = 10) -> None:
    """Lower this thread's CPU priority (Linux: threads have their own nice value)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
