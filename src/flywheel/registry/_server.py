"""Reaching the MLflow tracking store: bounded waits for a server, and a quick first check.

MLflow retries a failed HTTP request 7 times with a backoff factor of 2 and waits up to 120 s
for each answer, so an unreachable server makes a command sit silent for about four minutes.
A registry for an ``http(s)://`` store therefore sets MLflow's own limits from the spec
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``_TIMEOUT`` and ``_BACKOFF_FACTOR``, which MLflow reads
at every request) and, before its first call, opens one TCP connection to the server: a refusal
or a timeout is reported at once as a warning, retried on the same schedule, and then raised as
a :class:`~flywheel.core.errors.TrackingUnreachableError`.

A registry for a database store (``postgresql://``) bounds MLflow's connection pools the same
way, through ``MLFLOW_SQLALCHEMYSTORE_POOL_SIZE`` and ``_MAX_OVERFLOW``, which MLflow reads when
it creates an engine (one for tracking, one for the model registry, per process).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

import requests

from flywheel.core.database import PoolLimits
from flywheel.core.errors import TrackingUnreachableError

__all__ = ["ServerLimits", "apply_limits", "apply_pool", "check_reachable", "is_server_uri",
           "lost_connection"]

_log = logging.getLogger(__name__)

_ENV_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_ENV_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
_ENV_BACKOFF = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
_ENV_POOL_SIZE = "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"
_ENV_MAX_OVERFLOW = "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"
# The values this process set, so a later registry may replace them but a user's own stay.
_SET_HERE: dict[str, str] = {}


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """How long a registry waits for a tracking server (``tracking`` section of the spec).

    Attributes:
        connect_timeout_s: Longest wait for the server to accept a connection.
        request_timeout_s: Longest wait for one answer (MLflow's ``MLFLOW_HTTP_REQUEST_TIMEOUT``).
        retries: Retries of a failed connection or request.
        backoff_s: Pause before the second retry; it doubles for each one after.
        pool_size: A database store's connections kept open per engine.
        max_overflow: A database store's connections an engine may open beyond ``pool_size``.
    """

    connect_timeout_s: float = 3.0
    request_timeout_s: int = 30
    retries: int = 2
    backoff_s: int = 1
    pool_size: int = 5
    max_overflow: int = 5

    def pool(self) -> PoolLimits:
        """The same bounds for a database store's engine and its first check."""
        return PoolLimits(pool_size=self.pool_size, max_overflow=self.max_overflow,
                          connect_timeout_s=self.connect_timeout_s, retries=self.retries,
                          backoff_s=self.backoff_s)

    def pauses(self) -> list[float]:
        """The pauses before each retry: none before the first, as urllib3 does under MLflow."""
        return [0.0 if k == 0 else float(self.backoff_s * 2 ** (k - 1))
                for k in range(self.retries)]


def is_server_uri(uri: str) -> bool:
    """Whether ``uri`` names an MLflow tracking server reached over HTTP(S)."""
    return urllib.parse.urlparse(uri).scheme.lower() in ("http", "https")


def apply_limits(limits: ServerLimits) -> None:
    """Set MLflow's HTTP retry and timeout variables to ``limits``.

    A variable the user set in the environment wins over the spec; one set by an earlier
    registry of this process is replaced.
    """
    _set_env({_ENV_RETRIES: str(limits.retries), _ENV_TIMEOUT: str(limits.request_timeout_s),
              _ENV_BACKOFF: str(limits.backoff_s)})


def apply_pool(limits: ServerLimits) -> None:
    """Set MLflow's SQLAlchemy pool variables to ``limits`` (the user's own win, as above)."""
    _set_env({_ENV_POOL_SIZE: str(limits.pool_size),
              _ENV_MAX_OVERFLOW: str(limits.max_overflow)})


def _set_env(wanted: dict[str, str]) -> None:
    for name, value in wanted.items():
        current = os.environ.get(name)
        if current is None or current == _SET_HERE.get(name):
            os.environ[name] = value
            _SET_HERE[name] = value


def check_reachable(uri: str, limits: ServerLimits, *,
                    sleep: Callable[[float], None] = time.sleep, shown: str | None = None
                    ) -> None:
    """Open (and close) one TCP connection to the server of ``uri``, retrying as ``limits`` say.

    Each failure before the last is logged as a warning at once, naming the wait ahead. Skipped
    when the environment routes ``uri`` through a proxy, which is what would be reached.
    Messages name ``shown`` (the URI with its password masked) when given.

    Raises:
        TrackingUnreachableError: If no attempt connects.
    """
    parsed = urllib.parse.urlparse(uri)
    host = parsed.hostname
    if not host or _proxied(uri):
        return
    port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    pauses = limits.pauses()
    started = time.monotonic()
    for attempt in range(len(pauses) + 1):
        try:
            with socket.create_connection((host, port), timeout=limits.connect_timeout_s):
                return
        except OSError as exc:
            reason = _reason(exc, limits.connect_timeout_s)
        if attempt == len(pauses):
            raise TrackingUnreachableError(shown or uri, reason, attempts=attempt + 1,
                                           waited=time.monotonic() - started)
        if attempt == 0:
            left = len(pauses)
            budget = sum(pauses) + left * limits.connect_timeout_s
            _log.warning("The MLflow tracking server %s is not answering (%s); retrying %d more "
                         "time(s), giving up within %.0f s (tracking.retries, "
                         "tracking.connect_timeout_seconds in flywheel.yaml).",
                         shown or uri, reason, left, budget)
        sleep(pauses[attempt])


def _reason(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no connection within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror or exc}"
    return exc.strerror.lower() if exc.strerror else str(exc)


def _proxied(uri: str) -> bool:
    proxies = urllib.request.getproxies()
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    host = urllib.parse.urlparse(uri).hostname or ""
    return scheme in proxies and not urllib.request.proxy_bypass(host)


def lost_connection(exc: BaseException) -> str | None:
    """What went wrong, when ``exc`` (or what it was raised from) is a failed HTTP connection.

    MLflow wraps the ``requests`` error in an ``MlflowException`` raised while handling it,
    and a database store's lost connection (SQLAlchemy's ``OperationalError``) the same way.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.Timeout):
            return "timed out"
        if isinstance(current, requests.exceptions.ConnectionError):
            return "the connection failed"
        if type(current).__name__ == "OperationalError" and _is_db_outage(str(current)):
            return "the database connection failed"
        current = current.__cause__ or current.__context__
    return None



def _is_db_outage(text: str) -> bool:
    low = text.lower()
    return any(part in low for part in (
        "connection refused", "server closed the connection", "terminating connection",
        "connection failed", "could not connect", "is the server running", "timeout expired",
        "the database system is shutting down", "the database system is starting up",
        "consuming input failed", "connection is closed", "connection to server"))
