"""The audit log as rows of ``flywheel_audit``: the same lines, checksums and chain as the
JSON Lines file, shared by every host.

An append takes a transaction-scoped advisory lock on the project's log, reads the last row's
sequence and checksum, and inserts the new line, all in one transaction: appends from any host
are serialized, and an append that fails leaves nothing behind. Reading returns the lines in
sequence order, so :class:`flywheel.registry.AuditLog` checks them exactly as it checks the
file (checksums, the ``prev`` chain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flywheel.coordination._store import SharedStore, advisory_key

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["PostgresAuditStore"]


class PostgresAuditStore:
    """The audit log of ``scope`` in the coordination database.

    Args:
        store: The coordination database.
        scope: The project's scope (its registered model's name).
    """

    def __init__(self, store: SharedStore, scope: str) -> None:
        self.store = store
        self.scope = scope

    def __repr__(self) -> str:
        return f"PostgresAuditStore({self.store.where!r}, scope={self.scope!r})"

    def describe(self) -> str:
        return f"the table flywheel_audit in {self.store.where} (scope {self.scope!r})"

    def append(self, build: Callable[[int, str | None], tuple[int, str, str]]) -> None:
        """Insert the line ``build(last_seq, last_sha256)`` returns as ``(seq, sha256, line)``,
        serialized with every other append to this scope.

        Raises:
            CoordinationError: If the database cannot be reached or refuses the row.
        """
        import sqlalchemy

        def insert(conn: Connection) -> None:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"),
                         {"k": advisory_key(self.scope, "audit")})
            last = conn.execute(sqlalchemy.text(
                "SELECT seq, sha256 FROM flywheel_audit WHERE scope = :s "
                "ORDER BY seq DESC LIMIT 1"), {"s": self.scope}).first()
            seq, sha, line = build(0, None) if last is None else build(int(last[0]), str(last[1]))
            conn.execute(sqlalchemy.text(
                "INSERT INTO flywheel_audit (scope, seq, sha256, line) VALUES (:s, :q, :h, :l)"),
                {"s": self.scope, "q": seq, "h": sha, "l": line})

        self.store.run(insert)

    def read_bytes(self) -> bytes:
        """Every line in sequence order, each ending with a newline (as the file holds them).

        Raises:
            CoordinationError: If the database cannot be reached.
        """
        import sqlalchemy

        rows = self.store.run(lambda conn: conn.execute(sqlalchemy.text(
            "SELECT line FROM flywheel_audit WHERE scope = :s ORDER BY seq"),
            {"s": self.scope}).scalars().all())
        return "".join(f"{line}\n" for line in rows).encode("utf-8")
