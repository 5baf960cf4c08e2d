from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from flywheel.pipelines.report import DeliveryReport, PeriodRow
from flywheel.pipelines.report_render import report_html, report_markdown
from flywheel.testing import screenshot


def _report() -> DeliveryReport:
    periods = tuple(PeriodRow(period=f"2013-{m:02d}", rows=7000, labelled=6900,
                              deployed=0.70 + 0.005 * m, baseline=0.70 - 0.004 * m,
                              versions="v1 100%" if m < 6 else "v2 100%", p50_ms=0.4,
                              p99_ms=1.2) for m in range(3, 13))
    promoted = {"seq": 5, "time": "2026-01-01T00:00:00", "clock": "2013-06-02T00:00:00+00:00",
                "action": "loop_rollout_done", "reason": "version 2 is champion",
                "from": None, "to": "2", "promoted": True, "evidence": {"version": "2"}}
    trigger = {"seq": 3, "time": "2026-01-01T00:00:00", "clock": "2013-05-20T00:00:00+00:00",
               "action": "loop_trigger", "reason": "retraining triggered: dataset_drift > 0",
               "version": None, "metrics": {"drift_share": 0.6}, "drifted": ["temp"],
               "holdout": {}}
    return DeliveryReport(
        model="flights", metric="roc_auc", higher_is_better=True, champion="2", baseline_version="1",
        periods=periods, deployed=0.73, baseline=0.68, predictions=70_000, requests=7_000,
        answered=70_000, failed=0, client_failed=0, p50_ms=0.4, p99_ms=1.2,
        throughput_rps=900.0, events=(trigger,), decisions=(promoted,), notes=(),
        comparison={"gain": 0.05, "low": 0.04, "high": 0.06, "confidence": 0.95,
                    "rows": 60_000, "method": "delong", "p_value": 1e-9})


def test_summary_names_version_speed_reliability_triggers_and_the_baseline() -> None:
    text = _report().summary()
    assert text.startswith("Deployed model version 2 at roc_auc 0.760 (2013-12) with 1.20 ms p99")
    assert "70,000 predictions at 100.00% success" in text
    assert "1 retraining trigger(s), 1 of them drift (2013-05)" in text
    assert ("better than 0.6800 for version 1 never retrained (difference +0.0500, 95% CI "
            "+0.0400 to +0.0600, paired over 60,000 rows)") in text


def test_the_summary_claims_no_gain_when_the_paired_interval_spans_zero() -> None:
    report = dataclasses.replace(_report(), comparison={
        "gain": 0.01, "low": -0.002, "high": 0.022, "confidence": 0.95, "rows": 900,
        "method": "bootstrap", "p_value": 0.2})
    text = report.summary()
    assert "no measurable gain over 0.6800 for version 1 never retrained" in text
    assert "better than" not in text


def test_the_summary_says_worse_when_the_interval_is_below_zero() -> None:
    report = dataclasses.replace(_report(), deployed=0.66, comparison={
        "gain": -0.02, "low": -0.03, "high": -0.01, "confidence": 0.95, "rows": 900,
        "method": "delong", "p_value": 0.001})
    assert "0.6600, worse than 0.6800" in report.summary()


def test_without_an_interval_the_summary_claims_nothing() -> None:
    text = dataclasses.replace(_report(), comparison=None).summary()
    assert "no gain is claimed" in text and "better than" not in text


def test_markdown_and_html_hold_the_period_table_and_the_decisions() -> None:
    report = _report()
    markdown = report_markdown(report)
    assert "| 2013-07 | 7,000 | 6,900 | 0.7350 | 0.6720 | 0.0630 |" in markdown
    assert "loop_rollout_done" in markdown and "dataset_drift > 0" in markdown
    page = report_html(report)
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r"(src|href)=['\"]https?:", page)


def test_the_delivery_report_opens_in_headless_chromium_with_its_plots(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(report_html(_report()))
    shot = tmp_path / "report.png"
    screenshot(html, shot, width=1100, height=1600)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000) or []
    assert image.size == (1100, 1600) and len(colours) > 300
    blue = sum(n for n, (r, g, b) in colours if r < 90 and 90 < g < 130 and b > 140)
    assert blue > 200  # the deployed series and the volume bars
