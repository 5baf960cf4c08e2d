"""The model card of a version registered apart from its training (the register step of a
Kubeflow pipeline): the registered model scored again on the same holdout rows, which the
seeded split gives back, with the facts the training recorded on the version and its run."""

from __future__ import annotations

from flywheel._version import __version__
from flywheel.data import fingerprint_frame
from flywheel.evaluation import predict_scores
from flywheel.pipelines._context import ProjectContext
from flywheel.pipelines._gating import log_model_card
from flywheel.pipelines._registration import read_gate_report
from flywheel.pipelines._train_parts import balance, time_order_of
from flywheel.registry import ModelVersionInfo
from flywheel.training import encode_target, holdout_split

__all__ = ["write_candidate_card"]

CARD_ERROR_TAG = "flywheel.card_error"


def write_candidate_card(project: ProjectContext, version: ModelVersionInfo) -> str | None:
    """Write ``version``'s model card to its run; returns why it could not, if it could not
    (said on the run too, as `flywheel train` does: a missing card never undoes a version)."""
    registry = project.registry()
    run_id = version.run_id or ""
    try:
        _write(project, version)
    except Exception as exc:  # the version is registered; a missing card must not undo that
        text = f"{type(exc).__name__}: {exc}"
        registry.set_tags(run_id, {CARD_ERROR_TAG: text})
        return text
    return None


def _write(project: ProjectContext, version: ModelVersionInfo) -> None:
    spec, schema, registry = project.spec, project.schema, project.registry()
    run_id, tags = version.run_id or "", version.tags
    frame = project.load_data()
    fingerprint = fingerprint_frame(frame)
    if fingerprint != tags.get("flywheel.data_fingerprint"):
        raise ValueError("the data changed between the train and register steps (its "
                         "fingerprint differs), so the holdout cannot be rebuilt")
    y, encoding = encode_target(frame[schema.target], spec.target)
    search_rows, holdout_rows = holdout_split(
        y, task=spec.target.task, fraction=spec.training.holdout_fraction,
        seed=spec.training.holdout_seed, time_order=time_order_of(frame, spec))
    features = schema.feature_columns
    x_holdout = frame.iloc[holdout_rows][features].reset_index(drop=True)
    model = registry.load_model(version.version, allow_pickle=spec.training.allow_pickle)
    run_tags = registry.run_tags(run_id)
    log_model_card(
        registry=registry, run_id=run_id, version=version, spec=spec, model=model,
        holdout=x_holdout, y=y[holdout_rows],
        prediction=predict_scores(model, x_holdout, spec.target.task),
        metric=tags.get("flywheel.metric", ""),
        cv_metrics={k.removeprefix("flywheel.cv_"): float(v) for k, v in tags.items()
                    if k.startswith("flywheel.cv_")},
        gates=read_gate_report(registry, run_id),
        facts={"version": version.version, "aliases": ", ".join(version.aliases),
               "learner": tags.get("flywheel.learner", ""),
               "parameters": run_tags.get("flywheel.best_params", "{}"), "MLflow run": run_id,
               "spec hash": tags.get("flywheel.spec_hash", "")[:16], "flywheel": __version__},
        data={"fingerprint": fingerprint, "source": spec.data.path, "rows": len(frame),
              "search rows": len(search_rows), "holdout rows": len(holdout_rows),
              "feature columns": len(features), "features": features, "target": schema.target,
              **balance(y, encoding.classes)},
        classes=tuple(encoding.classes))
