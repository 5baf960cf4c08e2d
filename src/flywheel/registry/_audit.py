"""The audit log: every change of what serves (alias moves), who made it, when, why, on what
evidence. Append-only JSON Lines at ``.flywheel/audit.jsonl``; the source of ``flywheel history``.

Each line is one entry::

    {"entry": {"seq": 3, "time": "...", "user": "ana", "action": "promote", "alias": "champion",
               "from": "1", "to": "2", "reason": "...", "evidence": {...}, "prev": "<sha>"},
     "sha256": "<hex of the entry's canonical JSON>"}

Durability: an entry is written with one ``write`` on a file opened for appending, then
``fsync``ed, under a file lock, so concurrent writers never interleave and an acknowledged entry
survives a crash. A crash mid-write can leave at most the last line torn: reading reports it
and returns every earlier entry; the next append first ends the torn line, so the new entry
starts on a line of its own (the torn one stays, reported, never rewritten). Each entry's
checksum catches a garbled line, and ``prev`` (the previous entry's checksum) catches lines
removed or reordered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout

from flywheel.core.errors import WorkspaceBusyError, WorkspaceError
from flywheel.core.workspace import fsync_dir

__all__ = ["AuditEntry", "AuditHistory", "AuditLog", "AuditProblem", "current_user"]

ProblemKind = Literal["torn", "corrupt", "checksum", "chain"]

_LOCK_TIMEOUT = 30.0


def current_user() -> str:
    """``$FLYWHEEL_USER``, else the login name, else ``unknown``."""
    user = os.environ.get("FLYWHEEL_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without /etc/passwd entry)
        return "unknown"


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One recorded change.

    Attributes:
        seq: 1, 2, ... in the order written.
        time: When, UTC, ISO 8601.
        action: ``register``, ``promote``, ``auto_promote``, ``rollback``, ``force_promote``.
        alias: The alias that moved (``champion``, ``challenger``).
        from_version: Where it pointed before (None: nowhere).
        to_version: Where it points after (None: removed).
        evidence: What justified it (gate summary, the comparison's interval, the run).
    """

    seq: int
    time: str
    user: str
    action: str
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "user": self.user, "action": self.action,
                "model": self.model, "alias": self.alias, "from": self.from_version,
                "to": self.to_version, "reason": self.reason, "evidence": self.evidence}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        return cls(seq=int(data["seq"]), time=str(data["time"]), user=str(data["user"]),
                   action=str(data["action"]), model=str(data["model"]),
                   alias=str(data["alias"]), from_version=_opt(data.get("from")),
                   to_version=_opt(data.get("to")), reason=str(data.get("reason", "")),
                   evidence=dict(data.get("evidence") or {}))


@dataclasses.dataclass(frozen=True)
class AuditProblem:
    """A line of the log that could not be trusted, and why."""

    line: int
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"audit log line {self.line}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class AuditHistory:
    """The readable entries, oldest first, and the lines that were not."""

    entries: tuple[AuditEntry, ...]
    problems: tuple[AuditProblem, ...]


class AuditLog:
    """The append-only log at ``path``.

    Args:
        path: The JSONL file; created, with its folder, on the first append.
        lock_timeout: Seconds an append waits for another writer.
    """

    def __init__(self, path: str | Path, *, lock_timeout: float = _LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def append(self, *, action: str, model: str, alias: str, from_version: str | None,
               to_version: str | None, reason: str, evidence: Mapping[str, Any] | None = None,
               user: str | None = None) -> AuditEntry:
        """Write one entry durably and return it.

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
            entry = AuditEntry(
                seq=seq + 1, time=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                user=user or current_user(), action=action, model=model, alias=alias,
                from_version=_opt(from_version), to_version=_opt(to_version), reason=reason,
                evidence=_plain(dict(evidence or {})))
            payload = {**entry.to_dict(), "prev": prev}
            line = json.dumps({"entry": payload, "sha256": _digest(payload)},
                              ensure_ascii=False, allow_nan=False) + "\n"
            # A torn last line (a crash mid-write) is ended first, so this entry is whole.
            prefix = b"\n" if data and not data.endswith(b"\n") else b""
            self._write(prefix + line.encode("utf-8"), created=not data)
            return entry
        finally:
            lock.release()

    def read(self) -> AuditHistory:
        """Every entry that checks out, and a problem for each line that does not.

        Never raises for a damaged line; a missing file is an empty history.

        Raises:
            WorkspaceError: If the file exists but cannot be read.
        """
        data = self._read_bytes()
        entries: list[AuditEntry] = []
        problems: list[AuditProblem] = []
        prev: str | None = None
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, start=1):
            last = number == len(lines)
            if not raw.strip():
                continue
            if last:  # bytes after the final newline: a write that did not finish
                problems.append(AuditProblem(number, "torn", (
                    f"the last line is incomplete ({len(raw)} bytes, no line end): a write "
                    f"was interrupted; the {len(entries)} entries before it are intact")))
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                payload = record["entry"]
                digest = record["sha256"]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError):
                problems.append(AuditProblem(number, "corrupt", (
                    "not a valid entry (an interrupted write that a later append sealed, or "
                    "an edit); skipped")))
                continue
            if _digest(payload) != digest:
                problems.append(AuditProblem(number, "checksum", (
                    "its checksum does not match its content: the line was changed after it "
                    "was written; skipped")))
                continue
            if payload.get("prev") != prev:
                problems.append(AuditProblem(number, "chain", (
                    "it does not follow the entry before it: entries were removed or "
                    "reordered above this line")))
            prev = digest
            try:
                entries.append(AuditEntry.from_dict(payload))
            except (KeyError, TypeError, ValueError):
                problems.append(AuditProblem(number, "corrupt", "an entry lacks a field; skipped"))
        return AuditHistory(tuple(entries), tuple(problems))

    # Internals ------------------------------------------------------------------------------

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise WorkspaceError(f"cannot read the audit log {self.path}: {exc.strerror}. "
                                 "Check its permissions.") from exc

    def _tail(self) -> tuple[bytes, int, str | None]:
        """The file's bytes, the last good entry's seq and checksum (0 and None if none)."""
        data = self._read_bytes()
        complete = data if data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]
        for raw in reversed(complete.split(b"\n")):
            if not raw.strip():
                continue
            with contextlib.suppress(UnicodeDecodeError, ValueError, KeyError, TypeError):
                record = json.loads(raw.decode("utf-8"))
                if _digest(record["entry"]) == record["sha256"]:
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


def _digest(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    """Evidence as plain JSON: numpy numbers unwrapped, tuples as lists, NaN as null."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
