"""Always-valid inference for a difference in means (proportions included): the mixture
sequential probability ratio test (mSPRT) of Johari, Pekelis and Walsh (2017).

A classical test is valid at one pre-planned look; checking it as data arrives and stopping
at the first p < alpha declares a difference far more often than alpha. The mSPRT's p-value
stays valid at every look: with a normal mixture N(0, tau^2) over the true difference theta,
the likelihood ratio of the estimate ``d`` (variance ``V``) against theta = 0 is

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

a martingale under the null, so by Ville's inequality P(sup Lambda >= 1/alpha) <= alpha. The
always-valid p-value is the running minimum of 1/Lambda; inverting the test gives a confidence
sequence for theta. Variances are estimated from the data (plug-in), as in the paper's
deployment at Optimizely; ``bench/ab_sequential.py`` measures the false-positive rate this
gives over many A/A tests.

``tau`` defaults to the minimum detectable effect: the mixture then puts its weight on
differences of the size the test is meant to find.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats as sps

__all__ = ["ArmSample", "SamplePlan", "SequentialTest", "msprt", "plan_sample_size"]

_MIN_VARIANCE = 1e-12


@dataclasses.dataclass(frozen=True)
class ArmSample:
    """Summary of one arm's outcomes: count, mean and (population) variance."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: np.ndarray) -> ArmSample:
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            return cls(0, math.nan, math.nan)
        return cls(int(values.size), float(values.mean()), float(values.var()))


@dataclasses.dataclass(frozen=True)
class SequentialTest:
    """The mSPRT of ``b - a`` at one look.

    Attributes:
        difference: ``mean_b - mean_a``.
        low, high: The ``1 - alpha`` confidence sequence of the difference at this look.
        p_value: Always-valid p-value: the smallest 1/Lambda seen so far (with ``previous``).
        significant: ``p_value <= alpha``.
    """

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    p_value: float
    alpha: float
    tau: float
    significant: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return dataclasses.asdict(self)


def msprt(a: ArmSample, b: ArmSample, *, tau: float, alpha: float,
          previous_p: float = 1.0, min_n: int = 2) -> SequentialTest:
    """The mixture SPRT of "no difference between ``b`` and ``a``" at this look.

    Args:
        tau: Standard deviation of the normal mixture over the difference (its units).
        alpha: Error level of the confidence sequence and of ``significant``.
        previous_p: The always-valid p-value of earlier looks; the result is never above it.
        min_n: Fewer samples in either arm give p = previous_p and an unbounded interval.

    Raises:
        ValueError: If ``tau`` or ``alpha`` is out of range.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    diff = b.mean - a.mean if a.n and b.n else math.nan
    if a.n < min_n or b.n < min_n:
        return SequentialTest(a.n, b.n, a.mean, b.mean, diff, -math.inf, math.inf,
                              previous_p, alpha, tau, previous_p <= alpha)
    v = max(a.var / a.n + b.var / b.n, _MIN_VARIANCE)
    t2 = tau * tau
    log_lambda = 0.5 * math.log(v / (v + t2)) + t2 * diff * diff / (2.0 * v * (v + t2))
    p = min(previous_p, 1.0, math.exp(-log_lambda) if log_lambda < 700 else 0.0)
    half = math.sqrt(v * (v + t2) / t2 * (math.log((v + t2) / v) - 2.0 * math.log(alpha)))
    return SequentialTest(a.n, b.n, a.mean, b.mean, diff, diff - half, diff + half, p, alpha,
                          tau, p <= alpha)


def confidence_halfwidth(var_a: float, n_a: int, var_b: float, n_b: int, *, tau: float,
                         alpha: float) -> float:
    """Half-width of the mSPRT confidence sequence for given variances and counts."""
    v = max(var_a / n_a + var_b / n_b, _MIN_VARIANCE)
    t2 = tau * tau
    return math.sqrt(v * (v + t2) / t2 * (math.log((v + t2) / v) - 2.0 * math.log(alpha)))


@dataclasses.dataclass(frozen=True)
class SamplePlan:
    """How many labelled requests per arm a test needs to find ``mde`` with ``power``.

    Attributes:
        fixed_per_arm: A classical two-sided test looked at once, for reference.
        sequential_per_arm: The mSPRT, looked at continuously (always at least the fixed one);
            the default maximum sample size, after which the test ends with no difference.
    """

    baseline: float
    mde: float
    alpha: float
    power: float
    sd_a: float
    sd_b: float
    fixed_per_arm: int
    sequential_per_arm: int

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def plan_sample_size(baseline: float, mde: float, *, alpha: float, power: float,
                     proportion: bool, sd: float | None = None,
                     tau: float | None = None) -> SamplePlan:
    """Sample size per arm to detect a difference of ``mde`` from ``baseline``.

    The sequential size is the smallest n at which the confidence sequence, centred on a true
    difference of ``mde``, excludes zero with probability ``power`` (crossing earlier only
    helps, so this errs on the safe side).

    Args:
        proportion: The outcome is 0/1; its standard deviation follows from the rate.
        sd: Standard deviation of the outcome (required unless ``proportion``).
        tau: Mixture standard deviation; defaults to ``mde``.

    Raises:
        ValueError: If the inputs cannot define a plan.
    """
    if not mde > 0:
        raise ValueError(f"the minimum detectable effect must be > 0, got {mde}")
    if proportion:
        p_a = min(max(baseline, 0.0), 1.0)
        p_b = min(max(p_a + mde, 0.0), 1.0) if p_a + mde <= 1.0 else max(p_a - mde, 0.0)
        sd_a = math.sqrt(max(p_a * (1 - p_a), 0.01 * 0.99))
        sd_b = math.sqrt(max(p_b * (1 - p_b), 0.01 * 0.99))
    else:
        if sd is None or not sd > 0:
            raise ValueError("a plan for a mean needs the outcome's standard deviation (> 0)")
        sd_a = sd_b = float(sd)
    tau = mde if tau is None else tau
    z_alpha, z_power = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    var_sum = sd_a ** 2 + sd_b ** 2
    fixed = math.ceil((z_alpha + z_power) ** 2 * var_sum / mde ** 2)

    def powered(n: int) -> bool:
        half = confidence_halfwidth(sd_a ** 2, n, sd_b ** 2, n, tau=tau, alpha=alpha)
        return bool(mde - half >= z_power * math.sqrt(var_sum / n))

    low, high = max(2, fixed), max(4, fixed)
    while not powered(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if powered(mid) else (mid, high)
    return SamplePlan(baseline=baseline, mde=mde, alpha=alpha, power=power, sd_a=sd_a,
                      sd_b=sd_b, fixed_per_arm=fixed, sequential_per_arm=high)
