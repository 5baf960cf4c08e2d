"""The ONNX serving form: a model pipeline's ONNX graph run by onnxruntime, and its
verification against the pipeline on held-out rows.

``OnnxPredictor`` answers like ``CompiledPredictor`` (same inputs, same output shapes), so the
server, the stream scorer and the latency gate can hold either. onnxruntime is imported when a
predictor is built, never by importing this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.errors import OnnxExportError
from flywheel.core.spec import Task
from flywheel.data import DataSchema
from flywheel.features._compiled_values import (
    Column,
    max_abs_diff,
    read_bool,
    read_bool_column,
    read_category,
    read_category_column,
    read_datetime,
    read_datetime_column,
    read_float,
    read_float_column,
)
from flywheel.features._convert import DATETIME_PARTS
from flywheel.features._onnx_convert import METADATA_INPUTS, METADATA_TASK, part_input

__all__ = ["ONNX_TOLERANCE", "OnnxPredictor", "OnnxReport", "onnx_predictor", "verify_onnx"]

ONNX_TOLERANCE = 1e-5
"""Largest absolute probability (or value) difference from the pipeline the ONNX form may
show. The booster runs in float32 in onnxruntime, so differences of about 1e-7 are normal."""
_SINGLE_ROW_CHECKS = 200
_TAG = "flywheel.onnx."


@dataclass(frozen=True)
class OnnxReport:
    """How closely the ONNX form matched its pipeline on a version's holdout rows."""

    verified: bool
    rows: int
    label_agreement: float | None
    """Share of rows whose predicted label equals the pipeline's (None for regression)."""
    max_abs_diff: float
    tolerance: float

    def to_tags(self) -> dict[str, str]:
        """Model-version tags (``flywheel.onnx.*``)."""
        tags = {f"{_TAG}verified": "true" if self.verified else "false",
                f"{_TAG}rows": str(self.rows), f"{_TAG}max_abs_diff": f"{self.max_abs_diff:.3g}",
                f"{_TAG}tolerance": f"{self.tolerance:g}"}
        if self.label_agreement is not None:
            tags[f"{_TAG}label_agreement"] = f"{self.label_agreement:.6f}"
        return tags

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def summary(self) -> str:
        labels = ("" if self.label_agreement is None
                  else f"label agreement {self.label_agreement:.2%}, ")
        return (f"{labels}largest difference {self.max_abs_diff:.3g} (tolerance "
                f"{self.tolerance:g}) on {self.rows:,} holdout rows")


class OnnxPredictor:
    """A model's ONNX graph in onnxruntime, answering raw request values.

    Values are read as the compiled path reads them (``_compiled_values``), then handed to the
    graph; outputs are probabilities (rows, classes) in float64, or values (rows,).
    One onnxruntime thread per call, like the compiled path: parallelism comes from workers.

    Raises:
        OnnxExportError: If onnxruntime cannot load the graph (names the ``onnxruntime`` step).
    """

    kind = "onnx"

    def __init__(self, model_bytes: bytes) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxExportError("onnxruntime", "InferenceSession", "onnxruntime is not "
                                  "installed; pip install flywheel[onnx]") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(model_bytes, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/NotImplemented types
            raise OnnxExportError("onnxruntime", "InferenceSession",
                                  f"the graph does not load: {exc}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_INPUTS not in meta or METADATA_TASK not in meta:
            raise OnnxExportError("onnxruntime", "InferenceSession", "the graph was not written "
                                  "by `flywheel export onnx` (no flywheel.inputs metadata)")
        self.model_bytes = model_bytes
        self.reads: dict[str, str] = json.loads(meta[METADATA_INPUTS])
        task: Task = meta[METADATA_TASK]
        self.task = task
        self.feature_columns = list(self.reads)
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = ["variable"] if task == "regression" else ["probabilities"]
        if self._output[0] not in outputs:
            self._output = [outputs[-1]]

    def __repr__(self) -> str:
        return f"OnnxPredictor(task={self.task!r}, columns={len(self.feature_columns)})"

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predictions for row records, such as parsed JSON objects."""
        if len(records) == 1:  # a lone request: scalar readers, no column lists
            return self._run_one(records[0])
        columns = {c: [r.get(c) for r in records] for c in self.feature_columns}
        return self._run(columns, len(records))

    def _run_one(self, record: Mapping[str, Any]) -> np.ndarray:
        feed: dict[str, np.ndarray] = {}
        for column, read in self.reads.items():
            value = record.get(column)
            if read == "category":
                feed[column] = np.array([[read_category(value)]], dtype=object)
            elif read == "datetime":
                for part, number in zip(DATETIME_PARTS, read_datetime(value), strict=True):
                    feed[part_input(column, part)] = np.array([[number]])
            else:
                number = read_bool(value) if read == "bool" else read_float(value)
                feed[column] = np.array([[number]])
        out = np.asarray(self._session.run(self._output, feed)[0], dtype=np.float64)
        return out.reshape(-1) if self.task == "regression" else out

    def predict_columns(self, columns: Mapping[str, Column]) -> np.ndarray:
        """Predictions for columnar input: column name -> list, numpy array or pandas Series."""
        rows = next((len(v) for v in columns.values()), 0)
        return self._run(columns, rows)

    def _run(self, columns: Mapping[str, Column], rows: int) -> np.ndarray:
        if rows == 0:
            width = self._session.get_outputs()[-1].shape
            return np.empty((0,) if self.task == "regression" else (0, width[-1] or 0))
        feed: dict[str, np.ndarray] = {}
        missing: list[Any] = [None] * rows
        for column, read in self.reads.items():
            values = columns.get(column, missing)
            if read == "category":
                feed[column] = np.array(read_category_column(values),
                                        dtype=object).reshape(-1, 1)
            elif read == "datetime":
                parts = read_datetime_column(values)
                for j, part in enumerate(DATETIME_PARTS):
                    feed[part_input(column, part)] = np.ascontiguousarray(parts[:, j:j + 1])
            elif read == "bool":
                feed[column] = read_bool_column(values).reshape(-1, 1)
            else:
                feed[column] = read_float_column(values).reshape(-1, 1)
        out = np.asarray(self._session.run(self._output, feed)[0], dtype=np.float64)
        return out.reshape(-1) if self.task == "regression" else out


def verify_onnx(predictor: OnnxPredictor, model: Any, frame: pd.DataFrame, *,
                tolerance: float = ONNX_TOLERANCE) -> OnnxReport:
    """Compare ``predictor`` with the pipeline ``model`` on the rows of ``frame``.

    All rows go through ``predict_columns``, the first 200 also one at a time through
    ``predict_records``. Verified when every label (argmax of the probabilities, as serving
    answers) equals the pipeline's and no probability (or value) differs by more than
    ``tolerance``; a NaN where the other has a number counts as infinite.

    Raises:
        ValueError: If ``frame`` has no rows.
    """
    if len(frame) == 0:
        raise ValueError("verify_onnx needs at least one held-out row")
    regression = predictor.task == "regression"
    expected = np.asarray(model.predict(frame) if regression else model.predict_proba(frame),
                          dtype=np.float64)
    got = predictor.predict_columns({c: frame[c] for c in predictor.feature_columns
                                     if c in frame.columns})
    worst = max_abs_diff(expected, got)
    head = frame.head(_SINGLE_ROW_CHECKS).to_dict(orient="records")
    for i, record in enumerate(head):
        worst = max(worst, max_abs_diff(expected[i:i + 1],
                                         predictor.predict_records([{str(k): v for k, v
                                                                     in record.items()}])))
    agreement = None
    if not regression and got.shape == expected.shape:
        agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    elif not regression:
        agreement = 0.0
    verified = worst <= tolerance and (agreement is None or agreement == 1.0)
    return OnnxReport(verified=verified, rows=len(frame), label_agreement=agreement,
                      max_abs_diff=worst, tolerance=tolerance)


def onnx_predictor(model: Any, schema: DataSchema, *, task: Task) -> OnnxPredictor:
    """Convert ``model`` and load the graph in onnxruntime.

    Raises:
        OnnxExportError: Naming the step that cannot convert or load.
    """
    from flywheel.features._onnx_convert import convert_to_onnx

    return OnnxPredictor(convert_to_onnx(model, schema, task=task))
