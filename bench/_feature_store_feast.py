"""Feast's point-in-time join on the benchmark's files (run by Feast's own virtualenv's python,
so flywheel is not importable here).

    /tmp/feast-venv/bin/python bench/_feature_store_feast.py WORK [MEMORY_GB]

Builds a local Feast repo (file offline store, SQLite registry) over WORK's Parquet files and
runs get_historical_features on the whole spine. The address space is capped at MEMORY_GB
(default 8) so a run that would exhaust the shared machine fails instead. Prints JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

work = Path(sys.argv[1])
limit_gb = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
resource.setrlimit(resource.RLIMIT_AS, (int(limit_gb * 2**30), int(limit_gb * 2**30)))

import pandas as pd  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast.types import Float64, Int64  # noqa: E402

repo = Path(tempfile.mkdtemp(prefix="feast-repo-"))
(repo / "feature_store.yaml").write_text(
    "project: pit\nregistry: registry.db\nprovider: local\n"
    "online_store:\n  type: sqlite\n  path: online.db\n"
    "offline_store:\n  type: file\nentity_key_serialization_version: 3\n")
customer = Entity(name="customer", join_keys=["customer"])
views = []
for name, prefix in (("activity", "a"), ("profile", "b")):
    views.append(FeatureView(
        name=name, entities=[customer], ttl=dt.timedelta(days=61),
        schema=[Field(name="customer", dtype=Int64),
                *[Field(name=f"{prefix}{i}", dtype=Float64) for i in range(10)]],
        source=FileSource(path=str(work / f"{name}.parquet"), timestamp_field="ts")))
store = FeatureStore(repo_path=str(repo))
store.apply([customer, *views])
started = time.perf_counter()
try:
    spine = pd.read_parquet(work / "spine.parquet").rename(columns={"ts": "event_timestamp"})
    job = store.get_historical_features(
        entity_df=spine,
        features=[f"{v.name}:{prefix}{i}" for v, prefix in zip(views, "ab", strict=True)
                  for i in range(10)])
    frame = job.to_df()
    rows = len(frame)
except MemoryError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"failed": f"MemoryError at the {limit_gb:g} GB cap after "
                      f"{time.perf_counter() - started:.0f} s", "peak_mb": peak}))
    sys.exit(0)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "rows": rows}))
