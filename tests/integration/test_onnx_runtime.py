"""`serving.runtime: onnx` end to end: `flywheel train` verifies and stores the ONNX graph and
its latency gate measures it; `flywheel serve` answers /predict through onnxruntime."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.demo import ServerProcess
from flywheel.serving import ONNX_ARTIFACT, ModelStore
from tests.conftest import CHURN, make_project
from tests.integration.conftest import start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, ServerProcess]]:
    root = tmp_path_factory.mktemp("onnx-runtime")
    make_project(root, training={"learners": ["lightgbm"]})
    spec = root / "flywheel.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["serving"] = {"runtime": "onnx"}
    spec.write_text(yaml.safe_dump(raw))
    project = Project.load(spec)
    project.train()
    server = start_server(root)
    yield project, server
    server.stop()


def test_training_verifies_the_graph_stores_it_and_gates_its_latency(
        trained: tuple[Project, ServerProcess]) -> None:
    project, _ = trained
    info = project.registry().version_info("1")
    assert info.tags["flywheel.onnx.verified"] == "true"
    assert info.tags["flywheel.onnx.label_agreement"] == "1.000000"
    assert "single-row prediction (onnx)" in info.tags["flywheel.gates.latency"]
    assert info.run_id is not None
    assert project.registry().artifact_exists(info.run_id, ONNX_ARTIFACT)
    store = ModelStore(project.registry(), poll_interval=60, runtime="onnx")
    assert store.reconcile() and store.default is not None
    assert store.default.model.form == "onnx"


def test_the_server_answers_through_onnxruntime_as_the_pipeline_does(
        trained: tuple[Project, ServerProcess], tmp_path: Path) -> None:
    project, server = trained
    frame = pd.read_parquet(CHURN).sample(30, random_state=5)
    features = project.schema.feature_columns
    records = json.loads(frame[features].to_json(orient="records"))
    answer = httpx.post(server.url + "/predict", json=records, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    model = project.registry().load_model("champion")
    np.testing.assert_allclose(body["probabilities"], model.predict_proba(frame[features]),
                               atol=1e-5)
    bad = httpx.post(server.url + "/predict", json={"state": "KS"}, timeout=30)
    assert bad.status_code == 422 and "missing field" in bad.text
    log = (project.spec.root / ".flywheel" / "serve.log").read_text()
    assert "(onnx)" in log
