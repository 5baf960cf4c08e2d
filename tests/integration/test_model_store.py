"""The server's model store when the registry goes away and comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.registry import MlflowRegistry
from flywheel.serving import ModelStore
from tests.conftest import make_project


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


def test_every_version_is_warmed_up_before_it_is_swapped_in(tmp_path: Path) -> None:
    project = make_project(tmp_path, training={"learners": ["linear"]})
    project.train()
    project.train(seed=7, trials=3)  # version 2, challenger
    registry = project.registry()
    store = ModelStore(registry, poll_interval=60)
    at_swap: dict[str, object] = {}
    store.on_change = lambda alias, version: at_swap.setdefault(
        f"{alias}:{version}", store.by_alias[alias].warmup if alias in store.by_alias else None)
    assert store.reconcile()
    registry.set_alias("champion", "2")
    registry.set_alias("challenger", "1")
    store.reconcile()
    assert set(at_swap) >= {"champion:1", "challenger:2"}
    for key, warmup in at_swap.items():
        assert warmup is not None and warmup.error is None, key  # type: ignore[attr-defined]
        assert warmup.calls >= 100, key  # type: ignore[attr-defined]
