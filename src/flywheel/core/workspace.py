"""The workspace ``.flywheel/`` that flywheel owns beside a project's flywheel.yaml.

Created on first use. Writers take a named lock: a second command that would write the same
state waits up to a timeout, then refuses with a message naming the holder. Files are written
atomically (temporary file, fsync, rename), so a crash never leaves one half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from flywheel.core.errors import WorkspaceBusyError, WorkspaceError

WORKSPACE_DIR = ".flywheel"
DEFAULT_LOCK_TIMEOUT = 30.0


class Workspace:
    """Paths inside ``.flywheel/`` and the lock that serializes writers.

    Args:
        project_root: The folder holding flywheel.yaml.
    """

    def __init__(self, project_root: str | Path) -> None:
        self.project_root = Path(project_root).resolve()
        self.root = self.project_root / WORKSPACE_DIR
        self.stale_holders: dict[str, str] = {}
        """Per lock name, the holder a killed process left behind when this one took the lock
        (``lock`` replaces the file; the caller says what was recovered)."""

    # Layout. At scale the database paths become server URIs; see the spec.
    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def ensure(self) -> Workspace:
        """Create the workspace folders if they are missing.

        Raises:
            WorkspaceError: If ``.flywheel`` exists but is not a folder, or cannot be written.
        """
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(
                f"{self.root} exists but is not a folder; move it away so flywheel can create "
                "its workspace there."
            )
        try:
            for folder in (self.root, self.artifacts, self.predictions, self.profiles, self.locks):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the workspace at {self.root}: {exc.strerror}. "
                "Check that the project folder is writable."
            ) from exc
        return self

    @contextlib.contextmanager
    def lock(self, name: str = "state", *, timeout: float = DEFAULT_LOCK_TIMEOUT,
             command: str | None = None) -> Iterator[None]:
        """Hold the named workspace lock for the duration of the block.

        Waits up to ``timeout`` seconds for another holder, then raises.

        Raises:
            WorkspaceBusyError: If the lock is still held after ``timeout`` seconds.
        """
        self.ensure()
        lock_path = self.locks / f"{name}.lock"
        holder_path = self.locks / f"{name}.holder"
        started = time.monotonic()
        file_lock = FileLock(str(lock_path))
        try:
            file_lock.acquire(timeout=timeout)
        except Timeout:
            raise WorkspaceBusyError(name, _read_holder(holder_path),
                                     time.monotonic() - started) from None
        if holder_path.exists():  # we hold the lock, so whoever wrote this died holding it
            self.stale_holders[name] = _read_holder(holder_path)
        try:
            atomic_write_text(holder_path, json.dumps({
                "pid": os.getpid(),
                "command": command or " ".join(["flywheel", *sys.argv[1:]]),
                "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }))
            yield
        finally:
            with contextlib.suppress(OSError):
                holder_path.unlink()
            file_lock.release()


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"`{info['command']}` (pid {info['pid']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another flywheel command"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text form of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (best effort where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
