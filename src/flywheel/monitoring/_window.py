"""The current window: the rows one monitoring run compares with the reference.

A window comes from the prediction log (``window_from_log``) or from any table
(``window_from_frame``, for ``flywheel monitor --data FILE``). Either way it holds one row per
answered prediction with the features under their own names, the model's output as
``prediction.*`` columns (the names the reference uses for holdout predictions) and the label,
where one arrived, under the target's name. Problems met while building it (a column missing
from the log, labels naming no class) become notes, never exceptions.

Log rows of the ``shadow`` arm are left out (users never saw those predictions); rows whose
model call failed count for the error rate only; rows answered by another version than the
monitored one (a canary) count for input drift and quality, not for the version's performance.
A log without ``arm`` or ``error`` columns is read as all champion, no errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from flywheel.monitoring._performance import encode_labels

__all__ = ["INPUT_PREFIX", "Window", "prediction_columns", "window_from_frame", "window_from_log"]

INPUT_PREFIX = "in."
SHADOW = "shadow"
_MAX_PROBA_COLUMNS = 10


@dataclasses.dataclass(frozen=True)
class Window:
    """Rows to monitor.

    Attributes:
        frame: One row per answered prediction: features, ``prediction.*``, the label.
        proba: Class probabilities per row of ``frame`` (classification), NaN where the row
            was not scored by the monitored version.
        values: Predicted values (regression), NaN likewise.
        scored: Rows predicted by the monitored version.
        log: The log rows (errors included, shadow left out) for latency, errors, throughput.
        excluded: Rows left out, by reason.
    """

    frame: pd.DataFrame
    source: str
    proba: np.ndarray | None = None
    values: np.ndarray | None = None
    scored: np.ndarray | None = None
    log: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()
    excluded: dict[str, int] = dataclasses.field(default_factory=dict)
    start: str | None = None
    end: str | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    """Counts found while reading (``unknown_label_ids``), added to the run's metrics."""

    @property
    def rows(self) -> int:
        return len(self.frame)


def prediction_columns(task: str, classes: Sequence[str], *, proba: np.ndarray | None = None,
                       values: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The model's output as columns compared with the reference's: ``prediction.label`` and
    ``prediction.score`` (binary: probability of the positive class) or
    ``prediction.proba.<class>`` (multiclass, up to 10 classes); ``prediction.value``
    (regression). Rows with NaN probabilities get no label."""
    if task == "regression":
        return {"prediction.value": np.asarray(values, dtype=float)}
    p = np.atleast_2d(np.asarray(proba, dtype=float))
    missing = np.isnan(p).any(axis=1)
    labels = np.asarray(classes, dtype=object)[np.nan_to_num(p).argmax(axis=1)]
    labels[missing] = None
    out: dict[str, np.ndarray] = {"prediction.label": labels}
    if len(classes) == 2:
        out["prediction.score"] = p[:, 1]
    else:
        for k, name in enumerate(classes[:_MAX_PROBA_COLUMNS]):
            out[f"prediction.proba.{name}"] = p[:, k]
    return out


def window_from_log(log: pd.DataFrame, *, features: Sequence[str], target: str, task: str,
                    classes: Sequence[str], version: str | None, source: str,
                    notes: Sequence[str] = ()) -> Window:
    """A window from rows of ``flywheel.serving.read_predictions`` (labels joined)."""
    found = list(notes)
    excluded: dict[str, int] = {}
    if "arm" in log.columns:
        shadow = (log["arm"].astype("string") == SHADOW).fillna(False).to_numpy(dtype=bool)
        if shadow.any():
            excluded["shadow"] = int(shadow.sum())
            log = log[~shadow]
    log = log.reset_index(drop=True)
    failed = log["error"].notna().to_numpy() if "error" in log.columns else \
        np.zeros(len(log), dtype=bool)
    if failed.any():
        excluded["error"] = int(failed.sum())
    answered = log[~failed].reset_index(drop=True)
    columns: dict[str, object] = {}
    missing = [f for f in features if INPUT_PREFIX + f not in answered.columns]
    if missing and len(answered):
        found.append(f"input column(s) {', '.join(missing)} missing from the prediction log: "
                     "no drift or quality for them")
    for name in features:
        if INPUT_PREFIX + name in answered.columns:
            columns[name] = answered[INPUT_PREFIX + name].to_numpy()
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(answered)))
    scored = np.ones(len(answered), dtype=bool)
    if version is not None and "model_version" in answered.columns:
        scored = (answered["model_version"].astype("string") == str(version)).fillna(
            False).to_numpy(dtype=bool)
        others = int((~scored).sum())
        if others:
            excluded["other_versions"] = others
    proba = values = None
    if task == "regression":
        if "value" in answered.columns:
            values = np.where(scored, answered["value"].to_numpy(dtype=float), np.nan)
    elif "probabilities" in answered.columns and len(answered):
        try:
            proba = _stack(answered["probabilities"], len(classes), scored)
        except ValueError as exc:
            found.append(f"{exc}: no estimated performance or prediction drift")
    if proba is not None or values is not None:
        for name, col in prediction_columns(task, classes, proba=proba, values=values).items():
            frame[name] = col
    if "label" in answered.columns:
        _add_labels(frame, answered["label"], target, task, classes, found)
    ts = pd.to_datetime(log["ts"], utc=True) if "ts" in log.columns and len(log) else None
    return Window(frame=frame, source=source, proba=proba, values=values, scored=scored,
                  log=log, notes=tuple(found), excluded=excluded,
                  start=None if ts is None else ts.min().isoformat(),
                  end=None if ts is None else ts.max().isoformat())


def window_from_frame(data: pd.DataFrame, *, features: Sequence[str], target: str, task: str,
                      classes: Sequence[str], source: str, proba: np.ndarray | None = None,
                      values: np.ndarray | None = None) -> Window:
    """A window from a table of inputs (and labels, if it has the target column), with the
    model's predictions for its rows when given."""
    found: list[str] = []
    missing = [f for f in features if f not in data.columns]
    if missing:
        found.append(f"column(s) {', '.join(missing)} missing from {source}: no drift or "
                     "quality for them")
    frame = data[[f for f in features if f in data.columns]].reset_index(drop=True)
    if proba is not None or values is not None:
        for name, col in prediction_columns(task, classes, proba=proba, values=values).items():
            frame[name] = col
    if target in data.columns:
        _add_labels(frame, data[target].reset_index(drop=True), target, task, classes, found)
    return Window(frame=frame, source=source, proba=proba, values=values,
                  scored=np.ones(len(frame), dtype=bool), notes=tuple(found))


def _stack(cells: pd.Series, k: int, scored: np.ndarray) -> np.ndarray:
    out = np.full((len(cells), k), np.nan)
    valid = scored & cells.notna().to_numpy()
    if valid.any():
        stacked = np.vstack(list(cells[valid].to_numpy()))
        if stacked.shape[1] != k:
            raise ValueError(f"logged probabilities have {stacked.shape[1]} classes, "
                             f"the model {k}")
        out[valid] = stacked
    return out


def _add_labels(frame: pd.DataFrame, labels: pd.Series, target: str, task: str,
                classes: Sequence[str], notes: list[str]) -> None:
    present = labels.notna().to_numpy()
    if task == "regression":
        numbers = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
        bad = present & np.isnan(numbers)
        frame[target] = numbers
    else:
        codes, unknown = encode_labels(labels, tuple(classes))
        bad = present & unknown
        names = np.asarray(classes, dtype=object)[np.maximum(codes, 0)]
        frame[target] = pd.Series(np.where(present & ~unknown, names, None), dtype="object")
    if bad.any():
        shown = ", ".join(map(repr, pd.Series(labels[bad]).astype(str).unique()[:5]))
        notes.append(f"{int(bad.sum())} label(s) name no class of the model ({shown}); "
                     "they are left out of measured performance")
