"""Run every benchmark in bench/, one after the other: `make bench`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    # Files starting with "_" are helpers the benchmarks run (child processes, apps).
    scripts = sorted(p for p in HERE.glob("*.py")
                     if p.name != "run.py" and not p.name.startswith("_"))
    failed = 0
    for script in scripts:
        print(f"\n== {script.name} ==", flush=True)
        failed += subprocess.run([sys.executable, str(script)]).returncode != 0
    sys.exit(1 if failed else 0)
