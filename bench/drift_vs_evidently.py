"""flywheel's drift computation against Evidently's DataDriftPreset, on the same data.

Flights of 2013 with origin weather joined (flywheel.demo), 13 columns: carrier, origin, dest,
day_of_week and the nine weather columns. Scenarios:

- 1M: 1,000,000 rows resampled from January-June against 1,000,000 from July-December;
- month windows (about 25-57k rows): January-February against July-August, against
  March-April, and a random half of January-February against the other half.

Each engine runs in a fresh process (bench/_drift_child.py) that reads the two Parquet files,
then times the drift computation and measures how far the process's peak resident memory rises
during it (libraries are imported before). flywheel's time is the whole job: building the
reference from the reference rows (done once at training time in production) plus comparing
the current rows with it. Evidently
0.7.23 needs pandas<3, so it runs in its own virtual environment, bench/.venv-evidently,
created here on first use (pip install evidently==0.7.23 "pandas<3"); it is never a flywheel
dependency. Both use their default method choice; verdicts are compared column by column where
the two picked the same method. Target (issue 6): flywheel at least 15 times faster at 1M and
at the month windows, under 200 MB, the same verdicts where the methods match.

    python bench/drift_vs_evidently.py [--only months|1m]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from flywheel.demo import load_flights, months

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-evidently"
EVIDENTLY = "evidently==0.7.23"
COLUMNS = ["carrier", "origin", "dest", "day_of_week", "temp", "dewp", "humid", "wind_dir",
           "wind_speed", "wind_gust", "precip", "pressure", "visib"]
ROWS_1M = 1_000_000

console = Console(width=150)


def evidently_python() -> Path:
    """The benchmark's own environment with Evidently, created on first use."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import evidently, sys; "
             "sys.exit(evidently.__version__ != '0.7.23')"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    console.print(f"Creating {VENV} with {EVIDENTLY} (once)...")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", EVIDENTLY, "pandas<3"],
                   check=True)
    return python


def scenarios(folder: Path, only: str | None) -> list[tuple[str, Path, Path]]:
    flights = load_flights()[["month", *COLUMNS]]
    rng = np.random.default_rng(0)
    cases = []

    def write(name: str, ref, cur) -> None:  # type: ignore[no-untyped-def]
        ref_path, cur_path = folder / f"{name}-ref.parquet", folder / f"{name}-cur.parquet"
        ref[COLUMNS].reset_index(drop=True).to_parquet(ref_path)
        cur[COLUMNS].reset_index(drop=True).to_parquet(cur_path)
        cases.append((name, ref_path, cur_path))

    if only in (None, "months"):
        jan_feb = months(flights, 1, 2)
        write("Jan-Feb vs Jul-Aug", jan_feb, months(flights, 7, 8))
        write("Jan-Feb vs Mar-Apr", jan_feb, months(flights, 3, 4))
        half = rng.permutation(len(jan_feb)) < len(jan_feb) // 2
        write("Jan-Feb half vs half", jan_feb[half], jan_feb[~half])
    if only in (None, "1m"):
        first, second = flights[flights["month"] <= 6], flights[flights["month"] > 6]
        write("1M Jan-Jun vs 1M Jul-Dec",
              first.iloc[rng.integers(0, len(first), ROWS_1M)],
              second.iloc[rng.integers(0, len(second), ROWS_1M)])
    return cases


def run(python: Path, engine: str, ref: Path, cur: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([str(python), str(HERE / "_drift_child.py"), engine, str(ref),
                          str(cur)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["months", "1m"])
    args = parser.parse_args()
    ev_python = evidently_python()
    summary = Table(title="Drift: flywheel vs Evidently DataDriftPreset (13 columns)")
    for heading in ("scenario", "rows (ref / cur)", "flywheel s", "evidently s", "speed-up",
                    "flywheel MB", "evidently MB", "same verdicts"):
        summary.add_column(heading, justify="left" if heading == "scenario" else "right")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, ref, cur in scenarios(Path(tmp), args.only):
            import pyarrow.parquet as pq

            rows = f"{pq.ParquetFile(ref).metadata.num_rows:,} / " \
                   f"{pq.ParquetFile(cur).metadata.num_rows:,}"
            fw = run(Path(sys.executable), "flywheel", ref, cur)
            ev = run(ev_python, "evidently", ref, cur)
            detail = Table(title=f"{name}: per-column verdicts", show_lines=False)
            for heading in ("column", "flywheel method", "score", "drift",
                            "evidently method", "score", "drift", "agree"):
                detail.add_column(heading)
            same = compared = 0
            for column in COLUMNS:
                f, e = fw["verdicts"].get(column), ev["verdicts"].get(column)
                if f is None or e is None:
                    continue
                agree = "-"
                if f["method"] == e["method"]:
                    compared += 1
                    same += f["drifted"] == e["drifted"]
                    agree = "yes" if f["drifted"] == e["drifted"] else "NO"
                detail.add_row(column, f["method"], f"{f['score']:.4g}",
                               "DRIFT" if f["drifted"] else "-", e["method"],
                               f"{e['score']:.4g}", "DRIFT" if e["drifted"] else "-", agree)
            console.print(detail)
            ratio = ev["seconds"] / fw["seconds"]
            failed |= ratio < 15 or fw["peak_mb"] > 200 or same != compared
            summary.add_row(name, rows, f"{fw['seconds']:.3f}", f"{ev['seconds']:.2f}",
                            f"{ratio:.0f}x", f"{fw['peak_mb']:.0f}", f"{ev['peak_mb']:.0f}",
                            f"{same}/{compared}")
            parts = fw.get("parts", {})
            console.print(f"  flywheel: reference built in {parts.get('reference_s', 0):.3f} s "
                          f"(training time in production), compared in "
                          f"{parts.get('compare_s', 0):.3f} s", highlight=False)
    console.print(summary)
    console.print("Peak memory: growth of the process's peak resident set during the "
                  "computation (data already loaded).", highlight=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
