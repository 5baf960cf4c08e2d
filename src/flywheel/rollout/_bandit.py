"""Thompson sampling across model versions, as traffic weights.

Servers route each request by weights that the controller refreshes from the rewards in the
prediction log (batched Thompson sampling): each arm's weight is the posterior probability that
it is the best arm, estimated by drawing from every arm's posterior at once, then mixed with a
floor so that no arm starves and its estimate keeps improving.

Rewards in [0, 1] that are all 0 or 1 use a Beta(1 + successes, 1 + failures) posterior; any
other reward a normal posterior of the mean, N(mean, var / n), with a vague prior.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from flywheel.rollout._sequential import ArmSample

__all__ = ["BanditWeights", "thompson_weights"]

_DRAWS = 4000


@dataclasses.dataclass(frozen=True)
class BanditWeights:
    """Traffic weights and the probability that each arm is the best one."""

    weights: dict[str, float]
    prob_best: dict[str, float]

    @property
    def leader(self) -> str:
        return max(self.prob_best, key=lambda arm: self.prob_best[arm])


def thompson_weights(arms: Mapping[str, ArmSample], *, floor: float, binary: bool,
                     greater_is_better: bool = True, seed: int = 0,
                     draws: int = _DRAWS) -> BanditWeights:
    """Weights by probability of being best, each at least ``floor``.

    Args:
        arms: Each arm's reward summary (an arm with no rewards yet draws from the prior).
        floor: Smallest weight per arm; ``floor * len(arms)`` must be below 1.
        binary: Rewards are 0/1 (Beta posterior); otherwise a normal posterior.
        greater_is_better: False for a cost (an error): the smallest mean is best.
        seed: Seeds the posterior draws, so a decision can be replayed.

    Raises:
        ValueError: If there are fewer than two arms or the floor leaves nothing to share.
    """
    names = list(arms)
    if len(names) < 2:
        raise ValueError(f"a bandit needs two or more arms, got {len(names)}")
    if floor * len(names) >= 1.0:
        raise ValueError(f"a floor of {floor} for {len(names)} arms leaves nothing to share")
    rng = np.random.default_rng(seed)
    samples = np.empty((draws, len(names)))
    for j, name in enumerate(names):
        arm = arms[name]
        if binary:
            successes = arm.mean * arm.n if arm.n else 0.0
            samples[:, j] = rng.beta(1.0 + successes, 1.0 + arm.n - successes, size=draws)
        elif arm.n >= 2:
            scale = np.sqrt(max(arm.var, 1e-12) / arm.n)
            samples[:, j] = rng.normal(arm.mean, scale, size=draws)
        else:  # no evidence yet: a draw wide enough to let the arm be tried
            samples[:, j] = rng.normal(0.0, 1e6, size=draws)
    best = samples.argmax(axis=1) if greater_is_better else samples.argmin(axis=1)
    prob = np.bincount(best, minlength=len(names)) / draws
    share = 1.0 - floor * len(names)
    weights = {name: float(floor + share * prob[j]) for j, name in enumerate(names)}
    return BanditWeights(weights=weights,
                         prob_best={name: float(prob[j]) for j, name in enumerate(names)})
