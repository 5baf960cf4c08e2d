"""The coordination: section: where locks, leases, the audit log and the loop's state live."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import parse_spec

MINIMAL = {"name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"}}
PG = "postgresql://flywheel:${PGPW}@db:5432/flywheel"


def _spec(**sections: object):
    return parse_spec({**MINIMAL, **sections})


def test_an_embedded_project_coordinates_through_its_workspace_files() -> None:
    spec = _spec()
    assert spec.coordination.resolved_uri(spec.tracking.tracking_uri) == "file"


def test_tracking_on_postgresql_makes_it_the_coordination_database_too() -> None:
    spec = _spec(tracking={"tracking_uri": PG})
    assert spec.coordination.resolved_uri(spec.tracking.tracking_uri) == PG


def test_an_explicit_coordination_uri_wins_over_the_tracking_database() -> None:
    other = "postgresql://coord@db2/coord"
    spec = _spec(tracking={"tracking_uri": PG}, coordination={"uri": other})
    assert spec.coordination.resolved_uri(spec.tracking.tracking_uri) == other
    spec = _spec(tracking={"tracking_uri": PG}, coordination={"uri": "file"})
    assert spec.coordination.resolved_uri(spec.tracking.tracking_uri) == "file"


def test_a_tracking_server_alone_keeps_coordination_in_the_workspace() -> None:
    spec = _spec(tracking={"tracking_uri": "http://mlflow:5000"})
    assert spec.coordination.resolved_uri(spec.tracking.tracking_uri) == "file"


def test_a_uri_that_is_not_postgresql_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ConfigError, match=r"coordination\.uri.*'file' or a PostgreSQL URL") as info:
        _spec(coordination={"uri": "mysql://root:hunter22@db/x"})
    assert "hunter22" not in str(info.value)


def test_a_renewal_as_slow_as_the_lease_is_refused() -> None:
    with pytest.raises(ConfigError, match="renew_seconds .* must be less than lease_seconds"):
        _spec(coordination={"lease_seconds": 5, "renew_seconds": 5})


def test_the_embedded_coordinator_imports_no_database_driver() -> None:
    code = ("import sys\nfrom flywheel.coordination import create_coordinator\n"
            "from flywheel.core.spec import parse_spec\n"
            f"c = create_coordinator(parse_spec({MINIMAL!r}))\n"
            "print(type(c).__name__, sorted(m for m in ('sqlalchemy', 'psycopg') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "FileCoordinator []"
