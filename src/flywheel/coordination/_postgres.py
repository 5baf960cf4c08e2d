"""Coordination in PostgreSQL: named locks as advisory locks, leader leases with expiry, and
state documents, shared by every host that runs the same flywheel.yaml.

A named lock is a session advisory lock held on a connection of its own for the block: the
server frees it the moment its holder's connection ends (a process killed with -9 included),
and the holder row beside it names who holds it. A leader lease is a row with an expiry in the
database's clock: the leader renews it every ``renew_seconds``; a holder that stops renewing
(killed, frozen, cut off) loses it ``lease_seconds`` after its last renewal, and a holder
whose renewal fails stops leading at once, before the lease can pass to anyone else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flywheel.coordination._store import SharedStore, advisory_key
from flywheel.core.coordination import describe_process, format_holder, holder_record
from flywheel.core.errors import CoordinationError, WorkspaceBusyError

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["PostgresCoordinator", "PostgresLease"]

log = logging.getLogger("flywheel.coordination")
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired


class PostgresCoordinator:
    """Locks, leases and state of the project ``scope`` in a PostgreSQL database.

    Args:
        store: The coordination database.
        scope: What the project is known by across hosts (its registered model's name).
        lease_seconds: How long a lease lasts without a renewal.
    """

    shared = True

    def __init__(self, store: SharedStore, scope: str, *, lease_seconds: float = 15.0) -> None:
        self.store = store
        self.scope = scope
        self.lease_seconds = lease_seconds
        self.stale_holders: dict[str, str] = {}

    def describe(self) -> str:
        return f"PostgreSQL {self.store.where} (scope {self.scope!r})"

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float, command: str | None = None) -> Iterator[None]:
        import sqlalchemy

        key = advisory_key(self.scope, name)
        started = time.monotonic()
        with self.store.connect() as conn:
            if not self._wait(conn, key, timeout):
                raise WorkspaceBusyError(name, self._holder(conn, name),
                                         time.monotonic() - started)
            with self.store.translated():
                stale = conn.execute(sqlalchemy.text(
                    "SELECT holder FROM flywheel_lock_holders WHERE scope = :s AND name = :n"),
                    {"s": self.scope, "n": name}).scalar()
                if stale is not None:  # we hold the lock, so whoever wrote this died holding it
                    self.stale_holders[name] = format_holder(stale)
                conn.execute(sqlalchemy.text(
                    "INSERT INTO flywheel_lock_holders (scope, name, holder) VALUES (:s, :n, :h) "
                    "ON CONFLICT (scope, name) DO UPDATE SET holder = EXCLUDED.holder, "
                    "since = now()"),
                    {"s": self.scope, "n": name, "h": json.dumps(holder_record(command))})
                conn.commit()
            try:
                yield
            finally:
                self._release(conn, name, key)

    def lease(self, name: str) -> PostgresLease:
        return PostgresLease(self.store, self.scope, name, lease_seconds=self.lease_seconds)

    def read_state(self, name: str) -> str | None:
        import sqlalchemy

        def read(conn: Connection) -> str | None:
            body = conn.execute(sqlalchemy.text(
                "SELECT body FROM flywheel_state WHERE scope = :s AND name = :n"),
                {"s": self.scope, "n": name}).scalar()
            return None if body is None else str(body)

        return self.store.run(read)

    def write_state(self, name: str, text: str) -> None:
        import sqlalchemy

        self.store.run(lambda conn: conn.execute(sqlalchemy.text(
            "INSERT INTO flywheel_state (scope, name, body) VALUES (:s, :n, :b) "
            "ON CONFLICT (scope, name) DO UPDATE SET body = EXCLUDED.body, updated_at = now()"),
            {"s": self.scope, "n": name, "b": text}))

    def _wait(self, conn: Connection, key: int, timeout: float) -> bool:
        """Take the advisory lock ``key`` on ``conn``, waiting up to ``timeout`` seconds in
        the server's queue (first come, first served: a process that takes the lock again and
        again cannot starve the others); whether it was taken.

        Raises:
            CoordinationError: If the database fails otherwise.
        """
        import sqlalchemy

        with self.store.translated():
            if timeout <= 0:
                taken = bool(conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"),
                                          {"k": key}).scalar())
                conn.commit()
                return taken
            conn.execute(sqlalchemy.text(f"SET lock_timeout = {max(1, int(timeout * 1000))}"))
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                taken = True
            except sqlalchemy.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                taken = False
            conn.rollback()  # a session lock outlives the transaction; the SET does not
            return taken

    def _holder(self, conn: Connection, name: str) -> str:
        import sqlalchemy

        text = conn.execute(sqlalchemy.text(
            "SELECT holder FROM flywheel_lock_holders WHERE scope = :s AND name = :n"),
            {"s": self.scope, "n": name}).scalar()
        conn.commit()
        return format_holder(text)

    def _release(self, conn: Connection, name: str, key: int) -> None:
        import sqlalchemy

        try:
            conn.execute(sqlalchemy.text(
                "DELETE FROM flywheel_lock_holders WHERE scope = :s AND name = :n"),
                {"s": self.scope, "n": name})
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # The connection broke (the database went away): the server freed the lock with it.
            # Closing it for good keeps a pooled connection from carrying the lock on.
            log.warning("could not release the %r lock cleanly (%s); closing its connection",
                        name, type(exc).__name__)
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.invalidate()


class PostgresLease:
    """A leader lease: a row of ``flywheel_leases`` with an expiry in the database's clock.

    Args:
        store: The coordination database.
        scope: The project's scope.
        name: The role (``rollout-controller``).
        lease_seconds: How long the lease lasts after each renewal.
    """

    def __init__(self, store: SharedStore, scope: str, name: str, *,
                 lease_seconds: float) -> None:
        self.store = store
        self.scope = scope
        self.name = name
        self.lease_seconds = lease_seconds
        self.token = uuid.uuid4().hex
        self.me = describe_process()
        self._deadline = 0.0
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return time.monotonic() < self._deadline

    def acquire(self) -> bool:
        import sqlalchemy

        with self._lock:
            # Measured before asking: the database's expiry is at least this late, so this
            # process stops leading no later than the lease lapses for the others.
            asked = time.monotonic()
            try:
                got = self.store.run(lambda conn: conn.execute(sqlalchemy.text(
                    "INSERT INTO flywheel_leases AS l (scope, name, token, holder, expires_at) "
                    "VALUES (:s, :n, :t, :h, now() + :secs * interval '1 second') "
                    "ON CONFLICT (scope, name) DO UPDATE SET token = EXCLUDED.token, "
                    "holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at "
                    "WHERE l.expires_at < now() OR l.token = EXCLUDED.token RETURNING l.token"),
                    {"s": self.scope, "n": self.name, "t": self.token, "h": self.me,
                     "secs": self.lease_seconds}).first() is not None)
            except CoordinationError as exc:
                if self.held:
                    log.warning("stepping down as %s: the lease cannot be renewed (%s)",
                                self.name, exc)
                self._deadline = 0.0
                return False
            self._deadline = asked + self.lease_seconds if got else 0.0
            return got

    def step_down(self) -> None:
        import sqlalchemy

        with self._lock:
            was_held, self._deadline = self.held, 0.0
            if not was_held:
                return
            with contextlib.suppress(CoordinationError):
                self.store.run(lambda conn: conn.execute(sqlalchemy.text(
                    "DELETE FROM flywheel_leases WHERE scope = :s AND name = :n AND token = :t"),
                    {"s": self.scope, "n": self.name, "t": self.token}))

    def holder(self) -> str | None:
        import sqlalchemy

        def read(conn: Connection) -> str | None:
            found = conn.execute(sqlalchemy.text(
                "SELECT holder FROM flywheel_leases WHERE scope = :s AND name = :n "
                "AND expires_at >= now()"), {"s": self.scope, "n": self.name}).scalar()
            return None if found is None else str(found)

        try:
            return self.store.run(read)
        except CoordinationError:
            return None
