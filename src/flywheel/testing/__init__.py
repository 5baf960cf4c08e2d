"""Shared test support: binaries a test needs, a headless browser, contract suites for back ends.

Nothing on the embedded path imports this package; tests and back-end authors do.
"""
from __future__ import annotations

from flywheel.testing._binaries import require_binary, under_ci
from flywheel.testing._browser import screenshot
from flywheel.testing._mlflow_server import MlflowServer
from flywheel.testing._registry_contract import RegistryContract, RegistryFactory

__all__ = ["MlflowServer", "RegistryContract", "RegistryFactory", "require_binary", "screenshot",
           "under_ci"]
