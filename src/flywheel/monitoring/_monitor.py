"""One monitoring run over a window: every section computed that the window allows, the rest
noted, the metrics flattened and the alert rules checked.

Nothing here reads files or talks to MLflow; ``flywheel.pipelines.monitor`` fetches the version
and the window, then sends alerts and logs results. Each section is computed on its own, so a
failure in one (a column of the wrong type, too few labels) is a note in a partial report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.spec import MonitoringSpec, ValidationSpec
from flywheel.data import DataSchema
from flywheel.evaluation import DEFAULT_METRIC, Slice, task_metrics, worst_slices
from flywheel.monitoring._alert import Alert
from flywheel.monitoring._cbpe import CBPE_ASSUMPTION, Calibrator, estimate_performance
from flywheel.monitoring._contributions import ContributionShift, Explain, contribution_shift
from flywheel.monitoring._drift import DriftReport, detect_drift
from flywheel.monitoring._multivariate import DomainClassifierResult, domain_classifier
from flywheel.monitoring._operational import operational_metrics
from flywheel.monitoring._performance import PerformanceReport, encode_labels, measure_performance
from flywheel.monitoring._quality import QualityReport, check_quality
from flywheel.monitoring._reference import MonitoringReference, like_stored_sample
from flywheel.monitoring._result import MonitorResult, WindowInfo
from flywheel.monitoring._rules import evaluate_rules
from flywheel.monitoring._window import Window

__all__ = ["MonitoredVersion", "monitor_window"]

_MIN_LABELS = 20
_CONTRIBUTION_ROWS = 2_000


@dataclasses.dataclass(frozen=True)
class MonitoredVersion:
    """A model version as monitoring needs it: its reference and what it predicts.

    Attributes:
        holdout: The version's holdout metrics (``roc_auc``, ...), for ``<metric>_drop``.
        notes: Limits known up front (no calibrator stored, a coarse reference).
    """

    model: str
    version: str
    task: str
    target: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    schema: DataSchema
    reference: MonitoringReference
    calibrator: Calibrator | None = None
    holdout: Mapping[str, float] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    explain: Explain | None = None
    """Global importance from the exact contributions on a frame (None: not explainable)."""
    explain_reference: Explain | None = None
    """``explain`` for the reference rows, through a memo of them (None: ``explain``): the
    reference half of the contribution shift is the same in every run of a version."""


def monitor_window(window: Window, version: MonitoredVersion, spec: MonitoringSpec, *,
                   validation: ValidationSpec | None = None, seed: int = 0) -> MonitorResult:
    """Monitor ``window`` against ``version``; never raises for what the window lacks."""
    notes = [*version.notes, *window.notes]
    frame, sampled = _sample(window.frame, spec.sample_rows, seed)
    if sampled is not None:
        notes.append(f"sampled {sampled:,} of {window.rows:,} rows for drift and quality "
                     f"(monitoring.sample_rows)")
    rows = window.rows
    enough = rows >= spec.min_rows
    if rows == 0:
        notes.append("the window has no rows: no drift, quality or performance")
    elif not enough:
        notes.append(f"the window has {rows} rows, fewer than monitoring.min_rows "
                     f"({spec.min_rows}): no drift or performance")
    drift = multivariate = quality = performance = None
    if enough:
        drift = _section(notes, "drift", lambda: detect_drift(version.reference, frame,
                                                              spec.drift))
        if drift is not None:
            notes.extend(f"no drift for {c}: {why}" for c, why in drift.skipped.items()
                         if why != "not in the reference")
        if spec.drift.multivariate:
            multivariate = _multivariate(version.reference, frame, spec, seed, notes)
        if drift is not None and multivariate is not None:
            drift = dataclasses.replace(drift, multivariate_drift=multivariate.drifted)
    if rows:
        quality = _section(notes, "data quality",
                           lambda: check_quality(frame, _model_schema(version), validation))
    if enough:
        performance = _section(notes, "performance", lambda: _performance(
            window, version, spec, seed, notes))
    contributions = None
    if enough and version.explain is not None:
        contributions = _section(notes, "contribution shift", lambda: _contribution_shift(
            version, frame, seed))
    operational = operational_metrics(window.log) if window.log is not None else {}
    info = WindowInfo(source=window.source, rows=rows, start=window.start, end=window.end,
                      excluded=dict(window.excluded), sampled=sampled)
    metrics = _metrics(info, drift, multivariate, quality, performance, operational)
    metrics.update(window.metrics)
    if contributions is not None:
        metrics["contribution_shift"] = contributions.distance
    outcomes = evaluate_rules(spec.alerts.rules, metrics)
    alerts = tuple(Alert.from_outcome(o, model=version.model, version=version.version,
                                      window=info.description) for o in outcomes if o.fired)
    return MonitorResult(
        model=version.model, version=version.version, task=version.task,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), window=info,
        metrics=metrics, drift=drift, multivariate=multivariate, quality=quality,
        performance=performance, operational=operational, rules=tuple(outcomes),
        alerts=alerts, notes=tuple(dict.fromkeys(notes)), reference=version.reference.source,
        contributions=contributions)


def _contribution_shift(version: MonitoredVersion, frame: pd.DataFrame, seed: int
                        ) -> ContributionShift | None:
    """The shift of the model's contribution shares from the reference rows to the window's,
    each side on at most ``_CONTRIBUTION_ROWS`` rows drawn with the run's seed: the shares are
    means, which that many rows estimate closely, and exact tree contributions of a whole
    reference sample took most of a `flywheel monitor` run."""
    sample = version.reference.sample
    if version.explain is None or sample is None or len(sample) == 0:
        return None
    sample, _ = _sample(sample, _CONTRIBUTION_ROWS, seed)
    frame, _ = _sample(frame, _CONTRIBUTION_ROWS, seed + 1)
    reference = (version.explain_reference or version.explain)(sample)
    current = version.explain(frame)
    if reference is None or current is None:
        return None
    return contribution_shift(reference, current)


def _model_schema(version: MonitoredVersion) -> DataSchema:
    """The schema less feature columns the model does not take (windows from the prediction
    log hold only the model's inputs, so those would always read as missing)."""
    schema = version.schema
    unused = [n for n in schema.feature_columns if n not in version.features]
    if not unused or not version.features:
        return schema
    return schema.model_copy(update={"columns": {
        n: c for n, c in schema.columns.items() if n not in unused}})


def _section(notes: list[str], what: str, compute: Any) -> Any:
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 - one section failing leaves a partial report
        notes.append(f"{what} could not be computed: {type(exc).__name__}: {exc}")
        return None


def _sample(frame: pd.DataFrame, limit: int | None, seed: int
            ) -> tuple[pd.DataFrame, int | None]:
    if limit is None or len(frame) <= limit:
        return frame, None
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[rows].reset_index(drop=True), limit


def _multivariate(reference: MonitoringReference, frame: pd.DataFrame, spec: MonitoringSpec,
                  seed: int, notes: list[str]) -> DomainClassifierResult | None:
    if reference.sample is None:
        notes.append("no multivariate drift: the version stores no reference rows "
                     "(trained before monitoring; retrain to store them)")
        return None
    drift, sample = spec.drift, reference.sample
    current = frame
    if not reference.sample_exact:  # a version-1 sample was stored rounded: round alike
        current = _section(notes, "multivariate drift", lambda: like_stored_sample(
            frame[[c for c in sample.columns if c in frame.columns]]))
        if current is None:
            return None
    result: DomainClassifierResult | None = _section(
        notes, "multivariate drift", lambda: domain_classifier(
            sample, current, rows=drift.multivariate_rows,
            threshold=drift.multivariate_threshold,
            significance=drift.multivariate_significance, seed=seed))
    return result


def _performance(window: Window, version: MonitoredVersion, spec: MonitoringSpec, seed: int,
                 notes: list[str]) -> PerformanceReport:
    scored = window.scored if window.scored is not None else np.ones(window.rows, dtype=bool)
    prediction = window.values if version.task == "regression" else window.proba
    estimated: dict[str, float] = {}
    assumption = None
    if prediction is None:
        notes.append("the window has no model predictions: no performance")
        return PerformanceReport(version.task, int(scored.sum()), 0, {}, {}, version.holdout)
    usable = scored & ~np.isnan(np.atleast_2d(prediction.T).T).any(axis=1)
    if version.task != "regression":
        if version.calibrator is None:
            notes.append("no estimated performance: the version stores no calibrator "
                         "(trained before monitoring; retrain to store one)")
        elif usable.any():
            estimated = estimate_performance(version.calibrator, prediction[usable])
            assumption = CBPE_ASSUMPTION
    measured = {}
    labelled = 0
    slices: tuple[Slice, ...] = ()
    if version.target in window.frame.columns:
        labels = window.frame[version.target]
        has = usable & labels.notna().to_numpy()
        labelled = int(has.sum())
        if labelled >= _MIN_LABELS:
            if version.task == "regression":
                y = labels[has].to_numpy(dtype=float)
            else:
                y, _ = encode_labels(labels[has], version.classes)
            measured = measure_performance(version.task, y, prediction[has],  # type: ignore[arg-type]
                                           confidence=spec.confidence,
                                           resamples=spec.bootstrap, seed=seed)
            slices = _slices(window, version, has, y, prediction[has], seed, notes)
        elif labelled:
            notes.append(f"only {labelled} labelled row(s) (fewer than {_MIN_LABELS}): "
                         "no measured performance")
    return PerformanceReport(version.task, int(usable.sum()), labelled, measured, estimated,
                             dict(version.holdout), assumption, slices)


def _slices(window: Window, version: MonitoredVersion, has: np.ndarray, y: np.ndarray,
            prediction: np.ndarray, seed: int, notes: list[str]) -> tuple[Slice, ...]:
    """The labelled rows' worst slices by the version's first holdout metric (the task's
    default metric when none is recorded)."""
    known = task_metrics(version.task)  # type: ignore[arg-type]
    metric = next((m for m in version.holdout if m in known), DEFAULT_METRIC[version.task])
    columns = [c for c in version.features if c in window.frame.columns]
    found = _section(notes, "error analysis", lambda: worst_slices(
        version.task, metric, window.frame.loc[has, columns], y,  # type: ignore[arg-type]
        prediction, seed=seed))
    return tuple(found or ())


def _metrics(info: WindowInfo, drift: DriftReport | None,
             multivariate: DomainClassifierResult | None, quality: QualityReport | None,
             performance: PerformanceReport | None,
             operational: Mapping[str, float]) -> dict[str, float]:
    excluded = info.excluded
    out: dict[str, float] = {
        "rows": float(info.rows),
        "rows_total": float(info.rows + sum(excluded.values())),
        "shadow_rows": float(excluded.get("shadow", 0)),
        "error_rows": float(excluded.get("error", 0)),
        "other_version_rows": float(excluded.get("other_versions", 0)),
    }
    if drift is not None and drift.features:
        out["drift_share"] = drift.share
        out["weighted_drift_share"] = drift.weighted_share
        out["drifted_columns"] = float(len(drift.drifted))
        out["columns_checked"] = float(len(drift.features))
        out["dataset_drift"] = float(drift.dataset_drift)
        for role, name in (("prediction", "prediction_drift"), ("target", "label_drift")):
            checked = [c for c in drift.columns if c.role == role]
            if checked:
                out[name] = float(any(c.drifted for c in checked))
        for c in drift.columns:
            out[f"drift.{metric_name(c.column)}"] = c.score
            if c.p_value is not None:
                out[f"drift_p.{metric_name(c.column)}"] = c.p_value
    if multivariate is not None:
        out["multivariate_auc"] = multivariate.roc_auc
        out["multivariate_p"] = multivariate.p_value
        out["multivariate_drift"] = float(multivariate.drifted)
    if quality is not None:
        out.update({k if not k.startswith("null_rate.") else
                    "null_rate." + metric_name(k[10:]): v for k, v in quality.metrics().items()})
    if performance is not None:
        out.update(performance.metrics())
    out.update(operational)
    return out


def metric_name(column: str) -> str:
    """A column name as MLflow and Prometheus accept it in a metric name."""
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", column)
