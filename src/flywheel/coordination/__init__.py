"""Coordination shared across hosts: locks, the rollout controller's lease, the audit log and
the retraining loop's state in PostgreSQL.

``create_coordinator(spec)`` reads the ``coordination:`` section: embedded projects get
``flywheel.core.coordination.FileCoordinator`` (files in ``.flywheel/``), shared ones a
:class:`PostgresCoordinator`. SQLAlchemy and psycopg are imported only when a shared store is
used, so the embedded path never loads them.
"""

from __future__ import annotations

from flywheel.coordination._audit_table import PostgresAuditStore
from flywheel.coordination._factory import coordination_scope, create_coordinator
from flywheel.coordination._postgres import PostgresCoordinator, PostgresLease
from flywheel.coordination._store import SharedStore, advisory_key

__all__ = [
    "PostgresAuditStore",
    "PostgresCoordinator",
    "PostgresLease",
    "SharedStore",
    "advisory_key",
    "coordination_scope",
    "create_coordinator",
]
