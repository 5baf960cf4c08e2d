"""Reaching Ray: a missing Ray, a closed address and a bad spec value are clear errors; the
embedded path never imports Ray."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import SearchSpec
from flywheel.demo import free_port
from tests.conftest import REPO

_WITHOUT_RAY = """
import sys
sys.modules["ray"] = None  # what an environment without the ray extra looks like to import
from flywheel.core.errors import ConfigError
from flywheel.core.rayconnect import connect_ray
try:
    connect_ray(None, cpus=1, setting="training.search.ray_address")
except ConfigError as exc:
    print(exc)
"""


def test_a_missing_ray_is_a_config_error_naming_the_extra_to_install() -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_RAY], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert "training.search.ray_address: running on Ray needs Ray" in done.stdout
    assert "pip install flywheel[ray]" in done.stdout


def test_a_closed_ray_address_is_refused_within_seconds_naming_it() -> None:
    pytest.importorskip("ray")
    from flywheel.core.rayconnect import connect_ray

    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"--ray-address: cannot reach Ray at '{address}'"):
        connect_ray(address, cpus=1, setting="--ray-address")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("address", ["http://head:6379", "head", "ray://", "auto:x"])
def test_a_ray_address_that_is_not_auto_or_host_and_port_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="must be null .* auto, ray://HOST:PORT or HOST:PORT"):
        SearchSpec(backend="ray", ray_address=address)


def test_the_embedded_train_and_predict_path_never_imports_ray() -> None:
    code = ("import json, sys; import flywheel.cli.main, flywheel.pipelines.train, "
            "flywheel.pipelines.predict, flywheel.training; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
