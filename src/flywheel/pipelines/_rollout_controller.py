"""The rollout controller: read the evidence, decide, apply; and the thread that runs it while
serving.

``RolloutController.tick`` holds the workspace ``registry`` lock from reading the state to
writing the outcome, so two controllers (two server workers, a server and the retraining loop)
never decide on the same state twice. A decision that moves an alias is written to the state
as ``pending`` first; a tick that finds one (a controller died midway) completes it, and
completing it twice changes nothing. Promotion and switching back reuse ``promote_version``
and ``rollback``, so they are gated and audited like any other.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from flywheel.core.crashpoints import crash_point
from flywheel.core.errors import (
    FlywheelError,
    GateError,
    ModelNotFoundError,
    PromotionError,
    RolloutError,
    WorkspaceBusyError,
)
from flywheel.core.periodic import PeriodicThread, StoreWatcher
from flywheel.pipelines._predlog import EVIDENCE_COLUMNS, LogWindows
from flywheel.pipelines._rollout_checks import ab_plan, warm_up
from flywheel.pipelines._rollout_start import start_rollout
from flywheel.pipelines._rollout_state import ROLLOUT_ALIAS, read_state, write_state
from flywheel.pipelines.promote import (
    audit_log,
    promote_version,
    recover,
    resolve_version,
    rollback,
)
from flywheel.registry import CHAMPION
from flywheel.rollout import BlueGreenPolicy, Decision, RolloutState, decide, gather_evidence

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry.base import Registry

__all__ = ["RolloutController", "RolloutDriver"]

log = logging.getLogger("flywheel.rollout")

_FINAL_STATUS = {"promote": "promoted", "rollback": "rolled_back", "conclude": "completed"}
_AUDIT_WEIGHT_MOVE = 0.10


class RolloutController:
    """Decides a project's running rollout from the prediction log and applies the decision.

    Args:
        registry: The registry to use (default: the project's).
        lock_timeout: Seconds to wait for the workspace ``registry`` lock.
        windows: The prediction-log windows this tick shares with others in the process
            (the loop's); default: read afresh at each tick.
    """

    def __init__(self, project: ProjectContext, *, registry: Registry | None = None,
                 lock_timeout: float = 30.0, windows: LogWindows | None = None) -> None:
        self.project = project
        self.registry = registry or project.registry()
        self.lock_timeout = lock_timeout
        self.windows = windows

    def tick(self) -> Decision | None:
        """Look once: the decision taken (and applied), or None if no rollout is running.

        Raises:
            WorkspaceBusyError: If another change holds the registry lock too long.
            RegistryError: If the registry cannot be read or written.
            RolloutError: If the stored state is damaged.
        """
        with self.project.workspace.lock("registry", timeout=self.lock_timeout,
                                         command="flywheel rollout (controller)"):
            recover(self.project, self.registry, lock_held=True)
            aliases, tags = self.registry.aliases_and_tags()
            state = read_state(tags)
            if state is None or not state.running:
                return None
            expected = state.challenger if state.phase == "switched" else state.champion
            if state.pending is not None:
                # Before or after the interrupted move; any other champion was set by hand
                # meanwhile, and completing the old decision would undo the operator's change.
                target = (state.pending_version or state.challenger
                          if state.pending == "promote" else state.champion)
                if aliases.get(CHAMPION) not in (expected, target):
                    return self._superseded(state, aliases.get(CHAMPION))
                return self._finish_pending(state)
            if aliases.get(CHAMPION) != expected:
                return self._superseded(state, aliases.get(CHAMPION))
            # The rows since the rollout began, without their inputs.
            frame = (self.windows or LogWindows(self.project)).read(
                since=state.started, columns=EVIDENCE_COLUMNS)
            if state.kind == "ab" and state.plan is None:
                champion = resolve_version(self.registry, state.champion)
                plan = ab_plan(self.project, state.policy, champion, frame)
                state = state.model_copy(update={"plan": plan})
            evidence = gather_evidence(frame, state)
            health = None
            if state.kind == "blue_green" and state.phase != "switched":
                budget = state.policy.limits.max_p99_latency_ms or \
                    self.project.spec.gates.latency_p99_ms
                policy = state.policy
                if not isinstance(policy, BlueGreenPolicy):
                    raise RolloutError(f"a blue-green rollout holds a {policy.kind} policy; "
                                       "stop it with `flywheel rollout stop` and start again.")
                health = warm_up(self.project, self.registry, state.challenger,
                                 rows=policy.warmup_rows, budget_ms=budget)
            decision = decide(state, evidence, health=health)
            self._apply(state, decision, evidence.to_dict())
            return decision

    # Applying --------------------------------------------------------------------------------

    def _apply(self, state: RolloutState, decision: Decision, arms: dict[str, Any]) -> None:
        now = dt.datetime.now(dt.UTC)
        record = {**decision.to_dict(), "at": now.isoformat(timespec="seconds")}
        base: dict[str, Any] = {"decision": record, "counts": arms}
        if decision.p_value is not None:
            base["p_value"] = decision.p_value
        evidence = {"rollout": state.id, "kind": state.kind, "stage": state.stage,
                    "decision": decision.to_dict(), "arms": arms}
        action = decision.action
        if action in ("wait", "reweight", "advance"):
            if action == "advance":
                base.update(stage=decision.stage, stage_started=now)
            if action == "reweight" and decision.weights is not None:
                base["weights"] = decision.weights
                moved = max(abs(w - state.audited_weights.get(v, 0.0))
                            for v, w in decision.weights.items())
                if moved < _AUDIT_WEIGHT_MOVE:
                    write_state(self.registry, state.model_copy(update=base))
                    return
                base["audited_weights"] = decision.weights
            write_state(self.registry, state.model_copy(update=base))
            if action != "wait":
                self._audit(state, f"rollout_{action}", decision.reason, evidence)
            return
        if action in ("promote", "switch"):
            version = decision.version or state.challenger
            pending = write_state(self.registry, state.model_copy(update={
                **base, "pending": "promote", "pending_version": version}))
            crash_point("rollout.decision_pending")
            self._promote(pending, version, action, decision.reason, evidence)
            return
        if action == "rollback" and state.phase == "switched":
            pending = write_state(self.registry, state.model_copy(update={
                **base, "pending": "rollback"}))
            self._switch_back(pending, decision.reason, evidence)
            return
        write_state(self.registry, state.model_copy(update={
            **base, "status": _FINAL_STATUS[action]}))
        self._audit(state, f"rollout_{action}", decision.reason, evidence)
        if decision.then == "canary":
            start_rollout(self.project, "canary", state.challenger, registry=self.registry,
                          reason=f"after a clean shadow (rollout {state.id})", lock_held=True)

    def _promote(self, state: RolloutState, version: str, action: str, reason: str,
                 evidence: dict[str, Any]) -> None:
        try:
            change = promote_version(self.project, version, reason=reason,
                                     action=f"rollout_{action}", evidence=evidence,
                                     registry=self.registry, lock_held=True,
                                     force=state.forced)
        except (GateError, PromotionError, ModelNotFoundError) as exc:
            # Not a passing fault: retrying would fail the same way. End the rollout, say why.
            why = f"could not {action} version {version}: {exc}"
            write_state(self.registry, state.model_copy(update={
                "status": "stopped", "pending": None, "pending_version": None,
                "decision": {"action": "stop", "reason": why,
                             "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}}))
            self._audit(state, "rollout_stop", why, evidence)
            return
        crash_point("rollout.alias_moved")
        if not change.changed:  # already champion (a retried decision, a blue-green bake)
            self._audit(state, f"rollout_{action}", reason, evidence)
        update: dict[str, Any] = {"pending": None, "pending_version": None}
        if action == "switch":
            update.update(phase="switched", stage_started=dt.datetime.now(dt.UTC))
        else:
            update["status"] = "promoted"
        write_state(self.registry, state.model_copy(update=update))

    def _switch_back(self, state: RolloutState, reason: str, evidence: dict[str, Any]) -> None:
        if self.registry.alias_version(CHAMPION) == state.challenger:
            try:
                rollback(self.project, reason=reason, registry=self.registry,
                         action="rollout_rollback", evidence=evidence, lock_held=True)
            except PromotionError:  # the log knows no earlier champion: name it explicitly
                promote_version(self.project, state.champion, reason=reason, force=True,
                                action="rollout_rollback", evidence=evidence,
                                registry=self.registry, lock_held=True)
        write_state(self.registry, state.model_copy(update={
            "pending": None, "status": "rolled_back"}))

    def _finish_pending(self, state: RolloutState) -> Decision:
        recorded = state.decision or {}
        reason = f"completing a decision interrupted earlier: {recorded.get('reason', '')}"
        evidence = {"rollout": state.id, "kind": state.kind, "resumed": True}
        if state.pending == "promote":
            version = state.pending_version or state.challenger
            decision = Decision("switch" if recorded.get("action") == "switch" else "promote",
                                reason, version=version)
            self._promote(state, version, decision.action, reason, evidence)
            return decision
        self._switch_back(state, reason, evidence)
        return Decision("rollback", reason)

    def _superseded(self, state: RolloutState, champion: str | None) -> Decision:
        reason = (f"the champion moved to version {champion} outside the rollout; the "
                  f"rollout of version {state.challenger} ends")
        now = dt.datetime.now(dt.UTC)
        write_state(self.registry, state.model_copy(update={
            "status": "stopped", "pending": None, "pending_version": None,
            "decision": {"action": "stop", "reason": reason, "at": now.isoformat()}}))
        self._audit(state, "rollout_stop", reason, {"rollout": state.id, "champion": champion})
        return Decision("conclude", reason)

    def _audit(self, state: RolloutState, action: str, reason: str,
               evidence: dict[str, Any]) -> None:
        audit_log(self.project).append(action=action, model=self.registry.model_name,
                                       alias=ROLLOUT_ALIAS, from_version=state.champion,
                                       to_version=state.challenger, reason=reason,
                                       evidence=evidence)


class RolloutDriver:
    """Runs ``RolloutController.tick`` every ``interval`` seconds in a background thread.

    Of several server workers, or replicas on other hosts sharing the coordination database,
    one drives: each holds the coordinator's ``rollout-controller`` lease only while it leads,
    renewing it every ``coordination.renew_seconds`` in a thread of its own, and only the
    leader ticks. Embedded, the lease is a lock file the operating system frees when its holder
    dies; shared, a PostgreSQL row that lapses ``coordination.lease_seconds`` after the last
    renewal of a holder killed with -9, and that a holder cut off from the database gives up at
    once (it takes the lease again, or another replica does, when the database is back).
    """

    def __init__(self, project: ProjectContext, *, interval: float | None = None,
                 registry: Registry | None = None) -> None:
        self.project = project
        self.interval = interval if interval is not None else project.spec.rollout.tick_seconds
        self.controller = RolloutController(project, registry=registry, lock_timeout=5.0)
        self.last_decision: Decision | None = None
        self._watcher = StoreWatcher(lambda: self.controller.registry.store_stamp())
        """Remembers the registry store's stamp when a tick last found no rollout running."""
        self._thread: PeriodicThread | None = None
        self._renewer: PeriodicThread | None = None
        coordinator = project.workspace.coordinator
        if not coordinator.shared:
            project.workspace.ensure()
        self._where = coordinator.describe()
        self._lease = coordinator.lease("rollout-controller")
        self._led = False
        self._holder: str | None = None

    @property
    def leader(self) -> bool:
        """True while this process holds the controller's lease."""
        return self._lease.held

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` shows of the controller: whether this process leads, and who does."""
        leader = self.leader
        return {"controller": {"leader": leader, "coordination": self._where,
                               "holder": None if leader else self._holder}}

    def start(self) -> RolloutDriver:
        self._renew()  # before serving, so that a replica says at once whether it leads
        renew = self.project.spec.coordination.renew_seconds
        self._renewer = PeriodicThread(self._renew, renew, name="flywheel-controller-lease",
                                       logger=log, failure="renewing the controller's lease "
                                       "failed; will retry").start()
        self._thread = PeriodicThread(self._drive, self.interval,
                                      name="flywheel-rollout-controller", logger=log,
                                      failure="rollout controller failed; will retry").start()
        return self

    def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.stop(timeout=10)
        if self._thread is not None:
            self._thread.stop(timeout=30)
        self._lease.step_down()
        self._led = False

    def _renew(self) -> None:
        leads = self._lease.acquire()
        if leads and not self._led:
            log.info("this worker drives rollout decisions (%s)", self._where)
            # A new leader reads afresh: the last one may have written since this one looked.
            self._watcher = StoreWatcher(lambda: self.controller.registry.store_stamp())
        elif self._led and not leads:
            log.warning("this worker stopped driving rollout decisions: it lost the "
                        "controller's lease (%s)", self._where)
        self._led = leads
        self._holder = None if leads else self._lease.holder()

    def _drive(self) -> None:
        if not self.leader:
            return
        # Skipped while no rollout ran at the last tick and the registry was not written since.
        self._watcher.poll(self._tick)

    def _tick(self) -> bool:
        """One tick; True when no rollout is running (nothing to do until the next write)."""
        try:
            decision = self.controller.tick()
        except WorkspaceBusyError:
            return False  # a promotion or training holds the registry; next time
        except FlywheelError as exc:
            log.warning("rollout controller: %s", exc)
            return False
        if decision is not None and decision.action != "wait":
            log.info("rollout decision: %s: %s", decision.action, decision.reason)
        self.last_decision = decision
        return decision is None
