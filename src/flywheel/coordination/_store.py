"""The coordination database: one bounded engine per URI and process, its tables, and its
failures as :class:`~flywheel.core.errors.CoordinationError`.

Tables (created on first use, under an advisory lock so that hosts starting together do not
race on the DDL), each keyed by ``scope`` (the registered model's name), so that several
projects can share one database:

- ``flywheel_lock_holders``: who holds each named lock (the lock itself is an advisory lock);
- ``flywheel_leases``: the leader leases, with their expiry in the database's clock;
- ``flywheel_state``: small state documents (the retraining loop's);
- ``flywheel_audit``: the audit log, one row per line, with its sequence and checksum.

SQLAlchemy and the driver (psycopg) are imported here only, when a shared store is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from flywheel.core.database import classify_failure
from flywheel.core.errors import CoordinationError, FlywheelError
from flywheel.core.uris import expand_env, mask_uri, redact

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = ["SharedStore", "advisory_key"]

_T = TypeVar("_T")
_DDL_KEY = 0x666C7977_68656C31  # "flywhel1": serializes table creation across hosts
_DDL = (
    """CREATE TABLE IF NOT EXISTS flywheel_lock_holders (
        scope text NOT NULL, name text NOT NULL, holder text NOT NULL,
        since timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, name))""",
    """CREATE TABLE IF NOT EXISTS flywheel_leases (
        scope text NOT NULL, name text NOT NULL, token text NOT NULL, holder text NOT NULL,
        expires_at timestamptz NOT NULL, PRIMARY KEY (scope, name))""",
    """CREATE TABLE IF NOT EXISTS flywheel_state (
        scope text NOT NULL, name text NOT NULL, body text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, name))""",
    """CREATE TABLE IF NOT EXISTS flywheel_audit (
        scope text NOT NULL, seq bigint NOT NULL, sha256 text NOT NULL, line text NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, seq))""",
)


def advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for ``parts`` (stable across hosts and runs)."""
    digest = hashlib.sha256("\x1f".join(("flywheel", *parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SharedStore:
    """A bounded SQLAlchemy engine on the coordination database, its tables made once.

    Args:
        uri: The PostgreSQL URL as written (``${VAR}`` expands when the engine is made).
        pool_size: Most connections this process opens (no overflow).
        connect_timeout: Seconds a connection may take before it is reported.
    """

    _shared: dict[tuple[str, int, int], SharedStore] = {}
    _shared_lock = threading.Lock()

    def __init__(self, uri: str, *, pool_size: int, connect_timeout: int) -> None:
        self.uri = uri
        self.where = mask_uri(uri)
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._engine: Engine | None = None
        self._ready = False
        self._lock = threading.Lock()

    @classmethod
    def for_uri(cls, uri: str, *, pool_size: int, connect_timeout: int) -> SharedStore:
        """One store per URI and pool bound in a process, so its pool bound holds for all."""
        key = (uri, pool_size, connect_timeout)
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(uri, pool_size=pool_size, connect_timeout=connect_timeout)
            return cls._shared[key]

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
            return self._engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection with the tables in place; database failures become CoordinationError.

        Raises:
            CoordinationError: If the database cannot be reached or refuses a statement.
        """
        import sqlalchemy

        with self.translated():
            self._ensure_tables()
            conn = self.engine.connect()
        try:
            yield conn  # the caller's own errors pass through untranslated
        finally:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.close()

    def run(self, work: Callable[[Connection], _T]) -> _T:
        """``work`` in one transaction (committed when it returns).

        Raises:
            CoordinationError: If the database cannot be reached or refuses a statement.
        """
        with self.connect() as conn, self.translated(), conn.begin():
            return work(conn)

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Turn SQLAlchemy's errors inside the block into a CoordinationError."""
        import sqlalchemy

        try:
            yield
        except sqlalchemy.exc.TimeoutError:
            raise CoordinationError(self.where, (
                f"all {self.pool_size} connections of this process are in use"), hint=(
                "Raise coordination.pool_size, or look for a command holding many locks at "
                "once.")) from None
        except sqlalchemy.exc.DBAPIError as exc:
            failure = classify_failure(exc, self.uri, timeout_s=float(self.connect_timeout))
            raise CoordinationError(self.where, failure.reason, hint=failure.hint) from None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise CoordinationError(self.where, redact(str(exc)).splitlines()[0]) from None

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _create_engine(self) -> Engine:
        try:
            import sqlalchemy
        except ModuleNotFoundError:  # pragma: no cover - SQLAlchemy comes with MLflow
            raise FlywheelError("shared coordination needs SQLAlchemy and psycopg; "
                                "pip install flywheel[postgres].") from None
        url = expand_env(self.uri, setting="coordination.uri")
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        try:
            return sqlalchemy.create_engine(
                url, pool_size=self.pool_size, max_overflow=0, pool_timeout=30,
                pool_pre_ping=True, connect_args={"connect_timeout": self.connect_timeout})
        except ModuleNotFoundError as exc:
            raise FlywheelError(f"coordination.uri {self.where} needs the driver {exc.name!r}, "
                                "which is not installed; pip install flywheel[postgres].") from None

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        import sqlalchemy

        with self.engine.connect() as conn, conn.begin():
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_KEY})
            for statement in _DDL:
                conn.execute(sqlalchemy.text(statement))
        self._ready = True
