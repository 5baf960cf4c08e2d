"""Background work on an interval: a daemon thread that calls a function every N seconds, and
a watcher that tells a poller whether the registry's store may have changed since it last read.

Three pollers use them: the server's model store (aliases and the rollout state), the rollout
driver (decisions while serving) and the prediction log (its flush). Each must outlive any
failure of one call, so an exception is logged and the next call comes at the next interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["FULL_READ_SECONDS", "PeriodicThread", "StoreWatcher"]

FULL_READ_SECONDS = 30.0
"""A poller reads the registry at least this often, even when its store looks unchanged (a
write within the file system's timestamp granularity that keeps the file size could hide)."""

Stamp = tuple[int, ...]


class PeriodicThread:
    """Calls ``function`` every ``interval`` seconds in a daemon thread until ``stop``.

    The first call comes one interval after ``start``. An exception from ``function`` is logged
    (with its traceback) to ``logger`` and the thread carries on.

    Args:
        function: What to call; its return value is ignored.
        interval: Seconds between the end of one call and the start of the next.
        name: The thread's name (shown by ``py-spy``, in logs and in tracebacks).
        logger: Where failures are logged.
        failure: The message logged when a call raises.
        on_start: Called once in the new thread before the first interval (such as lowering
            the thread's priority).
    """

    def __init__(self, function: Callable[[], object], interval: float, *, name: str,
                 logger: logging.Logger, failure: str = "a background call failed; will retry",
                 on_start: Callable[[], object] | None = None) -> None:
        self.function = function
        self.interval = interval
        self.name = name
        self.logger = logger
        self.failure = failure
        self.on_start = on_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> PeriodicThread:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for a running call to end
        (a call still running after that finishes on its own; the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        if self.on_start is not None:
            self.on_start()
        while not self._stop.wait(self.interval):
            try:
                self.function()
            except Exception:  # noqa: BLE001 - a background thread must outlive any surprise
                self.logger.exception(self.failure)


class StoreWatcher:
    """Calls a reader only when the registry's store may have changed since its last read.

    A local store (MLflow on SQLite) gives a cheap stamp of its files; a poller that compares it
    reads the registry only after a write, and at least every ``full_read_seconds``. A store
    without a stamp (``None``: a tracking server) is read every time.

    Args:
        stamp_of: The store's stamp now (``Registry.store_stamp``).
    """

    def __init__(self, stamp_of: Callable[[], Stamp | None]) -> None:
        self.stamp_of = stamp_of
        self._seen: Stamp | None = None
        self._seen_at = 0.0

    def poll(self, read: Callable[[], bool], *, force: bool = False,
             full_read_seconds: float = FULL_READ_SECONDS) -> bool:
        """Call ``read`` unless the store's stamp is the one of the last read that returned
        True, less than ``full_read_seconds`` ago; whether ``read`` was called.

        ``read`` returns True when what it read may be trusted until the next write (False,
        such as after a partial failure, makes the next poll read again). An exception from
        ``read`` propagates, and the next poll reads again.

        Args:
            force: Call ``read`` whatever the stamp says (its result is remembered as usual).
        """
        stamp = self.stamp_of()
        if not force and stamp is not None and stamp == self._seen and \
                time.monotonic() - self._seen_at < full_read_seconds:
            return False
        self._seen = None
        if read():
            self._seen, self._seen_at = stamp, time.monotonic()
        return True
