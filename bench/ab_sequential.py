"""The rollout statistics on simulated traffic: A/A false positives of the sequential A/B test
(against a classical test peeked at just as often), detection of a true 3-point uplift with the
sample size it used, and how fast a Thompson-sampling bandit finds the better arm.

Every test is looked at after every 50 labelled requests per arm, as a team watching a
dashboard would; the sequential test's p-value is always valid, the peeked z-test's is not.

    python bench/ab_sequential.py [--aa 500] [--uplift 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats as sps

from flywheel.rollout import ArmSample, msprt, plan_sample_size, thompson_weights

LOOK = 50


def run_tests(p_a: float, p_b: float, *, sims: int, n: int, alpha: float, tau: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per simulated test: sequential verdict, samples per arm it used, peeked z-test verdict."""
    found = np.zeros(sims, dtype=bool)
    peeked = np.zeros(sims, dtype=bool)
    used = np.full(sims, n)
    z_crit = sps.norm.ppf(1 - alpha / 2)
    for s in range(sims):
        a = np.cumsum(rng.random(n) < p_a)
        b = np.cumsum(rng.random(n) < p_b)
        p = 1.0
        for m in range(LOOK, n + 1, LOOK):
            ma, mb = a[m - 1] / m, b[m - 1] / m
            if not peeked[s]:
                se = np.sqrt((ma * (1 - ma) + mb * (1 - mb)) / m)
                peeked[s] = se > 0 and abs(mb - ma) / se > z_crit
            if not found[s]:
                test = msprt(ArmSample(m, ma, ma * (1 - ma)), ArmSample(m, mb, mb * (1 - mb)),
                             tau=tau, alpha=alpha, previous_p=p, min_n=30)
                p = test.p_value
                if test.significant:  # counted in the direction of the observed difference
                    found[s], used[s] = test.difference > 0 or p_a == p_b, m
            if found[s] and peeked[s]:
                break
    return found, used, peeked


def bandit_share(rates: list[float], *, budget: int, batch: int, floor: float,
                 rng: np.random.Generator) -> float:
    """Share of ``budget`` requests that went to the best arm."""
    rewards: list[list[float]] = [[] for _ in rates]
    weights = np.full(len(rates), 1 / len(rates))
    best, best_served = int(np.argmax(rates)), 0
    for step in range(budget // batch):
        arms = rng.choice(len(rates), size=batch, p=weights)
        best_served += int((arms == best).sum())
        for arm in arms:
            rewards[arm].append(float(rng.random() < rates[arm]))
        result = thompson_weights({str(i): ArmSample.of(np.array(r)) for i, r in
                                   enumerate(rewards)}, floor=floor, binary=True, seed=step)
        weights = np.array([result.weights[str(i)] for i in range(len(rates))])
        weights = weights / weights.sum()
    return best_served / budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=500, help="A/A tests to simulate")
    parser.add_argument("--uplift", type=int, default=200, help="uplift tests to simulate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    console = Console()
    alpha, base, mde = 0.05, 0.10, 0.03
    plan = plan_sample_size(base, mde, alpha=alpha, power=0.8, proportion=True)

    started = time.perf_counter()
    found, _, peeked = run_tests(base, base, sims=args.aa, n=plan.sequential_per_arm,
                                 alpha=alpha, tau=mde, rng=rng)
    table = Table(title=f"A/A: {args.aa} tests, conversion {base:.0%} in both arms, looked at "
                        f"every {LOOK} labels per arm up to {plan.sequential_per_arm}")
    table.add_column("test")
    table.add_column("declared a difference", justify="right")
    table.add_row("sequential (mSPRT, always-valid p)", f"{found.mean():.1%}  (alpha {alpha:.0%})")
    table.add_row("classical z-test, peeked at every look", f"{peeked.mean():.1%}")
    console.print(table)

    found, used, _ = run_tests(base, base + mde, sims=args.uplift, n=plan.sequential_per_arm,
                               alpha=alpha, tau=mde, rng=rng)
    table = Table(title=f"Uplift {base:.0%} → {base + mde:.0%} (3 points): {args.uplift} tests")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("detected (challenger better, p ≤ alpha)", f"{found.mean():.1%}")
    table.add_row("samples per arm used: median / p90",
                  f"{int(np.median(used[found])):,} / {int(np.percentile(used[found], 90)):,}")
    table.add_row("planned maximum per arm (power 80 %)", f"{plan.sequential_per_arm:,}")
    table.add_row("a single-look test would need per arm", f"{plan.fixed_per_arm:,}")
    console.print(table)

    rates = [0.10, 0.20, 0.10]
    shares = [bandit_share(rates, budget=6000, batch=200, floor=0.05, rng=rng)
              for _ in range(10)]
    console.print(f"Bandit: arms with reward {rates}; the best arm got {np.mean(shares):.0%} of "
                  f"6,000 requests on average over 10 runs (min {min(shares):.0%}), floor 5 %.")
    console.print(f"[dim]{time.perf_counter() - started:.1f} s[/dim]")


if __name__ == "__main__":
    main()
