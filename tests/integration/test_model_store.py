"""The server's model store when the registry goes away and comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.registry import MlflowRegistry
from flywheel.serving import ModelStore
from tests.integration.test_train import make_project


def test_an_unreachable_registry_leaves_the_loaded_models_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    project = make_project(tmp_path, training={"learners": ["linear"]})
    project.train()
    registry = project.registry()
    store = ModelStore(registry, poll_interval=60)
    assert store.reconcile() and store.default is not None
    served = store.default
    # The tracking server goes away: nothing listens on this port.
    store.registry = MlflowRegistry("http://127.0.0.1:9", artifact_location=None,
                                    experiment=registry.experiment,
                                    model_name=registry.model_name)
    assert store.reconcile() is False
    assert store.default is served and "registry unavailable" in (store.last_error or "")
    predictions, probabilities = served.answer([{c: None for c in served.model.features}])
    assert len(predictions) == 1 and probabilities is not None
    store.registry = registry  # and comes back
    assert store.reconcile() is False and store.last_error is None
    assert store.default is served
