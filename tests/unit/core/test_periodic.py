"""The background thread and the store watcher that the pollers share."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from flywheel.core.periodic import PeriodicThread, StoreWatcher

log = logging.getLogger("tests.periodic")


def test_the_thread_calls_on_its_interval_until_stopped_and_outlives_a_failing_call(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []
    started = threading.Event()

    def work() -> None:
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise RuntimeError("one bad call")

    thread = PeriodicThread(work, 0.02, name="test-periodic", logger=log,
                            failure="the work failed; will retry", on_start=started.set)
    with caplog.at_level(logging.ERROR, logger="tests.periodic"):
        thread.start()
        deadline = time.monotonic() + 5
        while len(calls) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        thread.stop()
    assert started.is_set() and not thread.running
    assert len(calls) >= 5  # the failing second call did not end the thread
    assert [r.getMessage() for r in caplog.records] == ["the work failed; will retry"]
    assert caplog.records[0].exc_info is not None
    stopped_at = len(calls)
    time.sleep(0.1)
    assert len(calls) == stopped_at


def test_the_first_call_comes_one_interval_after_start() -> None:
    calls: list[int] = []
    thread = PeriodicThread(lambda: calls.append(1), 60.0, name="test-slow", logger=log).start()
    time.sleep(0.05)
    thread.stop()
    assert calls == []


class _Store:
    def __init__(self) -> None:
        self.stamp: tuple[int, ...] | None = (1, 1)
        self.reads = 0

    def read(self, trusted: bool = True) -> bool:
        self.reads += 1
        return trusted


def test_the_watcher_reads_again_only_after_the_stamp_changes() -> None:
    store = _Store()
    watcher = StoreWatcher(lambda: store.stamp)
    assert watcher.poll(store.read) is True
    assert [watcher.poll(store.read) for _ in range(3)] == [False, False, False]
    store.stamp = (2, 1)
    assert watcher.poll(store.read) is True
    assert watcher.poll(store.read, force=True) is True
    assert store.reads == 3


def test_the_watcher_reads_without_a_stamp_after_a_distrusted_read_and_past_the_interval(
) -> None:
    store = _Store()
    store.stamp = None  # a tracking server: nothing cheap to compare
    watcher = StoreWatcher(lambda: store.stamp)
    assert watcher.poll(store.read) and watcher.poll(store.read)
    store.stamp = (1, 1)
    watcher.poll(lambda: store.read(trusted=False))  # a partial failure
    assert watcher.poll(store.read) is True
    assert watcher.poll(store.read, full_read_seconds=0.0) is True
    assert store.reads == 5


def test_a_read_that_raises_is_tried_again_at_the_next_poll() -> None:
    store = _Store()
    watcher = StoreWatcher(lambda: store.stamp)
    watcher.poll(store.read)

    def broken() -> bool:
        raise OSError("store unreachable")

    with pytest.raises(OSError):
        watcher.poll(broken, force=True)
    assert watcher.poll(store.read) is True
