"""The ``coordination:`` section of flywheel.yaml: where locks, the controller's lease, the
audit log and the loop's state live.

Embedded (the default), they are files in ``.flywheel/``. When tracking is on PostgreSQL, or
``uri`` names a PostgreSQL database, they move to tables in that database, so every replica
and host running the same flywheel.yaml shares them.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from flywheel.core._section import Section as _Section

__all__ = ["FILE_COORDINATION", "CoordinationSpec"]

FILE_COORDINATION = "file"
_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")


class CoordinationSpec(_Section):
    """Locks, the rollout controller's leadership, the audit log and the loop's state."""

    uri: str | None = None
    """`file` (the workspace's files), or a PostgreSQL URL (`postgresql://user:${PGPASSWORD}@
    host/db`, `${VAR}` read from the environment); null: the tracking database when
    tracking.tracking_uri is postgresql://, else `file`."""
    lease_seconds: float = Field(15.0, gt=0.0, le=3600.0)
    """How long the rollout controller's lease lasts without a renewal: a replica killed while
    leading is replaced within this."""
    renew_seconds: float = Field(5.0, gt=0.0, le=3600.0)
    """How often the leader renews its lease (less than lease_seconds)."""
    pool_size: int = Field(4, ge=2, le=64)
    """Most connections one process opens to the coordination database (each held lock keeps
    one; the lease, the audit log and the loop's state share the rest)."""
    connect_timeout_seconds: int = Field(5, ge=1, le=300)
    """A database not answering within this is reported as unreachable."""

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str | None) -> str | None:
        if value is None or value == FILE_COORDINATION or value.startswith(_SCHEMES):
            return value
        raise ValueError(f"must be 'file' or a PostgreSQL URL (postgresql://user@host/db), "
                         f"got {value.split('@')[-1]!r}")

    @model_validator(mode="after")
    def _check_renewal(self) -> CoordinationSpec:
        if self.renew_seconds >= self.lease_seconds:
            raise ValueError(f"renew_seconds ({self.renew_seconds:g}) must be less than "
                             f"lease_seconds ({self.lease_seconds:g}), or the lease lapses "
                             "between renewals")
        return self

    def resolved_uri(self, tracking_uri: str | None) -> str:
        """The coordination store: ``uri``, else the tracking database when it is PostgreSQL,
        else ``file``."""
        if self.uri is not None:
            return self.uri
        if tracking_uri is not None and tracking_uri.startswith(_SCHEMES):
            return tracking_uri
        return FILE_COORDINATION
