"""The rollout state: one JSON document stored in the registry beside the aliases.

It lives in the registered model's tag ``flywheel.rollout``, so every server worker and replica
reads it together with the aliases (one registry call) and routes the same way, and the
controller resumes from it after any restart. Each write bumps ``revision``.

The state machine::

    running ──advance──► running (next stage)          canary
    running ──switch───► running (phase switched)       blue-green
    running ──reweight─► running (new weights)          bandit
    running ──promote──► promoted      (the challenger became champion)
    running ──rollback─► rolled_back   (traffic returned to the champion)
    running ──conclude─► completed     (ended without a change: shadow, A/B no difference)
    running ──stop─────► stopped       (by hand)

A decision that moves an alias is first written as ``pending``; a controller that finds a
pending action (after a crash) completes it, and completing it twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from flywheel.core.errors import RolloutError
from flywheel.rollout._policies import Policy

__all__ = ["STATE_TAG", "Route", "RolloutState", "Status", "Traffic", "new_state", "parse_state"]

STATE_TAG = "flywheel.rollout"
Status = Literal["running", "promoted", "rolled_back", "completed", "stopped"]
CHAMPION_ARM = "champion"
CHALLENGER_ARM = "challenger"
SHADOW_ARM = "shadow"


@dataclasses.dataclass(frozen=True)
class Route:
    """Traffic share ``weight`` answered by ``version``, logged as ``arm``."""

    arm: str
    version: str
    weight: float


@dataclasses.dataclass(frozen=True)
class Traffic:
    """Who answers (weights sum to 1) and who is mirrored off the response path."""

    routes: tuple[Route, ...]
    shadow: Route | None = None

    @property
    def versions(self) -> set[str]:
        found = {r.version for r in self.routes}
        if self.shadow is not None:
            found.add(self.shadow.version)
        return found


class RolloutState(BaseModel):
    """One rollout of one model: its policy and where it stands."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    model: str
    policy: Policy
    status: Status = "running"
    champion: str
    """The champion when the rollout started (blue-green: the one switched away from)."""
    challenger: str
    """The version rolled out (bandit: the first arm that is not the champion)."""
    stage: int = 0
    phase: str = ""
    started: dt.datetime
    stage_started: dt.datetime
    updated: dt.datetime
    revision: int = 0
    weights: dict[str, float] = Field(default_factory=dict)
    """Bandit: traffic share per version."""
    audited_weights: dict[str, float] = Field(default_factory=dict)
    """Bandit: the weights last written to the audit log (small moves are not)."""
    p_value: float = 1.0
    """A/B: the always-valid p-value, the smallest seen so far."""
    plan: dict[str, Any] | None = None
    """A/B: the sample-size plan shown up front."""
    pending: Literal["promote", "rollback"] | None = None
    pending_version: str | None = None
    decision: dict[str, Any] | None = None
    """The last decision: action, reason, breached limits, evidence summary, time."""
    counts: dict[str, Any] = Field(default_factory=dict)
    """The evidence summary of the last look, per arm."""
    started_by: str = ""
    reason: str = ""
    forced: bool = False
    """Started with ``--force`` although the version failed its gates; its promotion is then
    forced too, with the rollout's decision as the reason."""

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def kind(self) -> str:
        return self.policy.kind

    @property
    def outcome_champion(self) -> str:
        """The champion this rollout left: the challenger once promoted (or switched to and
        then stopped), else the champion it started from."""
        if self.status == "promoted" or (self.phase == "switched" and self.status == "stopped"):
            return self.challenger
        return self.champion

    def traffic(self, champion: str | None = None) -> Traffic:
        """The routing this state asks for; a finished rollout sends everything to the
        champion: ``champion`` (the registry's now) if given, else the one it left."""
        if not self.running:
            return Traffic((Route(CHAMPION_ARM, champion or self.outcome_champion, 1.0),))
        policy = self.policy
        if policy.kind == "canary":
            share = policy.stages[min(self.stage, len(policy.stages) - 1)] / 100.0
            return _split(self.champion, self.challenger, share)
        if policy.kind == "ab":
            return _split(self.champion, self.challenger, policy.split)
        if policy.kind == "shadow":
            return Traffic((Route(CHAMPION_ARM, self.champion, 1.0),),
                           shadow=Route(SHADOW_ARM, self.challenger, policy.share))
        if policy.kind == "blue_green":
            if self.phase == "switched":
                return Traffic((Route(CHALLENGER_ARM, self.challenger, 1.0),))
            return Traffic((Route(CHAMPION_ARM, self.champion, 1.0),))
        weights = self.weights or {v: 1.0 / len(policy.arms) for v in policy.arms}
        return Traffic(tuple(Route(arm_name(v), v, weights.get(v, 0.0)) for v in policy.arms))

    def arm_versions(self) -> dict[str, str]:
        """Arm name to version, for every arm this rollout may log."""
        if self.policy.kind == "bandit":
            return {arm_name(v): v for v in self.policy.arms}
        arms = {CHAMPION_ARM: self.champion, CHALLENGER_ARM: self.challenger}
        if self.policy.kind == "shadow":
            arms[SHADOW_ARM] = self.challenger
        return arms

    def summary(self) -> str:
        """One line: kind, versions, stage or weights, status."""
        where = ""
        if self.policy.kind == "canary" and self.running:
            where = f", stage {self.stage + 1}/{len(self.policy.stages)} " \
                    f"({self.policy.stages[self.stage]:g} %)"
        return (f"{self.kind} of version {self.challenger} against champion {self.champion}"
                f"{where}: {self.status}")

    def to_tag(self) -> str:
        # Nulls are kept: a limit set to null (off) must not read back as its default.
        return self.model_dump_json()


def arm_name(version: str) -> str:
    """A bandit arm's name in the prediction log."""
    return f"v{version}"


def _split(champion: str, challenger: str, share: float) -> Traffic:
    return Traffic((Route(CHAMPION_ARM, champion, 1.0 - share),
                    Route(CHALLENGER_ARM, challenger, share)))


def new_state(*, model: str, policy: Any, champion: str, challenger: str,
              started_by: str, reason: str, plan: dict[str, Any] | None = None,
              now: dt.datetime | None = None, forced: bool = False) -> RolloutState:
    """A running rollout at its first stage."""
    now = now or dt.datetime.now(dt.UTC)
    weights = {}
    if policy.kind == "bandit":
        weights = {v: 1.0 / len(policy.arms) for v in policy.arms}
    return RolloutState(id=uuid.uuid4().hex[:12], model=model, policy=policy,
                        champion=champion, challenger=challenger, started=now,
                        stage_started=now, updated=now, weights=weights, plan=plan,
                        phase="warming" if policy.kind == "blue_green" else "",
                        started_by=started_by, reason=reason, forced=forced)


_ADAPTER = TypeAdapter(RolloutState)


def parse_state(text: str) -> RolloutState:
    """The state stored in the registry tag.

    Raises:
        RolloutError: If the tag does not hold a valid state (edited by hand, or written by
            another flywheel version).
    """
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RolloutError(
            f"the rollout state stored in the registry (model tag {STATE_TAG!r}) is not valid "
            f"({where}: {first['msg']}); `flywheel rollout stop --force` clears it, after "
            "which traffic goes to the champion.") from None
