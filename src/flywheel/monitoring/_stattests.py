"""The per-column drift statistics, on a weighted reference and a sorted current sample.

The reference is a weighted sample (support points and rows at each, see ``_reference``); the
current window's values arrive sorted. Both empirical CDFs are evaluated once on the union of
their support points, and every numeric statistic follows from the two CDFs with a few
vectorized passes: no Python loop over rows, and no copy of the window beyond one sort.

- Kolmogorov-Smirnov: ``D = max |F_ref - F_cur|``, as ``scipy.stats.ks_2samp`` computes it;
  the p-value is SciPy's asymptotic two-sample one (``kstwo`` at ``n m / (n + m)``), which is
  what ``ks_2samp`` itself uses above 10,000 rows.
- Wasserstein-1: the area between the CDFs (SciPy's ``wasserstein_distance``), divided by the
  reference's standard deviation (at least 0.001), as Evidently normalizes it.
- Chi-square: the test of homogeneity of the 2 x k table (reference and current counts), which
  accounts for the noise of both samples. (Evidently's goodness-of-fit form takes the reference
  shares as exact and so over-rejects when the samples are of similar size.)
- Jensen-Shannon: SciPy's distance (natural logarithm) of the two share vectors.
- PSI: ``sum (p_cur - p_ref) ln(p_cur / p_ref)`` over the bins, empty bins filled as Evidently
  fills them.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from scipy.spatial import distance

__all__ = ["chi2_homogeneity", "jensen_shannon", "ks_binned", "ks_weighted", "psi",
           "wasserstein_weighted"]


def _cdfs(ref_values: np.ndarray, ref_weights: np.ndarray, current: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both CDFs on the union of support points (the grid), and the grid."""
    grid = np.union1d(ref_values, _distinct(current))
    cum = np.cumsum(ref_weights)
    at = np.searchsorted(ref_values, grid, side="right")
    f_ref = np.where(at > 0, cum[np.maximum(at - 1, 0)], 0.0) / cum[-1]
    f_cur = np.searchsorted(current, grid, side="right") / len(current)
    return grid, f_ref, f_cur


def _distinct(sorted_values: np.ndarray) -> np.ndarray:
    if len(sorted_values) < 2:
        return sorted_values
    keep = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1]))
    return sorted_values[keep]


def ks_weighted(ref_values: np.ndarray, ref_weights: np.ndarray, ref_rows: int,
                current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and p-value; ``current`` sorted, ``ref_rows`` the reference's
    real row count (the weights may be a sketch's)."""
    _, f_ref, f_cur = _cdfs(ref_values, ref_weights, current)
    d = float(np.max(np.abs(f_ref - f_cur)))
    n, m = ref_rows, len(current)
    p = float(sps.kstwo.sf(d, np.round(n * m / (n + m))))
    return d, min(max(p, 0.0), 1.0)


def ks_binned(edges: np.ndarray, bin_counts: np.ndarray, ref_rows: int,
              current: np.ndarray) -> tuple[float, float]:
    """KS against a binned reference, evaluated at the bin edges only (where the reference
    CDF is known exactly): a lower bound of the statistic, so the test errs towards no drift."""
    if len(edges) == 0:
        return 0.0, 1.0
    f_ref = np.cumsum(bin_counts)[:len(edges)] / max(bin_counts.sum(), 1)
    f_cur = np.searchsorted(current, edges, side="right") / len(current)
    d = float(np.max(np.abs(f_ref - f_cur)))
    n, m = ref_rows, len(current)
    return d, float(min(max(sps.kstwo.sf(d, np.round(n * m / (n + m))), 0.0), 1.0))


def wasserstein_weighted(ref_values: np.ndarray, ref_weights: np.ndarray, current: np.ndarray,
                         *, scale: float) -> float:
    """Wasserstein-1 distance divided by ``max(scale, 0.001)``; ``current`` sorted."""
    grid, f_ref, f_cur = _cdfs(ref_values, ref_weights, current)
    gap = np.abs(f_ref - f_cur)[:-1]
    with np.errstate(over="ignore"):  # values near the float limits: an infinite distance
        widths = np.diff(grid / 2) * 2
    area = float(np.sum(np.where(gap > 0, gap * widths, 0.0)))
    return area / max(scale, 0.001)


def chi2_homogeneity(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square statistic and p-value of "both samples share one distribution"."""
    table = np.vstack([ref_counts, cur_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, float(sps.chi2.sf(stat, table.shape[1] - 1))


def jensen_shannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, between 0 and sqrt(ln 2))."""
    p = ref_counts / max(ref_counts.sum(), 1)
    q = cur_counts / max(cur_counts.sum(), 1)
    return float(distance.jensenshannon(p, q))


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population stability index of the current shares against the reference's."""
    p = _fill_zeros(ref_counts / max(ref_counts.sum(), 1))
    q = _fill_zeros(cur_counts / max(cur_counts.sum(), 1))
    return float(np.sum((q - p) * np.log(q / p)))


def _fill_zeros(shares: np.ndarray) -> np.ndarray:
    shares = shares.astype(float).copy()
    nonzero = shares[shares > 0]
    if len(nonzero) == 0:
        return np.full_like(shares, 1.0 / max(len(shares), 1))
    smallest = float(nonzero.min())
    shares[shares == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return shares


def binned_counts(edges: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Rows of a sorted sample in right-closed bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    cuts = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], cuts, [len(sorted_values)])))


def weighted_binned(edges: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Reference weight in the same right-closed bins."""
    return np.bincount(np.searchsorted(edges, values, side="left"), weights=weights,
                       minlength=len(edges) + 1)
