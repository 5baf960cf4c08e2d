"""How often the champion gate calls a challenger "better" when it is not (and when it is).

Each repetition draws a fresh holdout (labels from a latent signal) and two models whose
scores are the signal plus independent noise of the same size: equally good by construction.
The champion gate runs in mode ``better`` (margin 0, confidence 95 %) exactly as training runs
it. Its false "better" rate must stay at most alpha = 1 - confidence. The gate decides on the
two-sided interval, so the expected rate is alpha / 2.

For contrast, the same is repeated with a challenger that really is better (less noise): the
share it is called better is the gate's power.

Run: `python bench/gate_null_rate.py [--reps N] [--rows N]`; exit 1 if a rate exceeds alpha.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from flywheel.core.spec import ChampionGateSpec, GatesSpec
from flywheel.evaluation import ChampionPredictions, GateInputs, run_gates

CONFIDENCE = 0.95


def simulate(task: str, metric: str, method: str, *, reps: int, rows: int, challenger_noise: float,
             seed: int, resamples: int = 1000) -> tuple[float, float]:
    """(share of repetitions the gate said "better", seconds per repetition)."""
    champion = ChampionGateSpec.model_validate({
        "mode": "better", "margin": 0.0, "metric": metric, "confidence": CONFIDENCE,
        "method": method, "bootstrap": resamples, "min_rows": 10})
    spec = GatesSpec(champion=champion, latency_p99_ms=None, robustness=False)
    rng = np.random.default_rng(seed)
    better = 0
    started = time.perf_counter()
    for rep in range(reps):
        signal = rng.normal(size=rows)
        if task == "binary":
            y = (rng.random(rows) < 1 / (1 + np.exp(-1.5 * signal))).astype(np.int64)
            champion = _proba(signal + rng.normal(scale=1.0, size=rows))
            challenger = _proba(signal + rng.normal(scale=challenger_noise, size=rows))
        else:
            y = signal + rng.normal(scale=0.5, size=rows)
            champion = signal + rng.normal(scale=0.5, size=rows)
            challenger = signal + rng.normal(scale=0.5 * challenger_noise, size=rows)
        inputs = GateInputs(
            task=task, metric=metric, model=None,  # type: ignore[arg-type]
            holdout=pd.DataFrame(index=range(rows)), y=y, prediction=challenger,
            holdout_metrics={}, cv_metrics={}, kinds={},
            champion=ChampionPredictions("1", rows=np.arange(rows), prediction=champion),
            seed=rep)
        result = run_gates(spec, inputs).get("champion")
        if result is None or result.error:
            raise RuntimeError(f"the gate crashed: {result}")
        better += result.status == "pass"
    return better / reps, (time.perf_counter() - started) / reps


def _proba(score: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-score))
    return np.column_stack([1 - p, p])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    alpha = 1 - CONFIDENCE
    cases = [("binary", "roc_auc", "delong", args.reps),
             ("binary", "roc_auc", "bootstrap", max(200, args.reps // 2)),
             ("binary", "log_loss", "bootstrap", max(200, args.reps // 2)),
             ("regression", "rmse", "bootstrap", max(200, args.reps // 2))]
    print(f"champion gate, mode better, margin 0, confidence {CONFIDENCE:.0%}: alpha {alpha:.2f}, "
          f"{args.rows} holdout rows per repetition")
    print(f"{'metric':<9} {'method':<10} {'reps':>5} {'false better':>13} {'95% upper':>10} "
          f"{'power':>7} {'ms/rep':>7}")
    failed = False
    for task, metric, method, reps in cases:
        null_rate, per_rep = simulate(task, metric, method, reps=reps, rows=args.rows,
                                      challenger_noise=1.0, seed=1)
        power, _ = simulate(task, metric, method, reps=max(50, reps // 4), rows=args.rows,
                            challenger_noise=0.8, seed=2)
        # Clopper-Pearson upper bound of the true false-"better" rate.
        hits = round(null_rate * reps)
        upper = float(sps.beta.ppf(0.975, hits + 1, reps - hits)) if hits < reps else 1.0
        failed |= null_rate > alpha
        print(f"{metric:<9} {method:<10} {reps:>5} {null_rate:>13.3f} {upper:>10.3f} "
              f"{power:>7.2f} {per_rep * 1000:>7.1f}")
    print("every false-better rate is at most alpha" if not failed
          else "A FALSE-BETTER RATE EXCEEDS ALPHA")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
