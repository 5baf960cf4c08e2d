"""Reaching Ray: a local Ray for one run, or a cluster by address, with failures in words.

Ray retries a closed GCS address for about two minutes and then exits the process; a Ray
Client address times out after 30 s. An address is probed with one TCP connection first, so
a wrong one is a ``ConfigError`` naming it within seconds. Ray loads only when called: the
embedded path never imports it.
"""

from __future__ import annotations

import os
import socket
from types import ModuleType
from typing import Any

from flywheel.core.errors import ConfigError

__all__ = ["connect_ray"]

_CONNECT_SECONDS = 5.0


def connect_ray(address: str | None, *, cpus: int, setting: str) -> tuple[ModuleType, bool]:
    """Ray initialized for ``address``, and whether this call started it (so shuts it down).

    Args:
        address: None starts a local Ray; ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``
            joins a running cluster. A process already connected keeps its connection.
        cpus: CPUs a local Ray offers (at least the machine's).
        setting: The option or spec key the address came from, for the messages.

    Raises:
        ConfigError: If Ray is not installed or the address cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{setting}: running on Ray needs Ray, which is not installed; "
                          "`pip install flywheel[ray]`.") from None
    if ray.is_initialized():
        return ray, False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    if address is None:
        ray.init(num_cpus=max(cpus, os.cpu_count() or 1), include_dashboard=False, **quiet)
        return ray, True
    if address != "auto":
        _probe(address, setting)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise _unreachable(address, exc, setting) from exc
    return ray, True


def _probe(address: str, setting: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=_CONNECT_SECONDS):
            pass
    except (OSError, ValueError) as exc:
        raise _unreachable(address, exc, setting) from exc


def _unreachable(address: str, exc: BaseException, setting: str) -> ConfigError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ConfigError(
        f"{setting}: cannot reach Ray at {address!r} ({first}); expected a running cluster's "
        "head (`ray start --head` prints its address). Check the address and port, or leave "
        "the address unset to start a local Ray for the run.")
