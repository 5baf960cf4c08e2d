"""A model trained on a feature view, served by a real `flywheel serve`: the server looks the
view's features up in the online store, logs what it served, counts misses, and refuses a
model whose view changed incompatibly (issue 17)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from flywheel import Project
from flywheel.core.spec import load_spec
from flywheel.core.workspace import Workspace
from flywheel.demo import ServerProcess
from flywheel.featurestore import PINS_TAG, FeatureStore
from flywheel.serving import read_predictions
from tests.integration.conftest import start_server
from tests.unit.featurestore.conftest import view, write_project

pytestmark = pytest.mark.slow

END = "2024-01-31T00:00:00+00:00"
AT = "2024-01-20T00:00:00Z"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose spine (visits) joins the `sales` view; one version trained."""
    root = tmp_path_factory.mktemp("fs") / "shop"
    spec = write_project(root)
    store = FeatureStore(spec, Workspace(root))
    joined, _, _ = store.training_set(pd.read_parquet(root / "visits.parquet"))
    store.close()
    joined.to_parquet(root / "joined.parquet")
    raw = yaml.safe_load((root / "flywheel.yaml").read_text())
    Project.init(root / "joined.parquet", "big", directory=root, force=True)
    spec_raw = yaml.safe_load((root / "flywheel.yaml").read_text())
    spec_raw["data"] = {**spec_raw["data"], "path": "visits.parquet",
                        "spine": raw["data"]["spine"]}
    spec_raw["feature_store"] = raw["feature_store"]
    spec_raw["training"] = {**spec_raw["training"], "cv_folds": 2, "learners": ["lightgbm"],
                            "search": {"trials": 2, "seed": 0}}
    (root / "flywheel.yaml").write_text(yaml.safe_dump(spec_raw, sort_keys=False))
    Project.load(root / "flywheel.yaml").train()
    return root


def _refusal(root: Path, timeout: float = 90.0) -> str:
    """Start `flywheel serve` and return the reason /readyz gives for not serving (503)."""
    server = ServerProcess(root, log_file=root / "serve.log")
    with (root / "serve.log").open("a") as out:
        server.proc = subprocess.Popen(
            [sys.executable, "-m", "flywheel.cli.main", "serve", "--config", str(root),
             "--port", str(server.port)], stdout=out, stderr=out, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(server.url + "/readyz", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            body = answer.json()
            assert answer.status_code == 503 and body["ready"] is False, body
            if "registry" in body:
                return str(body["registry"])
            time.sleep(0.2)
        raise AssertionError("the server gave no reason in time")
    finally:
        server.stop()


def _copy(trained: Path, target: Path) -> Path:
    shutil.copytree(trained, target)
    return target


def test_training_on_a_spine_pins_the_view_versions_on_the_model_version(trained) -> None:
    project = Project.load(trained / "flywheel.yaml")
    tags = project.registry().version_info("1").tags
    pins = yaml.safe_load(tags[PINS_TAG])
    assert pins["sales"]["version"] == 1
    assert pins["sales"]["features"] == ["level", "footfall"]


def test_the_server_looks_features_up_by_entity_and_logs_the_values_it_served(
        trained, tmp_path) -> None:
    root = _copy(trained, tmp_path / "shop")
    store = FeatureStore(load_spec(root / "flywheel.yaml"), Workspace(root))
    store.materialize(end=pd.Timestamp(END).to_pydatetime())
    online = store.get(["s02"])["sales"]
    store.close()
    assert online is not None
    server = start_server(root)
    try:
        client = httpx.Client(base_url=server.url, timeout=30)
        looked_up = client.post("/predict", json={"store": "s02", "at": AT, "basket": 0.3},
                                headers={"x-request-id": "lookup"})
        inline = client.post("/predict", json={"store": "s02", "at": AT, "basket": 0.3,
                                               **online})
        assert looked_up.status_code == 200, looked_up.text
        assert looked_up.json()["probabilities"] == inline.json()["probabilities"]
        missed = client.post("/predict", json={"store": "s99", "at": AT, "basket": 0.3})
        assert missed.status_code == 200, missed.text
        stats = client.get("/readyz").json()["features"]["1"]
        assert stats["misses"] == {"sales": 1} and stats["lookups"] == 2
        wrong = client.post("/predict", json={"store": 2, "at": AT, "basket": 0.3})
        assert wrong.status_code == 422
        assert wrong.json()["problems"] == [{"loc": ["records", 0, "store"],
                                             "msg": "entity key must be text, got 2"}]
        absent = client.post("/predict", json={"at": AT, "basket": 0.3})
        assert absent.status_code == 422 and "missing entity key" in absent.text
    finally:
        server.stop()
    log = read_predictions(Project.load(root / "flywheel.yaml").workspace.predictions)
    row = log[log["request_id"] == "lookup"].iloc[0]
    level = next(c for c in log.columns if c.endswith("level"))
    footfall = next(c for c in log.columns if c.endswith("footfall"))
    assert row[level] == pytest.approx(online["level"])
    assert row[footfall] == pytest.approx(online["footfall"])


def test_a_server_refuses_a_model_whose_view_lost_a_feature_and_says_why(trained,
                                                                          tmp_path) -> None:
    root = _copy(trained, tmp_path / "shop")
    raw = yaml.safe_load((root / "flywheel.yaml").read_text())
    raw["feature_store"]["views"] = [view(features=["level"])]
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    reason = _refusal(root)
    assert "cannot load version 1 for champion" in reason
    assert "feature view 'sales' (version 1, which the model trained with) changed " \
           "incompatibly in version 2: it no longer has feature 'footfall'" in reason
    assert "no longer has feature 'footfall'" in (root / "serve.log").read_text()


def test_a_server_refuses_a_model_whose_view_is_gone(trained, tmp_path) -> None:
    root = _copy(trained, tmp_path / "shop")
    raw = yaml.safe_load((root / "flywheel.yaml").read_text())
    raw["feature_store"]["views"] = [view(name="stock")]
    raw["data"]["spine"]["views"] = ["stock"]
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "feature view 'sales' (version 1, which the model trained with) is gone" \
        in _refusal(root)
