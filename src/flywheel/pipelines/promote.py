"""Promotion, rollback and history: every change of what serves, gated, locked and audited.

- ``promote_version`` points ``champion`` at a version that passed its gates (or, with
  ``force`` and a reason, at one that did not); the version stops being ``challenger``.
- ``rollback`` points ``champion`` back at the champion before the current one.
- ``history`` reads the audit log, the record of every alias change.

Each change reads the aliases, changes them and appends to the audit log while holding the
workspace lock ``registry``, so two promotions at once run one after the other and the aliases
always match the log's last word. Training takes the same lock around registration.

A change is written ahead: its intent goes to the audit log before the alias moves, and a
command killed in between is settled by the next one (``_recovery.recover_changes``), so no
alias move goes unrecorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.core.crashpoints import crash_point
from flywheel.core.errors import GateError, ModelNotFoundError, PromotionError, RegistryError
from flywheel.evaluation import GateReport
from flywheel.pipelines._recovery import RECOVERED_TAG, Recovery, recover_changes
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
    from flywheel.registry import ModelVersionInfo
    from flywheel.registry.base import Registry

__all__ = [
    "RECOVERED_TAG",
    "AliasChange",
    "GateStatus",
    "audit_log",
    "fetch_model_card",
    "gate_status",
    "gates_of",
    "history",
    "previous_champion",
    "promote_version",
    "read_gates",
    "record_alias_changes",
    "recover",
    "resolve_version",
    "rollback",
]

_GATES = "flywheel.gates."


@dataclasses.dataclass(frozen=True)
class AliasChange:
    """What a promotion or rollback did.

    Attributes:
        changed: False when the alias already pointed there (nothing was written).
        entries: The audit entries written, the champion's first.
    """

    alias: str
    from_version: str | None
    to_version: str
    changed: bool
    entries: tuple[AuditEntry, ...] = ()
    forced: bool = False


@dataclasses.dataclass(frozen=True)
class GateStatus:
    """A version's gate verdict, read from its tags."""

    recorded: bool
    passed: bool
    summary: str
    failed: tuple[str, ...]
    champion: str | None


def audit_log(project: ProjectContext) -> AuditLog:
    """The project's audit log: ``.flywheel/audit.jsonl``, or the shared coordination
    database's table (``registry.audit_log_for``)."""
    return audit_log_for(project.workspace)


def gate_status(version: ModelVersionInfo) -> GateStatus:
    """The gate results recorded on ``version`` at training time."""
    tags = version.tags
    passed = tags.get(f"{_GATES}passed")
    if passed is None:
        return GateStatus(False, False, "no gate results recorded", (
            "no gate results (trained before flywheel ran gates)",), None)
    failed = tuple(f"{name.removeprefix(_GATES)}: {value.removeprefix('fail: ')}"
                   for name, value in sorted(tags.items())
                   if name.startswith(_GATES) and value.startswith("fail"))
    return GateStatus(True, passed == "true", tags.get(f"{_GATES}summary", ""), failed,
                      tags.get(f"{_GATES}champion"))


def resolve_version(registry: Registry, ref: str) -> ModelVersionInfo:
    """A version by number (``3``, ``v3``) or alias (``champion``).

    Raises:
        ModelNotFoundError: If there is no such version or alias.
    """
    ref = ref.strip()
    versions = registry.versions()
    number = ref[1:] if ref[:1] in ("v", "V") and ref[1:].isdigit() else ref
    if not number.isdigit():
        number = registry.alias_version(ref) or ""
    found = next((v for v in versions if v.version == number), None)
    if found is None:
        aliases = {a: v.version for v in versions for a in v.aliases}
        raise ModelNotFoundError(registry.model_name, ref,
                                 versions=[v.version for v in versions], aliases=aliases)
    return found


def promote_version(project: ProjectContext, version: str, *, reason: str | None = None,
                    force: bool = False, action: str = "promote",
                    evidence: Mapping[str, Any] | None = None,
                    registry: Registry | None = None,
                    lock_held: bool = False) -> AliasChange:
    """Make ``version`` the champion.

    Args:
        version: A version number or an alias (``challenger``).
        reason: Why, for the audit log; required with ``force``.
        force: Promote a version that failed (or never ran) its gates.
        action: What the audit log calls it (``promote``, ``auto_promote``,
            ``rollout_promote``).
        lock_held: The caller holds the workspace ``registry`` lock already (a rollout
            decision made under it); otherwise this takes it.

    Raises:
        ModelNotFoundError: If the version does not exist.
        GateError: If it did not pass its gates and ``force`` is false.
        PromotionError: If ``force`` is given without a reason.
        WorkspaceBusyError: If another change holds the registry lock too long.
    """
    if force and not (reason and reason.strip()):
        raise PromotionError("--force needs --reason: say why a version that failed its gates "
                             "should serve anyway; the reason goes to the audit log.")
    registry = registry or project.registry()
    log = audit_log(project)
    with _registry_lock(project, f"flywheel promote {version}", lock_held):
        recover_changes(project, registry, lock_held=True)
        info = resolve_version(registry, version)
        status = gate_status(info)
        if not status.passed and not force:
            raise GateError(registry.model_name, info.version, list(status.failed))
        current = registry.alias_version(CHAMPION)
        if current == info.version:
            return AliasChange(CHAMPION, current, info.version, changed=False)
        forced = force and not status.passed
        proof = {**_evidence(info, status), **dict(evidence or {}),
                 **({"forced": True, "failed_gates": list(status.failed)} if forced else {})}
        # A forced change by hand is a force_promote; one the rollout or loop makes keeps its
        # own name (the evidence says it was forced).
        action = "force_promote" if forced and action == "promote" else action
        text = (reason or "").strip() or _default_reason(action)
        retire = registry.alias_version(CHALLENGER) == info.version
        retired = f"version {info.version} became champion"
        moves: list[Mapping[str, str | None]] = [
            {"alias": CHAMPION, "from": current, "to": info.version}]
        if retire:
            moves.append({"alias": CHALLENGER, "from": info.version, "to": None})
        intent = log.begin(action=action, model=registry.model_name, moves=moves, reason=text,
                           evidence={**proof, "reasons": {CHALLENGER: retired}})
        crash_point("promote.intent_written")
        registry.set_alias(CHAMPION, info.version)
        crash_point("promote.alias_moved")
        entries = [log.append(
            action=action, model=registry.model_name,
            alias=CHAMPION, from_version=current, to_version=info.version,
            reason=text, evidence=proof, intent=intent.seq)]
        crash_point("promote.champion_recorded")
        if retire:
            registry.delete_alias(CHALLENGER)
            entries.append(log.append(
                action=action, model=registry.model_name, alias=CHALLENGER,
                from_version=info.version, to_version=None, reason=retired, evidence={},
                intent=intent.seq))
        log.finish(intent, "done")
    return AliasChange(CHAMPION, current, info.version, True, tuple(entries), forced)


def rollback(project: ProjectContext, *, reason: str | None = None,
             registry: Registry | None = None, action: str = "rollback",
             evidence: Mapping[str, Any] | None = None,
             lock_held: bool = False) -> AliasChange:
    """Point ``champion`` back at the champion before the current one.

    Rollbacks undo promotions in turn: after promoting 2 then 3, a rollback makes 2 champion,
    a second one 1, a third finds nothing to go back to.

    Args:
        action: What the audit log calls it (``rollback``, ``rollout_rollback``); any action
            ending in ``rollback`` undoes a promotion in ``previous_champion``'s replay.
        evidence: Added to the audit entry's evidence.
        lock_held: The caller holds the workspace ``registry`` lock already.

    Raises:
        PromotionError: If there is no champion, or no earlier champion to go back to, or it no
            longer exists.
    """
    registry = registry or project.registry()
    log = audit_log(project)
    with _registry_lock(project, "flywheel rollback", lock_held):
        recover_changes(project, registry, lock_held=True)
        current = registry.alias_version(CHAMPION)
        if current is None:
            raise PromotionError(f"Model {registry.model_name!r} has no champion, so there is "
                                 "nothing to roll back; `flywheel train` registers the first "
                                 "version as champion.")
        hist = log.read()
        previous = previous_champion(hist.entries, registry.model_name, current)
        if previous is None:
            raise PromotionError(
                f"Model {registry.model_name!r} has no previous champion to roll back to: "
                f"version {current} is the first champion in the audit log. `flywheel history` "
                "shows every change; `flywheel promote VERSION` names one explicitly.")
        existing = {v.version for v in registry.versions()}
        if previous not in existing:
            raise PromotionError(f"The previous champion, version {previous}, no longer exists "
                                 f"in the registry; promote another version explicitly.")
        text = (reason or "").strip() or "rollback to the previous champion"
        proof = {"rolled_back": current, **dict(evidence or {})}
        intent = log.begin(action=action, model=registry.model_name, reason=text,
                           moves=[{"alias": CHAMPION, "from": current, "to": previous}],
                           evidence=proof)
        registry.set_alias(CHAMPION, previous)
        crash_point("rollback.alias_moved")
        entry = log.append(action=action, model=registry.model_name, alias=CHAMPION,
                           from_version=current, to_version=previous, reason=text,
                           evidence=proof, intent=intent.seq)
        log.finish(intent, "done")
    return AliasChange(CHAMPION, current, previous, True, (entry,))


def history(project: ProjectContext, *, registry: Registry | None = None) -> AuditHistory:
    """Every alias change recorded in the audit log, oldest first, and any damaged lines.

    Changes a crash left half made are settled first (``recover_changes``); what recovery
    wrote is in ``AuditHistory.recoveries``.
    """
    recover(project, registry)
    return audit_log(project).read()


def recover(project: ProjectContext, registry: Registry | None = None, *,
            lock_held: bool = False) -> list[Recovery]:
    """Settle alias changes a crashed command left half made (see ``_recovery``)."""
    return recover_changes(project, registry, lock_held=lock_held)


def previous_champion(entries: tuple[AuditEntry, ...] | list[AuditEntry], model: str,
                      current: str) -> str | None:
    """The champion before ``current``, by replaying the champion's changes in the log.

    Promotions push onto a stack of champions and rollbacks pop it; the first change's
    ``from`` is the bottom (a champion from before the log began). If the champion was moved
    outside flywheel (the stack's top is not ``current``), the last champion flywheel recorded
    is the one to go back to.
    """
    stack: list[str] = []
    for e in entries:
        if e.model != model or e.alias != CHAMPION or e.to_version is None:
            continue
        if not stack and e.from_version is not None:
            stack.append(e.from_version)  # a champion from before the log began
        if e.action.endswith("rollback"):
            if stack and stack[-1] == e.from_version:
                stack.pop()
            if not stack or stack[-1] != e.to_version:
                stack.append(e.to_version)
        elif not stack or stack[-1] != e.to_version:
            stack.append(e.to_version)
    while stack and stack[-1] == current:
        stack.pop()
    return stack[-1] if stack else None


def record_alias_changes(log: AuditLog, model: str, before: Mapping[str, str],
                         after: Mapping[str, str], *, action: str, reason: str,
                         evidence: Mapping[str, Any] | None = None,
                         intent: int | None = None) -> list[AuditEntry]:
    """Append one entry per alias whose version differs between ``before`` and ``after``.

    Args:
        intent: The seq of the intent these changes carry out.
    """
    entries = []
    for alias in sorted(set(before) | set(after), key=lambda a: (a != CHAMPION, a)):
        old, new = before.get(alias), after.get(alias)
        if old != new:
            entries.append(log.append(action=action, model=model, alias=alias,
                                      from_version=old, to_version=new,
                                      reason=reason, evidence=evidence, intent=intent))
    return entries


def read_gates(project: ProjectContext, version: str = "latest") -> GateReport:
    """The gate report stored with ``version`` (number, alias, or ``latest``).

    Raises:
        ModelNotFoundError: If the version does not exist.
        RegistryError: If it has no gate report.
    """
    return gates_of(project, version)[1]


def gates_of(project: ProjectContext, version: str = "latest") -> tuple[str, GateReport]:
    """The version number ``version`` names (``latest``: the newest) and its gate report.

    Raises:
        ModelNotFoundError: If the version does not exist.
        RegistryError: If it has no gate report.
    """
    registry = project.registry()
    info = _resolve_or_latest(registry, version)
    if not info.run_id or "flywheel.gates.passed" not in info.tags:
        raise RegistryError(f"Model {registry.model_name!r} version {info.version} has no gate "
                            "results: it was trained before flywheel ran gates. Train again "
                            "with `flywheel train` to gate a new version.")
    with tempfile.TemporaryDirectory() as tmp:
        path = registry.download_artifacts(info.run_id, "evaluation/gates.json", tmp)
        return info.version, GateReport.from_dict(json.loads(path.read_text(encoding="utf-8")))


def fetch_model_card(project: ProjectContext, version: str = "champion",
                     directory: str | Path | None = None) -> Path:
    """Copy ``version``'s model card (HTML, Markdown, PNGs) into ``directory``.

    Raises:
        ModelNotFoundError: If the version does not exist.
        RegistryError: If it has no model card.
    """
    registry = project.registry()
    info = _resolve_or_latest(registry, version)
    target = Path(directory) if directory is not None else \
        project.workspace.root / "cards" / f"v{info.version}"
    if not info.run_id:
        raise RegistryError(f"version {info.version} has no run, so no model card.")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = registry.download_artifacts(info.run_id, "card", tmp)
        except RegistryError as exc:
            raise _no_card(registry, info) from exc
        target.mkdir(parents=True, exist_ok=True)
        for item in folder.iterdir():
            shutil.copy2(item, target / item.name)
    page = target / "model_card.html"
    if not page.is_file():
        raise RegistryError(f"the model card of version {info.version} is incomplete "
                            f"(no model_card.html in {target}).")
    return page


def _no_card(registry: Registry, info: ModelVersionInfo) -> RegistryError:
    """Why ``info`` has no card: the error training recorded on its run, if any."""
    try:
        failed = registry.run_tags(info.run_id).get("flywheel.card_error") if info.run_id \
            else None
    except RegistryError:
        failed = None
    why = (f"writing it failed during training: {failed}" if failed else
           "none was written: the version predates model cards, or its training stopped "
           "before writing one")
    return RegistryError(f"Model {registry.model_name!r} version {info.version} has no model "
                         f"card ({why}). Train a new version with `flywheel train` to get one.")


def _registry_lock(project: ProjectContext, command: str, held: bool
                   ) -> contextlib.AbstractContextManager[None]:
    """The workspace ``registry`` lock, unless the caller holds it already."""
    if held:
        return contextlib.nullcontext()
    return project.workspace.lock("registry", command=command)


def _resolve_or_latest(registry: Registry, ref: str) -> ModelVersionInfo:
    if ref == "latest":
        versions = registry.versions()
        if not versions:
            raise ModelNotFoundError(registry.model_name, None)
        return versions[0]
    return resolve_version(registry, ref)


def _evidence(info: ModelVersionInfo, status: GateStatus) -> dict[str, Any]:
    tags = info.tags
    metric = tags.get("flywheel.metric")
    out: dict[str, Any] = {"version": info.version, "run_id": info.run_id,
                           "gates": status.summary, "gates_passed": status.passed}
    if metric:
        out["metric"] = metric
        for key in (f"flywheel.holdout_{metric}", f"flywheel.cv_{metric}"):
            if key in tags:
                out[key.removeprefix("flywheel.")] = tags[key]
    if status.champion:
        out["champion_comparison"] = status.champion
    return out


def _default_reason(action: str) -> str:
    return {"auto_promote": "passed every gate; promotion.auto is on"}.get(
        action, "promoted by hand")
