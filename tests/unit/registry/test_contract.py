"""The registry contract, run against each back end: MLflow on SQLite (embedded) and a real
`mlflow server` process on a loopback port (SQLite behind it)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from flywheel.registry import MlflowRegistry, ModelVersionInfo
from flywheel.registry.base import Registry
from flywheel.testing import MlflowServer, RegistryContract, RegistryFactory

EXPERIMENT = "contract"


def _flip_a_byte(folder: Path) -> None:
    model = next(folder.rglob("model.skops"))
    model.write_bytes(model.read_bytes() + b"\0")


class TestMlflowOnSqlite(RegistryContract):
    @pytest.fixture(scope="class")
    def factory(self, tmp_path_factory: pytest.TempPathFactory) -> RegistryFactory:
        root = tmp_path_factory.mktemp("sqlite-store")
        return functools.partial(MlflowRegistry, f"sqlite:///{root / 'mlflow.db'}",
                                 artifact_location=(root / "artifacts").as_uri(),
                                 experiment=EXPERIMENT)

    @pytest.fixture
    def unreachable(self, tmp_path: Path) -> Registry:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        return MlflowRegistry(f"sqlite:///{blocker / 'mlflow.db'}", artifact_location=None,
                              experiment=EXPERIMENT, model_name="m")

    def tamper(self, registry: Registry, version: ModelVersionInfo) -> None:
        _flip_a_byte(Path(str(version.source).removeprefix("file://")))


@pytest.mark.services
class TestMlflowServer(RegistryContract):
    @pytest.fixture(scope="class")
    def server(self, tmp_path_factory: pytest.TempPathFactory) -> MlflowServer:
        with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as server:
            yield server

    @pytest.fixture(scope="class")
    def factory(self, server: MlflowServer) -> RegistryFactory:
        return functools.partial(MlflowRegistry, server.uri, artifact_location=None,
                                 experiment=EXPERIMENT)

    @pytest.fixture
    def unreachable(self) -> Registry:
        from flywheel.demo import free_port

        return MlflowRegistry(f"http://127.0.0.1:{free_port()}", artifact_location=None,
                              experiment=EXPERIMENT, model_name="m")

    @pytest.fixture(autouse=True)
    def _artifacts(self, server: MlflowServer) -> None:
        self.artifacts = server.artifacts

    def tamper(self, registry: Registry, version: ModelVersionInfo) -> None:
        # The server stores proxied artifacts under <destination>/<experiment>/models/<id>/.
        model_id = version.tags["flywheel.model_id"]
        _flip_a_byte(next(self.artifacts.glob(f"*/models/{model_id}")))
