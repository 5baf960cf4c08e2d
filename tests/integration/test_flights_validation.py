"""The validation gate on the full flights year (336,776 rows): slow, run separately in CI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.cli.main import main
from tests.conftest import FLIGHTS

pytestmark = pytest.mark.slow


def test_flights_year_passes_its_schema_and_a_corrupted_copy_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flights = pd.read_parquet(FLIGHTS)
    flights["late"] = (flights["arr_delay"] > 15).astype("Int64").where(flights["arr_delay"].notna())
    flights = flights[flights["late"].notna()]
    flights.to_parquet(tmp_path / "flights.parquet")
    assert main(["init", str(tmp_path / "flights.parquet"), "--target", "late",
                 "--dir", str(tmp_path)]) == 0
    schema = (tmp_path / "schema.yaml").read_text()
    assert "role: leakage" in schema  # arr_delay decides `late` on its own
    capsys.readouterr()
    assert main(["validate", "--config", str(tmp_path), "--json"]) == 0

    bad = flights.copy()
    bad.loc[bad.index[:20_000], "carrier"] = "ZZ"
    bad.loc[bad.index[:5_000], "distance"] = -1
    bad.loc[bad.index[:40_000], "sched_dep_time"] = np.nan
    bad.drop(columns=["dest"]).to_parquet(tmp_path / "bad.parquet")
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "bad.parquet"), "--config", str(tmp_path),
                 "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    errors = {(f["column"], f["check"]) for f in report["failures"] if f["severity"] == "error"}
    assert errors == {("carrier", "unseen_category"), ("distance", "out_of_range"),
                      ("sched_dep_time", "null_rate"), ("dest", "missing_column")}
