"""`flywheel features` as a user runs it: a real subprocess, its output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import sales_frame, view, write_project


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel.cli.main", "features", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # five CLI processes: about 20 s on a shared machine
def test_list_show_materialize_and_get_describe_the_views_and_their_values(tmp_path) -> None:
    spec = write_project(tmp_path, views=[view(ttl=None)])
    config = str(spec.root / "flywheel.yaml")
    listed = _run("list", "-c", config)
    assert listed.returncode == 0, listed.stderr
    assert "sales" in listed.stdout and "store" in listed.stdout and "forever" in listed.stdout
    shown = _run("show", "sales", "-c", config, "--json")
    described = json.loads(shown.stdout)
    assert described["version"] == 1
    assert described["types"]["level"] == "DOUBLE"
    assert [v["version"] for v in described["versions"]] == [1]
    done = _run("materialize", "--end", "2024-01-10", "-c", config)
    assert done.returncode == 0, done.stderr
    assert "Materialized into" in done.stdout and "40" in done.stdout
    got = _run("get", "s07", "-c", config, "--json")
    sales = sales_frame()
    last = sales[(sales["store"] == "s07") & (sales["day"] < pd.Timestamp("2024-01-10",
                                                                          tz="UTC"))].iloc[-1]
    assert json.loads(got.stdout) == {"sales": {"level": last["level"],
                                                "footfall": int(last["footfall"])}}
    unknown = _run("get", "s99", "-c", config)
    assert unknown.returncode == 0 and "no values for ['s99']" in unknown.stdout


def test_a_view_missing_a_column_and_a_bad_time_option_exit_2_with_the_reason(tmp_path) -> None:
    spec = write_project(tmp_path, views=[view(features=["level", "weather"])])
    config = str(spec.root / "flywheel.yaml")
    missing = _run("materialize", "-c", config)
    assert missing.returncode == 2
    assert "lacks the declared column(s) ['weather']" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = _run("materialize", "--end", "next week", "-c", config)
    assert bad.returncode == 2 and "--end: 'next week' is not an ISO time" in bad.stderr
