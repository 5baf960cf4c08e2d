from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CHURN = EXAMPLES / "churn" / "mlc_churn.parquet"
FLIGHTS = REPO / "src" / "flywheel" / "demo" / "data" / "nycflights13_flights.parquet"
DIAMONDS = EXAMPLES / "diamonds" / "diamonds.parquet"


@pytest.fixture(scope="session")
def churn() -> pd.DataFrame:
    return pd.read_parquet(CHURN)


def make_mixed(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A small mixed table: numeric, integer, categorical, boolean, datetime, id, binary target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "x": x,
        "count": rng.integers(0, 50, size=n),
        "colour": colour,
        "flag": rng.random(n) < 0.3,
        "when": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "constant": "same",
    })
    logit = 1.5 * x + (colour == "red") - 0.5
    frame["label"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return frame


@pytest.fixture
def mixed() -> pd.DataFrame:
    return make_mixed()
