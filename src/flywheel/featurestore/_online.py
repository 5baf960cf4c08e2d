"""Online stores: the latest feature values per entity, for serving.

Layout: one record per entity of an entity-key set (the views keyed on ``origin`` share one),
holding one value per view version (``weather__v2``: the features encoded by the view's
``ValueCodec``) and that value's event time (``weather__v2__t``). A lookup of one entity is then
one read whatever the number of views. A write keeps the newer value: an older window
materialized later never overwrites a newer one.

Values are encoded by the view's ``ValueCodec`` (``_codec``): packed numbers or JSON arrays.
SQLite also keeps each entity's packed values side by side in one column (``_fw_record``, a
slot per view version in the order they were first written), so a lookup of views written
side by side reads one slice of one column however many views it takes.

Materialization records each finished chunk with the chunk's rows (SQLite: in the same
transaction), so a killed run resumes at the first unfinished chunk.

Backends: ``SqliteOnlineStore`` (the embedded default, a file in ``.flywheel/features/``) and
``RedisOnlineStore`` (``redis://``, ``pip install flywheel[redis]``), chosen by
``create_online_store``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flywheel.core.errors import FeatureStoreError
from flywheel.featurestore._codec import is_packed
from flywheel.featurestore._online_redis import RedisOnlineStore

if TYPE_CHECKING:
    from flywheel.core.spec import ProjectSpec
    from flywheel.core.workspace import Workspace

__all__ = ["OnlineStore", "Row", "SqliteOnlineStore", "create_online_store"]

Row = tuple[str, float, bytes]
"""An entity's key (text), its value's event time (epoch seconds) and the value (its view's
``ValueCodec`` encoding)."""

class OnlineStore(Protocol):
    """What materialization writes and serving reads."""

    where: str
    """The store, for messages (a path or a URL without its password)."""

    def write_chunk(self, table: str, column: str, rows: Iterable[Row], *, run: str,
                    chunk: int) -> int:
        """Write ``rows`` (newer values win; consumed as they come) and mark ``chunk`` of
        ``run`` done; the number of rows that changed."""
        ...

    def done_chunks(self, run: str) -> set[int]:
        """The chunks of ``run`` already written."""
        ...

    def read(self, table: str, columns: Sequence[str],
             keys: Sequence[str]) -> list[list[bytes | None]]:
        """Per key, per column: the stored value or None."""
        ...

    def read_joined(self, table: str, packed: Sequence[str], arrays: Sequence[str],
                    keys: Sequence[str]) -> list[tuple[bytes, bytes | str] | None]:
        """Per key, one read of two column lists laid end to end: the values of ``packed``
        joined as bytes (b"" with none), and the JSON arrays of ``arrays`` as one array
        ("[]" with none); or None if the key lacks a value in any of the columns. Where a
        packed column's value is absent or not packed, a store may give zero bytes or fewer
        bytes instead of None (the caller checks the length and each value's leading byte)."""
        ...

    def get_meta(self, name: str) -> str | None: ...

    def set_meta(self, name: str, value: str | None) -> None: ...

    def close(self) -> None: ...


class SqliteOnlineStore:
    """The online store in one SQLite file (WAL: serving reads while materialization writes).

    Args:
        path: The database file (created with its folder).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self._local = threading.local()
        self._columns: dict[str, tuple[float, frozenset[str]]] = {}
        self._statements: dict[tuple[str, tuple[str, ...], int], str] = {}
        self._joined: dict[tuple[str, tuple[str, ...], tuple[str, ...], int], str] = {}
        """The joined read per shape, once every column it reads exists (columns are only
        ever added, so it stays valid)."""

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                con = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                # Reads map the file instead of copying each page through a read() call
                # (writes do not: see write_chunk).
                con.execute(f"PRAGMA mmap_size={_READ_MMAP_BYTES}")
                con.execute("CREATE TABLE IF NOT EXISTS _fw_chunks (run TEXT, chunk INTEGER, "
                            "PRIMARY KEY (run, chunk))")
                con.execute("CREATE TABLE IF NOT EXISTS _fw_meta (name TEXT PRIMARY KEY, "
                            "value TEXT)")
            except sqlite3.Error as exc:
                raise FeatureStoreError(f"the online store {self.path} cannot be opened "
                                        f"({exc}); check that the folder is writable.") from exc
            self._local.con = con
        return con

    def _ensure(self, con: sqlite3.Connection, table: str, column: str) -> None:
        con.execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} (key TEXT PRIMARY KEY)")
        have = {row[1] for row in con.execute(f"PRAGMA table_info({_q(table)})")}
        for name, kind in ((column, "BLOB"), (column + "__t", "REAL"), (_RECORD, "BLOB")):
            if name not in have:
                con.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(name)} {kind}")

    def write_chunk(self, table: str, column: str, rows: Iterable[Row], *, run: str,
                    chunk: int) -> int:
        # Packed values go to the entity's record too, at the column's slot (zero bytes when a
        # newer value is not packed), so a lookup of views side by side reads one slice of it.
        # (`||` makes text, which substr would count in characters: hence the casts to BLOB.)
        con = self._con()
        t = _q(column + "__t")
        head = f"INSERT INTO {_q(table)} (key, {_q(column)}, {t}"
        update = (f"ON CONFLICT(key) DO UPDATE SET {_q(column)} = excluded.{_q(column)}, "
                  f"{t} = excluded.{t}")
        guard = f"WHERE {t} IS NULL OR excluded.{t} >= {t}"
        plain = f"{head}) VALUES (?1, ?2, ?3) {update} {guard}"
        try:
            # Pages touched through the map count as the process's resident memory, and a
            # chunk's upserts touch every page of the entities they write: materializing
            # 1 M entities peaked at 650 MB mapped, 480 MB not. Reads map it again after.
            con.execute("PRAGMA mmap_size=0")
            con.execute("BEGIN IMMEDIATE")
            try:
                self._ensure(con, table, column)
                slots = self._slots(con, table)
                slot = slots.get(column)
                changed = 0
                items = iter(rows)
                while part := list(itertools.islice(items, 10_000)):
                    if slot is None:
                        first = next((v for _, _, v in part if is_packed(v)), None)
                        if first is not None:
                            slot = self._assign(con, table, column, len(first), slots)
                    before = con.total_changes
                    if slot is None:
                        con.executemany(plain, ((key, value, when) for key, when, value in part))
                        changed += con.total_changes - before
                        continue
                    at, size = slot
                    record = f"coalesce({_q(_RECORD)}, x'')"
                    sql = (f"{head}, {_q(_RECORD)}) VALUES (?1, ?2, ?3, "
                           f"CAST(zeroblob({at}) || ?4 AS BLOB)) {update}, {_q(_RECORD)} = CAST("
                           f"substr(CAST({record} || zeroblob(max(0, {at} - length({record}))) AS "
                           f"BLOB), 1, {at}) || ?4 || substr({record}, {at + size + 1}) AS BLOB) "
                           f"{guard}")
                    blank = bytes(size)
                    con.executemany(sql, (
                        (key, value, when, value if len(value) == size and is_packed(value)
                         else blank) for key, when, value in part))
                    changed += con.total_changes - before
                con.execute("INSERT OR IGNORE INTO _fw_chunks VALUES (?, ?)", (run, chunk))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise FeatureStoreError(f"writing to the online store {self.path} failed ({exc}); "
                                    "nothing of this chunk was kept, run materialize again.") \
                from exc
        finally:
            with contextlib.suppress(sqlite3.Error):  # a broken connection said so above
                con.execute(f"PRAGMA mmap_size={_READ_MMAP_BYTES}")
        return changed

    @staticmethod
    def _slots(con: sqlite3.Connection, table: str) -> dict[str, tuple[int, int]]:
        """Where each packed column's values sit in the entity records of ``table``."""
        row = con.execute("SELECT value FROM _fw_meta WHERE name = ?",
                          (f"record:{table}",)).fetchone()
        return {} if row is None else {c: (int(a), int(n))
                                       for c, (a, n) in json.loads(row[0]).items()}

    @staticmethod
    def _assign(con: sqlite3.Connection, table: str, column: str, size: int,
                slots: dict[str, tuple[int, int]]) -> tuple[int, int]:
        """A slot for ``column`` after the others (in the write's transaction)."""
        slots[column] = (max((a + n for a, n in slots.values()), default=0), size)
        con.execute("INSERT OR REPLACE INTO _fw_meta VALUES (?, ?)",
                    (f"record:{table}", json.dumps(slots)))
        return slots[column]

    def done_chunks(self, run: str) -> set[int]:
        rows = self._con().execute("SELECT chunk FROM _fw_chunks WHERE run = ?", (run,))
        return {int(row[0]) for row in rows}

    def read(self, table: str, columns: Sequence[str],
             keys: Sequence[str]) -> list[list[bytes | None]]:
        con = self._con()
        present = self._present(con, table, columns)
        wanted = [c for c in columns if c in present]
        if not wanted:
            return [[None] * len(columns) for _ in keys]
        index = [wanted.index(c) if c in present else -1 for c in columns]
        found: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            shape = (table, tuple(wanted), len(part))
            sql = self._statements.get(shape)
            if sql is None:
                where = "key = ?" if len(part) == 1 else f"key IN ({', '.join('?' * len(part))})"
                sql = (f"SELECT key, {', '.join(_q(c) for c in wanted)} FROM {_q(table)} "
                       f"WHERE {where}")
                self._statements[shape] = sql
            for row in con.execute(sql, part):
                found[row[0]] = row[1:]
        out: list[list[bytes | None]] = []
        for key in keys:
            row = found.get(key)
            out.append([None] * len(columns) if row is None else
                       [row[i] if i >= 0 else None for i in index])
        return out

    def read_joined(self, table: str, packed: Sequence[str], arrays: Sequence[str],
                    keys: Sequence[str]) -> list[tuple[bytes, bytes | str] | None]:
        # SQLite lays the values end to end itself: two values per entity cross into Python
        # whatever the number of views, so a lookup costs about the same for 1 view or 10.
        con = self._con()
        if len(keys) == 1:
            sql = self._joined.get((table, tuple(packed), tuple(arrays), 1))
            if sql is None:
                sql = self._joined_sql(con, table, packed, arrays, 1)
                if sql is None:
                    return [None]
            row = con.execute(sql, keys).fetchone()
            return [None if row is None or row[0] is None or row[1] is None else row]
        found: dict[str, tuple[bytes, bytes | str]] = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            sql = self._joined.get((table, tuple(packed), tuple(arrays), len(part))) or \
                self._joined_sql(con, table, packed, arrays, len(part))
            if sql is None:
                return [None] * len(keys)
            for key, laid, array in con.execute(sql, part):
                if laid is not None and array is not None:
                    found[key] = (laid, array)
        return [found.get(key) for key in keys]

    def _joined_sql(self, con: sqlite3.Connection, table: str, packed: Sequence[str],
                    arrays: Sequence[str], count: int) -> str | None:
        """The joined read of ``count`` keys (kept), or None while a column does not exist."""
        columns = [*packed, *arrays]
        if not set(columns) <= self._present(con, table, columns):
            return None
        slots = self._slots(con, table)
        span = _side_by_side([slots.get(c) for c in packed])
        if span is not None:
            laid = f"substr({_q(_RECORD)}, {span[0] + 1}, {span[1]})"
        elif packed:
            laid = f"CAST({' || '.join(_q(c) for c in packed)} AS BLOB)"
        else:
            laid = "x''"
        array = ("'[' || " + " || ',' || ".join(f"substr({_q(c)}, 2, length({_q(c)}) - 2)"
                                                 for c in arrays) + " || ']'") \
            if arrays else "'[]'"
        where = "key = ?" if count == 1 else f"key IN ({', '.join('?' * count)})"
        head = "" if count == 1 else "key, "
        sql = f"SELECT {head}{laid}, {array} FROM {_q(table)} WHERE {where}"
        self._joined[(table, tuple(packed), tuple(arrays), count)] = sql
        return sql

    def _present(self, con: sqlite3.Connection, table: str,
                 columns: Sequence[str]) -> frozenset[str]:
        checked, present = self._columns.get(table, (0.0, frozenset()))
        now = time.monotonic()
        if not set(columns) <= present and now - checked > 2.0:
            present = frozenset(row[1] for row in con.execute(f"PRAGMA table_info({_q(table)})"))
            self._columns[table] = (now, present)
        return present

    def get_meta(self, name: str) -> str | None:
        row = self._con().execute("SELECT value FROM _fw_meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str | None) -> None:
        con = self._con()
        if value is None:
            con.execute("DELETE FROM _fw_meta WHERE name = ?", (name,))
        else:
            con.execute("INSERT OR REPLACE INTO _fw_meta VALUES (?, ?)", (name, value))

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def create_online_store(spec: ProjectSpec, workspace: Workspace) -> OnlineStore:
    """The online store ``feature_store.online`` names."""
    online = spec.feature_store.online
    if online.startswith(("redis://", "rediss://")):
        return RedisOnlineStore(online, spec.name)
    if online.startswith("sqlite:///"):
        return SqliteOnlineStore(spec.resolve(online.removeprefix("sqlite:///")))
    return SqliteOnlineStore(workspace.root / "features" / "online.db")


_READ_MMAP_BYTES = 1 << 30
"""How much of the SQLite file reads map (SQLite's mmap_size)."""

_RECORD = "_fw_record"
"""The column holding an entity's packed values side by side (``record:<table>`` in _fw_meta
says where each column's are)."""


def _side_by_side(slots: list[tuple[int, int] | None]) -> tuple[int, int] | None:
    """Where ``slots`` (offset, size) lie one after the other in the record (offset, size),
    or None if they do not."""
    if not slots or slots[0] is None:
        return None
    end = slots[0][0]
    for slot in slots:
        if slot is None or slot[0] != end:
            return None
        end += slot[1]
    return slots[0][0], end - slots[0][0]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
