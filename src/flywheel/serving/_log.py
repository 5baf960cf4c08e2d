"""The prediction log: every answered request, and later its label, off the request path.

Each server process appends to its own Arrow IPC stream files under ``.flywheel/predictions/``
(``pred-<pid>-<start>-<n>.arrows`` for predictions, ``fb-...`` for feedback). The request path
serializes the request to one JSON line (orjson, a few microseconds) and appends the bytes to a
list; a background thread, once a second, hands the lines to Arrow's C++ JSON reader (which
runs without the GIL), writes one record batch and fsyncs it. Keeping Python objects out of the
pending list matters twice at sub-millisecond latencies: the writer holds the GIL only for a few
vectorized steps, and the garbage collector has nothing new to scan. The writer thread runs at
a lower CPU priority (nice +10), so on a busy core a request that wakes up goes first; not at
idle priority, where it could be starved while holding the GIL and stall every request behind
it. Consequences, stated in the README:

- graceful stop (SIGTERM, Ctrl-C): everything is written (``close()`` flushes);
- SIGKILL or power loss: at most the last second (one flush interval) is lost;
- a batch torn by a crash mid-write is skipped when reading; earlier batches stay readable.

``event_ts`` is the time of the event the prediction is about, when the client says so (header
``x-flywheel-event-time``: replays and backfills); read back, it is ``ts`` where not given. Rows carry the ``arm`` that answered (``champion``, ``challenger``, ``shadow`` or an arm name
of a rollout) and an ``error`` text for a failed model call (no prediction then).

Reading a window is a scan of memory-mapped Arrow files, about a million rows in a fraction of
a second.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

log = logging.getLogger("flywheel.serving")

_PRED_META = [
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
_FEEDBACK = pa.schema([
    pa.field("request_id", pa.string()),
    pa.field("ts", pa.timestamp("us", tz="UTC")),
    pa.field("label", pa.string()),
])
INPUT_PREFIX = "in."
DEFAULT_ARM = "champion"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class _Stream:
    """One Arrow IPC stream file, opened on first write."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self._sink: Any = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = open(self.path, "ab")  # noqa: SIM115 - closed in close()
            self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._writer.write_batch(batch)
        self._sink.flush()
        os.fsync(self._sink.fileno())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None


Features = tuple[tuple[str, bool], ...]
"""Input columns and whether each is numeric: the layout of a prediction segment."""


class PredictionLog:
    """Append predictions and feedback; read windows back.

    Args:
        folder: ``.flywheel/predictions``.
        flush_interval: Seconds between background writes (the most a SIGKILL can lose).
    """

    def __init__(self, folder: str | Path, *, flush_interval: float = 1.0) -> None:
        self.folder = Path(folder)
        self.flush_interval = flush_interval
        self._pending: list[tuple[Features, bytes]] = []
        self._errors: list[tuple[str, float, str, float, str, str]] = []
        self._feedback: list[tuple[str, dt.datetime, str]] = []
        self._lock = threading.Lock()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        # pid and time name this process's files; the random part keeps two logs opened in
        # one process within the same second apart.
        self._prefix = f"{os.getpid()}-{stamp}-{secrets.token_hex(3)}"
        self._pred: dict[Features, _Stream] = {}
        self._fb = _Stream(self.folder / f"fb-{self._prefix}.arrows", _FEEDBACK)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PredictionLog:
        self._thread = threading.Thread(target=self._run, name="flywheel-prediction-log",
                                        daemon=True)
        self._thread.start()
        return self

    # The request path: one orjson call and a list append, no I/O.
    def append(self, features: Features, request_id: str, when: float, version: str,
               latency_ms: float, records: Sequence[Mapping[str, Any]],
               predictions: Sequence[Any],
               probabilities: Sequence[Sequence[float]] | None, *,
               arm: str = DEFAULT_ARM, event_time: float | None = None) -> None:
        line = orjson.dumps({"r": request_id, "t": when, "v": version, "a": arm,
                             "l": latency_ms, "p": predictions, "q": probabilities,
                             "e": event_time, "x": records}, option=_NUMPY)
        with self._lock:
            self._pending.append((features, line))

    def append_error(self, request_id: str, when: float, version: str, latency_ms: float,
                     arm: str, error: str) -> None:
        """Record a model call that failed (no prediction): counted against ``version``."""
        with self._lock:
            self._errors.append((request_id, when, version, latency_ms, arm, error))

    def append_feedback(self, items: Iterable[tuple[str, Any]]) -> int:
        now = dt.datetime.now(dt.timezone.utc)
        rows = [(str(rid), now, str(label)) for rid, label in items]
        with self._lock:
            self._feedback.extend(rows)
        return len(rows)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            errors, self._errors = self._errors, []
            feedback, self._feedback = self._feedback, []
        by_layout: dict[int, tuple[Features, list[bytes]]] = {}
        for features, line in pending:  # a server holds few layouts: group by identity
            group = by_layout.get(id(features))
            if group is None:
                group = by_layout[id(features)] = (features, [])
            group[1].append(line)
        for features, lines in by_layout.values():
            stream = self._stream(features)
            stream.write(_batch_from_lines(features, lines, stream.schema))
        if errors:
            stream = self._stream(())
            stream.write(_error_batch(errors, stream.schema))
        if feedback:
            rid, ts, label = zip(*feedback)
            self._fb.write(pa.record_batch([pa.array(rid), pa.array(ts, _FEEDBACK.field("ts").type),
                                            pa.array(label)], schema=_FEEDBACK))

    def close(self) -> None:
        """Write everything pending and close the files (graceful stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
        for stream in self._pred.values():
            stream.close()
        self._fb.close()

    def _stream(self, features: Features) -> _Stream:
        stream = self._pred.get(features)
        if stream is None:
            fields = [*_PRED_META, *(pa.field(INPUT_PREFIX + n, pa.float64() if numeric
                                              else pa.string()) for n, numeric in features)]
            name = f"pred-{self._prefix}-{len(self._pred)}.arrows"
            stream = self._pred[features] = _Stream(self.folder / name, pa.schema(fields))
        return stream

    def _run(self) -> None:
        _lower_priority()
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the log must never take the server down
                log.exception("writing the prediction log failed; will retry")


def _lower_priority(niceness: int = 10) -> None:
    """Lower this thread's CPU priority (Linux: threads have their own nice value)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


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


def _batch_from_lines(features: Features, lines: list[bytes],
                      schema: pa.Schema) -> pa.RecordBatch:
    data = b"\n".join(lines)
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
        return _prediction_batch(features, [_unpack(orjson.loads(line)) for line in lines],
                                 schema)


def _unpack(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["r"], row["t"], row["v"], row["a"], row["l"], row["x"], row["p"], row["q"],
            row.get("e"))


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
    else:
        labels = flat.cast(pa.string())
        values = pa.nulls(n, pa.float64())
        proba = probabilities.flatten().cast(pa.list_(pa.float32()))
    ts = (table.column("t").combine_chunks().take(parent).to_numpy() * 1e6).astype(np.int64)
    records = table.column("x").combine_chunks().flatten()
    if len(records) != n or len(proba) != n:
        raise ValueError("records and predictions differ in length")
    columns = [ids, pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
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
    return micros.cast(pa.timestamp("us", tz="UTC"))


def _error_batch(errors: list[tuple[str, float, str, float, str, str]],
                 schema: pa.Schema) -> pa.RecordBatch:
    rid, when, version, latency, arm, error = zip(*errors)
    n = len(rid)
    ts = (np.asarray(when) * 1e6).astype(np.int64)
    return pa.record_batch([
        pa.array(rid, pa.string()), pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
        pa.array(version, pa.string()), pa.array(arm, pa.string()),
        pa.array(latency, pa.float32()), pa.nulls(n, pa.string()), pa.nulls(n, pa.float64()),
        pa.nulls(n, pa.list_(pa.float32())), pa.array(error, pa.string()),
        pa.nulls(n, pa.timestamp("us", tz="UTC"))], schema=schema)


def _prediction_batch(features: Features, pending: list[tuple[Any, ...]],
                      schema: pa.Schema) -> pa.RecordBatch:
    """One record batch from unpacked requests, column by column in Python (the fallback)."""
    records: list[Mapping[str, Any]] = []
    ids: list[str] = []
    ts: list[float] = []
    versions: list[str] = []
    arms: list[str] = []
    latency: list[float] = []
    preds: list[Any] = []
    probas: list[Any] = []
    events: list[float | None] = []
    regression = pending[0][7] is None
    for count, (request_id, when, version, arm, latency_ms, rows, predictions,
                probabilities, event) in enumerate(pending):
        if count % 256 == 255:
            time.sleep(0)
        n = len(rows)
        records.extend(rows)
        if n == 1:
            ids.append(request_id)
        else:
            ids.extend(f"{request_id}:{i}" for i in range(n))
        ts.extend([when] * n)
        versions.extend([version] * n)
        arms.extend([arm] * n)
        latency.extend([latency_ms] * n)
        events.extend([event] * n)
        preds.extend(predictions)
        if probabilities is not None:
            probas.extend(probabilities)
    n = len(records)
    if regression:
        values = pa.array(preds, pa.float64())
        labels = pc.cast(values, pa.string())
        proba_array = pa.nulls(n, pa.list_(pa.float32()))
    else:
        labels = _text_array(preds)
        values = pa.nulls(n, pa.float64())
        proba_array = pa.array(probas, pa.list_(pa.float32()))
    columns = [
        pa.array(ids, pa.string()),
        pa.array((np.asarray(ts) * 1e6).astype(np.int64)).cast(pa.timestamp("us", tz="UTC")),
        pa.array(versions, pa.string()),
        pa.array(arms, pa.string()),
        pa.array(latency, pa.float32()),
        labels,
        values,
        proba_array,
        pa.nulls(n, pa.string()),
        _timestamps(pa.array(events, pa.float64())),
    ]
    for name, numeric in features:
        column = [r.get(name) for r in records]
        columns.append(_number_array(column) if numeric else _text_array(column))
        time.sleep(0)  # let a waiting request take the GIL between columns
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


def _read_streams(paths: Iterable[Path]) -> list[pa.Table]:
    tables = []
    for path in paths:
        try:
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_stream(source)
                batches = []
                with contextlib.suppress(pa.ArrowInvalid, OSError):
                    for batch in reader:  # a batch torn by a crash ends the file early
                        batches.append(batch)
                if batches:
                    tables.append(pa.Table.from_batches(batches, schema=reader.schema))
        except (pa.ArrowInvalid, OSError) as exc:
            log.warning("skipping unreadable prediction log segment %s: %s", path.name, exc)
    return tables


def read_predictions(folder: str | Path, *, since: dt.datetime | None = None,
                     until: dt.datetime | None = None, last: int | None = None,
                     with_labels: bool = True) -> pd.DataFrame:
    """Predictions in a time window (or the ``last`` N), labels joined from feedback.

    Segments written with different input columns are combined; missing ones are null.
    """
    folder = Path(folder)
    tables = _read_streams(sorted(folder.glob("pred-*.arrows")))
    if not tables:
        return pd.DataFrame(columns=[f.name for f in _PRED_META] + ["label"])
    table = pa.concat_tables(tables, promote_options="default")
    ts = table.column("ts")
    mask = None
    if since is not None:
        mask = pc.greater_equal(ts, pa.scalar(since, ts.type))
    if until is not None:
        before = pc.less(ts, pa.scalar(until, ts.type))
        mask = before if mask is None else pc.and_(mask, before)
    if mask is not None:
        table = table.filter(mask)
    if last is not None:
        table = table.sort_by("ts").slice(max(0, table.num_rows - last))
    frame = table.to_pandas()
    if "arm" not in frame:  # segments written before rollouts
        frame["arm"] = DEFAULT_ARM
    frame["arm"] = frame["arm"].fillna(DEFAULT_ARM)
    if "error" not in frame:
        frame["error"] = None
    if "event_ts" in frame:
        frame["event_ts"] = frame["event_ts"].fillna(frame["ts"])
    else:
        frame["event_ts"] = frame["ts"]
    if with_labels:
        labels = read_feedback(folder)
        frame = frame.merge(labels, on="request_id", how="left")
    return frame


def read_feedback(folder: str | Path) -> pd.DataFrame:
    """The latest label per request id."""
    tables = _read_streams(sorted(Path(folder).glob("fb-*.arrows")))
    if not tables:
        return pd.DataFrame({"request_id": pd.Series(dtype=str), "label": pd.Series(dtype=str),
                             "label_ts": pd.Series(dtype="datetime64[us, UTC]")})
    frame = pa.concat_tables(tables).to_pandas().sort_values("ts")
    frame = frame.drop_duplicates("request_id", keep="last")
    return frame.rename(columns={"ts": "label_ts"})
