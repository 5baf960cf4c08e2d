from __future__ import annotations

import math

import numpy as np
import pytest

from flywheel.rollout import ArmSample, msprt, plan_sample_size


def simulate(p_a: float, p_b: float, *, sims: int, n: int, look: int, alpha: float,
             tau: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``sims`` sequential tests looked at every ``look`` samples per arm; returns, per
    test, whether it declared a difference and the samples per arm it had used by then."""
    rng = np.random.default_rng(seed)
    found = np.zeros(sims, dtype=bool)
    used = np.full(sims, n)
    for s in range(sims):
        a = np.cumsum(rng.random(n) < p_a)
        b = np.cumsum(rng.random(n) < p_b)
        p = 1.0
        for m in range(look, n + 1, look):
            ma, mb = a[m - 1] / m, b[m - 1] / m
            test = msprt(ArmSample(m, ma, ma * (1 - ma)), ArmSample(m, mb, mb * (1 - mb)),
                         tau=tau, alpha=alpha, previous_p=p, min_n=30)
            p = test.p_value
            if test.significant:  # an uplift counts only in the right direction
                found[s], used[s] = test.difference > 0 or p_a == p_b, m
                break
    return found, used


def test_aa_tests_declare_a_difference_in_at_most_alpha_of_them() -> None:
    found, _ = simulate(0.10, 0.10, sims=200, n=4000, look=50, alpha=0.05, tau=0.03, seed=1)
    rate = found.mean()
    print(f"\nA/A: {found.sum()} of 200 sequential tests (looked at every 50 samples per arm, "
          f"up to 4000) declared a difference: {rate:.1%} (alpha 5%)")
    assert rate <= 0.05


def test_a_three_point_uplift_is_detected_within_the_planned_sample() -> None:
    plan = plan_sample_size(0.10, 0.03, alpha=0.05, power=0.8, proportion=True)
    found, used = simulate(0.10, 0.13, sims=60, n=plan.sequential_per_arm, look=50,
                           alpha=0.05, tau=0.03, seed=2)
    print(f"\nuplift 10% -> 13%: detected in {found.mean():.0%} of 60 tests; median sample "
          f"used {int(np.median(used[found]))} per arm (planned {plan.sequential_per_arm}, "
          f"single-look test {plan.fixed_per_arm})")
    assert found.mean() >= 0.8
    assert np.median(used[found]) < plan.sequential_per_arm


def test_always_valid_p_value_never_rises_between_looks() -> None:
    previous = 0.02
    later = msprt(ArmSample(500, 0.1, 0.09), ArmSample(500, 0.1, 0.09), tau=0.03, alpha=0.05,
                  previous_p=previous)
    assert later.p_value == previous and later.significant


def test_confidence_sequence_excludes_zero_exactly_when_significant() -> None:
    a, b = ArmSample(3000, 0.10, 0.09), ArmSample(3000, 0.13, 0.13 * 0.87)
    test = msprt(a, b, tau=0.03, alpha=0.05)
    assert test.significant and test.low > 0 and math.isclose(test.difference, 0.03)
    same = msprt(a, a, tau=0.03, alpha=0.05)
    assert not same.significant and same.low < 0 < same.high


def test_too_few_samples_give_no_verdict() -> None:
    test = msprt(ArmSample(5, 0.0, 0.0), ArmSample(5, 1.0, 0.0), tau=0.03, alpha=0.05,
                 min_n=30)
    assert test.p_value == 1.0 and math.isinf(test.high)


def test_sequential_plan_needs_more_samples_than_a_single_look_and_fewer_for_bigger_effects(
) -> None:
    small = plan_sample_size(0.10, 0.03, alpha=0.05, power=0.8, proportion=True)
    big = plan_sample_size(0.10, 0.06, alpha=0.05, power=0.8, proportion=True)
    assert small.sequential_per_arm > small.fixed_per_arm > big.fixed_per_arm
    assert 1500 < small.fixed_per_arm < 2100  # (1.96 + 0.84)^2 * 0.203 / 0.03^2 ~ 1770


@pytest.mark.parametrize("kwargs", [{"mde": 0.0}, {"mde": 1.0, "proportion": False}])
def test_plans_refuse_inputs_that_cannot_define_them(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"mde": 0.02, "proportion": True, **kwargs}
    with pytest.raises(ValueError):
        plan_sample_size(0.5, alpha=0.05, power=0.8, **args)  # type: ignore[arg-type]
