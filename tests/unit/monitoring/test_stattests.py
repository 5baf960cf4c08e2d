"""The drift statistics on a weighted reference equal SciPy's on the raw rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from flywheel.monitoring._reference import distinct_counts
from flywheel.monitoring._stattests import (
    chi2_homogeneity,
    jensen_shannon,
    ks_weighted,
    psi,
    wasserstein_weighted,
)


def _weighted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    support, counts = distinct_counts(np.sort(values))
    return support, counts.astype(float)


@pytest.mark.parametrize("discrete", [True, False])
def test_ks_statistic_and_p_value_equal_scipys_asymptotic_test(discrete: bool) -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20_000)
    cur = rng.normal(0.05, size=15_000)
    if discrete:
        ref, cur = np.round(ref, 1), np.round(cur, 1)
    support, weights = _weighted(ref)
    d, p = ks_weighted(support, weights, len(ref), np.sort(cur))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-6)


def test_wasserstein_equals_scipys_divided_by_the_reference_spread() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.gamma(2.0, size=10_000), rng.gamma(2.3, size=7_000)
    support, weights = _weighted(ref)
    score = wasserstein_weighted(support, weights, np.sort(cur), scale=float(np.std(ref)))
    assert score == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9)


def test_wasserstein_of_a_constant_reference_divides_by_a_floor_not_zero() -> None:
    score = wasserstein_weighted(np.array([1.0]), np.array([10.0]), np.array([1.0, 2.0]),
                                 scale=0.0)
    assert score == pytest.approx(0.5 / 0.001)


def test_chi2_homogeneity_equals_scipys_contingency_test() -> None:
    ref, cur = np.array([500, 300, 200, 0]), np.array([260, 170, 60, 10])
    stat, p = chi2_homogeneity(ref, cur)
    table = np.vstack([ref, cur])[:, :4]
    expected = stats.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)


def test_chi2_of_a_single_category_finds_no_difference() -> None:
    assert chi2_homogeneity(np.array([10, 0]), np.array([5, 0])) == (0.0, 1.0)


def test_jensen_shannon_and_psi_are_zero_for_equal_shares_and_grow_with_difference() -> None:
    same = np.array([10, 20, 30])
    assert jensen_shannon(same, same * 3) == pytest.approx(0.0, abs=1e-12)
    assert psi(same, same * 3) == pytest.approx(0.0, abs=1e-12)
    other = np.array([30, 20, 10])
    assert jensen_shannon(same, other) == pytest.approx(
        distance.jensenshannon(same / 60, other / 60))
    assert psi(same, other) > psi(same, np.array([12, 20, 28])) > 0


def test_psi_fills_an_empty_bin_instead_of_dividing_by_zero() -> None:
    assert np.isfinite(psi(np.array([10, 0]), np.array([5, 5])))
