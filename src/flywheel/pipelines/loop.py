"""The retraining loop: triggers -> retrain -> gates -> rollout -> decide, with no human in it.

Each ``tick`` does one step and persists where it is in ``.flywheel/loop/state.json`` (written
atomically; with shared coordination, a row of the coordination database) before and after
anything slow, so a loop killed at any point and restarted
resumes in the right state:

- killed while retraining: the frozen retraining data is still on disk; if a version trained
  on it (same data fingerprint) was registered, the loop goes on to its rollout, otherwise it
  trains again on the same rows (Optuna resumes the same study). One trigger never retrains
  twice.
- killed during a rollout: the rollout's state lives in the registry; the next tick drives it.

Every trigger, retraining, failure and rollout outcome goes to the audit log with its evidence.
Time comes from ``clock`` (the wall clock by default; the demo replays a year in minutes and
passes its simulated clock), so cool-downs and data windows follow the traffic's own time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from croniter import croniter

from flywheel.core.errors import FlywheelError, WorkspaceError
from flywheel.core.workspace import atomic_write_text
from flywheel.data import fingerprint_frame
from flywheel.monitoring import check_rule_names
from flywheel.pipelines._predlog import LogWindows, log_location
from flywheel.pipelines._retrain_data import retraining_frame
from flywheel.pipelines.monitor import MonitorCache, WindowRequest, monitor_project
from flywheel.pipelines.promote import audit_log, promote_version
from flywheel.pipelines.rollout import RolloutController, rollout_status, start_rollout
from flywheel.pipelines.train import train_project
from flywheel.predlog import count_rows, maintain_log

if TYPE_CHECKING:
    from flywheel.monitoring import MonitorResult
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry import MlflowRegistry, ModelVersionInfo

__all__ = ["LoopState", "RetrainingLoop", "TickResult"]

log = logging.getLogger("flywheel.loop")
Clock = Callable[[], dt.datetime]
_ALIAS = "loop"
_STATE = "loop/state.json"


@dataclasses.dataclass
class LoopState:
    """Where the loop is; persisted after every step."""

    phase: str = "idle"
    """idle, retraining (data frozen, training may be running) or rolling_out."""
    attempt: str | None = None
    trigger: dict[str, Any] | None = None
    data_file: str | None = None
    data_fingerprint: str | None = None
    version: str | None = None
    last_retrain: str | None = None
    """When the last retraining started (the loop's clock): the cool-down counts from it."""
    last_check_rows: int = 0
    """Rows counted at the last check (kept for state files of earlier versions)."""
    labels_at_last_train: int = 0
    last_check_at: str | None = None
    """The newest prediction's time at the last check: rows logged after it are new."""
    labels_since: str | None = None
    """When the last retraining was triggered (wall clock): labels received after it are new."""
    retrainings: int = 0

    @classmethod
    def parse(cls, text: str | None, where: str) -> LoopState:
        """The state stored as ``text`` (None: never written, the initial state).

        Raises:
            WorkspaceError: If ``text`` is not a loop state.
        """
        if text is None:
            return cls()
        try:
            data = json.loads(text)
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        except (ValueError, TypeError) as exc:
            raise WorkspaceError(f"the loop's state {where} is damaged ({exc}); move it "
                                "away (or delete it) to start the loop afresh (the registry "
                                "and audit log are unaffected).") from None

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> LoopState:
        """The state in the file ``path`` (an embedded project's ``.flywheel/loop/state.json``)."""
        return cls.parse(path.read_text(encoding="utf-8") if path.exists() else None, str(path))

    def write(self, path: Path) -> None:
        atomic_write_text(path, self.dump())


@dataclasses.dataclass(frozen=True)
class TickResult:
    """What one tick did: ``action`` is waiting, checked, retrained, retrain_failed,
    gates_failed, rollout_started, rollout_step, promoted, rolled_back, kept or disabled."""

    action: str
    detail: str
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


class RetrainingLoop:
    """The controller; ``tick`` runs one step, ``run`` ticks on an interval.

    Args:
        clock: Now, as a timezone-aware datetime (default: the wall clock).
        on_event: Called with each tick's result (progress output).

    Raises:
        ConfigError: If a trigger names a metric monitoring never produces.
    """

    def __init__(self, project: ProjectContext, *, clock: Clock | None = None,
                 registry: MlflowRegistry | None = None,
                 on_event: Callable[[TickResult], None] | None = None) -> None:
        check_rule_names(project.spec.retraining.triggers, where="retraining.triggers")
        self.project = project
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.registry = registry or project.registry()
        self.on_event = on_event
        self.folder = Path(project.workspace.root) / "loop"
        self.state_path = self.folder / "state.json"
        """Where an embedded project keeps the state; shared coordination keeps it in the
        coordination database (``read_state``)."""
        self._coordinator = project.workspace.coordinator
        self.last_monitoring: MonitorResult | None = None
        self._monitored = MonitorCache(registry=self.registry)
        """The monitored versions (reference, model, explainer) kept from tick to tick."""

    # The loop ------------------------------------------------------------------------------

    def run(self, *, interval: float | None = None, stop: threading.Event | None = None,
            max_ticks: int | None = None) -> None:
        """Tick until ``stop`` is set (or ``max_ticks``); a failing tick is reported and the
        loop goes on."""
        stop = stop or threading.Event()
        interval = interval or self.project.spec.retraining.interval_seconds
        ticks = 0
        while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
            try:
                self.tick()
            except FlywheelError as exc:
                self._emit(TickResult("error", str(exc)))
            ticks += 1
            stop.wait(interval)

    def tick(self) -> TickResult:
        with self.project.workspace.lock("loop", timeout=5, command="flywheel loop"):
            state = self.read_state()
            if state.phase == "retraining":
                result = self._retrain(state)
            elif state.phase == "rolling_out":
                result = self._drive_rollout(state)
            else:
                result = self._idle(state)
        self._emit(result)
        return result

    # Steps -----------------------------------------------------------------------------------

    def _monitor(self, request: WindowRequest) -> MonitorResult:
        """One monitoring run over ``request``, with what earlier ticks loaded of the version;
        the alert sinks are this tick's, closed when it ends."""
        kept = self._monitored
        cache = MonitorCache(versions=kept.versions, models=kept.models, registry=kept.registry)
        try:
            return monitor_project(self.project, request, report=False, cache=cache)
        finally:
            if cache.dispatcher is not None:
                cache.dispatcher.close()

    def _idle(self, state: LoopState) -> TickResult:
        self._upkeep()
        windows = LogWindows(self.project)  # what this tick reads of the log, read once
        status = rollout_status(self.project, registry=self.registry, fresh=False)
        if status.state is not None and status.state.running:
            # A rollout started by hand: drive it, retrain only after it ends.
            decision = RolloutController(self.project, registry=self.registry,
                                         windows=windows).tick()
            detail = decision.reason if decision else "rollout running"
            return TickResult("rollout_step", f"{status.state.kind} of version "
                              f"{status.state.challenger}: {detail}")
        spec = self.project.spec.retraining
        # Up to min_window_rows of the rows logged since the last check: bounded, however
        # long the log.
        fresh = windows.read(since=_after(state.last_check_at), last=spec.min_window_rows,
                             with_labels=False, columns=("ts",))
        rows = len(fresh)
        if rows < spec.min_window_rows:
            return TickResult("waiting", f"{rows} new rows since the last check; checking at "
                              f"{spec.min_window_rows}")
        now = self.clock()
        state.last_check_at = fresh["ts"].max().isoformat()
        labels = self._new_labels(state)
        cooling = self._cooling_until(state)
        if cooling is not None and now < cooling:
            self._save(state)
            return TickResult("waiting", f"cooling down until {cooling:%Y-%m-%d %H:%M}")
        monitored = self._monitor(WindowRequest(last=spec.window_rows, log=windows))
        self.last_monitoring = monitored
        metrics = monitored.metrics
        fired = [str(rule) for rule in spec.triggers
                 if rule.metric in metrics and rule.holds(float(metrics[rule.metric]))]
        if spec.schedule and self._schedule_due(state, now):
            fired.append(f"schedule {spec.schedule}")
        if spec.new_labels and labels >= spec.new_labels:
            fired.append(f"{labels} new labelled rows")
        evidence = {k: _number(metrics[k]) for k in sorted(metrics) if _number(metrics[k])
                    is not None}
        if not fired or not spec.enabled:
            self._save(state)
            action = "checked" if spec.enabled else "disabled"
            return TickResult(action, "no trigger holds" if not fired else
                              f"would retrain ({'; '.join(fired)}) but retraining is disabled",
                              {"metrics": evidence})
        state.phase, state.attempt = "retraining", now.strftime("%Y%m%dT%H%M%S")
        state.trigger = {"rules": fired, "at": now.isoformat(), "metrics": evidence,
                         "drifted": monitored.drift.drifted if monitored.drift else [],
                         "previous_retrain": state.last_retrain}
        state.last_retrain, state.labels_at_last_train = now.isoformat(), 0
        state.labels_since = dt.datetime.now(dt.UTC).isoformat()
        state.data_file = state.data_fingerprint = state.version = None
        self._save(state)
        self._audit("loop_trigger", f"retraining triggered: {'; '.join(fired)}", state.trigger)
        return self._retrain(state)

    def _retrain(self, state: LoopState) -> TickResult:
        spec = self.project.spec.retraining
        champion = self.registry.version_info("champion")
        if state.data_file is None or not Path(state.data_file).exists():
            data = retraining_frame(self.project, self.project.load_data(),
                                    _classes(champion), now=self.clock())
            if data.production_rows < spec.min_labels:
                # Not a retraining: the cool-down does not start until one happens.
                state.last_retrain = (state.trigger or {}).get("previous_retrain")
                return self._give_up(state, "retrain_failed",
                                     f"only {data.production_rows} labelled production rows; "
                                     f"retraining needs {spec.min_labels}", data.summary())
            path = data.save(self.folder / f"retrain-{state.attempt}.parquet")
            state.data_file, state.data_fingerprint = str(path), fingerprint_frame(data.frame)
            self._save(state)
            self._audit("loop_data", f"retraining data frozen: {data.production_rows} "
                        f"production rows + {data.original_rows} original", data.summary())
        version = self._trained_on(state.data_fingerprint)
        holdout: dict[str, float] = {}
        if version is None:
            try:
                result = train_project(self.project, data=state.data_file, trials=spec.trials,
                                       timeout=spec.timeout_seconds, warm_start="champion")
            except FlywheelError as exc:
                return self._give_up(state, "retrain_failed", f"retraining failed: {exc}",
                                     {"error": type(exc).__name__})
            version, holdout = result.version, dict(result.holdout_metrics)
        passed = version.tags.get("flywheel.gates.passed", "true") == "true"
        evidence = {"version": version.version,
                    "gates": version.tags.get("flywheel.gates.summary", ""),
                    "holdout": holdout, "data": state.data_file}
        if not passed:
            return self._give_up(state, "gates_failed", f"version {version.version} failed "
                                 "its gates; the champion keeps serving", evidence)
        state.version, state.retrainings = version.version, state.retrainings + 1
        self._audit("loop_retrained", f"version {version.version} retrained and passed its "
                    "gates", evidence, to_version=version.version)
        if spec.rollout == "none":
            promote_version(self.project, version.version, action="loop_promote",
                            reason="retrained by the loop; rollout: none", registry=self.registry)
            state.phase = "idle"
            self._save(state)
            return TickResult("promoted", f"version {version.version} promoted (rollout: none)",
                              evidence)
        try:
            start_rollout(self.project, spec.rollout, version.version, registry=self.registry,
                          reason=f"retrained by the loop ({'; '.join(state.trigger['rules'])})"
                          if state.trigger else "retrained by the loop")
        except FlywheelError as exc:
            return self._give_up(state, "retrain_failed", f"rollout of version "
                                 f"{version.version} refused: {exc}", evidence)
        state.phase = "rolling_out"
        self._save(state)
        return TickResult("rollout_started", f"{spec.rollout} of version {version.version} "
                          "started", evidence)

    def _drive_rollout(self, state: LoopState) -> TickResult:
        self._upkeep()
        status = rollout_status(self.project, registry=self.registry, fresh=False)
        running = status.state is not None and status.state.running
        if running:
            decision = RolloutController(self.project, registry=self.registry,
                                         windows=LogWindows(self.project)).tick()
            status = rollout_status(self.project, registry=self.registry, fresh=False)
            if status.state is not None and status.state.running:
                return TickResult("rollout_step", decision.reason if decision else "running",
                                  {"stage": status.state.stage})
        champion = self.registry.alias_version("champion")
        promoted = champion == state.version
        outcome = status.state.decision if status.state is not None else None
        state.phase = "idle"
        self._save(state)
        action = "promoted" if promoted else "rolled_back"
        detail = (f"version {state.version} " + ("is champion" if promoted else
                  f"did not take over; version {champion} keeps serving"))
        evidence = {"version": state.version, "champion": champion, "decision": outcome}
        self._audit("loop_rollout_done", detail, evidence, to_version=champion)
        return TickResult(action, detail, evidence)

    # Helpers -----------------------------------------------------------------------------

    def read_state(self) -> LoopState:
        """Where the loop is: ``.flywheel/loop/state.json`` embedded, the coordination
        database's ``flywheel_state`` row when coordination is shared (so a loop restarted on
        another host resumes where it was).

        Raises:
            WorkspaceError: If the state is damaged or its store cannot be reached.
        """
        where = str(self.state_path) if not self._coordinator.shared else \
            f"{_STATE} in {self._coordinator.describe()}"
        return LoopState.parse(self._coordinator.read_state(_STATE), where)

    def _save(self, state: LoopState) -> None:
        self._coordinator.write_state(_STATE, state.dump())

    def _upkeep(self) -> None:
        """Compact the prediction log's closed hours and apply its retention (the loop is the
        one process per project that does; a failure is logged, the tick goes on)."""
        try:
            done = maintain_log(log_location(self.project),
                                retention_days=self.project.spec.monitoring.log_retention_days)
        except (OSError, FlywheelError) as exc:
            log.warning("prediction log upkeep failed (%s); the next tick tries again", exc)
            return
        if done.compacted_files or done.expired_hours:
            log.info("prediction log: %d files compacted into %d, %d expired hours deleted",
                     done.compacted_files, done.compacted_hours, done.expired_hours)

    def _new_labels(self, state: LoopState) -> int:
        """Labels received since the last retraining was triggered (counted from the log's
        footers, newest hours first, until ``retraining.new_labels``; 0 without that rule)."""
        threshold = self.project.spec.retraining.new_labels
        if not threshold:
            return 0
        since = dt.datetime.fromisoformat(state.labels_since) if state.labels_since else None
        return count_rows(log_location(self.project), kind="feedback", since=since,
                          at_most=threshold)

    def _give_up(self, state: LoopState, action: str, detail: str,
                 evidence: dict[str, Any]) -> TickResult:
        state.phase = "idle"
        self._save(state)
        self._audit(f"loop_{action}", detail, evidence)
        return TickResult(action, detail, evidence)

    def _trained_on(self, fingerprint: str | None) -> ModelVersionInfo | None:
        if fingerprint is None:
            return None
        for version in self.registry.versions():
            if version.tags.get("flywheel.data_fingerprint") == fingerprint:
                return version
        return None

    def _cooling_until(self, state: LoopState) -> dt.datetime | None:
        if state.last_retrain is None:
            return None
        hours = self.project.spec.retraining.cooldown_hours
        return dt.datetime.fromisoformat(state.last_retrain) + dt.timedelta(hours=hours)

    def _schedule_due(self, state: LoopState, now: dt.datetime) -> bool:
        since = dt.datetime.fromisoformat(state.last_retrain) if state.last_retrain else None
        if since is None:
            return False
        upcoming = croniter(self.project.spec.retraining.schedule, since).get_next(dt.datetime)
        return bool(upcoming <= now)

    def _audit(self, action: str, reason: str, evidence: dict[str, Any], *,
               to_version: str | None = None) -> None:
        audit_log(self.project).append(
            action=action, model=self.registry.model_name, alias=_ALIAS,
            from_version=None, to_version=to_version, reason=reason,
            evidence={**evidence, "clock": self.clock().isoformat()})

    def _emit(self, result: TickResult) -> None:
        log.info("loop: %s: %s", result.action, result.detail)
        if self.on_event is not None:
            self.on_event(result)


def _classes(version: ModelVersionInfo) -> tuple[str, ...]:
    return tuple(json.loads(version.tags.get("flywheel.classes", "[]") or "[]"))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number or pd.isna(number) else number


def _after(stamp: str | None) -> dt.datetime | None:
    """Just after the time ``stamp`` (ISO), so a window from it leaves that row out."""
    if stamp is None:
        return None
    return dt.datetime.fromisoformat(stamp) + dt.timedelta(microseconds=1)
