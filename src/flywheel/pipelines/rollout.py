"""Rollouts of a project's challenger: start, stop, status, and the controller that decides.

This is the Python API the CLI and the retraining loop call::

    state = start_rollout(project, "canary", "3", reason="nightly retrain")
    decision = RolloutController(project).tick()   # None when no rollout is running
    status = rollout_status(project)

A rollout's state lives in the registry (model tag ``flywheel.rollout``); every change of it
is made under the workspace ``registry`` lock, the one promotions take, and recorded in the
audit log with its evidence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import RolloutError
from flywheel.pipelines._predlog import EVIDENCE_COLUMNS, LogWindows
from flywheel.pipelines._rollout_controller import RolloutController, RolloutDriver
from flywheel.pipelines._rollout_start import start_rollout
from flywheel.pipelines._rollout_state import ROLLOUT_ALIAS, read_state, write_state
from flywheel.pipelines.promote import audit_log, recover
from flywheel.registry import CHAMPION
from flywheel.rollout import (
    STATE_TAG,
    Decision,
    Evidence,
    RolloutState,
    Traffic,
    decide,
    gather_evidence,
)

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry.base import Registry

__all__ = ["RolloutController", "RolloutDriver", "RolloutStatus", "rollout_status",
           "start_rollout", "stop_rollout"]


@dataclasses.dataclass(frozen=True)
class RolloutStatus:
    """The stored state of the latest rollout, with evidence and the decision it would get
    now (None when no rollout was ever started)."""

    state: RolloutState | None
    evidence: Evidence | None = None
    preview: Decision | None = None
    champion: str | None = None
    """The registry's champion now (after the rollout ended it may have moved again)."""

    def traffic(self) -> Traffic | None:
        """Who answers now: the rollout's routing while it runs, else the champion."""
        return None if self.state is None else self.state.traffic(self.champion)

    def to_dict(self) -> dict[str, Any]:
        if self.state is None:
            return {"rollout": None}
        traffic = self.state.traffic(self.champion)
        return {"rollout": self.state.model_dump(mode="json"), "champion": self.champion,
                "traffic": [dataclasses.asdict(r) for r in traffic.routes],
                "evidence": None if self.evidence is None else self.evidence.to_dict(),
                "next": None if self.preview is None else self.preview.to_dict()}


def stop_rollout(project: ProjectContext, *, reason: str | None = None,
                 registry: Registry | None = None, force: bool = False
                 ) -> RolloutState | None:
    """End the running rollout by hand: traffic returns to the champion.

    A blue-green rollout that has switched leaves the new version champion (``flywheel
    rollback`` switches back). With ``force``, a damaged state is cleared as well.

    Raises:
        RolloutError: If no rollout is running (or its stored state is damaged and ``force``
            is false).
    """
    registry = registry or project.registry()
    with project.workspace.lock("registry", command="flywheel rollout stop"):
        recover(project, registry, lock_held=True)
        _, tags = registry.aliases_and_tags()
        try:
            state = read_state(tags)
        except RolloutError:
            if not force:
                raise
            registry.delete_model_tag(STATE_TAG)
            return None
        if state is None or not state.running:
            raise RolloutError(f"Model {registry.model_name!r} has no rollout running; "
                               "`flywheel rollout status` shows the last one.")
        text = (reason or "").strip() or "stopped by hand"
        now = dt.datetime.now(dt.UTC)
        state = write_state(registry, state.model_copy(update={
            "status": "stopped", "updated": now,
            "decision": {"action": "stop", "reason": text, "at": now.isoformat()}}))
        audit_log(project).append(
            action="rollout_stop", model=registry.model_name, alias=ROLLOUT_ALIAS,
            from_version=state.champion, to_version=state.challenger, reason=text,
            evidence={"rollout": state.id, "kind": state.kind, "stage": state.stage})
    return state


def rollout_status(project: ProjectContext, *, registry: Registry | None = None,
                   fresh: bool = True) -> RolloutStatus:
    """The latest rollout's state; with ``fresh``, its evidence from the prediction log now
    and the decision the controller would take (read-only: nothing is applied)."""
    registry = registry or project.registry()
    recover(project, registry)
    aliases, tags = registry.aliases_and_tags()
    state = read_state(tags)
    champion = aliases.get(CHAMPION)
    if state is None or not fresh:
        return RolloutStatus(state, champion=champion)
    frame = LogWindows(project).read(since=state.started, columns=EVIDENCE_COLUMNS)
    evidence = gather_evidence(frame, state)
    preview = decide(state, evidence) if state.running else None
    return RolloutStatus(state, evidence, preview, champion)
