"""Point-in-time joins: each spine row gets, from each view, the latest row of its entity at
or before its event time, within the view's TTL, ties broken by created time.

DuckDB's ``ASOF LEFT JOIN ... ON key = key AND spine_time >= view_time`` is the engine: it
never takes a later row. The join runs narrow: each view is first copied into a temporary
table (its created-time tie-break applied there, on the view's rows rather than the spine's),
and the ASOF JOIN carries only the spine's row number, keys and time, giving for each spine row
the number of the view row it takes (-1: none, or outside the TTL). Views keyed alike share
one ASOF JOIN: their rows are merged per entity and time, each carrying every view's latest
row so far and that row's time (the TTL is checked against it), so the spine is sorted once
per key rather than once per view. The features are then gathered by those numbers
(``_gather``), in the spine's order, without sorting the wide result: ten million spine rows
cost a narrow join, a gather and (for ``join_to_parquet``) a streamed write.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.core.errors import FeatureStoreError
from flywheel.featurestore._catalog import ViewVersion
from flywheel.featurestore._gather import FeatureGather
from flywheel.featurestore._source import (
    check_times,
    duckdb_error,
    key_kind,
    literal,
    quote,
    time_sql,
    view_types,
)

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import numpy.typing as npt
    import pandas as pd
    import pyarrow as pa

__all__ = ["JoinReport", "join_frame", "join_to_parquet"]

ROW = "__fw_row"
_TIME = "__fw_t"
_BATCH_ROWS = 1_000_000


@dataclasses.dataclass(frozen=True)
class JoinReport:
    """How many spine rows each view matched (a row within the TTL), of ``rows``."""

    rows: int
    matched: dict[str, int]


def _narrow_join(con: duckdb.DuckDBPyConnection, spine: str, rows: int, event_time: str,
                 views: list[ViewVersion], *, check: bool = True) -> FeatureGather:
    """Join ``views`` to the relation ``spine`` (``rows`` rows, with a ``__fw_row`` column
    numbering them from 0) and say which view row each spine row takes.

    Raises:
        FeatureStoreError: If a key column is missing from the spine or of another type than
            the view's, a name is used twice, an event time cannot be read, or DuckDB fails.
    """
    spine_types = view_types(con, spine, "the spine")
    if event_time not in spine_types:
        raise FeatureStoreError(f"the spine has no event-time column {event_time!r} "
                                f"(data.spine.event_time); it has {sorted(spine_types)}.")
    if check:
        check_times(con, spine, event_time, spine_types[event_time], "the spine")
    seen = {c: "the spine" for c in spine_types if c != ROW}
    keys_used: list[str] = []
    for view in views:
        for key in view.spec.entities:
            _check_key(key, spine_types, view)
            if key not in keys_used:
                keys_used.append(key)
        for feature in view.spec.features:
            if feature in seen:
                raise FeatureStoreError(
                    f"feature {feature!r} of view {view.name!r} is also a column of "
                    f"{seen[feature]}; rename one (a `query` can alias it).")
            seen[feature] = f"view {view.name!r}"
        if check:
            check_times(con, view.sql, view.spec.event_time, view.types[view.spec.event_time],
                        f"view {view.name!r}")
    spine_keys = "".join(f"{quote(k)}, " for k in keys_used)
    ctes = [f"spine AS (SELECT {spine_keys}{ROW}, "
            f"{time_sql(quote(event_time), spine_types[event_time])} AS {_TIME} FROM {spine})"]
    selects, joins, tables = [f"spine.{ROW}"], [], []
    try:
        for i, view in enumerate(views):
            tables.append(_copy_view(con, view, f"__fw_view{i}"))
        for g, members in enumerate(_key_groups(views)):
            alias = f"m{g}"
            keys = views[members[0]].spec.entities
            ctes.extend(_merged_rows(alias, keys, {i: tables[i] for i in members}))
            on = " AND ".join(f"spine.{quote(k)} = {alias}.{quote(k)}" for k in keys)
            joins.append(f"ASOF LEFT JOIN {alias} ON {on} AND spine.{_TIME} >= {alias}.{_TIME}")
            for i in members:
                ttl = views[i].spec.ttl
                within = "" if ttl is None else \
                    (f" AND {alias}.__fw_t{i} >= spine.{_TIME} - to_microseconds("
                     f"{int(ttl * 1_000_000)})")
                selects.append(f"CASE WHEN {alias}.__fw_i{i} IS NOT NULL{within} "
                               f"THEN {alias}.__fw_i{i} ELSE -1 END AS __fw_i{i}")
        sql = f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM spine {' '.join(joins)}"
        index = _scatter(con.sql(sql).to_arrow_reader(_BATCH_ROWS), rows, len(views))
        features = [con.sql(f"SELECT {', '.join(quote(f) for f in view.spec.features)} "
                            f"FROM {table} ORDER BY rowid").to_arrow_table()
                    for view, table in zip(views, tables, strict=True)]
    except duckdb_error() as exc:
        raise FeatureStoreError(f"the point-in-time join failed in DuckDB: "
                                f"{str(exc).splitlines()[0]}; raise "
                                "feature_store.memory_limit_mb.") from exc
    finally:
        for table in tables:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    return FeatureGather(rows=rows, index=index, features=features)


def _scatter(reader: pa.RecordBatchReader, rows: int,
             views: int) -> list[npt.NDArray[np.int64]]:
    """Per view, the view row each spine row takes, in spine order, from the join's batches
    (a spine row number, then one view row number per view, in any order of spine rows).

    Raises:
        FeatureStoreError: If the join gave more or fewer rows than ``rows``, or a spine row
            number outside them.
    """
    import numpy as np

    # Batch by batch, so the join's result is never held whole; each spine row comes exactly
    # once from an ASOF LEFT JOIN, so every slot is written.
    index = [np.empty(rows, dtype=np.int64) for _ in range(views)]
    seen = 0
    for batch in reader:
        numbers = batch.column(0).to_numpy()
        if len(numbers) and (numbers.min() < 0 or numbers.max() >= rows):
            break
        for chosen, column in zip(index, batch.columns[1:], strict=True):
            chosen[numbers] = column.to_numpy()
        seen += len(numbers)
    if seen != rows:
        raise FeatureStoreError(f"the point-in-time join gave {seen:,} rows for a spine of "
                                f"{rows:,}; the spine changed while it was read: join it again.")
    return index


def _key_groups(views: list[ViewVersion]) -> list[list[int]]:
    """The views' numbers grouped by entity key (in any order): one ASOF JOIN per group."""
    groups: dict[frozenset[str], list[int]] = {}
    for i, view in enumerate(views):
        groups.setdefault(frozenset(view.spec.entities), []).append(i)
    return list(groups.values())


def _merged_rows(alias: str, keys: list[str], tables: dict[int, str]) -> list[str]:
    """CTEs ending in ``alias``: one row per entity and time at which any of ``tables`` (by
    view number) has a row, with each view's latest row number so far (``__fw_i<n>``) and
    that row's time (``__fw_t<n>``, for its TTL), carried forward from earlier times.

    One ASOF JOIN against these rows answers for every view keyed alike, so the spine is
    sorted once per key rather than once per view.
    """
    key_list = ", ".join(quote(k) for k in keys)
    if len(tables) == 1:
        ((i, table),) = tables.items()
        return [f"{alias} AS (SELECT {key_list}, {_TIME}, rowid AS __fw_i{i}, "
                f"{_TIME} AS __fw_t{i} FROM {table})"]
    # With a created time, each table holds one row per entity and time (_copy_view); without
    # one, of rows alike in entity and time (which the view leaves undecided) the last read.
    # A row without a time is never joined (as the ASOF JOIN never joins it), nor carried.
    union = " UNION ALL BY NAME ".join(f"SELECT {key_list}, {_TIME}, rowid AS __fw_i{i} "
                                       f"FROM {table} WHERE {_TIME} IS NOT NULL"
                                       for i, table in tables.items())
    latest = ", ".join(f"max(__fw_i{i}) AS __fw_i{i}" for i in tables)
    carried = ", ".join(
        f"last_value(__fw_i{i} IGNORE NULLS) OVER w AS __fw_i{i}, last_value(CASE WHEN "
        f"__fw_i{i} IS NOT NULL THEN {_TIME} END IGNORE NULLS) OVER w AS __fw_t{i}"
        for i in tables)
    return [f"{alias}_rows AS (SELECT {key_list}, {_TIME}, {latest} FROM ({union}) "
            f"GROUP BY {key_list}, {_TIME})",
            f"{alias} AS (SELECT {key_list}, {_TIME}, {carried} FROM {alias}_rows WINDOW w AS "
            f"(PARTITION BY {key_list} ORDER BY {_TIME} ROWS UNBOUNDED PRECEDING))"]


def _copy_view(con: duckdb.DuckDBPyConnection, view: ViewVersion, table: str) -> str:
    """Copy ``view``'s keys, time and features into the temporary ``table`` (one row per
    entity and time: the latest created), numbered by ``rowid``."""
    spec = view.spec
    keys = ", ".join(quote(k) for k in spec.entities)
    features = ", ".join(quote(f) for f in spec.features)
    body = (f"SELECT {keys}, {time_sql(quote(spec.event_time), view.types[spec.event_time])}"
            f" AS {_TIME}, {features} FROM {view.sql}")
    if spec.created_time is not None:
        created = time_sql(quote(spec.created_time), view.types[spec.created_time])
        body += (f" QUALIFY row_number() OVER (PARTITION BY {keys}, {_TIME} "
                 f"ORDER BY {created} DESC NULLS LAST) = 1")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {body}")
    return table


def _report(views: list[ViewVersion], matches: FeatureGather) -> JoinReport:
    """The join's counts.

    Raises:
        FeatureStoreError: If spine rows exist but none matched any view.
    """
    matched = {view.name: matches.matched(i) for i, view in enumerate(views)}
    if views and matches.rows and not any(matched.values()):
        names = ", ".join(repr(v.name) for v in views)
        raise FeatureStoreError(
            f"no spine row matched any feature view ({names}) within its TTL: check that the "
            "spine's entity keys hold the views' values (same spelling and type) and that its "
            "event times fall after the views' first rows and within their ttl.")
    return JoinReport(rows=matches.rows, matched=matched)


def join_frame(con: duckdb.DuckDBPyConnection, spine: pd.DataFrame, event_time: str,
               views: list[ViewVersion]) -> tuple[pd.DataFrame, JoinReport]:
    """``spine`` with the views' features joined as of each row's event time.

    Raises:
        FeatureStoreError: As the join, and if no spine row matches any view.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_pandas(spine, preserve_index=False)
    table = table.append_column(ROW, pa.array(np.arange(len(spine), dtype=np.int64)))
    con.register("__fw_spine", table)
    try:
        matches = _narrow_join(con, "__fw_spine", len(spine), event_time, views)
    finally:
        con.unregister("__fw_spine")
    report = _report(views, matches)
    features = pa.table(dict(matches.columns(0, matches.rows))).to_pandas()
    joined = pd.concat([spine.reset_index(drop=True), features], axis=1)
    return joined, report


def join_to_parquet(con: duckdb.DuckDBPyConnection, spine: Path, event_time: str,
                    views: list[ViewVersion], output: Path) -> JoinReport:
    """Join the views to the spine file ``spine`` (Parquet) and write the result to
    ``output`` (Parquet), a million rows at a time, in the spine's order.

    Raises:
        FeatureStoreError: As the join, and if no spine row matches any view.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    relation = f"read_parquet({literal(str(spine))}, file_row_number = true)"
    spine_sql = f"(SELECT * EXCLUDE (file_row_number), file_row_number AS {ROW} FROM {relation})"
    source = pq.ParquetFile(spine)
    matches = _narrow_join(con, spine_sql, source.metadata.num_rows, event_time, views,
                           check=False)
    report = _report(views, matches)
    batches = source.iter_batches(batch_size=_BATCH_ROWS) if matches.rows else \
        iter([source.schema_arrow.empty_table()])
    first, writer = 0, None
    pending: Future[None] | None = None
    # One thread writes a batch while this one gathers the next (Arrow releases the GIL).
    with ThreadPoolExecutor(1, thread_name_prefix="flywheel-pit-write") as pool:
        try:
            for number, batch in enumerate(batches):
                last = first + batch.num_rows
                # This slot's buffers last held the batch before the previous one, whose
                # write ended (waited for below) before the previous one was submitted.
                columns = [*zip(batch.schema.names, batch.columns, strict=True),
                           *matches.columns(first, last, slot=number)]
                part = pa.table(dict(columns))
                if writer is None:
                    # Features repeat a view row over many spine rows, but dictionary-encoding
                    # floats costs more time than it saves space; text keeps its dictionaries.
                    text = [f.name for f in part.schema if not pa.types.is_floating(f.type)]
                    writer = pq.ParquetWriter(output, part.schema, use_dictionary=text)
                if pending is not None:
                    pending.result()
                pending = pool.submit(writer.write_table, part)
                first = last
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                pending.exception()  # the write in flight ends before the file closes
            if writer is not None:
                writer.close()
    return report


def _check_key(key: str, spine_types: dict[str, str], view: ViewVersion) -> None:
    if key not in spine_types:
        raise FeatureStoreError(
            f"the spine has no column {key!r}, the entity key of view {view.name!r}; add it "
            "to the spine or drop the view from data.spine.views.")
    spine_kind, view_kind = key_kind(spine_types[key]), key_kind(view.types[key])
    if spine_kind != view_kind:
        raise FeatureStoreError(
            f"entity key {key!r} is {spine_types[key]} in the spine but {view.types[key]} in "
            f"view {view.name!r}; give both the same type (integers or text).")
