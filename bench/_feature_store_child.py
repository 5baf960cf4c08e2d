"""One measured run of the point-in-time join benchmark, in its own process.

    python bench/_feature_store_child.py flywheel|duckdb WORK OUTPUT

Prints JSON: seconds and the process's peak resident memory in MB.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def flywheel_join(work: Path, output: Path) -> None:
    from flywheel.core.spec import load_spec
    from flywheel.core.workspace import Workspace
    from flywheel.featurestore import FeatureStore, join_to_parquet

    spec = load_spec(work / "flywheel.yaml")
    store = FeatureStore(spec, Workspace(spec.root))
    views = [store.catalog.resolve(name) for name in store.spine_views()]
    join_to_parquet(store.catalog.con, work / "spine.parquet", "ts", views, output)
    store.close()


def duckdb_join(work: Path, output: Path) -> None:
    import duckdb

    # The simplest ASOF JOIN on the same files: DuckDB's own settings, its own Parquet writer.
    con = duckdb.connect()
    a = ", ".join(f"a.a{i}" for i in range(10))
    b = ", ".join(f"b.b{i}" for i in range(10))
    con.execute(f"""
        COPY (
          SELECT s.customer, s.ts, s.label, {a}, {b}
          FROM read_parquet('{work / "spine.parquet"}') s
          ASOF LEFT JOIN read_parquet('{work / "activity.parquet"}') a
            ON s.customer = a.customer AND s.ts >= a.ts
          ASOF LEFT JOIN read_parquet('{work / "profile.parquet"}') b
            ON s.customer = b.customer AND s.ts >= b.ts
        ) TO '{output}' (FORMAT parquet)""")


if __name__ == "__main__":
    mode, work, output = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    started = time.perf_counter()
    {"flywheel": flywheel_join, "duckdb": duckdb_join}[mode](work, output)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))
