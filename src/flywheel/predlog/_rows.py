"""The log's rows: the JSON lines a server writes, and the Arrow record batches they become.

Each line ends with a newline. A prediction line is one request: ``{"r": id, "t": unix time,
"v": version, "a": arm, "l": latency ms, "p": predictions, "q": probabilities, "e": event time,
"x": records}``. An error line is ``{"r", "t", "v", "a", "l", "err"}``, a feedback line ``{"r",
"t", "label"}``.
Conversion parses the lines with Arrow's C++ JSON reader and turns one row per request into
one row per record with vectorized steps; a batch Arrow cannot type (a category sent as 415 in
one request and as "415" in another) takes a Python path with the same result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

PRED_META = [
    pa.field("request_id", pa.string()),
    pa.field("ts", pa.timestamp("us", tz="UTC")),
    pa.field("model_version", pa.string()),
    pa.field("arm", pa.string()),
    pa.field("latency_ms", pa.float32()),
    pa.field("prediction", pa.string()),
    pa.field("value", pa.float64()),
    pa.field("probabilities", pa.list_(pa.float32())),
    pa.field("error", pa.string()),
    pa.field("event_ts", pa.timestamp("us", tz="UTC")),
]
FEEDBACK = pa.schema([
    pa.field("request_id", pa.string()),
    pa.field("ts", pa.timestamp("us", tz="UTC")),
    pa.field("label", pa.string()),
])
INPUT_PREFIX = "in."
DEFAULT_ARM = "champion"
_LINE = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
_UTC = pa.timestamp("us", tz="UTC")

Features = tuple[tuple[str, bool], ...]
"""Input columns and whether each is numeric: the layout of a prediction segment."""


def prediction_schema(features: Features) -> pa.Schema:
    return pa.schema([*PRED_META, *(pa.field(INPUT_PREFIX + n, pa.float64() if numeric
                                             else pa.string()) for n, numeric in features)])


def prediction_line(request_id: str, when: float, version: str, latency_ms: float,
                    records: Sequence[Mapping[str, Any]], predictions: Sequence[Any],
                    probabilities: Sequence[Sequence[float]] | None, arm: str,
                    event_time: float | None) -> bytes:
    return orjson.dumps({"r": request_id, "t": when, "v": version, "a": arm, "l": latency_ms,
                         "p": predictions, "q": probabilities, "e": event_time, "x": records},
                        option=_LINE)


def error_line(request_id: str, when: float, version: str, latency_ms: float, arm: str,
               error: str) -> bytes:
    return orjson.dumps({"r": request_id, "t": when, "v": version, "a": arm, "l": latency_ms,
                         "err": error}, option=_LINE)


def feedback_line(request_id: str, when: float, label: str) -> bytes:
    return orjson.dumps({"r": request_id, "t": when, "label": label}, option=_LINE)


def prediction_batch(features: Features, data: bytes) -> pa.RecordBatch:
    """Prediction lines (newline-separated) as one row per predicted record."""
    schema = prediction_schema(features)
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pj.ParseOptions(explicit_schema=_wire_schema(features),
                                          unexpected_field_behavior="infer"))
        return _explode(table, features, schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError,
            ValueError):
        # Mixed types within one column (a category sent as 415 and as "415"): the slow path.
        rows = [orjson.loads(line) for line in data.splitlines() if line.strip()]
        return _python_batch(features, rows, schema)


def error_batch(data: bytes) -> pa.RecordBatch:
    """Failed model calls: rows with an error text and no prediction."""
    rows = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    n = len(rows)
    return pa.record_batch([
        pa.array([r["r"] for r in rows], pa.string()),
        pa.array(_micros([r["t"] for r in rows])).cast(_UTC),
        pa.array([r["v"] for r in rows], pa.string()),
        pa.array([r["a"] for r in rows], pa.string()),
        pa.array([r["l"] for r in rows], pa.float32()),
        pa.nulls(n, pa.string()), pa.nulls(n, pa.float64()), pa.nulls(n, pa.list_(pa.float32())),
        pa.array([r["err"] for r in rows], pa.string()), pa.nulls(n, _UTC)],
        schema=prediction_schema(()))


def feedback_batch(data: bytes) -> pa.RecordBatch:
    rows = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    return pa.record_batch([
        pa.array([str(r["r"]) for r in rows], pa.string()),
        pa.array(_micros([r["t"] for r in rows])).cast(_UTC),
        pa.array([str(r["label"]) for r in rows], pa.string())], schema=FEEDBACK)


def _micros(seconds: Sequence[float]) -> np.ndarray:
    return np.round(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def _wire_schema(features: Features) -> pa.Schema:
    """What the JSON lines hold, as far as it is fixed: numeric inputs are numbers.

    Text inputs and predictions are inferred per batch (a client may send 415 or "415" for a
    category) and cast to text afterwards.
    """
    numeric = [pa.field(name, pa.float64()) for name, is_number in features if is_number]
    return pa.schema([pa.field("r", pa.string()), pa.field("t", pa.float64()),
                      pa.field("v", pa.string()), pa.field("a", pa.string()),
                      pa.field("l", pa.float64()), pa.field("e", pa.float64()),
                      pa.field("q", pa.list_(pa.list_(pa.float32()))),
                      pa.field("x", pa.list_(pa.struct(numeric)))])


def _explode(table: pa.Table, features: Features, schema: pa.Schema) -> pa.RecordBatch:
    """Request-level rows (one per JSON line) to one row per predicted record."""
    predictions = table.column("p").combine_chunks()
    counts = pc.list_value_length(predictions).to_numpy(zero_copy_only=False)
    parent = pa.array(np.repeat(np.arange(len(counts)), counts))
    n = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(n) - first
    ids = table.column("r").combine_chunks().take(parent)
    many = pa.array(np.repeat(counts > 1, counts))
    if pc.any(many).as_py():
        suffixed = pc.binary_join_element_wise(ids, pa.array(position).cast(pa.string()), ":")
        ids = pc.if_else(many, suffixed, ids)
    flat = predictions.flatten()
    probabilities = table.column("q").combine_chunks()
    if probabilities.null_count == len(probabilities):  # a regressor: no probabilities
        values = flat.cast(pa.float64())
        labels = values.cast(pa.string())
        proba = pa.nulls(n, pa.list_(pa.float32()))
    elif probabilities.null_count:  # regressors and classifiers in one batch: the slow path
        raise ValueError("mixed tasks in one batch")
    else:
        labels = flat.cast(pa.string())
        values = pa.nulls(n, pa.float64())
        proba = probabilities.flatten().cast(pa.list_(pa.float32()))
    ts = pa.array(_micros(table.column("t").combine_chunks().take(parent).to_numpy()))
    records = table.column("x").combine_chunks().flatten()
    if len(records) != n or len(proba) != n:
        raise ValueError("records and predictions differ in length")
    columns = [ids, ts.cast(_UTC),
               table.column("v").combine_chunks().take(parent),
               table.column("a").combine_chunks().take(parent),
               table.column("l").combine_chunks().take(parent).cast(pa.float32()),
               labels, values, proba, pa.nulls(n, pa.string()),
               _timestamps(table.column("e").combine_chunks().take(parent))]
    present = {records.type.field(i).name for i in range(records.type.num_fields)}
    for name, numeric in features:
        kind = pa.float64() if numeric else pa.string()
        columns.append(records.field(name).cast(kind) if name in present else pa.nulls(n, kind))
    return pa.record_batch(columns, schema=schema)


def _timestamps(seconds: pa.Array) -> pa.Array:
    micros = pc.cast(pc.round(pc.multiply(seconds, 1e6)), pa.int64())
    return micros.cast(_UTC)


def _python_batch(features: Features, rows: list[dict[str, Any]],
                  schema: pa.Schema) -> pa.RecordBatch:
    """One record batch from parsed request lines, column by column in Python (the fallback)."""
    records: list[Mapping[str, Any]] = []
    ids: list[str] = []
    ts: list[float] = []
    versions: list[str] = []
    arms: list[str] = []
    latency: list[float] = []
    labels: list[Any] = []
    values: list[Any] = []
    probas: list[Any] = []
    events: list[float | None] = []
    for row in rows:
        rows_in = row["x"]
        n = len(rows_in)
        records.extend(rows_in)
        ids.extend([row["r"]] if n == 1 else [f"{row['r']}:{i}" for i in range(n)])
        ts.extend([row["t"]] * n)
        versions.extend([row["v"]] * n)
        arms.extend([row["a"]] * n)
        latency.extend([row["l"]] * n)
        events.extend([row.get("e")] * n)
        if row["q"] is None:  # a regressor
            values.extend(row["p"])
            labels.extend([None] * n)
            probas.extend([None] * n)
        else:
            labels.extend(row["p"])
            values.extend([None] * n)
            probas.extend(row["q"])
    number = _number_array(values)
    columns = [
        pa.array(ids, pa.string()),
        pa.array(_micros(ts)).cast(_UTC),
        pa.array(versions, pa.string()),
        pa.array(arms, pa.string()),
        pa.array(latency, pa.float32()),
        pc.coalesce(_text_array(labels), number.cast(pa.string())),
        number,
        pa.array(probas, pa.list_(pa.float32())),
        pa.nulls(len(ids), pa.string()),
        _timestamps(pa.array(events, pa.float64())),
    ]
    for name, numeric in features:
        column = [r.get(name) for r in records]
        columns.append(_number_array(column) if numeric else _text_array(column))
    return pa.record_batch(columns, schema=schema)


def _number_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.float64())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # text that slipped past validation
        return pa.array(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"),
                        pa.float64())


def _text_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # numbers or booleans in a text column
        return pa.array([None if v is None else str(v).lower() if isinstance(v, bool)
                         else str(v) for v in values], pa.string())
