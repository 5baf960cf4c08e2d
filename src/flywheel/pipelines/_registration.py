"""Registering a trained model: under the registry lock, audited, and, when the training and the
registration run in different processes (a Kubeflow pipeline's train and register steps),
handed from one to the other through the tracking store.

`flywheel train` registers inline (``register_logged``). ``train_candidate`` stops before
registering: the run holds the logged model, its gate report and, in
``registration/pending.json``, what registering it needs (the logged model's record and the
version tags); ``register_pending`` finishes it, once: a second call answers the version the
first registered.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flywheel.core.crashpoints import crash_point
from flywheel.core.errors import RegistryError
from flywheel.evaluation import GateReport
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._gating import GATES_ARTIFACT
from flywheel.pipelines.promote import audit_log, promote_version, record_alias_changes, recover
from flywheel.registry import LoggedModel, MlflowRegistry, ModelVersionInfo

__all__ = ["PENDING_ARTIFACT", "TAG_REGISTRATION", "PendingVersion", "RegisteredVersion",
           "hold_for_registration", "read_gate_report", "register_logged", "register_pending"]

PENDING_ARTIFACT = "registration/pending.json"
TAG_REGISTRATION = "flywheel.registration"
"""``pending`` while a held run waits for its register step; ``version <N>`` after."""


@dataclasses.dataclass(frozen=True)
class PendingVersion:
    """A trained, gated model logged to ``run_id`` and not registered yet.

    Attributes:
        run_id: The training run holding the model, its gate report and the pending record.
        study_name: The Optuna study it came from.
        learner: The winning learner.
        metric: The metric the search optimized.
        cv_metrics: Cross-validated metrics of the best trial.
        holdout_metrics: Metrics of the refit model on the holdout.
        gates_passed: Whether every gate passed.
    """

    run_id: str
    study_name: str
    learner: str
    metric: str
    cv_metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    gates_passed: bool


@dataclasses.dataclass(frozen=True)
class RegisteredVersion:
    """What ``register_pending`` registered: the version, and whether it was promoted."""

    version: ModelVersionInfo
    promoted: bool
    registered: bool = True
    """False when an earlier call registered this run already (``version`` is that one)."""


def hold_for_registration(registry: MlflowRegistry, run_id: str, logged: LoggedModel,
                          tags: Mapping[str, str]) -> None:
    """Record in the run what registering its model needs, and mark the run pending."""
    record = {"logged": dataclasses.asdict(logged), "tags": dict(tags)}
    registry.log_artifact_text(run_id, PENDING_ARTIFACT, json.dumps(record, indent=1))
    registry.set_tags(run_id, {TAG_REGISTRATION: "pending"})


def read_gate_report(registry: MlflowRegistry, run_id: str) -> GateReport:
    """The gate report the training logged to ``run_id``.

    Raises:
        RegistryError: If the run holds no gate report.
    """
    return GateReport.from_dict(json.loads(_read_json(registry, run_id, GATES_ARTIFACT,
                                                      "gate report")))


def register_pending(project: ProjectContext, run_id: str) -> RegisteredVersion:
    """Register the model ``train_candidate`` left in ``run_id``, then promote it when
    ``promotion.auto`` is on and every gate passed (as `flywheel train` does).

    Raises:
        RegistryError: If the run holds no pending registration (not trained with
            ``train_candidate``, or the tracking store is not the one it was trained on).
    """
    registry = project.registry()
    earlier = next((v for v in registry.versions() if v.run_id == run_id), None)
    if earlier is not None:  # registered by an earlier call, or by `flywheel train`
        return RegisteredVersion(version=earlier, promoted=False, registered=False)
    record: dict[str, Any] = json.loads(_read_json(registry, run_id, PENDING_ARTIFACT,
                                                   "pending registration"))
    logged = record["logged"]
    logged["trusted_types"] = tuple(logged["trusted_types"])
    gates = read_gate_report(registry, run_id)
    version = register_logged(project, registry, LoggedModel(**logged), record["tags"], gates)
    registry.set_tags(run_id, {TAG_REGISTRATION: f"version {version.version}"})
    promoted = False
    if project.spec.promotion.auto and gates.passed and "champion" not in version.aliases:
        promote_version(project, version.version, action="auto_promote", registry=registry,
                        evidence={"gates": gates.summary()})
        promoted = True
        version = registry.version_info(version.version)
    return RegisteredVersion(version=version, promoted=promoted)


def register_logged(project: ProjectContext, registry: MlflowRegistry, logged: LoggedModel,
                    tags: Mapping[str, str], gates: GateReport) -> ModelVersionInfo:
    """Register under the registry lock and record every alias the registration moved.

    The intent goes to the audit log first (with the run and the aliases before), so a kill
    between creating the version, moving its aliases and recording them is finished by the
    next command (``pipelines._recovery``) instead of leaving a ghost version.
    """
    with project.workspace.lock("registry", command="flywheel train (register)"):
        recover(project, registry, lock_held=True)
        log = audit_log(project)
        before = _aliases(registry)
        summary = {"gates": gates.summary(), "gates_passed": gates.passed}
        intent = log.begin(action="register", model=registry.model_name, moves=[],
                           reason=f"registering the model of run {logged.run_id}",
                           evidence={"run_id": logged.run_id, "before": before, **summary})
        version = registry.register(logged, tags=tags)
        crash_point("register.alias_moved")
        after = _aliases(registry)
        first = after.get("champion") == version.version and "champion" not in before
        record_alias_changes(
            log, registry.model_name, before, after, action="register",
            reason=(f"version {version.version} registered: " + (
                "the first version becomes champion" if first else
                "a new version waits as challenger")),
            evidence={"version": version.version, "run_id": version.run_id, **summary},
            intent=intent.seq)
        log.finish(intent, f"version {version.version} registered")
    return version


def _aliases(registry: MlflowRegistry) -> dict[str, str]:
    """Where the aliases registration manages point (absent: nowhere)."""
    found = {alias: registry.alias_version(alias) for alias in ("champion", "challenger")}
    return {alias: number for alias, number in found.items() if number is not None}


def _read_json(registry: MlflowRegistry, run_id: str, artifact: str, what: str) -> str:
    if not registry.artifact_exists(run_id, artifact):
        raise RegistryError(
            f"Run {run_id} holds no {what} ({artifact}); expected a run logged by the train "
            "step of a flywheel pipeline (`flywheel export kubeflow`) on this tracking store. "
            "Check that every step uses the same tracking.tracking_uri.")
    with tempfile.TemporaryDirectory() as tmp:
        return Path(registry.download_artifacts(run_id, artifact, tmp)).read_text(
            encoding="utf-8")
