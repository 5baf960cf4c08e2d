"""The HTML report: self-contained, says what is measured and what estimated, renders in a
headless browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flywheel.core.spec import MonitoringSpec
from flywheel.monitoring import MonitoredVersion, monitor_window, render_report
from flywheel.testing import screenshot
from tests.conftest import make_mixed
from tests.unit.monitoring.conftest import mixed_window


@pytest.fixture(scope="module")
def page(version: MonitoredVersion) -> str:
    shifted = make_mixed(1500, seed=3)
    shifted["x"] += 2.0
    result = monitor_window(mixed_window(shifted), version, MonitoringSpec())
    earlier = [{"created": "2026-01-01T00:00:00+00:00", "metrics": {"drift_share": 0.1,
                                                                     "roc_auc": 0.8}}]
    return render_report(result, earlier)


def test_the_report_is_one_file_with_embedded_plots_and_no_outside_requests(page: str) -> None:
    assert page.count("src='data:image/png;base64,") >= 2
    assert not re.search(r"(src|href)=['\"]https?:", page)
    assert len(page) < 1_000_000


def test_the_report_names_measured_and_estimated_numbers_and_the_cbpe_assumption(
        page: str) -> None:
    assert "Measured" in page and "Estimated" in page and "estimated (CBPE)" in page
    assert "assumes no concept drift" in page
    assert "Reference and current distributions of drifted columns" in page
    assert "Over time" in page and "Multivariate drift" in page


def test_a_partial_report_lists_what_it_could_not_compute(version: MonitoredVersion) -> None:
    result = monitor_window(mixed_window(make_mixed(10).iloc[:0]), version, MonitoringSpec())
    page = render_report(result)
    assert "Partial report" in page and "no rows" in page


def test_the_report_opens_in_headless_chromium_with_its_plots(page: str, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(page)
    shot = tmp_path / "report.png"
    screenshot(html, shot, width=1100, height=2400)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000) or []
    # plots add many colours (antialiased lines, bars); a page of text alone has few
    assert image.size == (1100, 2400) and len(colours) > 500
    orange = sum(n for n, (r, g, b) in colours if r > 200 and 110 < g < 150 and b < 100)
    assert orange > 200  # the "current" series of the distribution plots
