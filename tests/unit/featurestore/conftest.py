"""A small feature-store project: stores with a daily `sales` view and a spine of visits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel.core.spec import ProjectSpec, load_spec
from flywheel.core.workspace import Workspace
from flywheel.featurestore import FeatureStore

STORES = 40
DAYS = 30
START = pd.Timestamp("2024-01-01", tz="UTC")


def sales_frame(seed: int = 0) -> pd.DataFrame:
    """One row per store and day: the day's sales level and footfall."""
    rng = np.random.default_rng(seed)
    rows = [{"store": f"s{s:02d}", "day": START + pd.Timedelta(days=d),
             "level": float(rng.normal(s % 5, 1.0)), "footfall": int(rng.integers(10, 500))}
            for s in range(STORES) for d in range(DAYS)]
    return pd.DataFrame(rows)


def spine_frame(n: int = 1500, seed: int = 1, sales: pd.DataFrame | None = None) -> pd.DataFrame:
    """Visits at random times; ``big`` is likelier where the store's latest level is high."""
    rng = np.random.default_rng(seed)
    sales = sales if sales is not None else sales_frame()
    frame = pd.DataFrame({
        "store": [f"s{int(s):02d}" for s in rng.integers(0, STORES, n)],
        "at": START + pd.to_timedelta(rng.uniform(0.5, DAYS, n), unit="D"),
        "basket": rng.normal(0, 1, n)})
    # merge_asof wants one time unit on both sides (pandas 3 keeps microseconds for the days).
    days = sales.assign(day=sales["day"].astype("datetime64[ns, UTC]"))
    latest = pd.merge_asof(frame.sort_values("at"), days.sort_values("day"), left_on="at",
                           right_on="day", by="store").sort_index()
    score = latest["level"].fillna(0).to_numpy() + frame["basket"].to_numpy()
    frame["big"] = np.where(score + rng.normal(0, 0.5, n) > 2.0, "yes", "no")
    return frame.sort_values("at", kind="stable").reset_index(drop=True)


def view(**overrides: Any) -> dict[str, Any]:
    return {"name": "sales", "entities": ["store"], "event_time": "day",
            "source": "sales.parquet", "ttl": "3d", "features": ["level", "footfall"],
            **overrides}


def write_project(root: Path, *, views: list[dict[str, Any]] | None = None,
                  spine: pd.DataFrame | None = None, sales: pd.DataFrame | None = None,
                  extra: dict[str, Any] | None = None) -> ProjectSpec:
    """flywheel.yaml with a spine and the `sales` view (no schema: the join needs none)."""
    root.mkdir(parents=True, exist_ok=True)
    (sales if sales is not None else sales_frame()).to_parquet(root / "sales.parquet")
    (spine if spine is not None else spine_frame()).to_parquet(root / "visits.parquet")
    raw = {"name": "shop", "data": {"path": "visits.parquet", "spine": {"event_time": "at"}},
           "target": {"column": "big", "task": "binary"},
           "feature_store": {"views": views if views is not None else [view()]},
           **(extra or {})}
    (root / "flywheel.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(root / "flywheel.yaml")


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[FeatureStore]:
    spec = write_project(tmp_path / "shop")
    store = FeatureStore(spec, Workspace(spec.root))
    yield store
    store.close()
