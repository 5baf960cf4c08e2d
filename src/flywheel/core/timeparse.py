"""ISO 8601 times as users and clients write them: ``Z`` for UTC, UTC when no zone is given."""

from __future__ import annotations

import datetime as dt

__all__ = ["parse_iso_time"]


def parse_iso_time(text: str) -> dt.datetime:
    """An aware datetime from ISO 8601 text (``2024-07-01``, ``2024-07-01T12:00Z``,
    ``2024-07-01T14:00+02:00``); a time without a zone is taken as UTC.

    Raises:
        ValueError: If ``text`` is not an ISO 8601 date or time (callers turn it into their own
            error, which says what input was expected).
    """
    when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
