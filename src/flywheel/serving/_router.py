"""Per-request routing by the rollout state: which loaded version answers, and who is mirrored.

The router turns the stored state into a small plan whenever the state or the loaded models
change (the store's reconcile thread), so a request does only this: look up the unit key (one
header, or one record field), hash it with CRC-32 seeded by the rollout id (same unit, same
version, in every worker and replica), and bisect a tuple of cumulative weights. Without a
rollout it does one attribute check. ``bench/router_cost.py`` measures both.

Canary and A/B splits are sticky and monotone: a unit's hash is fixed, so the units that get
the challenger at 5 % still get it at 25 %. A request without a unit key is routed at random.
Traffic only goes to versions that are loaded and ready; a version that failed to load gets
no traffic (its share goes to the champion) and ``problem`` says why.
"""

from __future__ import annotations

import bisect
import random
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel.rollout import RolloutState
    from flywheel.serving._models import ServedModel

__all__ = ["RoutePlan", "Router", "Target"]

CHAMPION_ARM = "champion"
_GOLDEN = 0x9E3779B1  # spreads CRC-32's linear structure over the high bits
_SCALE = 1.0 / 4294967296.0


Target = tuple["ServedModel", str, bool]
"""A route's model (None: the store's default), its arm name, and whether it is a candidate
(a version under test, whose failures the champion answers) rather than the champion."""


class RoutePlan:
    """A rollout's routing, resolved against the loaded models.

    ``targets[i]`` answers when the unit's position in [0, 1) falls below ``cuts[i]`` (and
    at or above the previous cut); ``None`` there means the champion, answered as without a
    rollout. ``fallback`` answers when a candidate fails: the rollout's champion version.
    """

    __slots__ = ("cuts", "fallback", "field", "header", "rollout", "salt", "shadow",
                 "shadow_share", "targets", "timeout_s")

    def __init__(self, *, rollout: str, cuts: tuple[float, ...],
                 targets: tuple[Target | None, ...], header: bytes | None, field: str | None,
                 timeout_s: float, fallback: ServedModel | None = None,
                 shadow: ServedModel | None = None, shadow_share: float = 0.0) -> None:
        self.rollout = rollout
        self.cuts, self.targets = cuts, targets
        self.header, self.field = header, field
        self.salt = zlib.crc32(rollout.encode())
        self.timeout_s = timeout_s
        self.fallback = fallback
        self.shadow, self.shadow_share = shadow, shadow_share

    def position(self, headers: list[tuple[bytes, bytes]], records: list[dict[str, Any]]
                 ) -> float:
        """The unit's place in [0, 1): its key's hash, or a random draw without a key."""
        key: bytes | None = None
        header = self.header
        if header is not None:
            for name, value in headers:
                if name == header:
                    key = value
                    break
        if key is None and self.field is not None and records:
            found = records[0].get(self.field)
            if found is not None:
                key = str(found).encode()
        if key is None:
            return random.random()
        return ((zlib.crc32(key, self.salt) * _GOLDEN) & 0xFFFFFFFF) * _SCALE


class Router:
    """Chooses the version for each request from the current ``RoutePlan``.

    Attributes:
        plan: The plan in force; swapped whole by ``update``, read without a lock.
        problem: Why the plan differs from the state (a version not loaded), for /readyz.
        weights: Traffic share by (arm, version), for the metrics gauge.
    """

    def __init__(self) -> None:
        self.plan: RoutePlan | None = None
        self.problem: str | None = None
        self.weights: dict[tuple[str, str], float] = {}

    def route(self, headers: list[tuple[bytes, bytes]], records: list[dict[str, Any]]
              ) -> Target | None:
        """The route for this request, or None for the champion's usual path."""
        plan = self.plan
        if plan is None:
            return None
        return plan.targets[bisect.bisect_right(plan.cuts, plan.position(headers, records))]

    def mirror(self) -> tuple[ServedModel, float] | None:
        """The shadow target and its share, if the rollout mirrors traffic."""
        plan = self.plan
        if plan is None or plan.shadow is None:
            return None
        return plan.shadow, plan.shadow_share

    def update(self, state: RolloutState | None, by_version: Mapping[str, ServedModel]) -> None:
        """Rebuild the plan from ``state`` and the loaded versions."""
        if state is None or not state.running:
            self.plan, self.problem, self.weights = None, None, {}
            return
        traffic = state.traffic()
        policy = state.policy
        missing = sorted(v for v in traffic.versions if v not in by_version)
        self.problem = (f"rollout {state.id}: version(s) {', '.join(missing)} not loaded; "
                        "their traffic goes to the champion") if missing else None
        cuts: list[float] = []
        targets: list[Target | None] = []
        weights: dict[tuple[str, str], float] = {}
        total = 0.0
        for route in traffic.routes:
            if route.weight <= 0.0:
                continue
            served = by_version.get(route.version)
            candidate = route.version != state.champion
            if served is None or (not candidate and route.arm == CHAMPION_ARM):
                target: Target | None = None
                key = (CHAMPION_ARM, state.champion)
            else:
                target, key = (served, route.arm, candidate), (route.arm, route.version)
            total += route.weight
            cuts.append(total)
            targets.append(target)
            weights[key] = weights.get(key, 0.0) + route.weight
        cuts = [c / total for c in cuts] if total > 0 else [1.0]
        targets = targets or [None]
        cuts[-1] = 2.0  # a position is < 1.0, so bisect never runs past the last target
        shadow = traffic.shadow
        shadow_model = by_version.get(shadow.version) if shadow is not None else None
        header = policy.unit_header.encode("latin-1") if policy.unit_header else None
        self.weights = {k: w / total for k, w in weights.items()} if total > 0 else {}
        self.plan = RoutePlan(rollout=state.id, cuts=tuple(cuts), targets=tuple(targets),
                              header=header, field=policy.unit_field,
                              timeout_s=policy.timeout_ms / 1000.0,
                              fallback=by_version.get(state.champion), shadow=shadow_model,
                              shadow_share=shadow.weight
                              if shadow is not None and shadow_model is not None else 0.0)
