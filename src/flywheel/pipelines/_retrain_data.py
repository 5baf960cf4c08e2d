"""The data a retraining learns from: the original training data plus labelled production
traffic (the prediction log joined with feedback) within the configured window.

The frame is frozen to a Parquet file before training starts, so a loop killed mid-training
retrains on exactly the same rows when it restarts (and Optuna resumes the same study, which is
named after the data's fingerprint).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from flywheel.core.workspace import atomic_write_bytes
from flywheel.monitoring import encode_labels
from flywheel.pipelines._predlog import log_location, spool_folder
from flywheel.predlog import INPUT_PREFIX, read_predictions

if TYPE_CHECKING:
    from flywheel.pipelines._context import ProjectContext

__all__ = ["RetrainingData", "as_training_types", "labelled_traffic", "retraining_frame",
           "traffic_window"]


class RetrainingData:
    """The rows of one retraining and where they came from."""

    def __init__(self, frame: pd.DataFrame, *, original_rows: int, production_rows: int,
                 unmatched_labels: int) -> None:
        self.frame = frame
        self.original_rows = original_rows
        self.production_rows = production_rows
        self.unmatched_labels = unmatched_labels

    def save(self, path: Path) -> Path:
        buffer = io.BytesIO()
        self.frame.to_parquet(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def summary(self) -> dict[str, int]:
        return {"rows": len(self.frame), "original_rows": self.original_rows,
                "production_rows": self.production_rows,
                "unmatched_labels": self.unmatched_labels}


def labelled_traffic(project: ProjectContext, log: pd.DataFrame | None = None, *,
                     now: dt.datetime | None = None) -> pd.DataFrame:
    """Answered, labelled production rows (no shadow copies), oldest first.

    Without ``log``, reads only the window the retraining settings need
    (``traffic_window``), not the whole log.
    """
    frame = log if log is not None else traffic_window(project, now or dt.datetime.now(dt.UTC))
    return _labelled(frame)


def traffic_window(project: ProjectContext, now: dt.datetime) -> pd.DataFrame:
    """The prediction log's rows a retraining at ``now`` can use, labels joined.

    ``retraining.data_days`` bounds the window by the time rows were logged (the event-time
    cut follows in ``retraining_frame``; a row is logged after its event, so none is lost);
    ``retraining.data_rows`` reads the newest rows only, more of them (four times as many
    each time) until they hold that many labelled rows or the window is exhausted. With both
    unset every row is needed, and the whole log is read.
    """
    spec = project.spec.retraining
    location, spool = log_location(project), spool_folder(project)
    since = None if spec.data_days is None else now - dt.timedelta(days=spec.data_days)
    if spec.data_rows is None:
        return read_predictions(location, since=since, spool=spool)
    last = spec.data_rows * 2
    while True:
        frame = read_predictions(location, since=since, last=last, spool=spool)
        if len(frame) < last or len(_labelled(frame)) >= spec.data_rows:
            return frame
        last *= 4


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty or "label" not in frame:
        return frame.iloc[0:0]
    keep = frame["label"].notna() & frame["error"].isna() & (frame["arm"] != "shadow")
    return frame[keep].sort_values("event_ts", kind="stable")


def retraining_frame(project: ProjectContext, original: pd.DataFrame, classes: tuple[str, ...],
                     *, now: dt.datetime, log: pd.DataFrame | None = None) -> RetrainingData:
    """Training rows for a retraining at ``now`` (the loop's clock).

    Args:
        original: The project's training data (its target column as in the data file).
        classes: The serving version's class names (classifiers), to turn label text back into
            target values; empty for regression.
    """
    spec, schema = project.spec.retraining, project.schema
    traffic = labelled_traffic(project, log, now=now)
    if spec.data_days is not None and not traffic.empty:
        start = pd.Timestamp(now - dt.timedelta(days=spec.data_days))
        traffic = traffic[traffic["event_ts"] >= start]
    if spec.data_rows is not None:
        traffic = traffic.tail(spec.data_rows)
    features = schema.feature_columns
    rows = pd.DataFrame({name: traffic.get(INPUT_PREFIX + name) for name in features},
                        index=traffic.index)
    target = original[schema.target]
    unmatched = 0
    if classes:
        codes, unknown = encode_labels(traffic["label"], classes)
        by_text = {str(v).lower(): v for v in target.dropna().unique()}
        values = [by_text.get(classes[c].lower(), classes[c]) if c >= 0 else None
                  for c in codes]
        rows[schema.target] = pd.Series(values, index=traffic.index, dtype=target.dtype
                                        if target.dtype != object else object)
        unmatched = int(unknown.sum())
        rows = rows[~unknown]
    else:
        rows[schema.target] = pd.to_numeric(traffic["label"], errors="coerce")
        unmatched = int(rows[schema.target].isna().sum())
        rows = rows[rows[schema.target].notna()]
    rows = as_training_types(rows, original)
    parts = [original[rows.columns]] if spec.include_training_data else []
    parts.append(rows)
    frame = pd.concat(parts, ignore_index=True)
    return RetrainingData(frame, original_rows=len(original) if spec.include_training_data
                          else 0, production_rows=len(rows), unmatched_labels=unmatched)


def as_training_types(rows: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
    """Production rows with the original data's column types (the log keeps numbers as
    float64 and everything else as text)."""
    out = rows.copy()
    for name in out.columns:
        kind = original[name].dtype
        try:
            if pd.api.types.is_bool_dtype(kind):
                out[name] = out[name].map({"true": True, "false": False, True: True,
                                           False: False}).astype("boolean")
            elif pd.api.types.is_integer_dtype(kind):
                out[name] = pd.to_numeric(out[name], errors="coerce").round().astype("Int64")
            elif pd.api.types.is_numeric_dtype(kind):
                out[name] = pd.to_numeric(out[name], errors="coerce")
        except (TypeError, ValueError):
            continue
    return out
