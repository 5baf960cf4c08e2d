"""Reading and writing a project's rollout state in the registry (model tag
``flywheel.rollout``), and the audit log's name for rollout events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flywheel.rollout import STATE_TAG, RolloutState, parse_state

if TYPE_CHECKING:
    from flywheel.registry.base import Registry

__all__ = ["ROLLOUT_ALIAS", "read_state", "write_state"]

ROLLOUT_ALIAS = "rollout"
"""The audit log's ``alias`` for rollout events (from: the champion, to: the challenger)."""


def read_state(tags: Mapping[str, str]) -> RolloutState | None:
    """The rollout state in the registered model's tags, or None if none was ever started.

    Raises:
        RolloutError: If the stored state is damaged.
    """
    text = tags.get(STATE_TAG)
    return parse_state(text) if text else None


def write_state(registry: Registry, state: RolloutState) -> RolloutState:
    """Store ``state`` as the next revision and return what was stored.

    Callers hold the workspace ``registry`` lock, so revisions never interleave.
    """
    stored = state.model_copy(update={"revision": state.revision + 1,
                                      "updated": dt.datetime.now(dt.UTC)})
    registry.set_model_tag(STATE_TAG, stored.to_tag())
    return stored
