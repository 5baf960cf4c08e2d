"""The audit log: every change of what serves (alias moves), who made it, when, why, on what
evidence. Append-only JSON Lines at ``.flywheel/audit.jsonl`` (embedded), or the same lines as
rows of the coordination database's ``flywheel_audit`` table when coordination is shared
(``flywheel.coordination.PostgresAuditStore``: every host appends to one chain); the source of
``flywheel history``. :func:`audit_log_for` picks the store.

Each line is one entry::

    {"entry": {"seq": 3, "time": "...", "user": "ana", "action": "promote", "alias": "champion",
               "from": "1", "to": "2", "reason": "...", "evidence": {...}, "prev": "<sha>"},
     "sha256": "<hex of the entry's canonical JSON>"}

Durability (the file): an entry is written with one ``write`` on a file opened for appending, then
``fsync``ed, under a file lock, so concurrent writers never interleave and an acknowledged entry
survives a crash. A crash mid-write can leave at most the last line torn: reading reports it
and returns every earlier entry; the next append first ends the torn line, so the new entry
starts on a line of its own (the torn one stays, reported, never rewritten). Each entry's
checksum catches a garbled line, and ``prev`` (the previous entry's checksum) catches lines
removed or reordered. In the table, an append is one transaction under an advisory lock, so
it is whole or absent and appends from every host are serialized.

Crash consistency with the registry: an alias lives in MLflow and its entry here, and no
transaction spans both. So a change is written ahead: an ``intent`` line (``"kind":
"intent"``, the moves it will make in ``evidence.moves``) before the alias moves, the change
entries after (each with ``"intent": <seq>``), and a ``resolved`` line last. An intent without
its ``resolved`` line means the command died midway; the next command that reads the aliases
reconciles it against the registry (``flywheel.pipelines._recovery``): moves that happened are
recorded with ``recovered`` saying so, moves not yet made are completed or, if none was made,
the intent is resolved as abandoned. :attr:`AuditHistory.entries` holds the change entries
only, so readers that replay alias changes see each change once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from flywheel.coordination import PostgresAuditStore, PostgresCoordinator
from flywheel.registry._audit_file import LOCK_TIMEOUT, FileAuditStore, digest

if TYPE_CHECKING:
    from flywheel.core.workspace import Workspace

__all__ = ["AuditEntry", "AuditHistory", "AuditLog", "AuditProblem", "AuditStore",
           "FileAuditStore", "audit_log_for", "current_user"]

ProblemKind = Literal["torn", "corrupt", "checksum", "chain"]
EntryKind = Literal["change", "intent", "resolved"]



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
        kind: ``change`` (an alias moved), ``intent`` (a change about to be made) or
            ``resolved`` (the end of an intent: ``reason`` says how it ended).
        intent: The seq of the intent this entry completes or resolves.
        recovered: Set on an entry written by recovery after a crash: what was recovered.
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
    kind: EntryKind = "change"
    intent: int | None = None
    recovered: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"seq": self.seq, "time": self.time, "user": self.user, "action": self.action,
               "model": self.model, "alias": self.alias, "from": self.from_version,
               "to": self.to_version, "reason": self.reason, "evidence": self.evidence}
        # Written only when set, so entries from before intents existed read back the same.
        if self.kind != "change":
            out["kind"] = self.kind
        if self.intent is not None:
            out["intent"] = self.intent
        if self.recovered is not None:
            out["recovered"] = self.recovered
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        kind = str(data.get("kind") or "change")
        if kind not in ("change", "intent", "resolved"):
            raise ValueError(f"unknown entry kind {kind!r}")
        intent = data.get("intent")
        return cls(seq=int(data["seq"]), time=str(data["time"]), user=str(data["user"]),
                   action=str(data["action"]), model=str(data["model"]),
                   alias=str(data["alias"]), from_version=_opt(data.get("from")),
                   to_version=_opt(data.get("to")), reason=str(data.get("reason", "")),
                   evidence=dict(data.get("evidence") or {}), kind=cast(EntryKind, kind),
                   intent=None if intent is None else int(intent),
                   recovered=_opt(data.get("recovered")))

    @property
    def moves(self) -> list[dict[str, str | None]]:
        """An intent's planned alias moves: ``{"alias", "from", "to"}`` each."""
        return [{"alias": str(m["alias"]), "from": _opt(m.get("from")), "to": _opt(m.get("to"))}
                for m in self.evidence.get("moves", []) if isinstance(m, Mapping)]


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
    """The readable entries, oldest first, and the lines that were not.

    Attributes:
        entries: The alias changes (intent and resolved lines are in ``records``).
        records: Every readable line: changes, intents and their resolutions.
    """

    entries: tuple[AuditEntry, ...]
    problems: tuple[AuditProblem, ...]
    records: tuple[AuditEntry, ...] = ()

    @property
    def pending(self) -> tuple[AuditEntry, ...]:
        """Intents with no ``resolved`` line: commands that died between intent and end."""
        resolved = {r.intent for r in self.records if r.kind == "resolved"}
        return tuple(r for r in self.records if r.kind == "intent" and r.seq not in resolved)

    @property
    def recoveries(self) -> tuple[AuditEntry, ...]:
        """Entries written by recovery: recovered changes and intents resolved after a crash."""
        return tuple(r for r in self.records if r.recovered is not None)

    def completing(self, intent: int) -> tuple[AuditEntry, ...]:
        """The change entries recorded for intent ``intent``."""
        return tuple(e for e in self.entries if e.intent == intent)


class AuditStore(Protocol):
    """Where the audit log's lines live: two methods, so the file and a database table hold
    the same lines and :class:`AuditLog` checks them the same way."""

    def append(self, build: Callable[[int, str | None], tuple[int, str, str]]) -> None:
        """Under the store's writer lock, call ``build(last_seq, last_sha256)`` (0 and None
        for an empty log) and persist the ``line`` of the ``(seq, sha256, line)`` it returns.
        """

    def read_bytes(self) -> bytes:
        """Every line written, oldest first, each ending with a newline."""

    def describe(self) -> str:
        """Where the lines are, as a person reads it."""


class AuditLog:
    """The append-only audit log, in a JSON Lines file or a shared store.

    Args:
        path: The JSONL file; created, with its folder, on the first append.
        store: Another store of the lines instead of ``path`` (the coordination database's
            table, ``flywheel.coordination.PostgresAuditStore``).
        lock_timeout: Seconds an append to the file waits for another writer.
    """

    def __init__(self, path: str | Path | None = None, *, store: AuditStore | None = None,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
        if (path is None) == (store is None):
            raise TypeError("AuditLog takes a path or a store, not both or neither")
        self.path = Path(path) if path is not None else None
        self.store: AuditStore = store if store is not None else FileAuditStore(
            Path(path or ""), lock_timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"AuditLog({self.store.describe()!r})"

    def begin(self, *, action: str, model: str, moves: list[Mapping[str, str | None]],
              reason: str, evidence: Mapping[str, Any] | None = None,
              user: str | None = None) -> AuditEntry:
        """Write the intent of a change before making it; ``finish`` ends it.

        Args:
            moves: The alias moves planned, ``{"alias", "from", "to"}`` each (empty when
                they are not known before, as for a registration).
        """
        first = moves[0] if moves else {"alias": "", "from": None, "to": None}
        return self.append(action=action, model=model, alias=str(first["alias"]),
                           from_version=first["from"], to_version=first["to"], reason=reason,
                           evidence={**dict(evidence or {}), "moves": [dict(m) for m in moves]},
                           user=user, kind="intent")

    def finish(self, intent: AuditEntry, outcome: str, *, recovered: str | None = None
               ) -> AuditEntry:
        """Write the ``resolved`` line that ends ``intent``; ``outcome`` says how it ended."""
        return self.append(action=intent.action, model=intent.model, alias=intent.alias,
                           from_version=intent.from_version, to_version=intent.to_version,
                           reason=outcome, kind="resolved", intent=intent.seq,
                           recovered=recovered)

    def append(self, *, action: str, model: str, alias: str, from_version: str | None,
               to_version: str | None, reason: str, evidence: Mapping[str, Any] | None = None,
               user: str | None = None, kind: EntryKind = "change", intent: int | None = None,
               recovered: str | None = None) -> AuditEntry:
        """Write one entry durably and return it.

        Args:
            intent: The seq of the intent this change carries out.
            recovered: What recovery found, when recovery writes the entry after a crash.

        Raises:
            WorkspaceBusyError: If another writer holds the log longer than ``lock_timeout``.
            WorkspaceError: If the log cannot be written.
        """
        written: list[AuditEntry] = []

        def build(seq: int, prev: str | None) -> tuple[int, str, str]:
            entry = AuditEntry(
                seq=seq + 1, time=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                user=user or current_user(), action=action, model=model, alias=alias,
                from_version=_opt(from_version), to_version=_opt(to_version), reason=reason,
                evidence=_plain(dict(evidence or {})), kind=kind, intent=intent,
                recovered=recovered)
            payload = {**entry.to_dict(), "prev": prev}
            checksum = digest(payload)
            written.append(entry)
            return entry.seq, checksum, json.dumps({"entry": payload, "sha256": checksum},
                                                 ensure_ascii=False, allow_nan=False)

        self.store.append(build)
        return written[-1]

    def read(self) -> AuditHistory:
        """Every entry that checks out, and a problem for each line that does not.

        Never raises for a damaged line; a missing file is an empty history.

        Raises:
            WorkspaceError: If the file exists but cannot be read.
        """
        data = self.store.read_bytes()
        records: list[AuditEntry] = []
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
                    f"was interrupted; the {len(records)} entries before it are intact")))
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                payload = record["entry"]
                checksum = record["sha256"]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError):
                problems.append(AuditProblem(number, "corrupt", (
                    "not a valid entry (an interrupted write that a later append sealed, or "
                    "an edit); skipped")))
                continue
            if digest(payload) != checksum:
                problems.append(AuditProblem(number, "checksum", (
                    "its checksum does not match its content: the line was changed after it "
                    "was written; skipped")))
                continue
            if payload.get("prev") != prev:
                problems.append(AuditProblem(number, "chain", (
                    "it does not follow the entry before it: entries were removed or "
                    "reordered above this line")))
            prev = checksum
            try:
                records.append(AuditEntry.from_dict(payload))
            except (KeyError, TypeError, ValueError):
                problems.append(AuditProblem(number, "corrupt", "an entry lacks a field; skipped"))
        entries = tuple(r for r in records if r.kind == "change")
        return AuditHistory(entries, tuple(problems), tuple(records))


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


def audit_log_for(workspace: Workspace) -> AuditLog:
    """The project's audit log: ``.flywheel/audit.jsonl`` embedded, the coordination
    database's ``flywheel_audit`` table when coordination is shared (every host's entries)."""
    coordinator = workspace.coordinator
    if isinstance(coordinator, PostgresCoordinator):
        return AuditLog(store=PostgresAuditStore(coordinator.store, coordinator.scope))
    return AuditLog(workspace.audit_log)
