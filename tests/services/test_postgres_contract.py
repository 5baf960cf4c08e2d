"""The registry contract against MLflow on PostgreSQL directly (``postgresql://``), the
password named as ``${VAR}`` and read from the environment when the client is made."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

from flywheel.demo import free_port
from flywheel.registry import MlflowRegistry, ModelVersionInfo
from flywheel.registry.base import Registry
from flywheel.testing import RegistryContract, RegistryFactory
from tests.services.postgres_project import PASSWORD_VAR, pg_uri

pytestmark = pytest.mark.services

EXPERIMENT = "contract"


class TestMlflowOnPostgres(RegistryContract):
    @pytest.fixture(scope="class")
    def factory(self, postgres: Any, tmp_path_factory: pytest.TempPathFactory
                ) -> RegistryFactory:
        # Spawned registration workers inherit the variable, as a user's processes would.
        os.environ[PASSWORD_VAR] = postgres.password
        postgres.create_database("contract_direct")
        root = tmp_path_factory.mktemp("pg-contract-artifacts")
        return functools.partial(MlflowRegistry, pg_uri(postgres, database="contract_direct"),
                                 artifact_location=root.as_uri(), experiment=EXPERIMENT)

    @pytest.fixture
    def unreachable(self, postgres: Any) -> Registry:
        uri = (f"postgresql://{postgres.user}:${{{PASSWORD_VAR}}}@127.0.0.1:{free_port()}/"
               "flywheel")
        return MlflowRegistry(uri, artifact_location=None, experiment=EXPERIMENT,
                              model_name="m")

    def tamper(self, registry: Registry, version: ModelVersionInfo) -> None:
        folder = Path(str(version.source).removeprefix("file://"))
        model = next(folder.rglob("model.skops"))
        model.write_bytes(model.read_bytes() + b"\0")
