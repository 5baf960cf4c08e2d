"""Materialization: the latest value per entity in a time window, into the online store.

The window's entities are cut into ``feature_store.chunks`` slices by a hash of their keys;
each slice is one DuckDB query (the latest row per entity in the window, ties broken by
created time) and one write, so memory holds one slice whatever the window's length, and DuckDB
spills past ``memory_limit_mb``. Each finished slice is recorded with its rows; a killed run
started again (without new --start/--end) resumes at the first unfinished slice. The end of
the last finished run is where the next one starts by default (incremental).

Crash points ``materialize.chunk_<i>`` (after slice i is written) let tests kill it midway.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from flywheel.core.crashpoints import crash_point
from flywheel.core.errors import FeatureStoreError
from flywheel.featurestore._catalog import ViewVersion
from flywheel.featurestore._codec import ValueCodec
from flywheel.featurestore._online import OnlineStore, Row
from flywheel.featurestore._source import duckdb_error, literal, quote, time_sql

if TYPE_CHECKING:
    import duckdb

__all__ = ["MaterializeResult", "codec_of", "column_of", "key_sql", "materialize_view",
           "table_of"]

_BATCH = 10_000


@dataclasses.dataclass(frozen=True)
class MaterializeResult:
    view: str
    version: int
    start: dt.datetime | None
    end: dt.datetime
    chunks: int
    resumed: int
    """Slices a killed earlier run had finished, not redone."""
    rows: int
    """Entities written (newer than what the store held)."""
    seconds: float


def table_of(entities: list[str]) -> str:
    """The online table of an entity-key set."""
    return "e_" + "__".join(entities)


def column_of(view: str, version: int) -> str:
    """The online column of a view version."""
    return f"{view}__v{version}"


def codec_of(view: ViewVersion) -> ValueCodec:
    """How the online store holds the values of a view version."""
    return ValueCodec([view.types[f] for f in view.spec.features])


def key_sql(entities: list[str]) -> str:
    """SQL for an entity's key as text: one key as is, several joined by U+001F."""
    parts = [f"CAST({quote(k)} AS VARCHAR)" for k in entities]
    return parts[0] if len(parts) == 1 else f"concat_ws(chr(31), {', '.join(parts)})"


def materialize_view(con: duckdb.DuckDBPyConnection, store: OnlineStore, view: ViewVersion, *,
                     chunks: int, start: dt.datetime | None = None,
                     end: dt.datetime | None = None,
                     on_chunk: Callable[[int, int], None] | None = None) -> MaterializeResult:
    """Write the latest value per entity of ``view`` with event time in [start, end).

    ``start`` defaults to where the last finished run ended (the beginning when none did),
    ``end`` to now. With neither given, an unfinished run of this view version resumes.
    """
    started = time.monotonic()
    column = column_of(view.name, view.version)
    table = table_of(view.spec.entities)
    open_key, done_key = f"open:{column}", f"done:{column}"
    pending = store.get_meta(open_key)
    if pending is not None and start is None and end is None:
        state = json.loads(pending)
        start = _parse(state["start"])
        end = _parse(state["end"]) or dt.datetime.now(dt.UTC)
        chunks = int(state["chunks"])
    else:
        if start is None:
            last = store.get_meta(done_key)
            start = _parse(last) if last else None
        end = end or dt.datetime.now(dt.UTC)
    run = f"{column}:{_text(start)}:{_text(end)}:{chunks}"
    store.set_meta(open_key, json.dumps({"start": _text(start), "end": _text(end),
                                         "chunks": chunks}))
    done = store.done_chunks(run)
    rows = 0
    for chunk in range(chunks):
        if chunk in done:
            continue
        rows += store.write_chunk(table, column, _chunk_rows(con, view, start, end, chunk,
                                                             chunks), run=run, chunk=chunk)
        crash_point(f"materialize.chunk_{chunk}")
        if on_chunk is not None:
            on_chunk(chunk, chunks)
    store.set_meta(done_key, _text(end))
    store.set_meta(open_key, None)
    return MaterializeResult(view=view.name, version=view.version, start=start, end=end,
                             chunks=chunks, resumed=len(done), rows=rows,
                             seconds=time.monotonic() - started)


def _chunk_rows(con: duckdb.DuckDBPyConnection, view: ViewVersion, start: dt.datetime | None,
                end: dt.datetime, chunk: int, chunks: int) -> Iterator[Row]:
    """The latest row per entity of one slice, streamed in Arrow batches (the store writes
    them as they come, so memory holds one batch)."""
    spec = view.spec
    keys = ", ".join(quote(k) for k in spec.entities)
    kind = view.types[spec.event_time]
    event = time_sql(quote(spec.event_time), kind)
    low = start
    if spec.ttl is not None:
        oldest = end - dt.timedelta(seconds=spec.ttl)
        low = oldest if low is None or oldest > low else low
    where = [f"__fw_t < {_ts(end)}", *([f"__fw_t >= {_ts(low)}"] if low is not None else [])]
    # The same bounds on the raw column too, where DuckDB can skip row groups by their stats.
    raw = [*_raw_bounds(quote(spec.event_time), kind, low, end),
           *([f"hash({keys}) % {chunks} = {chunk}"] if chunks > 1 else [])]
    created = ""
    rank = "__fw_t"
    if spec.created_time is not None:
        created = f", {time_sql(quote(spec.created_time), view.types[spec.created_time])} AS __fw_c"
        rank = "struct_pack(a := __fw_t, b := coalesce(__fw_c, TIMESTAMP '0001-01-01'))"
    features = ", ".join(quote(f) for f in spec.features)
    packed = ", ".join(f"{quote(f)} := {quote(f)}" for f in spec.features)
    inner_where = f" WHERE {' AND '.join(raw)}" if raw else ""
    # The latest row per entity as a grouped arg_max (a hash aggregate, which spills to disk
    # past the memory limit) rather than a window over every row of the slice.
    sql = (f"SELECT {key_sql(spec.entities)} AS __fw_k, epoch_us(max(__fw_t)) / 1e6 AS __fw_e, "
           f"arg_max(struct_pack({packed}), {rank}) AS __fw_v "
           f"FROM (SELECT {keys}, {event} AS __fw_t{created}, {features} "
           f"FROM {view.sql}{inner_where}) WHERE {' AND '.join(where)} GROUP BY {keys}")
    try:
        reader = con.sql(sql).to_arrow_reader(_BATCH)
        if reader is None:
            return
        encode = codec_of(view).encode
        names = spec.features
        for batch in reader:
            keys_, times = batch.column(0).to_pylist(), batch.column(1).to_pylist()
            values = batch.column(2).flatten()
            columns = [values[i].to_pylist() for i in range(len(names))]
            for key, when, *row in zip(keys_, times, *columns, strict=True):
                yield key, when, encode(row)
    except duckdb_error() as exc:
        raise FeatureStoreError(
            f"materializing view {view.name!r} failed in DuckDB: {str(exc).splitlines()[0]}; "
            "raise feature_store.memory_limit_mb or feature_store.chunks (smaller slices).") \
            from exc


def _raw_bounds(column: str, kind: str, low: dt.datetime | None, end: dt.datetime) -> list[str]:
    base = kind.split("(")[0].strip().upper()
    if base.startswith(("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")):
        literal_of = _tstz
    elif base.startswith("TIMESTAMP"):
        literal_of = _ts
    else:
        return []
    return [f"{column} < {literal_of(end)}",
            *([f"{column} >= {literal_of(low)}"] if low is not None else [])]


def _tstz(moment: dt.datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return f"TIMESTAMPTZ {literal(aware.astimezone(dt.UTC).isoformat(sep=' '))}"


def _ts(moment: dt.datetime) -> str:
    naive = moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return f"TIMESTAMP {literal(naive.isoformat(sep=' '))}"


def _text(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()


def _parse(text: str) -> dt.datetime | None:
    return None if text == "-" else dt.datetime.fromisoformat(text)
