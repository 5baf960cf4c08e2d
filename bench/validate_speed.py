"""Speed of schema inference and `flywheel validate` on the 336,776-row flights file.

Anchors (the foundation issue): validate under 3 s wall, inference under 5 s. Each number is the
median of --repeat runs; wall times are whole `flywheel` processes, start-up included.

    python bench/validate_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
FLIGHTS = REPO / "src" / "flywheel" / "demo" / "data" / "nycflights13_flights.parquet"


def wall(args: list[str], cwd: Path) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flywheel.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True)
    return time.perf_counter() - started, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from flywheel.data import infer_schema, load_table, validate_frame

    frame = load_table(FLIGHTS)
    rows = []
    inference = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        schema = infer_schema(frame, "arr_delay")
        inference.append(time.perf_counter() - started)
    checking = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        report = validate_frame(frame, schema)
        checking.append(time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        init_wall = [wall(["init", str(FLIGHTS), "--target", "arr_delay", "--dir", tmp, "--force"],
                          Path(tmp)) for _ in range(args.repeat)]
        validate_wall = [wall(["validate"], Path(tmp)) for _ in range(args.repeat)]
    med = statistics.median
    rows = [
        ("schema inference (in process)", med(inference), 5.0, "-"),
        ("`flywheel init` (wall, whole process)", med(t for t, _ in init_wall), None,
         str(init_wall[-1][1])),
        ("validation (in process)", med(checking), None, "-"),
        ("`flywheel validate` (wall, whole process)", med(t for t, _ in validate_wall), 3.0,
         str(validate_wall[-1][1])),
    ]
    table = Table(title=f"flights: {len(frame):,} rows × {frame.shape[1]} columns; "
                        f"target arr_delay; {len(report.failures)} finding(s)")
    for heading in ("step", "seconds (median)", "budget", "share of budget", "exit code"):
        table.add_column(heading)
    for name, seconds, budget, code in rows:
        table.add_row(name, f"{seconds:.2f}", f"{budget:.0f} s" if budget else "-",
                      f"{seconds / budget:.0%}" if budget else "-", code)
    Console(width=140).print(table)
    for f in report.failures:
        print(f"  finding: {f.severity} {f.where} {f.check}: {f.detail}")


if __name__ == "__main__":
    main()
