"""Columns that the target nearly determines, or that nearly determine it together.

A column computed from the target (a loan's ``grade`` binned from its ``interest_rate``, an
``installment`` computed from the rate, the term and the amount) is not known when a prediction
is made, yet makes a model look excellent. One column alone is scored by
``leakage_score``; small combinations (two or three columns) by how much of a numeric target's
variance a smooth function of them explains out of sample: a least-squares fit on each
column's value and signed log, their squares and pairwise products (which covers products,
ratios and powers such as an annuity formula), scored on the half of the rows it was not fitted
on. Categorical columns enter one-hot up to a few levels, otherwise as their target mean
(computed on the other half).

Such columns are flagged for the user to review, not dropped: only they know whether a column is
available at prediction time.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from flywheel.core.spec import Task

NEAR_DETERMINISTIC_R2 = 0.99
"""Out-of-sample R² of the target from at most three columns that counts as near-deterministic."""
SUSPECT_SCORE = 0.9
"""A single column scoring this on ``leakage_score`` (under the leakage limit) is flagged."""
_SAMPLE_ROWS = 2000
_MAX_COLUMNS = 80  # pairs grow with the square of the columns: 80 columns are 3,160 pairs
_ONE_HOT_LEVELS = 5
_TOP_PAIRS = 10
Basis = list[np.ndarray]


def near_deterministic_combinations(frame: pd.DataFrame, target: str, columns: list[str], *,
                                    task: Task, seed: int = 0
                                    ) -> list[tuple[tuple[str, ...], float]]:
    """Sets of one to three of ``columns`` from which a numeric target is almost exactly
    computed (out-of-sample R² at least ``NEAR_DETERMINISTIC_R2``), best first.

    A set is reported only if none of its subsets already reaches the limit. Classification
    targets are not searched: a class is not a smooth function, and training's warnings cover
    what slips through.
    """
    if task != "regression" or len(columns) < 2:
        return []
    data = frame[[*columns, target]].dropna(subset=[target])
    if len(data) > _SAMPLE_ROWS:
        data = data.sample(_SAMPLE_ROWS, random_state=seed)
    y = data[target].to_numpy(dtype=float)
    if len(y) < 20 or float(np.var(y)) == 0.0:
        return []
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(y)) < len(y) // 2
    bases = {c: b for c in columns if (b := _basis(data[c], y, half))}
    names = list(bases)[:_MAX_COLUMNS]
    if len(names) < 2:
        return []

    def score(group: tuple[str, ...]) -> float:
        return _cross_fitted_r2(_design([bases[c] for c in group]), y, half)

    single = {c: score((c,)) for c in names}
    found: dict[tuple[str, ...], float] = {
        (c,): r2 for c, r2 in single.items() if r2 >= NEAR_DETERMINISTIC_R2}
    pairs: dict[tuple[str, ...], float] = {
        pair: score(pair) for pair in itertools.combinations(names, 2)
        if not any((c,) in found for c in pair)}
    found.update({p: r2 for p, r2 in pairs.items() if r2 >= NEAR_DETERMINISTIC_R2})
    # A third column is tried with the best pairs, and with the pairs whose columns explain
    # far more together than either alone (an installment with its amount): a strong single
    # column would otherwise fill every one of the best pairs.
    best = sorted(pairs, key=pairs.__getitem__, reverse=True)[:_TOP_PAIRS]
    synergy = sorted(pairs, key=lambda p: pairs[p] - max(single[c] for c in p),
                     reverse=True)[:_TOP_PAIRS]
    for pair in dict.fromkeys([*best, *synergy]):
        if pair in found:
            continue
        for c in names:
            group = tuple(sorted((*pair, c), key=names.index))
            if c in pair or (c,) in found or group in found or any(
                    p in found for p in itertools.combinations(group, 2)):
                continue
            r2 = score(group)
            if r2 >= NEAR_DETERMINISTIC_R2:
                found[group] = r2
    return sorted(found.items(), key=lambda item: -item[1])


def _basis(s: pd.Series, y: np.ndarray, half: np.ndarray) -> Basis:
    """The columns a column contributes to the design (empty: it cannot take part)."""
    if pd.api.types.is_bool_dtype(s):
        return [s.fillna(False).to_numpy(dtype=float)]
    if pd.api.types.is_numeric_dtype(s) and s.nunique() > _ONE_HOT_LEVELS:
        x = s.to_numpy(dtype=float)
        finite = np.isfinite(x)
        if finite.sum() < 2:
            return []
        x = np.where(finite, x, np.median(x[finite]))
        return [_standard(x), _standard(np.sign(x) * np.log1p(np.abs(x)))]
    if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_object_dtype(s)
            or isinstance(s.dtype, (pd.CategoricalDtype, pd.StringDtype))):
        return []  # datetimes: a time of day or a date rarely computes a target exactly
    codes, levels = pd.factorize(s.astype("string"), use_na_sentinel=False)
    if len(levels) < 2:
        return []
    if len(levels) <= _ONE_HOT_LEVELS:
        return [(codes == k).astype(float) for k in range(1, len(levels))]
    # Many levels: each row gets its level's mean target from the other half of the rows, so
    # the encoding cannot memorize the rows it is scored on.
    encoded = np.empty(len(y))
    for fit in (half, ~half):
        sums = np.bincount(codes[fit], weights=y[fit], minlength=len(levels))
        counts = np.bincount(codes[fit], minlength=len(levels))
        means = np.where(counts > 0, sums / np.maximum(counts, 1), y[fit].mean())
        encoded[~fit] = means[codes[~fit]]
    return [_standard(encoded)]


def _standard(x: np.ndarray) -> np.ndarray:
    spread = float(x.std())
    return np.asarray((x - x.mean()) / spread if spread > 0 else x - x.mean(), dtype=float)


def _design(bases: list[Basis]) -> np.ndarray:
    flat = [column for basis in bases for column in basis]
    products = [a * b for i, a in enumerate(flat) for b in flat[i:]]
    return np.column_stack([np.ones(len(flat[0])), *flat, *products])


def _cross_fitted_r2(x: np.ndarray, y: np.ndarray, half: np.ndarray) -> float:
    """R² of least squares fitted on one half of the rows and scored on the other, both ways."""
    residual = 0.0
    ridge = 1e-8 * np.eye(x.shape[1])  # keeps duplicated design columns solvable
    for fit in (half, ~half):
        a, b = x[fit], y[fit]
        coef = np.linalg.solve(a.T @ a + ridge * len(b), a.T @ b)
        residual += float(((y[~fit] - x[~fit] @ coef) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - residual / total if total > 0 else 0.0
