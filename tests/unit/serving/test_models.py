from __future__ import annotations

import time

from flywheel.serving import _models
from flywheel.serving._models import ModelStore


class _Registry:
    """Aliases point nowhere; counts reads; the stamp is whatever the test sets."""

    model_name = "m"

    def __init__(self) -> None:
        self.stamp: tuple[int, ...] | None = (1, 1)
        self.reads = 0

    def store_stamp(self) -> tuple[int, ...] | None:
        return self.stamp

    def aliases_and_tags(self) -> tuple[dict[str, str], dict[str, str]]:
        self.reads += 1
        return {}, {}


def test_the_poller_reads_the_registry_only_after_its_store_changed() -> None:
    registry = _Registry()
    store = ModelStore(registry)  # type: ignore[arg-type]
    store.reconcile()
    for _ in range(5):
        store.reconcile(force=False)
    assert registry.reads == 1
    registry.stamp = (2, 1)
    store.reconcile(force=False)
    assert registry.reads == 2
    store.reconcile()  # /admin/reload and startup always read
    assert registry.reads == 3


def test_the_poller_reads_at_least_every_full_read_interval_and_always_without_a_stamp(
        monkeypatch) -> None:
    registry = _Registry()
    store = ModelStore(registry)  # type: ignore[arg-type]
    store.reconcile()
    monkeypatch.setattr(_models, "FULL_READ_SECONDS", 0.0)
    time.sleep(0.01)
    store.reconcile(force=False)
    assert registry.reads == 2
    monkeypatch.setattr(_models, "FULL_READ_SECONDS", 30.0)
    registry.stamp = None  # a tracking server: nothing cheap to compare
    store.reconcile(force=False)
    store.reconcile(force=False)
    assert registry.reads == 4
