from __future__ import annotations

import numpy as np
import pytest

from flywheel.rollout import ArmSample, thompson_weights


def run_bandit(rates: dict[str, float], *, budget: int, batch: int, floor: float,
               seed: int = 0) -> tuple[dict[str, int], dict[str, float]]:
    """Route ``budget`` requests in batches by the bandit's weights; rewards are Bernoulli."""
    rng = np.random.default_rng(seed)
    rewards: dict[str, list[float]] = {arm: [] for arm in rates}
    served = dict.fromkeys(rates, 0)
    weights = {arm: 1 / len(rates) for arm in rates}
    for step in range(budget // batch):
        arms = rng.choice(list(rates), size=batch, p=list(weights.values()))
        for arm in arms:
            served[arm] += 1
            rewards[arm].append(float(rng.random() < rates[arm]))
        result = thompson_weights({a: ArmSample.of(np.array(r)) for a, r in rewards.items()},
                                  floor=floor, binary=True, seed=step)
        weights = result.weights
    return served, weights


def test_bandit_moves_most_traffic_to_the_clearly_better_arm_within_the_budget() -> None:
    served, weights = run_bandit({"1": 0.10, "2": 0.20, "3": 0.10}, budget=6000, batch=200,
                                 floor=0.05)
    share = served["2"] / sum(served.values())
    print(f"\nbandit: arm 2 (20% reward vs 10%) got {share:.0%} of 6000 requests; final "
          f"weights {', '.join(f'{a}: {w:.0%}' for a, w in weights.items())}")
    assert share > 0.6
    assert weights["2"] > 0.85


def test_every_arm_keeps_its_floor_share() -> None:
    result = thompson_weights({"a": ArmSample(5000, 0.9, 0.09), "b": ArmSample(5000, 0.1, 0.09)},
                              floor=0.1, binary=True)
    assert result.weights["b"] == pytest.approx(0.1) and result.leader == "a"
    assert sum(result.weights.values()) == pytest.approx(1.0)


def test_a_cost_metric_prefers_the_smallest_mean() -> None:
    result = thompson_weights({"a": ArmSample(500, 3.0, 1.0), "b": ArmSample(500, 2.0, 1.0)},
                              floor=0.0, binary=False, greater_is_better=False)
    assert result.prob_best["b"] > 0.99


@pytest.mark.parametrize(("arms", "floor"), [(1, 0.05), (3, 0.4)])
def test_bandits_refuse_one_arm_or_a_floor_that_leaves_nothing(arms: int, floor: float) -> None:
    samples = {str(i): ArmSample(0, float("nan"), float("nan")) for i in range(arms)}
    with pytest.raises(ValueError):
        thompson_weights(samples, floor=floor, binary=True)
