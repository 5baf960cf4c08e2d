"""The webhook alert sink: POST each alert as JSON, from a background thread.

``send`` only puts the alert on a bounded queue and returns; a daemon thread posts it with
``urllib`` (no extra dependency), retrying failures (connection errors, timeouts, HTTP 5xx and
429) with exponential backoff. A full queue drops the alert with a warning rather than wait, so
a slow or dead endpoint never holds monitoring up. ``close`` waits a bounded time for the queue
to drain, so a one-shot `flywheel monitor` delivers before it exits.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.core.errors import ConfigError

if TYPE_CHECKING:
    from flywheel.core.spec import AlertSinkSpec
    from flywheel.monitoring._alert import Alert

__all__ = ["WebhookSink"]

log = logging.getLogger("flywheel.monitoring")
_QUEUE = 1000


class WebhookSink:
    """POST alerts to ``url`` without blocking the caller.

    Attributes:
        delivered, failed: Counts so far (alerts, not attempts).
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 timeout: float = 5.0, retries: int = 3, backoff: float = 1.0) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.delivered = self.failed = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(_QUEUE)
        self._thread = threading.Thread(target=self._run, name="flywheel-webhook", daemon=True)
        self._thread.start()

    @classmethod
    def from_spec(cls, spec: AlertSinkSpec, root: Path) -> WebhookSink:
        url = spec.url
        if spec.url_env:
            url = os.environ.get(spec.url_env) or url
            if not url:
                raise ConfigError(f"monitoring.alerts.sinks: webhook URL variable "
                                  f"{spec.url_env} is not set; export it or give `url`.")
        if not url:
            raise ConfigError("monitoring.alerts.sinks: a webhook sink needs `url` or "
                              "`url_env`.")
        return cls(url, headers=spec.headers, timeout=spec.timeout_seconds,
                   retries=spec.retries, backoff=spec.backoff_seconds)

    def send(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert.to_dict())
        except queue.Full:
            self.failed += 1
            log.warning("webhook queue full; dropped alert %s", alert.rule)

    def close(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` seconds for queued alerts to be delivered or given up."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                self._post(body)
            finally:
                self._queue.task_done()

    def _post(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        wait = self.backoff
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=self.headers,
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    response.read()
                self.delivered += 1
                return
            except urllib.error.HTTPError as exc:
                retry = exc.code >= 500 or exc.code == 429
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                retry, problem = True, str(getattr(exc, "reason", exc))
            if not retry or attempt == self.retries:
                self.failed += 1
                log.warning("webhook %s: alert not delivered after %d attempt(s) (%s)",
                            self.url, attempt + 1, problem)
                return
            time.sleep(wait)
            wait *= 2
