"""The coordinator a spec asks for: the workspace's files, or PostgreSQL shared across hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flywheel.coordination._postgres import PostgresCoordinator
from flywheel.coordination._store import SharedStore
from flywheel.core.coordination import Coordinator, FileCoordinator
from flywheel.core.spec import FILE_COORDINATION
from flywheel.core.workspace import WORKSPACE_DIR

if TYPE_CHECKING:
    from flywheel.core.spec import ProjectSpec

__all__ = ["coordination_scope", "create_coordinator"]


def coordination_scope(spec: ProjectSpec) -> str:
    """What a project is known by in a shared store: its registered model's name."""
    return spec.tracking.model_name or spec.name


def create_coordinator(spec: ProjectSpec) -> Coordinator:
    """The coordinator of ``spec``'s ``coordination:`` section (no connection is made yet).

    Embedded: lock and state files in the project's ``.flywheel/``. Shared (``coordination.uri``
    or a postgresql:// tracking URI): the PostgreSQL tables, keyed by the model's name.
    """
    section = spec.coordination
    uri = section.resolved_uri(spec.tracking.tracking_uri)
    if uri == FILE_COORDINATION:
        return FileCoordinator(spec.root / WORKSPACE_DIR)
    store = SharedStore.for_uri(uri, pool_size=section.pool_size,
                                connect_timeout=section.connect_timeout_seconds)
    return PostgresCoordinator(store, coordination_scope(spec),
                               lease_seconds=section.lease_seconds)
