"""The audit log's lines in a JSON Lines file (the embedded store; see ``_audit`` for the
format, the torn-line rules and the checksums)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from flywheel.core.errors import WorkspaceBusyError, WorkspaceError
from flywheel.core.workspace import fsync_dir

__all__ = ["LOCK_TIMEOUT", "FileAuditStore", "digest"]

LOCK_TIMEOUT = 30.0


def digest(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()



class FileAuditStore:
    """The lines in a JSON Lines file, appended under a file lock with one ``write`` each,
    then ``fsync``ed (see the module's notes on torn lines).

    Args:
        path: The file; created, with its folder, on the first append.
        lock_timeout: Seconds an append waits for another writer.
    """

    def __init__(self, path: Path, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_timeout = lock_timeout

    def describe(self) -> str:
        return str(self.path)

    def append(self, build: Callable[[int, str | None], tuple[int, str, str]]) -> None:
        """Write the line ``build`` makes from the last good entry's seq and checksum.

        Raises:
            WorkspaceBusyError: If another writer holds the log longer than ``lock_timeout``.
            WorkspaceError: If the log cannot be written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path) + ".lock")
        try:
            lock.acquire(timeout=self.lock_timeout)
        except Timeout:
            raise WorkspaceBusyError("audit", "another flywheel command",
                                     self.lock_timeout) from None
        try:
            data, seq, prev = self._tail()
            _, _, line = build(seq, prev)
            # A torn last line (a crash mid-write) is ended first, so this entry is whole.
            prefix = b"\n" if data and not data.endswith(b"\n") else b""
            self._write(prefix + line.encode("utf-8") + b"\n", created=not data)
        finally:
            lock.release()

    def read_bytes(self) -> bytes:
        """The file's bytes (a missing file: none).

        Raises:
            WorkspaceError: If the file exists but cannot be read.
        """
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise WorkspaceError(f"cannot read the audit log {self.path}: {exc.strerror}. "
                                 "Check its permissions.") from exc

    def _tail(self) -> tuple[bytes, int, str | None]:
        """The file's bytes, the last good entry's seq and checksum (0 and None if none)."""
        data = self.read_bytes()
        complete = data if data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]
        for raw in reversed(complete.split(b"\n")):
            if not raw.strip():
                continue
            with contextlib.suppress(UnicodeDecodeError, ValueError, KeyError, TypeError):
                record = json.loads(raw.decode("utf-8"))
                if digest(record["entry"]) == record["sha256"]:
                    return data, int(record["entry"]["seq"]), str(record["sha256"])
        return data, 0, None

    def _write(self, data: bytes, *, created: bool) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise WorkspaceError(f"cannot write the audit log {self.path}: {exc.strerror}. "
                                 "Check that the workspace is writable and not full.") from exc
