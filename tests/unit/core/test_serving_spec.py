from __future__ import annotations

import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import parse_spec

MINIMAL = {"name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"}}


def test_serving_grpc_port_is_off_unless_set() -> None:
    assert parse_spec(MINIMAL).serving.grpc_port is None
    assert parse_spec({**MINIMAL, "serving": {"grpc_port": 50051}}).serving.grpc_port == 50051


@pytest.mark.parametrize(("value", "says"), [
    (0, "serving.grpc_port: must be >= 1, got 0"),
    (70000, "serving.grpc_port: must be <= 65535, got 70000"),
    ("grpc", "serving.grpc_port: must be an integer, got 'grpc'"),
])
def test_a_grpc_port_that_is_no_port_is_a_config_error_naming_it(value: object, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({**MINIMAL, "serving": {"grpc_port": value}})
    assert says in str(info.value)
