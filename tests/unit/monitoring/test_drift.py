"""Per-column drift on the flights data: July against January-February, and no-drift splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.core.spec import DriftSpec
from flywheel.demo import FEATURES
from flywheel.demo._flights import WEATHER
from flywheel.monitoring import build_reference, detect_drift


def test_july_is_flagged_with_the_weather_columns_among_the_drifted(
        jan_feb: pd.DataFrame, july: pd.DataFrame, flight_kinds: dict[str, str]) -> None:
    report = detect_drift(build_reference(jan_feb, flight_kinds), july, DriftSpec())
    assert report.dataset_drift and report.share >= 0.5
    assert {"temp", "dewp", "pressure", "visib"} <= set(report.drifted)
    assert sum(c in report.drifted for c in WEATHER) >= 7
    temp = report.column("temp")
    assert temp is not None and temp.method == "wasserstein" and temp.p_value is None
    assert temp.threshold == 0.1 and temp.score > 1


def test_a_random_half_of_january_february_against_the_other_half_is_not_flagged(
        jan_feb: pd.DataFrame, flight_kinds: dict[str, str]) -> None:
    half = np.random.default_rng(0).permutation(len(jan_feb)) < len(jan_feb) // 2
    report = detect_drift(build_reference(jan_feb[half], flight_kinds), jan_feb[~half],
                          DriftSpec())
    assert not report.dataset_drift and report.drifted == []


def test_small_windows_get_tests_with_p_values_and_large_ones_distances(
        jan_feb: pd.DataFrame, july: pd.DataFrame, flight_kinds: dict[str, str]) -> None:
    reference = build_reference(jan_feb, flight_kinds)
    small = detect_drift(reference, july.sample(500, random_state=0), DriftSpec())
    assert {c.method for c in small.columns} == {"ks", "chi2"}
    assert all(c.p_value is not None and c.threshold == 0.05 for c in small.columns)
    assert "temp" in small.drifted
    large = detect_drift(reference, july, DriftSpec())
    assert {c.method for c in large.columns} == {"wasserstein", "jensenshannon"}


def test_the_spec_fixes_methods_per_kind_and_per_column(
        jan_feb: pd.DataFrame, july: pd.DataFrame, flight_kinds: dict[str, str]) -> None:
    spec = DriftSpec(numeric_method="psi", categorical_method="chi2",
                     columns={"temp": "ks", "carrier": "psi"})
    report = detect_drift(build_reference(jan_feb, flight_kinds), july, spec)
    methods = {c.column: c.method for c in report.columns}
    assert methods["temp"] == "ks" and methods["carrier"] == "psi"
    assert methods["dewp"] == "psi" and methods["origin"] == "chi2"


def test_a_numeric_column_with_few_values_is_compared_as_categories() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"n": rng.integers(0, 3, 5000).astype(float)})
    cur = pd.DataFrame({"n": rng.integers(0, 3, 4000).astype(float)})
    report = detect_drift(build_reference(ref, {"n": "numeric"}), cur, DriftSpec())
    assert report.columns[0].method == "jensenshannon"


def test_columns_missing_from_the_window_or_empty_are_skipped_with_the_reason(
        jan_feb: pd.DataFrame, flight_kinds: dict[str, str]) -> None:
    current = jan_feb.drop(columns=["temp"]).assign(dewp=np.nan).head(2000)
    report = detect_drift(build_reference(jan_feb, flight_kinds), current, DriftSpec())
    assert report.skipped == {"temp": "missing from the window", "dewp": "no values in the window"}
    assert len(report.features) == len(FEATURES) - 2


def test_an_unseen_category_counts_as_its_own_category(jan_feb: pd.DataFrame) -> None:
    reference = build_reference(jan_feb, {"origin": "categorical"})
    current = jan_feb.head(3000).assign(origin="XYZ")
    verdict = detect_drift(reference, current, DriftSpec()).columns[0]
    assert verdict.drifted and "XYZ" in verdict.shares[0]


def _false_alarms(frame: pd.DataFrame, kinds: dict[str, str], splits: int, spec: DriftSpec
                  ) -> tuple[dict[str, int], int]:
    rng = np.random.default_rng(0)
    alarms = dict.fromkeys(kinds, 0)
    flagged = 0
    for _ in range(splits):
        half = rng.permutation(len(frame)) < len(frame) // 2
        report = detect_drift(build_reference(frame[half], kinds, sample_columns=[]),
                              frame[~half], spec)
        for c in report.columns:
            alarms[c.column] += c.drifted
        flagged += report.dataset_drift
    return alarms, flagged


@pytest.mark.slow
def test_over_100_no_drift_splits_the_false_alarm_rate_stays_at_most_the_significance(
        jan_feb: pd.DataFrame, flight_kinds: dict[str, str]) -> None:
    sample = jan_feb.sample(12_000, random_state=1)
    tests = DriftSpec(numeric_method="ks", categorical_method="chi2", significance=0.05)
    alarms, flagged = _false_alarms(sample, flight_kinds, 100, tests)
    rate = sum(alarms.values()) / (100 * len(alarms))
    print(f"per-column false-alarm rate over 100 splits: {rate:.4f} (significance 0.05); "
          f"by column: {alarms}")
    assert rate <= 0.05 and flagged == 0
    default, flagged = _false_alarms(sample, flight_kinds, 20, DriftSpec())
    assert sum(default.values()) == 0 and flagged == 0
