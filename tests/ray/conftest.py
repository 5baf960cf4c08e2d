"""The Ray tests' cluster: a real two-node Ray cluster on loopback (`ray start --head
--num-cpus 1` and `ray start --address ... --num-cpus 1`), started once for the session and
stopped at its end. Under CI=true a missing Ray fails instead of skipping."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.testing import RayCluster, under_ci
from tests.conftest import REPO


def require_ray() -> None:
    """Skip (or fail under CI) unless Ray and its `ray` command are installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        missing = "the ray package"
    else:
        if Path(sys.executable).with_name("ray").exists():
            return
        missing = "the `ray` command next to this Python"
    message = f"needs {missing}; install it with `pip install flywheel[ray]`"
    if under_ci():
        pytest.fail(f"{message} (CI=true: a missing engine fails instead of skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """Two Ray nodes of one CPU each; their workers can import the tests' custom learners."""
    require_ray()
    with RayCluster(tmp_path_factory.mktemp("ray"), nodes=2, cpus=1,
                    env={"PYTHONPATH": str(REPO)}) as cluster:
        yield cluster
