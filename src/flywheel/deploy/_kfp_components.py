"""The bodies of the Kubeflow pipeline's steps, as KFP lightweight Python components.

KFP copies each function's source into the step's container and calls it there, so each body
imports what it needs itself and hands the work to ``flywheel.pipelines.kubeflow`` at once.
This module has no ``from __future__ import annotations``: KFP reads the annotations as
types to build each component's interface.
"""

from kfp.dsl import Artifact, Metrics, Output

__all__ = ["gates", "register", "train", "validate"]


def validate(project_dir: str, spec_yaml: str, schema_yaml: str,
             report: Output[Artifact]) -> int:
    """Validate the training data against the schema; returns the rows checked."""
    import json

    from flywheel.pipelines.kubeflow import open_project, validate_step

    found = validate_step(open_project(project_dir, spec_yaml, schema_yaml))
    with open(report.path, "w", encoding="utf-8") as handle:
        json.dump(found, handle, indent=1)
    return int(found["rows"])


def train(project_dir: str, spec_yaml: str, schema_yaml: str, trials: int, seed: int,
          metrics: Output[Metrics]) -> str:
    """Search, refit, evaluate and gate as `flywheel train`; returns the candidate's run id."""
    from flywheel.pipelines.kubeflow import open_project, train_step

    found = train_step(open_project(project_dir, spec_yaml, schema_yaml), trials=trials,
                       seed=seed)
    for name, value in found["holdout"].items():
        metrics.log_metric(f"holdout_{name}", float(value))
    for name, value in found["cv"].items():
        metrics.log_metric(f"cv_{name}", float(value))
    return str(found["run_id"])


def gates(project_dir: str, spec_yaml: str, schema_yaml: str, run_id: str,
          require_gates: bool, report: Output[Artifact], metrics: Output[Metrics]) -> bool:
    """The candidate's gate report; each gate as a metric (1 passed, 0 failed)."""
    import json

    from flywheel.pipelines.kubeflow import gates_step, open_project

    found = gates_step(open_project(project_dir, spec_yaml, schema_yaml), run_id,
                       require_gates=require_gates)
    with open(report.path, "w", encoding="utf-8") as handle:
        json.dump(found, handle, indent=1)
    for result in found["results"]:
        metrics.log_metric(f"gate_{result['name']}", 0.0 if result["status"] == "fail" else 1.0)
    return bool(found["passed"])


def register(project_dir: str, spec_yaml: str, schema_yaml: str, run_id: str,
             metrics: Output[Metrics]) -> str:
    """Register the candidate as a new version; returns its number."""
    from flywheel.pipelines.kubeflow import open_project, register_step

    found = register_step(open_project(project_dir, spec_yaml, schema_yaml), run_id)
    for name, value in found["holdout"].items():
        metrics.log_metric(f"holdout_{name}", float(value))
    return str(found["version"])
