"""Named crash points, for testing that a change survives a process killed at a given moment.

``crash_point("promote.alias_moved")`` kills the process with SIGKILL, as an operator's
``kill -9`` or the kernel's OOM killer would, when the environment variable
``FLYWHEEL_CRASH_AT`` names that point; otherwise it does nothing (one dictionary lookup).
Tests run a real ``flywheel`` subprocess with the variable set and check what a later command
finds and recovers.

The points: ``register.version_created`` (a version exists, no alias set yet),
``register.alias_moved`` (its aliases set, not yet in the audit log),
``promote.intent_written`` (the intent logged, no alias moved), ``promote.alias_moved``,
``promote.champion_recorded`` (champion recorded, the challenger alias not yet retired),
``rollback.alias_moved``.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "FLYWHEEL_CRASH_AT"


def crash_point(name: str) -> None:
    """Kill this process at once (SIGKILL: no cleanup, no flush) if ``$FLYWHEEL_CRASH_AT``
    is ``name``."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
