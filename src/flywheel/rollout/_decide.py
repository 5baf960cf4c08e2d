"""Decisions: from a rollout's state and its evidence to what happens next. Pure functions.

    canary      any breach: rollback; stage ready (requests, labels) and clean: next stage;
                the last stage clean: promote
    shadow      any breach of the shadowed calls: rollback; enough clean requests: conclude
                (then stop, start a canary, or promote, as the policy says)
    ab          a guard breach: rollback; the sequential test significant: promote if the
                challenger is better, rollback if worse; the planned sample reached: no
                difference
    blue_green  warming: switch once the health check passed (rollback if it failed);
                switched: a breach switches back, a clean bake completes it
    bandit      a guard breach: rollback; one arm best with probability decide_at (or the
                sample spent): promote it (conclude if it is the champion); else new weights
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast

from flywheel.rollout._bandit import thompson_weights
from flywheel.rollout._evidence import Evidence
from flywheel.rollout._limits import check_limits
from flywheel.rollout._outcomes import BINARY_METRICS, GREATER_IS_BETTER
from flywheel.rollout._policies import (
    ABPolicy,
    BanditPolicy,
    BlueGreenPolicy,
    CanaryPolicy,
    ShadowPolicy,
)
from flywheel.rollout._sequential import msprt
from flywheel.rollout._state import CHALLENGER_ARM, CHAMPION_ARM, SHADOW_ARM, RolloutState, arm_name

__all__ = ["Action", "Decision", "HealthCheck", "decide"]

Action = Literal["wait", "advance", "promote", "rollback", "switch", "reweight", "conclude"]
_MIN_TEST_N = 30
_REWEIGHT_STEP = 0.01


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    """A blue-green warm-up: the new version scored ``rows`` rows; ``problems`` if not fine."""

    ok: bool
    rows: int
    p99_ms: float
    problems: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do, why, and the numbers behind it (all of it goes to the audit log).

    Attributes:
        breached: The limits breached, one sentence each (a rollback's cause).
        checks: Each check's numbers (counts, metrics, p-values, bounds).
        stage: The stage to move to (advance).
        weights: New traffic shares by version (reweight).
        version: The version to make champion (promote).
        p_value: The A/B test's always-valid p-value after this look.
        then: After a concluded shadow: ``canary`` or ``promote`` to follow, if any.
    """

    action: Action
    reason: str
    breached: tuple[str, ...] = ()
    checks: dict[str, Any] = dataclasses.field(default_factory=dict)
    stage: int | None = None
    weights: dict[str, float] | None = None
    version: str | None = None
    p_value: float | None = None
    then: str | None = None

    @property
    def final(self) -> bool:
        return self.action in ("promote", "rollback", "conclude")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, (), {})}


def decide(state: RolloutState, evidence: Evidence, *,
           health: HealthCheck | None = None) -> Decision:
    """The decision for a running rollout at this look."""
    kind = state.policy.kind
    if kind == "canary":
        return _canary(state, evidence)
    if kind == "shadow":
        return _shadow(state, evidence)
    if kind == "ab":
        return _ab(state, evidence)
    if kind == "blue_green":
        return _blue_green(state, evidence, health)
    return _bandit(state, evidence)


def _canary(state: RolloutState, ev: Evidence) -> Decision:
    policy = cast(CanaryPolicy, state.policy)
    challenger, champion = ev.arm(CHALLENGER_ARM), ev.arm(CHAMPION_ARM)
    needs_labels = policy.limits.max_metric_drop is not None and policy.min_labels > 0
    ready = challenger.stage_requests >= policy.min_requests and (
        not needs_labels or challenger.stage_labels >= policy.min_labels)
    check = check_limits(policy.limits, challenger, champion, stage_end=ready,
                         metric=policy.metric)
    share = policy.stages[state.stage]
    where = f"stage {state.stage + 1}/{len(policy.stages)} ({share:g} %)"
    if check.breached:
        return Decision("rollback", f"canary {where}: " + "; ".join(check.breached),
                        check.breached, check.numbers)
    if not ready:
        waiting = f"{challenger.stage_requests}/{policy.min_requests} challenger requests"
        if needs_labels:
            waiting += f", {challenger.stage_labels}/{policy.min_labels} labels"
        return Decision("wait", f"canary {where}: collecting evidence ({waiting})",
                        checks=check.numbers)
    if state.stage + 1 < len(policy.stages):
        nxt = policy.stages[state.stage + 1]
        return Decision("advance", f"canary {where} passed every limit on "
                        f"{challenger.stage_requests} requests; next: {nxt:g} %",
                        checks=check.numbers, stage=state.stage + 1)
    return Decision("promote", f"canary passed every stage up to {share:g} % within the "
                    "limits", checks=check.numbers, version=state.challenger)


def _shadow(state: RolloutState, ev: Evidence) -> Decision:
    policy = cast(ShadowPolicy, state.policy)
    shadow, champion = ev.arm(SHADOW_ARM), ev.arm(CHAMPION_ARM)
    ready = shadow.requests >= policy.min_requests
    check = check_limits(policy.limits, shadow, champion, stage_end=ready, divergence=True)
    numbers = dict(check.numbers)
    breached = list(check.breached)
    if ev.shadow is not None:
        numbers["shadow"] = ev.shadow.to_dict()
        if ready and policy.min_agreement is not None and ev.shadow.pairs and \
                ev.shadow.agreement < policy.min_agreement:
            breached.append(f"agreement: the challenger gave the champion's answer on "
                            f"{ev.shadow.agreement:.1%} of {ev.shadow.pairs} requests, below "
                            f"{policy.min_agreement:.1%}")
    if breached:
        return Decision("rollback", "shadow: " + "; ".join(breached), tuple(breached), numbers)
    if not ready:
        return Decision("wait", f"shadow: {shadow.requests}/{policy.min_requests} requests "
                        "mirrored", checks=numbers)
    agreement = f"; agreement {ev.shadow.agreement:.1%}" if ev.shadow and ev.shadow.pairs \
        else ""
    reason = f"shadow: {shadow.requests} mirrored requests within the limits{agreement}"
    if policy.then == "promote":
        return Decision("promote", reason, checks=numbers, version=state.challenger)
    return Decision("conclude", reason, checks=numbers,
                    then="canary" if policy.then == "canary" else None)


def _ab(state: RolloutState, ev: Evidence) -> Decision:
    policy = cast(ABPolicy, state.policy)
    challenger, champion = ev.arm(CHALLENGER_ARM), ev.arm(CHAMPION_ARM)
    check = check_limits(policy.limits, challenger, champion, stage_end=False,
                         divergence=False)
    numbers = dict(check.numbers)
    if check.breached:
        return Decision("rollback", "A/B guard: " + "; ".join(check.breached), check.breached,
                        numbers)
    test = msprt(champion.outcome, challenger.outcome, tau=policy.mde, alpha=policy.alpha,
                 previous_p=state.p_value, min_n=_MIN_TEST_N)
    sign = 1.0 if GREATER_IS_BETTER[policy.metric] else -1.0
    low, high = sorted((sign * test.low, sign * test.high))
    gain = sign * test.difference
    numbers["test"] = {"metric": policy.metric, "champion": test.mean_a,
                       "challenger": test.mean_b, "n": [test.n_a, test.n_b], "gain": gain,
                       "interval": [low, high], "p_value": test.p_value, "alpha": policy.alpha}
    sizes = f"{test.n_a} + {test.n_b} labelled requests"
    if test.significant:
        text = (f"A/B: {policy.metric} {test.mean_b:.4f} (challenger) vs {test.mean_a:.4f} "
                f"(champion) on {sizes}; gain {gain:+.4f}, always-valid p = "
                f"{test.p_value:.3g} <= {policy.alpha:g}")
        if gain > 0:
            return Decision("promote", text, checks=numbers, version=state.challenger,
                            p_value=test.p_value)
        return Decision("rollback", text, (f"{policy.metric}: the challenger is worse",),
                        numbers, p_value=test.p_value)
    limit = policy.max_samples or int((state.plan or {}).get("sequential_per_arm", 0)) or None
    if limit is not None and min(test.n_a, test.n_b) >= limit:
        text = (f"A/B: no difference in {policy.metric} after {sizes} (planned {limit} per "
                f"arm); p = {test.p_value:.3g}")
        if policy.on_no_difference == "promote":
            return Decision("promote", text, checks=numbers, version=state.challenger,
                            p_value=test.p_value)
        return Decision("conclude", text + "; the champion stays", checks=numbers,
                        p_value=test.p_value)
    return Decision("wait", f"A/B: {sizes}, p = {test.p_value:.3g}", checks=numbers,
                    p_value=test.p_value)


def _blue_green(state: RolloutState, ev: Evidence, health: HealthCheck | None) -> Decision:
    policy = cast(BlueGreenPolicy, state.policy)
    if state.phase != "switched":
        if health is None:
            return Decision("wait", "blue-green: warming up the new version")
        numbers = {"health": dataclasses.asdict(health)}
        if not health.ok:
            return Decision("rollback", "blue-green health check failed: " +
                            "; ".join(health.problems), health.problems, numbers)
        return Decision("switch", f"blue-green: version {state.challenger} scored "
                        f"{health.rows} rows cleanly (p99 {health.p99_ms:.2f} ms); switching "
                        "all traffic", checks=numbers)
    challenger = ev.arm(CHALLENGER_ARM)
    ready = challenger.stage_requests >= policy.bake_requests
    check = check_limits(policy.limits, challenger, ev.arm(CHAMPION_ARM), stage_end=ready,
                         divergence=False)
    if check.breached:
        return Decision("rollback", "blue-green: switching back: " + "; ".join(check.breached),
                        check.breached, check.numbers)
    if not ready:
        return Decision("wait", f"blue-green: watching the switch ({challenger.stage_requests}"
                        f"/{policy.bake_requests} requests)", checks=check.numbers)
    return Decision("promote", f"blue-green: {challenger.stage_requests} requests after the "
                    "switch within the limits", checks=check.numbers,
                    version=state.challenger)


def _bandit(state: RolloutState, ev: Evidence) -> Decision:
    policy = cast(BanditPolicy, state.policy)
    numbers: dict[str, Any] = {}
    for version in policy.arms:
        if version == state.champion:
            continue
        arm = ev.arm(arm_name(version))
        check = check_limits(policy.limits, arm, ev.arms.get(arm_name(state.champion)),
                             stage_end=False, divergence=False)
        numbers[arm.arm] = check.numbers
        if check.breached:
            return Decision("rollback", f"bandit arm {arm.arm}: " + "; ".join(check.breached),
                            check.breached, numbers)
    samples = {v: ev.arm(arm_name(v)).outcome for v in policy.arms}
    weights = thompson_weights(samples, floor=policy.floor,
                               binary=policy.metric in BINARY_METRICS,
                               greater_is_better=GREATER_IS_BETTER[policy.metric],
                               seed=state.revision)
    numbers["bandit"] = {"metric": policy.metric,
                         "mean": {v: s.mean for v, s in samples.items()},
                         "labels": {v: s.n for v, s in samples.items()},
                         "prob_best": weights.prob_best, "weights": weights.weights}
    leader = weights.leader
    enough = all(s.n >= policy.min_samples for s in samples.values())
    spent = policy.max_samples is not None and \
        sum(s.n for s in samples.values()) >= policy.max_samples
    sure = policy.decide_at is not None and weights.prob_best[leader] >= policy.decide_at
    if enough and (sure or spent):
        why = (f"bandit: version {leader} is best with probability "
               f"{weights.prob_best[leader]:.1%} on {policy.metric} "
               f"({samples[leader].mean:.4f} over {samples[leader].n} labels)")
        if leader == state.champion:
            return Decision("conclude", why + "; the champion stays", checks=numbers)
        return Decision("promote", why, checks=numbers, version=leader)
    if any(abs(weights.weights[v] - state.weights.get(v, 0.0)) > _REWEIGHT_STEP
           for v in policy.arms):
        shares = ", ".join(f"v{v} {w:.0%}" for v, w in weights.weights.items())
        return Decision("reweight", f"bandit: new weights {shares}", checks=numbers,
                        weights=weights.weights)
    return Decision("wait", "bandit: weights unchanged", checks=numbers)
