"""Which aliases a newly registered version gets, safely when several processes register at once.

The rules: the model's first version becomes ``champion``; every later version makes
``challenger`` point at the newest version that is not the champion. Promoting a challenger to
champion is an explicit ``set_alias`` call, never a side effect of registering.

MLflow has no compare-and-set for aliases, so the rules are written to converge instead of
relying on a lock (which a remote tracking server could not share): each registrant, after
writing, reads the aliases again and repeats until they satisfy the rules. Whoever writes last
has checked after writing; a version created later is checked by its own registrant.
"""

from __future__ import annotations

import functools
import random
import time
from typing import TYPE_CHECKING

from flywheel.core.crashpoints import crash_point
from flywheel.registry._retry import retry_on_contention

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["CHALLENGER", "CHAMPION", "name_filter", "promote"]

CHAMPION = "champion"
CHALLENGER = "challenger"

_ROUNDS = 20


def promote(client: MlflowClient, name: str, version: str) -> None:
    """Apply the alias rules after ``version`` of model ``name`` was created.

    Idempotent: applied again (by recovery after a crash), it changes nothing that holds.
    """
    crash_point("register.version_created")
    mine = int(version)
    for _ in range(_ROUNDS):
        numbers = _version_numbers(client, name)
        aliases = _aliases(client, name)
        champion = aliases.get(CHAMPION)
        if champion is None and mine == min(numbers, default=mine):
            _set(client, name, CHAMPION, mine)
            return
        # Until the first version's registrant names it champion, it is the champion-to-be.
        reserved = int(champion) if champion is not None else min(numbers, default=mine)
        newest = max((n for n in numbers if n != reserved), default=None)
        if newest is None or aliases.get(CHALLENGER) == str(newest):
            return
        _set(client, name, CHALLENGER, newest)
        time.sleep(random.uniform(0.0, 0.05))  # let a concurrent writer land before re-checking


def _set(client: MlflowClient, name: str, alias: str, version: int) -> None:
    retry_on_contention(lambda: client.set_registered_model_alias(name, alias, str(version)))


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    model = retry_on_contention(lambda: client.get_registered_model(name))
    return {alias: str(v) for alias, v in model.aliases.items()}


def name_filter(name: str) -> str:
    """``search_model_versions`` filter for the model ``name``."""
    quote = '"' if "'" in name else "'"
    return f"name = {quote}{name}{quote}"


def _version_numbers(client: MlflowClient, name: str) -> set[int]:
    numbers: set[int] = set()
    token: str | None = None
    while True:
        page = retry_on_contention(functools.partial(
            client.search_model_versions, name_filter(name), max_results=1000, page_token=token))
        numbers.update(int(v.version) for v in page)
        token = page.token
        if not token:
            return numbers
