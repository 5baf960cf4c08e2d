"""A loaded model version ready to answer: the fast compiled form when it is verified, the
scikit-learn pipeline otherwise."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from flywheel.core.errors import CompileError, ExplanationError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.evaluation import predict_scores
from flywheel.features import ContributionExplainer, compile_predictor, contribution_explainer

log = logging.getLogger("flywheel.serving")


class RowPredictor(Protocol):
    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray: ...


class PipelinePredictor:
    """The fallback: the fitted pipeline on a DataFrame built from the records."""

    def __init__(self, model: Any, columns: list[str], task: Task) -> None:
        self.model, self.columns, self.task = model, columns, task

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        frame = pd.DataFrame.from_records(records, columns=self.columns)
        return predict_scores(self.model, frame, self.task)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One model version in memory, with what the server needs to answer and log."""

    name: str
    version: str
    task: Task
    schema: DataSchema
    classes: tuple[str, ...]
    predictor: RowPredictor
    fast: bool
    """True when the compiled predictor answers (verified against the pipeline)."""
    form: str = "pipeline"
    """What answers: ``compiled``, ``onnx`` (onnxruntime) or ``pipeline``."""
    explainer: ContributionExplainer | None = None
    """Exact per-column contributions (LightGBM, XGBoost and CatBoost models); None: see
    ``unexplained``."""
    unexplained: str | None = None
    """Why this version cannot be explained, when it cannot."""

    @property
    def features(self) -> list[str]:
        return self.schema.feature_columns

    def answer(self, records: list[dict[str, Any]]) -> tuple[list[Any], list[list[float]] | None]:
        """Predictions (labels or values) and class probabilities (classifiers) per record."""
        out = self.predictor.predict_records(records)
        if self.task == "regression":
            return out.tolist(), None
        labels = np.asarray(self.classes, dtype=object)[out.argmax(axis=1)]
        return labels.tolist(), out.tolist()


def build_loaded_model(name: str, version: str, model: Any, schema: DataSchema,
                       tags: Mapping[str, str], *, onnx: RowPredictor | None = None
                       ) -> LoadedModel:
    """Wrap a loaded pipeline, compiling it to the fast form when possible.

    The compiled form answers only if it was verified at registration (version tag
    ``flywheel.compiled.verified``); otherwise the pipeline does. ``onnx`` (the verified ONNX
    graph, for ``serving.runtime: onnx``) answers instead of both when given.
    """
    task: Task = tags.get("flywheel.task", schema.task)  # type: ignore[assignment]
    _single_thread(model)
    explained = _explainer(model, schema, task, version)
    classes = tuple(json.loads(tags.get("flywheel.classes", "[]")))
    columns = schema.feature_columns
    if onnx is not None:
        return LoadedModel(name=name, version=version, task=task, schema=schema,
                           classes=classes, predictor=onnx, fast=True, form="onnx", **explained)
    predictor: RowPredictor = PipelinePredictor(model, columns, task)
    fast = False
    try:
        compiled = compile_predictor(model, schema, task=task)
    except CompileError as exc:
        log.warning("version %s serves through the pipeline: %s", version, exc)
    else:
        if tags.get("flywheel.compiled.verified") == "true":
            predictor, fast = compiled, True
        else:
            log.warning("version %s serves through the pipeline: its compiled form was not "
                        "verified", version)
    return LoadedModel(name=name, version=version, task=task, schema=schema, classes=classes,
                       predictor=predictor, fast=fast, form="compiled" if fast else "pipeline",
                       **explained)


def _explainer(model: Any, schema: DataSchema, task: Task, version: str) -> dict[str, Any]:
    """``explainer`` or ``unexplained`` for ``LoadedModel``."""
    try:
        return {"explainer": contribution_explainer(model, schema, task=task,
                                                    version=f"version {version}")}
    except ExplanationError as exc:
        return {"unexplained": exc.reason}


def _single_thread(model: Any) -> None:
    """One thread per model call: on a busy machine, a thread pool per single-row call pushed
    LightGBM's p99 from 0.1 ms to 5-12 ms. Parallelism comes from server workers instead.
    An ensemble's members (``members_``) get the same setting."""
    estimator = model[-1] if hasattr(model, "steps") else model
    for member in getattr(estimator, "members_", None) or ():
        _single_thread(member)
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    if "n_jobs" in params:
        estimator.set_params(n_jobs=1)
    # CatBoost refuses set_params once fitted; its compiled form passes thread_count=1 per call.
