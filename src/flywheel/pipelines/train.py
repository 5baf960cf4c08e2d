"""The training flow: gate -> split -> search -> refit -> holdout -> track -> register.

Nothing is registered until the very end, so an interrupted or failed run leaves the registry
as it was (the MLflow run is marked failed or killed; the Optuna study keeps its trials and the
next `flywheel train` resumes it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial
from sklearn.pipeline import Pipeline

from flywheel._version import __version__
from flywheel.core.errors import DataValidationError
from flywheel.core.spec import ProjectSpec
from flywheel.data import DataSchema, fingerprint_frame, profile_frame, validate_frame
from flywheel.evaluation import compute_metrics, get_metric
from flywheel.features import FEATURE_TRUSTED_TYPES, build_feature_pipeline
from flywheel.registry import MlflowRegistry, ModelVersionInfo
from flywheel.training import (
    SearchProblem,
    SearchResult,
    TargetEncoding,
    TrialProgress,
    cv_folds,
    default_n_jobs,
    encode_target,
    holdout_split,
    resolve_learners,
    run_search,
)

if TYPE_CHECKING:
    from flywheel.pipelines.project import Project


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What one `flywheel train` produced."""

    version: ModelVersionInfo
    run_id: str
    study_name: str
    learner: str
    params: dict[str, Any]
    metric: str
    cv_metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    trials: dict[str, int]
    """Counts of trials by state (complete, pruned, fail)."""
    rows: dict[str, int]
    """Rows used: search (cross-validated) and holdout."""
    data_fingerprint: str
    duration_s: float


def with_overrides(spec: ProjectSpec, *, trials: int | None = None, timeout: float | None = None,
                   seed: int | None = None) -> ProjectSpec:
    """The spec with command-line overrides of the search budget applied (for one run)."""
    search = spec.training.search
    updates = {k: v for k, v in (("trials", trials), ("timeout_seconds", timeout),
                                 ("seed", seed)) if v is not None}
    if not updates:
        return spec
    checked = type(search).model_validate({**search.model_dump(), **updates})
    training = spec.training.model_copy(update={"search": checked})
    new = spec.model_copy(update={"training": training})
    new._root = spec.root
    return new


def train_project(project: Project, *, data: str | Path | None = None,
                  on_trial: Callable[[TrialProgress], None] | None = None,
                  on_stage: Callable[[str], None] | None = None) -> TrainResult:
    """Train, evaluate, track and register a model for ``project``.

    Raises:
        DataValidationError: If the data fails the validation gate.
        TrainingError: If no trial completes.
        ConfigError: For an invalid learner, metric or positive class.
    """
    started = time.monotonic()
    stage = on_stage or (lambda _: None)
    spec, schema, workspace = project.spec, project.schema, project.workspace
    metric = get_metric(spec.target.task, spec.training.metric)
    learners = {learner.name: learner for learner in resolve_learners(spec.training)}
    source = str(data) if data is not None else spec.data.path
    with workspace.lock("train", command="flywheel train"):
        stage("Reading and validating the data")
        frame = project.load_data(data)
        report = validate_frame(frame, schema, spec.validation, source=source)
        if not report.ok:
            raise DataValidationError(report, path=source,
                                      hint=f"training refuses it; run `flywheel validate "
                                           f"{source}` for the details")
        fingerprint = fingerprint_frame(frame)
        features = schema.feature_columns
        y, encoding = encode_target(frame[schema.target], spec.target)
        time_order = _time_order(frame, spec)
        seed = spec.training.search.seed
        search_rows, holdout_rows = holdout_split(
            y, task=spec.target.task, fraction=spec.training.holdout_fraction, seed=seed,
            time_order=time_order)
        x_search = frame.iloc[search_rows][features].reset_index(drop=True)
        x_holdout = frame.iloc[holdout_rows][features].reset_index(drop=True)
        y_search, y_holdout = y[search_rows], y[holdout_rows]
        folds = cv_folds(y_search, task=spec.target.task, k=spec.training.cv_folds, seed=seed,
                         time_order=None if time_order is None else time_order[search_rows])
        spec_hash = _spec_hash(spec)
        study_name = f"{spec.name}-{_digest(spec_hash, fingerprint, schema.model_dump_json())}"
        problem = SearchProblem(
            frame=x_search, y=y_search, folds=folds, schema=schema, spec=spec,
            metric_name=metric.name, storage_url=f"sqlite:///{workspace.optuna_db}",
            study_name=study_name, n_jobs=default_n_jobs(spec.training.search.parallel),
        )
        registry = MlflowRegistry.for_project(spec, workspace)
        tags = {
            "flywheel.data_fingerprint": fingerprint,
            "flywheel.spec_hash": spec_hash,
            "flywheel.version": __version__,
            "flywheel.task": spec.target.task,
            "flywheel.metric": metric.name,
            "flywheel.study": study_name,
            "flywheel.classes": json.dumps(list(encoding.classes)),
            **({"flywheel.git_commit": commit} if (commit := _git_commit(spec.root)) else {}),
        }
        search_settings = spec.training.search.model_dump()
        with registry.parent_run(f"train-{spec.name}", tags=tags,
                                 params={"metric": metric.name, **{f"search.{k}": v for k, v in
                                                                   search_settings.items()}}
                                 ) as run_id:
            registry.log_dataset(run_id, frame, name=Path(source).name, fingerprint=fingerprint)
            stage("Searching")
            result = run_search(problem, on_trial=on_trial,
                                record=lambda trial: _log_trial(registry, run_id, trial))
            stage(f"Refitting {result.learner} on {len(x_search):,} rows")
            learner = learners[result.learner]
            model = _refit(x_search, y_search, schema, spec, learner, result)
            holdout = compute_metrics(spec.target.task, y_holdout,
                                      _predict(model, x_holdout, spec.target.task))
            metrics = {**{f"cv_{k}": v for k, v in result.cv_metrics.items()},
                       **{f"holdout_{k}": v for k, v in holdout.items()}}
            registry.log_metrics(run_id, metrics)
            registry.set_tags(run_id, {"flywheel.learner": result.learner,
                                       "flywheel.best_params": json.dumps(result.params)})
            registry.log_artifact_text(run_id, "schema.yaml", schema.to_yaml())
            registry.log_artifact_text(run_id, "profile.json", profile_frame(frame, schema).to_json())
            registry.log_artifact_text(run_id, "model_meta.json", json.dumps({
                "task": spec.target.task, "features": features, "target": schema.target,
                "classes": list(encoding.classes), "learner": result.learner,
                "params": result.params, "metric": metric.name,
            }, indent=1))
            stage("Logging and registering the model")
            logged = registry.log_model(
                run_id, model, input_example=x_holdout.head(5),
                allow_pickle=spec.training.allow_pickle,
                extra_trusted_types=list(FEATURE_TRUSTED_TYPES),
                pyfunc_predict_fn="predict" if spec.target.task == "regression" else "predict_proba",
            )
            version_tags = {**tags, "flywheel.learner": result.learner,
                            **{f"flywheel.{k}": f"{v:.6g}" for k, v in metrics.items()}}
            version = registry.register(logged, tags=version_tags)
    counts = {state: sum(t.state.name.lower() == state for t in result.trials)
              for state in ("complete", "pruned", "fail")}
    return TrainResult(
        version=version, run_id=run_id, study_name=study_name, learner=result.learner,
        params=result.params, metric=metric.name, cv_metrics=result.cv_metrics,
        holdout_metrics=holdout, trials=counts,
        rows={"search": len(x_search), "holdout": len(x_holdout)},
        data_fingerprint=fingerprint, duration_s=time.monotonic() - started,
    )


def _refit(x: pd.DataFrame, y: np.ndarray, schema: DataSchema, spec: ProjectSpec,
           learner: Any, result: SearchResult) -> Pipeline:
    params = dict(result.params)
    if learner.early_stopping and result.n_estimators:
        params["n_estimators"] = max(1, int(result.n_estimators))
    features = build_feature_pipeline(schema, spec.features, task=spec.target.task,
                                      scale_numeric=learner.scale_numeric)
    matrix = features.fit_transform(x, y)
    estimator = learner.build(params, spec.target.task, spec.training.search.seed,
                              default_n_jobs(1))
    estimator.fit(matrix, y)
    return Pipeline([("features", features), ("model", estimator)])


def _predict(model: Pipeline, x: pd.DataFrame, task: str) -> np.ndarray:
    if task == "regression":
        return np.asarray(model.predict(x), dtype=float)
    return np.asarray(model.predict_proba(x), dtype=float)


def _log_trial(registry: MlflowRegistry, run_id: str, trial: FrozenTrial) -> None:
    """One finished trial as a child run: parameters, CV mean and std, duration, state."""
    cv = trial.user_attrs.get("cv", {})
    duration = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else 0.0
    metrics = {f"cv_{k}": float(v) for k, v in cv.items() if v == v}
    intermediate = trial.intermediate_values
    if intermediate and not metrics:  # pruned: the running mean when it was stopped
        metrics["cv_partial"] = float(intermediate[max(intermediate)])
    registry.log_trial(
        run_id, trial.number, params={"learner": trial.user_attrs.get("learner"), **trial.params},
        metrics=metrics, state=trial.state.name.lower(), duration_s=duration,
        error=trial.user_attrs.get("error") or trial.system_attrs.get("fail_reason"),
    )


def _time_order(frame: pd.DataFrame, spec: ProjectSpec) -> np.ndarray | None:
    column = spec.data.time_column
    if column is None:
        return None
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy()
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _spec_hash(spec: ProjectSpec) -> str:
    """A hash of what decides the model (not the search budget, which only decides how long)."""
    relevant = spec.model_dump(mode="json")
    search = relevant["training"]["search"]
    for key in ("trials", "timeout_seconds", "parallel"):
        search.pop(key, None)
    relevant.pop("tracking", None)
    relevant.pop("name", None)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
