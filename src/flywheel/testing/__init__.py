"""Shared test support: binaries a test needs, a headless browser, contract suites for back ends,
throwaway services (PostgreSQL, an S3-compatible store, `mlflow server`).

Nothing on the embedded path imports this package; tests and back-end authors do.
"""
from __future__ import annotations

from flywheel.testing._binaries import require_binary, require_postgres, under_ci
from flywheel.testing._browser import screenshot
from flywheel.testing._mlflow_server import MlflowServer
from flywheel.testing._postgres import PostgresCluster
from flywheel.testing._ray_cluster import RayCluster
from flywheel.testing._redis import RedisServer
from flywheel.testing._registry_contract import RegistryContract, RegistryFactory
from flywheel.testing._s3 import S3Server

__all__ = ["MlflowServer", "PostgresCluster", "RayCluster", "RedisServer", "RegistryContract",
           "RegistryFactory", "S3Server", "require_binary", "require_postgres", "screenshot",
           "under_ci"]
