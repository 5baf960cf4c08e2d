"""Starting a rollout: the refusals (no challenger, failed gates, a rollout running, no
monitoring), the policy from the spec's defaults, the A/B plan, the first state and its audit
entry."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import RolloutConflictError, RolloutError
from flywheel.pipelines._rollout_checks import ab_plan, check_monitoring
from flywheel.pipelines._rollout_state import ROLLOUT_ALIAS, read_state, write_state
from flywheel.pipelines.promote import audit_log, gate_status, recover, resolve_version
from flywheel.registry import CHALLENGER, CHAMPION, current_user
from flywheel.rollout import KINDS, RolloutState, new_state, policy_from_spec

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry.base import Registry

__all__ = ["start_rollout"]


def start_rollout(project: ProjectContext, kind: str | None = None, version: str | None = None, *,
                  reason: str | None = None, overrides: Mapping[str, Any] | None = None,
                  registry: Registry | None = None, lock_held: bool = False,
                  force: bool = False) -> RolloutState:
    """Start a ``kind`` rollout (canary, shadow, ab, blue_green, bandit) of ``version``.

    Args:
        kind: The policy; defaults to the spec's ``rollout.default`` (the retraining loop's).
        version: A version number or alias; defaults to the challenger.
        overrides: Policy settings over the spec's ``rollout:`` defaults (``stages``,
            ``min_requests``, ``limits.max_error_rate``, bandit ``arms``, ...).
        lock_held: The caller holds the workspace ``registry`` lock already.
        force: Start it although the version failed (or never ran) its gates: a live
            rollout judges what a small holdout cannot. Needs a ``reason``; the audit entry
            records the failed gates.

    Raises:
        RolloutError: If there is no champion or no challenger, the version failed its gates
            (and ``force`` is false, or is given without a reason) or is the champion,
            monitoring does not cover it, or the policy is invalid.
        RolloutConflictError: If a rollout is running already.
        ModelNotFoundError: If the version does not exist.
    """
    if force and not (reason and reason.strip()):
        raise RolloutError("--force needs --reason: say why a version that failed its gates "
                           "should take live traffic; the reason goes to the audit log.")
    kind = (kind or project.spec.rollout.default).replace("-", "_")
    if kind not in KINDS:
        raise RolloutError(f"unknown rollout kind {kind!r}; choose one of {', '.join(KINDS)}.")
    registry = registry or project.registry()
    lock = project.workspace.lock("registry", command=f"flywheel rollout {kind}") \
        if not lock_held else contextlib.nullcontext()
    with lock:
        recover(project, registry, lock_held=True)
        aliases, tags = registry.aliases_and_tags()
        champion = aliases.get(CHAMPION)
        if champion is None:
            raise RolloutError(f"Model {registry.model_name!r} has no champion, so there is "
                               "nothing to roll out against; `flywheel train` registers one.")
        current = read_state(tags)
        if current is not None and current.running:
            raise RolloutConflictError(registry.model_name, current.kind, current.challenger,
                                       current.started.isoformat(timespec="seconds"))
        settings = dict(overrides or {})
        if kind == "bandit":
            named = settings.get("arms") or [champion, version or _challenger(aliases, registry)]
            arms = [resolve_version(registry, a).version for a in named]
            settings["arms"] = arms
            candidates = [a for a in arms if a != champion]
            if not candidates:
                raise RolloutError("a bandit needs at least one arm besides the champion.")
            version = candidates[0]
        ref = version or _challenger(aliases, registry)
        info = resolve_version(registry, ref)
        others = settings.get("arms", [info.version])
        forced: dict[str, list[str]] = {}
        for number in others:
            arm = resolve_version(registry, number)
            if arm.version == champion:
                if kind != "bandit":
                    raise RolloutError(f"version {arm.version} is the champion already; roll "
                                       "out a challenger (`flywheel models` lists versions).")
                continue
            status = gate_status(arm)
            if not status.passed and force:
                forced[arm.version] = list(status.failed)
            elif not status.passed:
                raise RolloutError(
                    f"version {arm.version} did not pass its gates "
                    f"({'; '.join(status.failed[:5])}), so it may not take traffic. "
                    f"`flywheel gates {arm.version} --rerun` gates it again against the "
                    "current spec and champion; `--force --reason` starts the rollout "
                    "anyway (audited).")
            check_monitoring(project, registry, arm)
        spec = project.spec
        policy = policy_from_spec(kind, spec.rollout, task=spec.target.task,
                                  positive=spec.target.positive_class, overrides=settings)
        plan = ab_plan(project, policy, resolve_version(registry, champion)) \
            if kind == "ab" else None
        state = new_state(model=registry.model_name, policy=policy, champion=champion,
                          challenger=info.version, started_by=current_user(),
                          reason=(reason or "").strip(), plan=plan, forced=bool(forced))
        state = write_state(registry, state)
        audit_log(project).append(
            action="rollout_force_start" if forced else "rollout_start",
            model=registry.model_name, alias=ROLLOUT_ALIAS,
            from_version=champion, to_version=info.version,
            reason=state.reason or f"{kind} rollout started",
            evidence={"rollout": state.id, "kind": policy.kind,
                      "policy": policy.model_dump(mode="json"), "plan": plan,
                      **({"forced": True, "failed_gates": forced} if forced else {})})
    return state


def _challenger(aliases: Mapping[str, str], registry: Registry) -> str:
    version = aliases.get(CHALLENGER)
    if version is None:
        raise RolloutError(f"Model {registry.model_name!r} has no challenger to roll out: "
                           "train a new version (`flywheel train`) or name one "
                           "(`flywheel rollout canary VERSION`).")
    return version
