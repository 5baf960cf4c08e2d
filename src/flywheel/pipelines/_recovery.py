"""Recovery of alias changes that a crash left half made.

An alias lives in the MLflow registry and its record in the audit log; no transaction spans
both. So every change writes an intent to the log first (``AuditLog.begin``), then moves the
aliases, records each move, and ends with a ``resolved`` line (``AuditLog.finish``). A process
killed in between leaves an intent without its end. The next command that reads the aliases
(``promote``, ``rollback``, ``train``, ``history``, ``models``, ``rollout``, ``report``) calls
:func:`recover_changes`, which settles each such intent against the registry under the
workspace ``registry`` lock:

- a move that happened but was not recorded is recorded, marked ``recovered``;
- a move of the same change not made yet is made (rolled forward), marked so;
- if no move happened at all, the intent is resolved as abandoned: nothing changed;
- a registration killed after its version was created (the version exists with gate tags
  but no alias, no audit entry, no card) is finished: the alias rules are applied, the moves
  recorded, and the version tagged ``flywheel.recovered`` saying what it lacks.

The common case (no pending intent) only reads the audit log (a local file, or one query of
the shared coordination database).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Literal

from flywheel.registry import (
    CHALLENGER,
    CHAMPION,
    AuditEntry,
    AuditHistory,
    AuditLog,
    audit_log_for,
)

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry.base import Registry

__all__ = ["RECOVERED_TAG", "Recovery", "recover_changes"]

RECOVERED_TAG = "flywheel.recovered"
"""Version tag: what recovery finished for a version whose registration was interrupted."""
_CARD = "card/model_card.html"
_MANAGED = (CHAMPION, CHALLENGER)


@dataclasses.dataclass(frozen=True)
class Recovery:
    """What recovery did about one interrupted change.

    Attributes:
        outcome: ``recovered`` (moves recorded or completed) or ``abandoned`` (nothing moved).
        detail: One line a person reads, also the ``resolved`` entry's reason.
        entries: The change entries recovery wrote.
    """

    intent: AuditEntry
    outcome: Literal["recovered", "abandoned"]
    detail: str
    entries: tuple[AuditEntry, ...] = ()

    def __str__(self) -> str:
        return self.detail


def recover_changes(project: ProjectContext, registry: Registry | None = None, *,
                    lock_held: bool = False) -> list[Recovery]:
    """Settle every change a crash left half made; returns what was done (usually nothing).

    Args:
        lock_held: The caller holds the workspace ``registry`` lock already.

    Raises:
        WorkspaceBusyError: If another change holds the registry lock too long.
        RegistryError: If the registry cannot be read or written.
    """
    log = audit_log_for(project.workspace)
    if not log.read().pending:
        return []
    registry = registry or project.registry()
    lock = contextlib.nullcontext() if lock_held else project.workspace.lock(
        "registry", command="flywheel (recovering an interrupted alias change)")
    done: list[Recovery] = []
    with lock:
        history = log.read()  # again, under the lock: another process may have settled it
        for intent in history.pending:
            if intent.model != registry.model_name:
                continue
            if intent.action == "register":
                done.append(_recover_registration(registry, log, history, intent))
            else:
                done.append(_recover_moves(registry, log, history, intent))
    return done


def _recover_moves(registry: Registry, log: AuditLog, history: AuditHistory,
                   intent: AuditEntry) -> Recovery:
    recorded = {e.alias for e in history.completing(intent.seq)}
    now, _ = registry.aliases_and_tags()
    moves = intent.moves
    plan = ", ".join(f"{m['alias']} {m['from'] or '-'} → {m['to'] or '-'}" for m in moves)
    what = f"{intent.action} by {intent.user} at {_when(intent)} ({plan}; intent #{intent.seq})"
    happened = [m for m in moves if m["alias"] in recorded or now.get(str(m["alias"])) == m["to"]]
    if not happened:
        text = f"{what} was interrupted before any alias moved; nothing changed"
        log.finish(intent, text, recovered=text)
        return Recovery(intent, "abandoned", text)
    entries = []
    evidence = {k: v for k, v in intent.evidence.items() if k not in ("moves", "reasons")}
    for i, move in enumerate(moves):
        alias = str(move["alias"])
        if alias in recorded:
            continue
        if now.get(alias) == move["to"]:
            note = (f"the alias moved but the command was killed before recording it; "
                    f"recorded from intent #{intent.seq}")
        elif now.get(alias) == move["from"]:
            if move["to"] is None:
                registry.delete_alias(alias)
            else:
                registry.set_alias(alias, str(move["to"]))
            note = (f"the command was killed before making this move; recovery made it from "
                    f"intent #{intent.seq}")
        else:
            continue  # moved elsewhere since, outside flywheel: not this intent's to record
        entries.append(log.append(
            action=intent.action, model=intent.model, alias=alias,
            from_version=move["from"], to_version=move["to"],
            reason=str(intent.evidence.get("reasons", {}).get(alias) or intent.reason),
            evidence=evidence if i == 0 else {}, user=intent.user, intent=intent.seq,
            recovered=note))
    text = f"{what} was interrupted by a crash; recovered: {_moved(entries) or 'all recorded'}"
    log.finish(intent, text, recovered=text)
    return Recovery(intent, "recovered", text, tuple(entries))


def _recover_registration(registry: Registry, log: AuditLog, history: AuditHistory,
                          intent: AuditEntry) -> Recovery:
    run_id = str(intent.evidence.get("run_id") or "")
    before = {str(k): str(v) for k, v in (intent.evidence.get("before") or {}).items()}
    what = f"`flywheel train` by {intent.user} at {_when(intent)} (run {run_id[:12]})"
    found = [v for v in registry.versions() if run_id and v.run_id == run_id]
    if not found:
        text = (f"{what} was killed before its version was created; nothing was registered "
                f"(intent #{intent.seq})")
        log.finish(intent, text, recovered=text)
        return Recovery(intent, "abandoned", text)
    version = max(found, key=lambda v: int(v.version)).version
    registry.apply_alias_rules(version)
    now, _ = registry.aliases_and_tags()
    after = {a: now[a] for a in _MANAGED if a in now}
    recorded = {e.alias for e in history.completing(intent.seq)}
    first = after.get(CHAMPION) == version and CHAMPION not in before
    reason = f"version {version} registered: " + (
        "the first version becomes champion" if first else "a new version waits as challenger")
    evidence = {k: v for k, v in intent.evidence.items() if k not in ("moves", "before")}
    entries = []
    for alias in _MANAGED:
        if before.get(alias) != after.get(alias) and alias not in recorded:
            entries.append(log.append(
                action="register", model=intent.model, alias=alias,
                from_version=before.get(alias), to_version=after.get(alias), reason=reason,
                evidence={**evidence, "version": version}, user=intent.user, intent=intent.seq,
                recovered=(f"train was killed during registration; recovery applied the alias "
                           f"rules and recorded this from intent #{intent.seq}")))
    card = _has_card(registry, run_id)
    flag = (f"registration interrupted ({what}): recovery set its aliases and recorded them "
            "in the audit log" + ("" if card else "; it has no model card (train again for "
                                  "one)"))
    registry.set_version_tags(version, {RECOVERED_TAG: flag})
    text = f"{what} was killed during registration of version {version}; recovered: " + (
        _moved(entries) or "aliases were already recorded") + ("" if card else "; no model card")
    log.finish(intent, text, recovered=text)
    return Recovery(intent, "recovered", text, tuple(entries))


def _has_card(registry: Registry, run_id: str) -> bool:
    try:
        return bool(run_id) and registry.artifact_exists(run_id, _CARD)
    except Exception:  # noqa: BLE001 - an unreadable store only changes the flag's wording
        return False


def _moved(entries: list[AuditEntry]) -> str:
    return ", ".join(f"{e.alias} {e.from_version or '-'} → {e.to_version or '-'} (#{e.seq})"
                     for e in entries)


def _when(entry: AuditEntry) -> str:
    return entry.time[:19].replace("T", " ") + " UTC"

