"""Reading a feature view's source with DuckDB: the relation, its column types, its checks.

Event times of any readable type become one naive-UTC ``TIMESTAMP``: timestamps with a zone
are converted to UTC, text is parsed (without an offset it is read as UTC), integers and
floats are seconds since the epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.core.errors import FeatureStoreError
from flywheel.core.spec import FeatureViewSpec

if TYPE_CHECKING:
    import duckdb

__all__ = ["TIME_TYPES", "check_columns", "check_times", "connect", "duckdb_error", "key_kind",
           "literal",
           "quote", "source_sql", "time_sql", "view_types"]

_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT")
TIME_TYPES = ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS",
              "TIMESTAMP_S", "DATE", "VARCHAR", *_INTEGER, "FLOAT", "DOUBLE")


def connect(memory_limit_mb: int, temp_directory: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC with a memory limit (spilling to ``temp_directory``)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # it would write into --json output
    # Joins order their output themselves; not keeping scan order lets DuckDB spill more.
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
    if temp_directory is not None:
        temp_directory.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {literal(str(temp_directory))}")
    return con


def duckdb_error() -> type[Exception]:
    """DuckDB's error base class (imported when needed)."""
    import duckdb

    error: type[Exception] = duckdb.Error
    return error


def quote(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def source_sql(view: FeatureViewSpec, root: Path) -> str:
    """The FROM clause that reads ``view``'s source (a file, a folder of files, or a query).

    Raises:
        FeatureStoreError: If the file or folder does not exist or holds no Parquet or CSV.
    """
    if view.query is not None:
        return f"({view.query})"
    if view.source is None:  # FeatureViewSpec refuses this; kept for the type checker
        raise FeatureStoreError(f"view {view.name!r} has no source")
    path = Path(view.source).expanduser()
    path = path if path.is_absolute() else root / path
    if path.is_dir():
        for pattern, reader in (("*.parquet", "read_parquet"), ("*.csv", "read_csv_auto")):
            if any(path.rglob(pattern)):
                return f"{reader}({literal(str(path / '**' / pattern))})"
        raise FeatureStoreError(f"view {view.name!r}: the folder {path} holds no .parquet or "
                                ".csv files; point `source` at the view's files.")
    if not path.is_file():
        raise FeatureStoreError(f"view {view.name!r}: its source {path} does not exist; fix "
                                "feature_store.views[].source in flywheel.yaml.")
    suffix = path.suffix.lower()
    reader = "read_parquet" if suffix in (".parquet", ".pq") else "read_csv_auto"
    return f"{reader}({literal(str(path))})"


def view_types(con: duckdb.DuckDBPyConnection, sql: str, what: str) -> dict[str, str]:
    """Column name -> DuckDB type of the relation ``sql``.

    Raises:
        FeatureStoreError: If DuckDB cannot read it.
    """
    import duckdb

    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()
    except duckdb.Error as exc:
        raise FeatureStoreError(f"{what} cannot be read: {exc}".rstrip(".") + "; check the "
                                "file or query.") from exc
    return {str(row[0]): str(row[1]) for row in rows}


def check_columns(view: FeatureViewSpec, types: dict[str, str]) -> None:
    """Every declared column exists, keys are integers or text, times are times.

    Raises:
        FeatureStoreError: Naming the missing or mistyped columns and what the source has.
    """
    missing = [c for c in view.columns if c not in types]
    if missing:
        raise FeatureStoreError(
            f"view {view.name!r}: its source lacks the declared column(s) {missing}; it has "
            f"{sorted(types)}. Fix the view's entities, event_time, created_time or features.")
    for key in view.entities:
        if key_kind(types[key]) is None:
            raise FeatureStoreError(
                f"view {view.name!r}: entity key {key!r} is {types[key]}; keys must be integers "
                "or text. Cast it in a `query`, or key the view on another column.")
    for column in (view.event_time, view.created_time):
        if column is not None and not _is_time(types[column]):
            raise FeatureStoreError(
                f"view {view.name!r}: {column!r} is {types[column]}, not a time; use a "
                "timestamp, a date, ISO text or seconds since the epoch.")


def check_times(con: duckdb.DuckDBPyConnection, sql: str, column: str, kind: str,
                what: str) -> None:
    """Every value of ``column`` is a readable time.

    Raises:
        FeatureStoreError: With how many values are not, and an example.
    """
    expression = time_sql(quote(column), kind)
    bad = con.execute(f"SELECT count(*), any_value({quote(column)}::VARCHAR) FROM {sql} "
                      f"WHERE {expression} IS NULL").fetchall()[0]
    if bad is not None and bad[0]:
        example = "null" if bad[1] is None else repr(bad[1])
        raise FeatureStoreError(
            f"{what}: {bad[0]} value(s) of {column!r} are not a time (such as {example}); "
            "write ISO times (2013-01-01T05:00:00Z), timestamps or epoch seconds, and give "
            "every row one.")


def time_sql(expression: str, kind: str) -> str:
    """SQL turning ``expression`` of DuckDB type ``kind`` into a naive-UTC TIMESTAMP (NULL
    where it cannot be read)."""
    base = _base(kind)
    if _zoned(base):
        return f"timezone('UTC', CAST({expression} AS TIMESTAMPTZ))"
    if base == "VARCHAR":
        return f"timezone('UTC', TRY_CAST({expression} AS TIMESTAMPTZ))"
    if base in _INTEGER or base in ("FLOAT", "DOUBLE"):
        return f"make_timestamp(CAST({expression} * 1000000 AS BIGINT))"
    return f"CAST({expression} AS TIMESTAMP)"


def key_kind(kind: str) -> str | None:
    """integer, text or None (not usable as an entity key) for a DuckDB type."""
    base = _base(kind)
    if base in _INTEGER:
        return "integer"
    if base == "VARCHAR":
        return "text"
    return None


def _zoned(base: str) -> bool:
    return base.startswith("TIMESTAMPTZ") or base.startswith("TIMESTAMP WITH TIME ZONE")


def _is_time(kind: str) -> bool:
    base = _base(kind)
    return base.startswith("TIMESTAMP") or base in TIME_TYPES


def _base(kind: str) -> str:
    return kind.split("(")[0].strip().upper()
