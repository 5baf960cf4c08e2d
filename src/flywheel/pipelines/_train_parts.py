"""Pieces of the training flow that hold no state: the refit, holdout predictions, a trial's
child run, the split order, the spec hash and the lineage facts."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial
from sklearn.pipeline import Pipeline

from flywheel.core.spec import ProjectSpec
from flywheel.data import DataSchema
from flywheel.features import build_feature_pipeline
from flywheel.pipelines._train_runs import TAG_STUDY
from flywheel.registry import MlflowRegistry
from flywheel.training import SearchResult, default_n_jobs


def target_range(y: np.ndarray, spec: ProjectSpec) -> tuple[float, float] | None:
    if spec.target.task != "regression" or len(y) == 0:
        return None
    return float(np.min(y)), float(np.max(y))


def balance(y: np.ndarray, classes: tuple[str, ...]) -> dict[str, str]:
    if not classes:
        return {"target range": f"{np.min(y):.4g} .. {np.max(y):.4g}"}
    counts = np.bincount(y, minlength=len(classes))
    shares = ", ".join(f"{c} {n / len(y):.1%}" for c, n in zip(classes, counts, strict=True))
    return {"classes": shares}


def refit(x: pd.DataFrame, y: np.ndarray, schema: DataSchema, spec: ProjectSpec,
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


def log_trial(registry: MlflowRegistry, run_id: str, trial: FrozenTrial, study: str) -> None:
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
        error=(trial.user_attrs.get("error") or trial.system_attrs.get("fail_reason")
               or trial.user_attrs.get("stopped")),
        tags={TAG_STUDY: study},
    )


def time_order_of(frame: pd.DataFrame, spec: ProjectSpec) -> np.ndarray | None:
    column = spec.data.time_column
    if column is None:
        return None
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy()
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def spec_hash_of(spec: ProjectSpec) -> str:
    """A hash of what shapes the model: data, target, features, training (learners, metric,
    folds, holdout, sampler, seed). Not the search budget, which only decides how long, nor
    what judges, ships or watches the model (gates, promotion, rollout, monitoring, retraining,
    tracking): changing a gate margin keeps the hash, and the study."""
    relevant = spec.model_dump(mode="json")
    search = relevant["training"]["search"]
    for key in ("trials", "timeout_seconds", "parallel", "backend", "ray_address", "workers"):
        search.pop(key, None)
    if search.get("defaults_first", True):
        search.pop("defaults_first", None)  # the default keeps earlier specs' hashes
    relevant["training"].get("ensemble", {}).pop("refit_seconds", None)  # a budget
    if relevant["training"].get("ensemble", {}).get("size", 1) == 1:
        relevant["training"].pop("ensemble", None)  # the default keeps earlier specs' hashes
    relevant.pop("tracking", None)
    relevant.pop("gates", None)  # gates judge the model; they do not shape it
    relevant.pop("promotion", None)
    for section in ("monitoring", "rollout", "retraining", "deploy"):  # watch or ship it
        relevant.pop(section, None)
    relevant.pop("name", None)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
