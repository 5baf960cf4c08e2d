"""`flywheel demo` end to end, on a twelfth of the flights with tiny budgets: the weather comes
from the feature store (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flywheel.demo import load_weather
from flywheel.demo._flights import WEATHER
from flywheel.demo._run import DemoSettings, run_demo
from flywheel.pipelines.report import build_report
from flywheel.serving import INPUT_PREFIX, read_predictions


@pytest.mark.slow
def test_the_demo_replays_the_year_with_feature_store_weather_retrains_and_reports(tmp_path: Path) -> None:
    settings = DemoSettings(every=12, trials=3, timeout=5.0, retrain_trials=2,
                            retrain_timeout=4.0, tick_days=14, window_rows=1200,
                            min_labels=1200, data_rows=8000, canary_requests=15,
                            canary_labels=5)
    said: list[str] = []
    project = run_demo(tmp_path / "demo", settings=settings, say=said.append)
    text = "\n".join(said)
    assert "restarting the server" in text
    assert "0 failed" in text  # the restart lost no request
    report = build_report(project)
    assert [p.period for p in report.periods][:10] == [f"2013-{m:02d}" for m in range(3, 13)]
    assert report.failed == 0 and report.success_rate == 1.0
    assert report.deployed is not None and report.baseline is not None
    triggers = [e for e in report.events if e["action"] == "loop_trigger"]
    assert triggers and all(e["clock"].startswith("2013-") for e in triggers)
    history = project.history()
    assert history.problems == ()
    assert {"loop_retrained", "rollout_start"} <= {e.action for e in history.entries}
    _the_served_weather_is_the_observation_at_or_before_each_request(project.workspace.predictions,
                                                                     text)


def _the_served_weather_is_the_observation_at_or_before_each_request(predictions: Path,
                                                                      text: str) -> None:
    """The requests carried no weather: the server read it from the online store, which the
    replay materialized on its clock, so every logged row holds the origin's latest
    observation at or before the request's scheduled time, never a later one."""
    assert "materialized weather" in text and "(0 missed)" in text
    log = read_predictions(predictions)
    assert len(log) > 1000
    weather = load_weather().rename(columns={w: "obs." + w for w in WEATHER})
    rows = log[["event_ts", INPUT_PREFIX + "origin", *(INPUT_PREFIX + w for w in WEATHER)]]
    rows = rows.assign(event_ts=pd.to_datetime(rows["event_ts"], utc=True).astype(
        "datetime64[us, UTC]"), origin=rows[INPUT_PREFIX + "origin"]).sort_values("event_ts")
    weather = weather.assign(time_hour=weather["time_hour"].astype("datetime64[us, UTC]"))
    expected = pd.merge_asof(rows, weather, left_on="event_ts", right_on="time_hour",
                             by="origin", direction="backward")
    assert expected["time_hour"].notna().all()
    for w in WEATHER:
        served = pd.to_numeric(expected[INPUT_PREFIX + w], errors="coerce").to_numpy()
        observed = expected["obs." + w].to_numpy(dtype=float)
        same = (served == observed) | (pd.isna(served) & pd.isna(observed))
        assert same.mean() == 1.0, (w, expected.loc[~same].head())
