"""A coordination database that cannot be reached: one clear error naming the URI with its
password hidden; a would-be leader does not lead (the CLI's exit 2 is in
tests/services/test_coordination_faults.py)."""

from __future__ import annotations

import pytest

from flywheel.coordination import PostgresCoordinator, SharedStore
from flywheel.core.errors import CoordinationError
from flywheel.demo import free_port


def test_a_refused_connection_names_the_uri_with_its_password_hidden() -> None:
    url = f"postgresql://flywheel:pw-s3cret-9@127.0.0.1:{free_port()}/flywheel"
    coordinator = PostgresCoordinator(SharedStore(url, pool_size=2, connect_timeout=2), "m")
    with pytest.raises(CoordinationError) as info, coordinator.lock("registry", timeout=1):
        pass
    message = str(info.value)
    assert "postgresql://flywheel:***@127.0.0.1" in message
    assert "pw-s3cret-9" not in message
    assert "connection refused" in message
    assert "running" in message  # what to check


def test_a_leader_whose_database_is_unreachable_does_not_lead() -> None:
    url = f"postgresql://flywheel:pw@127.0.0.1:{free_port()}/flywheel"
    lease = PostgresCoordinator(SharedStore(url, pool_size=2, connect_timeout=2), "m").lease("c")
    assert lease.acquire() is False
    assert lease.held is False
    assert lease.holder() is None
