"""What a monitoring run reads: the version (its reference, calibrator, schema and holdout
metrics, from the run's artifacts and tags) and the window (prediction log or data file).

A version trained before monitoring references existed falls back to its 20-bin data profile;
a log that cannot be read, or holds a corrupt segment, gives a window with notes saying so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.core.errors import ExplanationError, FlywheelError, MonitoringError, RegistryError
from flywheel.core.spec import parse_config
from flywheel.core.yamlio import read_yaml_text
from flywheel.data import DataSchema, ReferenceProfile
from flywheel.evaluation import predict_scores
from flywheel.features import contribution_explainer, contribution_importance
from flywheel.monitoring import (
    AlertDispatcher,
    Calibrator,
    Explain,
    MonitoredVersion,
    MonitoringReference,
    Window,
    reference_from_profile,
    window_from_frame,
    window_from_log,
)
from flywheel.pipelines._monitor_memo import memo_path, remembered
from flywheel.pipelines._monitoring_reference import CALIBRATION_ARTIFACT, REFERENCE_ARTIFACT
from flywheel.pipelines._predlog import LogWindows

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext
    from flywheel.registry import ModelVersionInfo
    from flywheel.registry.base import Registry

__all__ = ["MonitorCache", "WindowRequest", "load_version", "read_window"]

log = logging.getLogger("flywheel.monitoring")
_LABEL_LOOKBACK = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class WindowRequest:
    """Which rows to monitor: a data file, or the prediction log's last N rows and/or a time
    range; nothing given means the log's last ``monitoring.window_rows`` rows."""

    data: Path | None = None
    last: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    log: LogWindows | None = dataclasses.field(default=None, compare=False)
    """The windows a caller's tick reads already (the loop's), to share; default: read."""


@dataclasses.dataclass
class MonitorCache:
    """What a watcher keeps between windows: versions and models by number, the dispatcher
    (its cool-down memory) and the registry client."""

    versions: dict[str, MonitoredVersion] = dataclasses.field(default_factory=dict)
    models: dict[str, Any] = dataclasses.field(default_factory=dict)
    dispatcher: AlertDispatcher | None = None
    registry: Registry | None = None


def load_version(project: ProjectContext, registry: Registry, info: ModelVersionInfo
                 ) -> MonitoredVersion:
    """What monitoring needs of a registered version, from its run's artifacts and tags.

    Raises:
        MonitoringError: If the run has neither a monitoring reference nor a data profile.
    """
    notes: list[str] = []
    run = info.run_id or ""
    schema = project.schema
    with contextlib.suppress(RegistryError, FlywheelError, ValueError):
        schema = parse_config(DataSchema, read_yaml_text(registry.read_artifact_text(
            run, "schema.yaml")), path=None, what="schema", expected="target, task, columns")
    meta: dict[str, Any] = {}
    with contextlib.suppress(RegistryError, ValueError):
        meta = json.loads(registry.read_artifact_text(run, "model_meta.json"))
    try:
        reference = MonitoringReference.from_json(registry.read_artifact_text(
            run, REFERENCE_ARTIFACT))
    except RegistryError:
        try:
            profile = ReferenceProfile.model_validate_json(registry.read_artifact_text(
                run, "profile.json"))
        except (RegistryError, ValueError) as exc:
            raise MonitoringError(
                f"version {info.version} has no monitoring reference and no data profile to "
                f"compare with ({exc}); retrain it with `flywheel train`.") from exc
        reference = reference_from_profile(profile, schema)
        notes.append(f"version {info.version} was trained before monitoring references: "
                     "drift uses its 20-bin data profile (approximate), without prediction "
                     "drift or multivariate drift; retrain to store the full reference")
    calibrator = None
    task = info.tags.get("flywheel.task", project.spec.target.task)
    if task != "regression":
        with contextlib.suppress(RegistryError):
            calibrator = Calibrator.from_json(registry.read_artifact_text(
                run, CALIBRATION_ARTIFACT))
    classes = tuple(json.loads(info.tags.get("flywheel.classes", "[]")))
    holdout = {k.removeprefix("flywheel.holdout_"): float(v) for k, v in info.tags.items()
               if k.startswith("flywheel.holdout_") and _is_number(v)}
    features = tuple(meta.get("features") or schema.feature_columns)
    explain = _explain(registry, info.version, project.spec.training.allow_pickle, task)
    return MonitoredVersion(
        model=registry.model_name, version=info.version, task=task, target=schema.target,
        features=features, classes=classes, schema=schema, reference=reference,
        calibrator=calibrator, holdout=holdout, notes=tuple(notes),
        explain=explain, explain_reference=remembered(
            explain, memo_path(project.workspace.root, registry.model_name, info.version), run))


def _explain(registry: Registry, version: str, allow_pickle: bool, task: Any) -> Explain:
    """Global importance from the version's exact contributions on a frame; the model is
    loaded, and its explainer built, on the first call (a run without enough rows never
    loads it)."""
    loaded: list[Any] = []

    def explain(frame: pd.DataFrame) -> dict[str, float] | None:
        if not loaded:
            model = registry.load_model(version, allow_pickle=allow_pickle)
            try:
                explainer = contribution_explainer(model, None, task=task, num_threads=0)
            except ExplanationError:
                explainer = None
            loaded.append((model, explainer))
        model, explainer = loaded[0]
        if explainer is None:
            return None
        return contribution_importance(model, frame, task=task, explainer=explainer)

    return explain


def read_window(project: ProjectContext, registry: Registry, info: ModelVersionInfo,
                 version: MonitoredVersion, request: WindowRequest,
                 cache: MonitorCache) -> Window:
    if request.data is not None:
        return _window_from_data(project, registry, info, version, request, cache)
    windows = request.log or LogWindows(project)
    last = request.last
    if last is None and request.since is None and request.until is None:
        last = project.spec.monitoring.window_rows
    where = _describe(request, last)
    with _captured("flywheel.predlog") as problems:
        try:
            log_rows = windows.read(since=request.since, until=request.until, last=last,
                                    with_labels=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable log is a partial report
            problems.append(f"the prediction log could not be read ({type(exc).__name__}: "
                            f"{exc})")
            log_rows = None
    notes = [f"prediction log: {p}" for p in problems]
    if log_rows is None:
        log_rows = pd.DataFrame()
    window = window_from_log(log_rows, features=version.features, target=version.target,
                             task=version.task, classes=version.classes,
                             version=version.version, source=where, notes=notes)
    unknown = _unknown_label_ids(windows, log_rows)
    if unknown:
        window = dataclasses.replace(window, notes=(*window.notes, (
            f"{unknown} label(s) received since the window began name request ids the "
            "prediction log does not have from an hour before it on (unknown, older or not "
            "yet flushed); they are ignored")),
            metrics={**window.metrics, "unknown_label_ids": float(unknown)})
    return window


def _window_from_data(project: ProjectContext, registry: Registry, info: ModelVersionInfo,
                      version: MonitoredVersion, request: WindowRequest,
                      cache: MonitorCache) -> Window:
    if request.data is None:
        raise MonitoringError("no data file to monitor.")
    frame = project.load_data(request.data)
    if request.last is not None:
        frame = frame.tail(request.last)
    model = cache.models.get(info.version)
    if model is None:
        model = cache.models[info.version] = registry.load_model(
            info.version, allow_pickle=project.spec.training.allow_pickle)
    present = [f for f in version.features if f in frame.columns]
    proba = values = None
    notes: list[str] = []
    if len(present) == len(version.features) and len(frame):
        inputs = frame[list(version.features)]
        # Extreme inputs (and some BLAS builds, spuriously) raise floating-point warnings in
        # the model's arithmetic; a prediction that comes out NaN is handled downstream.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            scores = predict_scores(model, inputs, version.task)
            if version.task == "regression":
                values = scores
            else:
                proba = scores
    elif len(frame):
        notes.append("the file lacks some of the model's features: no predictions, so no "
                     "performance or prediction drift")
    window = window_from_frame(frame, features=version.features, target=version.target,
                               task=version.task, classes=version.classes,
                               source=f"file {request.data}", proba=proba, values=values)
    return dataclasses.replace(window, notes=(*window.notes, *notes))


def _unknown_label_ids(windows: LogWindows, rows: pd.DataFrame) -> int:
    """Labels received since the window began whose request ids no prediction from an hour
    before it on has (bounded: the window's span, request ids only)."""
    from flywheel.predlog import read_feedback

    if len(rows) == 0 or "ts" not in rows:
        return 0
    start = pd.Timestamp(rows["ts"].min()).to_pydatetime()
    try:
        feedback = read_feedback(windows.location, since=start, spool=windows.spool)
        if len(feedback) == 0:
            return 0
        known = windows.read(since=start - _LABEL_LOOKBACK, with_labels=False,
                             columns=("request_id",))["request_id"]
        # Arrow's hash lookup over the window's few labels: pandas' isin on an hour of
        # arrow-backed ids took seconds.
        labelled = pc.unique(pa.array(feedback["request_id"].astype(str), pa.string()))
        ids = pa.array(known.astype(str), pa.string())
        present = pc.unique(ids.filter(pc.is_in(ids, value_set=labelled)))
        return len(labelled) - len(present)
    except Exception:  # noqa: BLE001 - counting stray labels must not fail a run
        log.warning("could not check feedback request ids", exc_info=True)
        return 0


def _describe(request: WindowRequest, last: int | None) -> str:
    parts = []
    if last is not None:
        parts.append(f"last {last:,} rows")
    if request.since is not None:
        parts.append(f"since {request.since.isoformat(timespec='seconds')}")
    if request.until is not None:
        parts.append(f"until {request.until.isoformat(timespec='seconds')}")
    return "prediction log, " + ", ".join(parts)


@contextlib.contextmanager
def _captured(logger: str) -> Iterator[list[str]]:
    """Warnings of ``logger`` during the block (the log reader reports skipped segments so)."""
    found: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                found.append(record.getMessage())

    handler = _Keep()
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield found
    finally:
        target.removeHandler(handler)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
