"""Registry: MLflow tracking and model registry behind a small interface.

Importing this package imports MLflow, which takes a few seconds; the CLI and pipelines import
it only when a command needs it.

    registry = MlflowRegistry.for_project(spec, workspace)
    with registry.parent_run("train-churn", tags={...}, params={...}) as run_id:
        logged = registry.log_model(run_id, pipeline, input_example=frame.head(5))
        version = registry.register(logged, tags={"flywheel.data_fingerprint": fingerprint})
    model = registry.load_model("champion")
"""

from __future__ import annotations

from flywheel.registry._audit import (
    AuditEntry,
    AuditHistory,
    AuditLog,
    AuditProblem,
    AuditStore,
    FileAuditStore,
    audit_log_for,
    current_user,
)
from flywheel.registry._mlflow import MlflowRegistry
from flywheel.registry._promotion import CHALLENGER, CHAMPION
from flywheel.registry._types import LoggedModel, ModelVersionInfo, RunRecord

__all__ = ["CHALLENGER", "CHAMPION", "AuditEntry", "AuditHistory", "AuditLog", "AuditProblem",
           "AuditStore", "FileAuditStore", "LoggedModel", "MlflowRegistry", "ModelVersionInfo",
           "RunRecord", "audit_log_for", "current_user"]
