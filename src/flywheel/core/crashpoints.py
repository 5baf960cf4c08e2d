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
``rollback.alias_moved``, ``backup.archive_half_written`` (half the files in the backup's
temporary archive), ``backup.archive_written`` (the archive complete and fsynced, not yet
renamed to the name asked for).

A rollout tick (``RolloutController.tick``): ``rollout.decision_pending`` (a promote or
switch decision written to the state as pending, no alias moved), ``rollout.alias_moved``
(the champion moved by the decision, the state still pending; the ``promote.*`` points fire
inside it too).

The prediction log: ``predlog.spool_converted`` (the converter wrote spool files' rows into
the log, its segments or an adopted file's own file, and has not deleted them yet),
``predlog.spool_deleted`` (just after they were deleted), ``predlog.parquet_temporary``
(a Parquet file fsynced under its temporary name, not yet renamed: the converter's or the
compaction's),
``predlog.compact_written`` (a compact file written, none of its sources deleted yet).
The converter is a child process of ``flywheel serve``; it inherits the variable.

``materialize.chunk_<n>`` (the feature store's materialization after chunk n) and
``stream.written`` (a stream record written, not acknowledged) are used by their own tests.
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
