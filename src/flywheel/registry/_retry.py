"""Retrying MLflow store calls that lose a race for the database.

SQLite lets one writer in at a time. Two processes that register versions (or log Optuna trials)
at once can get ``database is locked`` even with MLflow's 20 s busy timeout, because SQLite
refuses a reader's upgrade to writer outright when another writer waits; MLflow reports it as
``TEMPORARILY_UNAVAILABLE``. Such a call never committed, so running it again is safe.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["is_contention", "retry_on_contention"]

T = TypeVar("T")

_CONTENTION_TEXT = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "giving up after",  # MLflow's create_model_version after its own version-number retries
    "could not serialize access",  # PostgreSQL serialization failure
    "deadlock",
    "lock wait timeout",  # MySQL
)
_CONTENTION_CODES = ("TEMPORARILY_UNAVAILABLE",)

ATTEMPTS = 12
FIRST_DELAY = 0.05
MAX_DELAY = 2.0


def is_contention(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, means another writer held the store."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "error_code", None) in _CONTENTION_CODES:
            return True
        text = str(current).lower()
        if any(pattern in text for pattern in _CONTENTION_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_on_contention(call: Callable[[], T], *, attempts: int = ATTEMPTS,
                        first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY) -> T:
    """Run ``call``, again after a growing, jittered pause while it fails on contention.

    Other errors, and the last contention error, propagate unchanged.
    """
    delay, attempt = first_delay, 1
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= attempts or not is_contention(exc):
                raise
        # Jitter keeps two processes that collided from colliding again in lockstep.
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay, attempt = min(delay * 2, max_delay), attempt + 1
