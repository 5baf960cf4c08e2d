"""What each step of the Kubeflow pipeline runs (`flywheel export kubeflow`): validate → train
→ gates → register, each a call into flywheel's own flow, handing on through the tracking store.

Every step gets the project's flywheel.yaml and schema.yaml as text (or as JSON strings of
it, one line each), and the folder where the
project lives for the run (``project_dir``: the project itself for a local run, a volume
mounted into each step on a cluster). A step writes the two files there when they are absent
and refuses to run when the folder holds different ones: a pipeline never overwrites a
project's spec. The steps share the workspace (the Optuna study, the audit log) through that
folder, and the registry through ``tracking.tracking_uri``.

- validate: the data against the schema; bad data stops the pipeline with the failed checks.
- train: search, refit, holdout and gates, exactly as `flywheel train`
  (``train_candidate``); the model is logged to the run, not registered.
- gates: the gate report the train step logged, each gate's verdict as a metric; with
  ``require_gates`` a failed gate stops the pipeline before anything is registered (without
  it, a version that failed its gates is registered, as `flywheel train` does, and waits
  without promotion).
- register: the run's model as a new version, audited, with its model card, promoted when
  ``promotion.auto`` is on and every gate passed (``register_pending``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flywheel.core.errors import ConfigError, DataValidationError, TrainingError
from flywheel.core.spec import SPEC_FILE, parse_spec
from flywheel.core.workspace import atomic_write_text
from flywheel.core.yamlio import read_yaml
from flywheel.pipelines._candidate_card import write_candidate_card
from flywheel.pipelines._registration import PendingVersion, read_gate_report, register_pending
from flywheel.pipelines.project import Project

__all__ = ["gates_step", "open_project", "register_step", "train_step", "validate_step"]


def open_project(project_dir: str, spec_yaml: str, schema_yaml: str) -> Project:
    """The project at ``project_dir``, its flywheel.yaml and schema.yaml written from the
    pipeline's inputs when absent.

    Raises:
        ConfigError: If ``project_dir`` holds a flywheel.yaml or schema.yaml that differs from
            the pipeline's, or the spec is invalid.
    """
    root = Path(project_dir).expanduser()
    spec_path = root / SPEC_FILE
    _place(spec_path, _text(spec_yaml))
    spec = parse_spec(read_yaml(spec_path), path=spec_path).at(root.resolve())
    _place(spec.schema_path, _text(schema_yaml))
    return Project.load(spec_path)


def validate_step(project: Project) -> dict[str, Any]:
    """Validate the training data; returns the report as a mapping.

    Raises:
        DataValidationError: If the data fails a check that counts as an error.
    """
    report = project.validate()
    if not report.ok:
        raise DataValidationError(report, path=report.source,
                                  hint="the pipeline stops before training; run `flywheel "
                                       f"validate {report.source}` for the details")
    found: dict[str, Any] = report.to_dict()
    return found


def train_step(project: Project, *, trials: int = 0, seed: int = -1) -> dict[str, Any]:
    """Train and gate a candidate (``trials`` 0 and ``seed`` -1: the spec's).

    Returns:
        ``run_id`` (the run holding the candidate), ``holdout`` and ``cv`` metrics,
        ``learner``, and ``version`` when nothing new was trained (the study's best is
        registered already as that version).
    """
    from flywheel.pipelines.train import train_candidate  # MLflow, Optuna: slow to import

    result = train_candidate(project, trials=trials or None, seed=None if seed < 0 else seed)
    if isinstance(result, PendingVersion):
        return {"run_id": result.run_id, "holdout": result.holdout_metrics,
                "cv": result.cv_metrics, "learner": result.learner, "version": None}
    return {"run_id": result.run_id, "holdout": dict(result.holdout_metrics),
            "cv": dict(result.cv_metrics), "learner": result.learner,
            "version": result.version.version}


def gates_step(project: Project, run_id: str, *, require_gates: bool = False
               ) -> dict[str, Any]:
    """The gate report of the candidate in ``run_id``, as a mapping.

    Raises:
        TrainingError: If ``require_gates`` and a gate failed.
        RegistryError: If the run holds no gate report.
    """
    report = read_gate_report(project.registry(), run_id)
    if require_gates and not report.passed:
        failed = "; ".join(f"{r.name}: {r.reason}" for r in report.failed)
        raise TrainingError(f"the candidate of run {run_id} failed its gates ({failed}); "
                            "require_gates stops the pipeline before it is registered. The "
                            "run's evaluation/gates.json holds every result; without "
                            "require_gates it is registered and waits, not promoted.")
    found: dict[str, Any] = report.to_dict()
    return found


def register_step(project: Project, run_id: str) -> dict[str, Any]:
    """Register the candidate in ``run_id`` (once; a rerun answers the same version).

    Returns:
        ``version``, its ``aliases``, whether it was ``promoted``, whether this call
        ``registered`` it, its ``holdout`` metrics as recorded on the version, and why its
        model card could not be written (``card_error``, None when it was).
    """
    done = register_pending(project, run_id)
    card_error = write_candidate_card(project, done.version) if done.registered else None
    tags = done.version.tags
    holdout = {k.removeprefix("flywheel.holdout_"): float(v) for k, v in tags.items()
               if k.startswith("flywheel.holdout_")}
    return {"version": done.version.version, "aliases": list(done.version.aliases),
            "promoted": done.promoted, "registered": done.registered, "holdout": holdout,
            "card_error": card_error}


def _text(value: str) -> str:
    """A file's text from a pipeline input: as given, or decoded when it is a JSON string
    (the compiled pipeline's defaults are, to stay on one line)."""
    if value.startswith('"'):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _place(path: Path, text: str) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        return
    if path.read_text(encoding="utf-8") != text:
        raise ConfigError(
            f"differs from the {path.name} the pipeline was compiled with; a pipeline never "
            f"overwrites a project's files. Recompile it from this project (`flywheel export "
            f"kubeflow`), or point deploy.kubeflow.project_dir (the project_dir parameter) at "
            f"an empty volume.", path=path)
