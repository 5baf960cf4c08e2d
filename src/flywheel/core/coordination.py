"""Coordination of flywheel commands: named locks, a leader lease, and small shared state.

A :class:`Coordinator` gives what must be serialized or elected across the processes that
run one project: the named locks writers take (``registry``, ``train``, ``loop``,
``project``), the rollout controller's leadership (:class:`LeaderLease`), and small state
documents (the retraining loop's). Two back ends implement it:

- :class:`FileCoordinator` (embedded, the default): lock files in ``.flywheel/locks`` and
  state files in ``.flywheel/``; the operating system frees a dead holder's lock.
- ``flywheel.coordination.PostgresCoordinator``: advisory locks, a lease table with expiry and
  a state table in PostgreSQL, shared by every host running the same flywheel.yaml.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from filelock import FileLock, Timeout

from flywheel.core.atomic import atomic_write_text
from flywheel.core.errors import WorkspaceBusyError, WorkspaceError

__all__ = [
    "Coordinator",
    "FileCoordinator",
    "FileLease",
    "LeaderLease",
    "describe_process",
    "holder_record",
]


def describe_process(command: str | None = None) -> str:
    """``command`` (else this process's command line), host and pid, as holders are shown."""
    what = command or " ".join(["flywheel", *sys.argv[1:]])
    return f"`{what}` (pid {os.getpid()} on {socket.gethostname()})"


def holder_record(command: str | None = None) -> dict[str, object]:
    """What a lock holder writes about itself: command, pid, host and since when."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": command or " ".join(["flywheel", *sys.argv[1:]]),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def format_holder(text: str | None) -> str:
    """A holder record (JSON from :func:`holder_record`) as a person reads it."""
    try:
        info = json.loads(text or "")
        host = f" on {info['host']}" if info.get("host") else ""
        return f"`{info['command']}` (pid {info['pid']}{host}, since {info['since']})"
    except (ValueError, KeyError, TypeError, AttributeError):
        return "another flywheel command"


@runtime_checkable
class LeaderLease(Protocol):
    """Leadership of one role (the rollout controller) among many processes.

    ``acquire`` is called every ``renew_seconds``: it takes the lease if it is free or expired,
    renews it if this process holds it, and returns whether this process leads now. A leader
    whose renewal fails (the store went away) steps down at once: ``held`` turns False before
    the lease could pass to another process.
    """

    @property
    def held(self) -> bool:
        """True while this process leads and its lease has not lapsed."""

    def acquire(self) -> bool:
        """Take or renew the lease without waiting; whether this process leads now."""

    def step_down(self) -> None:
        """Give the lease up (another process may take it at once)."""

    def holder(self) -> str | None:
        """Who leads now, as a person reads it (None: nobody)."""


@runtime_checkable
class Coordinator(Protocol):
    """Locks, leases and small state shared by every process of one project."""

    shared: bool
    """True when the state lives outside this folder (other hosts see it)."""
    stale_holders: dict[str, str]
    """Per lock name, the holder a killed process left behind when this one took the lock."""

    def lock(self, name: str, *, timeout: float, command: str | None = None
             ) -> AbstractContextManager[None]:
        """Hold the named lock for a block, waiting up to ``timeout`` seconds.

        Raises:
            WorkspaceBusyError: If another holder keeps it longer than ``timeout``.
        """

    def lease(self, name: str) -> LeaderLease:
        """The leader lease ``name`` (not taken until ``acquire``)."""

    def read_state(self, name: str) -> str | None:
        """The state document ``name`` (None: never written)."""

    def write_state(self, name: str, text: str) -> None:
        """Replace the state document ``name`` at once (readers see old or new)."""

    def describe(self) -> str:
        """Where the coordination lives, password hidden."""


@dataclasses.dataclass
class FileLease:
    """A leader lease as a non-blocking lock file: the operating system frees it when its
    holder dies, and there is no expiry (the holder is alive for as long as it holds it)."""

    path: Path
    command: str | None = None

    def __post_init__(self) -> None:
        self._lock = FileLock(str(self.path))
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        if self._held:
            return True
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        self._held = True
        with contextlib.suppress(OSError):
            self.path.with_suffix(".holder").write_text(json.dumps(holder_record(self.command)))
        return True

    def step_down(self) -> None:
        if self._held:
            with contextlib.suppress(OSError):
                self.path.with_suffix(".holder").unlink()
            self._lock.release()
            self._held = False

    def holder(self) -> str | None:
        try:
            return format_holder(self.path.with_suffix(".holder").read_text(encoding="utf-8"))
        except OSError:
            return None


class FileCoordinator:
    """Locks and state as files under ``root`` (``.flywheel/``): one host, many processes.

    Args:
        root: The workspace folder (locks go to ``root/locks``).
    """

    shared = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.locks = root / "locks"
        self.stale_holders: dict[str, str] = {}

    def describe(self) -> str:
        return f"files in {self.root}"

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float, command: str | None = None) -> Iterator[None]:
        self._ensure(self.locks)
        holder_path = self.locks / f"{name}.holder"
        started = time.monotonic()
        file_lock = FileLock(str(self.locks / f"{name}.lock"))
        try:
            file_lock.acquire(timeout=timeout)
        except Timeout:
            raise WorkspaceBusyError(name, _read_holder(holder_path),
                                     time.monotonic() - started) from None
        if holder_path.exists():  # we hold the lock, so whoever wrote this died holding it
            self.stale_holders[name] = _read_holder(holder_path)
        try:
            atomic_write_text(holder_path, json.dumps(holder_record(command)))
            yield
        finally:
            with contextlib.suppress(OSError):
                holder_path.unlink()
            file_lock.release()

    def lease(self, name: str) -> FileLease:
        self._ensure(self.locks)
        return FileLease(self.locks / f"{name}.lock")

    def read_state(self, name: str) -> str | None:
        path = self.root / name
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WorkspaceError(f"cannot read {path}: {exc.strerror}. Check its "
                                 "permissions.") from exc

    def write_state(self, name: str, text: str) -> None:
        atomic_write_text(self.root / name, text)

    def _ensure(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create {folder}: {exc.strerror}. Check that the "
                                 "project folder is writable.") from exc


def _read_holder(path: Path) -> str:
    try:
        return format_holder(path.read_text(encoding="utf-8"))
    except OSError:
        return "another flywheel command"
