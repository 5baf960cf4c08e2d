"""An ensemble trained, registered, gated and served like any model: `flywheel serve` on a free
loopback port answers what the registered EnsembleModel gives; `size: 1` is today's model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from flywheel import Project
from flywheel.demo import ServerProcess
from flywheel.pipelines._train_parts import spec_hash_of
from flywheel.training import EnsembleModel
from tests.conftest import CHURN, make_project
from tests.integration.conftest import start_server

pytestmark = pytest.mark.slow

ENSEMBLE = {"learners": ["lightgbm", "linear"], "ensemble": {"size": 3},
            "search": {"trials": 6, "seed": 0}}


@pytest.fixture(scope="module")
def churn_small() -> pd.DataFrame:
    return pd.read_parquet(CHURN).sample(800, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, churn_small: pd.DataFrame
           ) -> Iterator[tuple[Project, ServerProcess]]:
    root = tmp_path_factory.mktemp("ensemble")
    project = make_project(root, frame=churn_small, training=ENSEMBLE)
    project.train()
    server = start_server(root)
    yield project, server
    server.stop()


def test_a_registered_ensemble_serves_the_probabilities_the_estimator_gives(
        served: tuple[Project, ServerProcess], churn_small: pd.DataFrame) -> None:
    project, server = served
    registry = project.registry()
    info = registry.version_info("champion")
    model = registry.load_model(info.version)
    assert isinstance(model, EnsembleModel) and len(model.members_) >= 2
    assert info.tags["flywheel.learner"] == "ensemble"
    assert info.tags["flywheel.compiled.verified"] == "true"
    assert "gates" in info.tags["flywheel.gates.summary"]  # gated like any version
    features = project.schema.feature_columns
    frame = churn_small.sample(30, random_state=3)
    records = json.loads(frame[features].to_json(orient="records"))
    expected = model.predict_proba(frame[features])
    one = httpx.post(server.url + "/predict", json=records[0])
    assert one.status_code == 200, one.text
    assert np.allclose(one.json()["probabilities"][0], expected[0], atol=1e-9)
    listed = httpx.post(server.url + "/predict", json=records).json()
    assert np.allclose(listed["probabilities"], expected, atol=1e-9)
    metrics = httpx.get(server.url + "/metrics").text
    compiled = rf'flywheel_model_compiled\{{[^}}]*model_version="{info.version}"[^}}]*\}} 1\.0'
    assert re.search(compiled, metrics), metrics[:2000]


def test_the_run_and_the_card_record_members_weights_and_gains(
        served: tuple[Project, ServerProcess]) -> None:
    project, _ = served
    registry = project.registry()
    info = registry.version_info("champion")
    tags = registry.run_tags(info.run_id or "")
    record = json.loads(tags["flywheel.ensemble"])
    model = registry.load_model(info.version)
    assert record["members"] == list(model.trials)
    assert record["weights"] == pytest.approx(list(model.weights_), abs=1e-6)
    assert sum(record["weights"]) == pytest.approx(1.0, abs=1e-5)
    assert record["oof_gain"] >= 0 and record["oof_score"] >= record["oof_best_single"]
    assert tags["flywheel.best_learner"] in ("lightgbm", "linear")
    card = registry.read_artifact_text(info.run_id or "", "card/model_card.md")
    assert "ensemble members (weight)" in card and "vs best trial" in card
    for number, weight in zip(record["members"], record["weights"], strict=True):
        assert f"trial {number} (" in card and f"{weight:.3f}" in card


def test_size_one_keeps_the_spec_hash_and_the_single_best_model(
        tmp_path: Path, churn_small: pd.DataFrame) -> None:
    plain = make_project(tmp_path / "plain", frame=churn_small,
                         training={"learners": ["linear"]})
    one = make_project(tmp_path / "one", frame=churn_small,
                       training={"learners": ["linear"], "ensemble": {"size": 1}})
    assert spec_hash_of(plain.spec) == spec_hash_of(one.spec)
    first, second = plain.train(), one.train()
    assert second.learner == first.learner == "linear" and second.params == first.params
    assert second.holdout_metrics == first.holdout_metrics
    frame = churn_small[plain.schema.feature_columns].head(50)
    a = plain.registry().load_model("champion").predict_proba(frame)
    b = one.registry().load_model("champion").predict_proba(frame)
    assert np.array_equal(a, b)
    assert "flywheel.ensemble" not in one.registry().run_tags(second.run_id)
