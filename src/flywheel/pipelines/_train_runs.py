"""The lineage of `flywheel train` in MLflow and the clock of its phases.

- A parent run per `flywheel train`, named for the project, the version it registered and its
  start time (``churn v3 2025-05-01 14:02:11``), tagged with the workspace, host and pid that
  ran it.
- Each Optuna trial logged once, as a child run of the run that saw it finish, tagged with its
  study: a run that resumes a study logs only the trials no earlier run logged.
- A run a killed process left ``RUNNING`` is marked ``KILLED`` by the next `flywheel train` of
  the same workspace, which holds the training lock, so no live process can be running it.
- A study that already holds its trials has nothing new to offer: when its best trial is
  registered already, training says so instead of registering the same model again.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable

from flywheel.core.workspace import Workspace
from flywheel.registry import MlflowRegistry, ModelVersionInfo

TAG_STUDY = "flywheel.study"
TAG_BEST_TRIAL = "flywheel.best_trial"
TAG_WORKSPACE = "flywheel.workspace"
TAG_HOST = "flywheel.host"
TAG_PID = "flywheel.pid"


def run_name(project: str, started: dt.datetime, version: str | None = None) -> str:
    """``<project> [v<version>] <local start time>``: distinct and readable in MLflow's list."""
    when = started.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f"{project} v{version} {when}" if version else f"{project} {when}"


def process_tags(workspace: Workspace) -> dict[str, str]:
    """Who runs the parent run: enough to tell later that it was abandoned."""
    return {TAG_WORKSPACE: str(workspace.root), TAG_HOST: socket.gethostname(),
            TAG_PID: str(os.getpid())}


def close_abandoned_runs(registry: MlflowRegistry, workspace: Workspace,
                         stale_holder: str | None) -> list[str]:
    """Mark ``KILLED`` this workspace's train runs still ``RUNNING``; what was done, as notes.

    Call only while holding the workspace's ``train`` lock. ``stale_holder`` describes the
    lock holder a killed process left behind, if any.
    """
    notes = []
    if stale_holder:
        notes.append(f"the previous training, {stale_holder}, ended without releasing the "
                     "training lock: it was killed")
    host = socket.gethostname()
    for run in registry.find_runs(f"attributes.status = 'RUNNING' and "
                                  f"tags.`{TAG_WORKSPACE}` = '{_quote(str(workspace.root))}'"):
        if run.tags.get(TAG_HOST) != host or run.tags.get("mlflow.parentRunId"):
            continue  # another machine's workspace at the same path, on a shared server
        registry.end_run(run.run_id, "KILLED", reason=(
            f"the flywheel train process (pid {run.tags.get(TAG_PID, '?')}) ended without "
            "closing this run (it was killed); marked KILLED by the next flywheel train"))
        notes.append(f"MLflow run {run.run_id} ({run.name}) was left RUNNING by a killed "
                     "training; marked KILLED")
    return notes


def logged_trials(registry: MlflowRegistry, study: str) -> set[int]:
    """Numbers of the study's trials already logged as child runs, by any earlier run."""
    found = set()
    for run in registry.find_runs(f"tags.`{TAG_STUDY}` = '{_quote(study)}'"):
        number = run.tags.get("flywheel.trial")
        if number is not None and number.isdigit():
            found.add(int(number))
    return found


def registered_best(registry: MlflowRegistry, study: str, best_trial: int
                    ) -> ModelVersionInfo | None:
    """The newest version trained from the study's trial ``best_trial``, if any."""
    for version in registry.versions():
        if (version.tags.get(TAG_STUDY) == study
                and version.tags.get(TAG_BEST_TRIAL) == str(best_trial)):
            return version
    return None


class PhaseClock:
    """Times the phases of a training run and shows each phase's description as it starts."""

    def __init__(self, on_stage: Callable[[str], None]) -> None:
        self.on_stage = on_stage
        self.seconds: dict[str, float] = {}
        self._phase: str | None = None
        self._since = 0.0

    def start(self, phase: str, description: str) -> None:
        """End the current phase (if any) and start ``phase``."""
        self.stop()
        self._phase, self._since = phase, time.monotonic()
        self.on_stage(description)

    def stop(self) -> dict[str, float]:
        """End the current phase; the seconds of every phase so far, in order."""
        if self._phase is not None:
            elapsed = time.monotonic() - self._since
            self.seconds[self._phase] = self.seconds.get(self._phase, 0.0) + elapsed
            self._phase = None
        return dict(self.seconds)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
