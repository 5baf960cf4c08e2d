"""How a model's reliance on its columns moves: global importance from the exact per-row
contributions (mean absolute contribution per column) on the reference sample and on the
window, as shares of their totals, and the total variation distance between the two."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

__all__ = ["ContributionShift", "Explain", "contribution_shift"]

Explain = Callable[[pd.DataFrame], Mapping[str, float] | None]
"""Mean absolute contribution per column over a frame's rows (None: not explainable)."""


@dataclasses.dataclass(frozen=True)
class ContributionShift:
    """Contribution shares per column on the reference and on the window, largest first."""

    reference: Mapping[str, float]
    current: Mapping[str, float]
    distance: float
    """Total variation distance of the shares: 0 same reliance, 1 entirely different."""

    def rows(self) -> list[tuple[str, float, float]]:
        """(column, reference share, current share), by the largest move first."""
        columns = dict.fromkeys([*self.reference, *self.current])
        moves = [(c, self.reference.get(c, 0.0), self.current.get(c, 0.0)) for c in columns]
        return sorted(moves, key=lambda m: -abs(m[2] - m[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"reference": dict(self.reference), "current": dict(self.current),
                "distance": self.distance}


def contribution_shift(reference: Mapping[str, float],
                       current: Mapping[str, float]) -> ContributionShift | None:
    """The shift between two importances (mean absolute contributions); None if either
    has no positive total."""
    ref, cur = _shares(reference), _shares(current)
    if ref is None or cur is None:
        return None
    # Summed in a fixed order: over a set, the order (and the last digit) would change with
    # the process's string hashing.
    columns = dict.fromkeys([*ref, *cur])
    distance = 0.5 * sum(abs(ref.get(c, 0.0) - cur.get(c, 0.0)) for c in columns)
    return ContributionShift(ref, cur, distance)


def _shares(importance: Mapping[str, float]) -> dict[str, float] | None:
    total = sum(max(v, 0.0) for v in importance.values())
    if total <= 0:
        return None
    return {c: max(v, 0.0) / total for c, v in importance.items()}
