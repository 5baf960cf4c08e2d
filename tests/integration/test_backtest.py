"""`flywheel backtest` end to end on the bundled bikeshare history (regression), and on the same
history with its target shuffled, where no model can do better than another."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel.cli.main import main
from flywheel.demo import BacktestSettings, run_backtest
from flywheel.pipelines.report import DeliveryReport, build_report

BIKESHARE = Path(__file__).parents[2] / "examples" / "bikeshare" / "bikeshare.parquet"
# Small budgets: the loop's behaviour, not the model's quality, is under test.
_SETTINGS = BacktestSettings(trials=2, timeout=4.0, retrain_trials=2, retrain_timeout=3.0,
                             rows_per_request=4, step=dt.timedelta(days=14))


def _history(months: int = 4) -> pd.DataFrame:
    """The first months of 2011, without the two columns known only afterwards."""
    frame = pd.read_parquet(BIKESHARE).drop(columns=["casual", "registered"])
    return frame[frame["time"] < pd.Timestamp(2011, months + 1, 1, tz="UTC")]


def _no_latency_gate(spec: dict[str, Any]) -> None:
    # The machine running the suite is shared: a retrained model's speed is not under test.
    spec["gates"]["latency_p99_ms"] = None


def _backtest(tmp_path: Path, history: pd.DataFrame) -> tuple[DeliveryReport, str]:
    said: list[str] = []
    project = run_backtest(tmp_path / "bt", history, target="bikers", time_column="time",
                           train_until=dt.datetime(2011, 2, 1, tzinfo=dt.UTC),
                           settings=_SETTINGS, edit_spec=_no_latency_gate, say=said.append)
    return build_report(project), "\n".join(said)


@pytest.mark.slow
def test_a_backtest_on_the_bikeshare_history_retrains_and_beats_the_never_retrained_baseline(
        tmp_path: Path) -> None:
    report, said = _backtest(tmp_path, _history())
    assert "restarting the server" in said and "(0 failed)" in said
    assert [p.period for p in report.periods] == [f"2011-{m:02d}" for m in range(2, 5)]
    assert report.metric == "rmse" and report.failed == 0
    actions = {e["action"] for e in report.events} | {d["action"] for d in report.decisions}
    assert "loop_retrained" in actions
    comparison = report.comparison
    assert comparison is not None and comparison["rows"] == sum(p.labelled for p in
                                                                 report.periods)
    assert comparison["low"] > 0, comparison  # spring and summer bring more riders
    assert "better than" in report.summary()


@pytest.mark.slow
def test_a_history_whose_features_cannot_predict_the_target_reports_no_measurable_gain(
        tmp_path: Path) -> None:
    history = _history()
    shuffled = np.random.default_rng(0).permutation(history["bikers"].to_numpy())
    report, _ = _backtest(tmp_path, history.assign(bikers=shuffled))
    comparison = report.comparison
    assert comparison is not None and comparison["low"] <= 0 <= comparison["high"], comparison
    summary = report.summary()
    assert "no measurable gain" in summary and "better than" not in summary


@dataclasses.dataclass
class _Done:
    returncode: int
    stderr: str


def _cli(*args: str, cwd: Path) -> _Done:
    """The command in process (its usage errors answer before anything slow is imported)."""
    error = io.StringIO()
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(error):
            code = main(["backtest", *args])
    finally:
        os.chdir(before)
    return _Done(code, error.getvalue())


def test_a_backtest_on_a_column_that_is_not_there_exits_2_naming_the_columns(
        tmp_path: Path) -> None:
    done = _cli(str(BIKESHARE), "--time-column", "when", "--target", "bikers", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no column 'when'" in done.stderr and "time" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / ".backtest").exists()


def test_a_backtest_with_a_cut_outside_the_history_exits_2_with_its_span(tmp_path: Path) -> None:
    done = _cli(str(BIKESHARE), "--time-column", "time", "--target", "bikers",
                "--train-until", "2015-01-01", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "the history runs from 2011-01-01 00:00 to 2011-12-31 23:00" in done.stderr


@pytest.mark.parametrize(("option", "value"), [("--feedback-delay", "soon"), ("--step", "-7d"),
                                               ("--train-until", "March")])
def test_a_bad_duration_or_time_exits_2_saying_what_is_expected(tmp_path: Path, option: str,
                                                                 value: str) -> None:
    done = _cli(str(BIKESHARE), "--time-column", "time", "--target", "bikers", option, value,
                cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert option in done.stderr and repr(value) in done.stderr
    assert "Traceback" not in done.stderr


def test_dropping_a_column_the_history_lacks_exits_2(tmp_path: Path) -> None:
    done = _cli(str(BIKESHARE), "--time-column", "time", "--target", "bikers", "--drop", "tips",
                cwd=tmp_path)
    assert done.returncode == 2 and "--drop names column(s) tips" in done.stderr
