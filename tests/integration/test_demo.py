"""`flywheel demo` end to end, on a twelfth of the flights with tiny budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.demo._run import DemoSettings, run_demo
from flywheel.pipelines.report import build_report


@pytest.mark.slow
def test_the_demo_replays_the_year_retrains_on_drift_and_reports(tmp_path: Path) -> None:
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
