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


def _ten_columns(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"c{i}": rng.normal(size=n) for i in range(10)})


def test_drifted_columns_are_weighed_by_their_importance_to_the_model() -> None:
    # Two inputs of ten carry most of what the model knows: their shift is a data-set drift
    # although 80 % of the columns did not move.
    train = _ten_columns(3000, 0)
    kinds = dict.fromkeys(train.columns, "numeric")
    importance = {"c0": 0.5, "c1": 0.3, **{f"c{i}": 0.025 for i in range(2, 10)}}
    window = _ten_columns(1000, 1)
    window[["c0", "c1"]] *= 3
    weighted = detect_drift(build_reference(train, kinds, importance=importance), window,
                            DriftSpec())
    assert {"c0", "c1"} <= set(weighted.drifted) and weighted.share < 0.5
    assert weighted.weighted_share >= 0.8 and weighted.dataset_drift
    assert "of the model's feature importance" in " ".join(weighted.reasons)
    plain = detect_drift(build_reference(train, kinds), window, DriftSpec())
    assert plain.weighted_share == plain.share and not plain.dataset_drift
    unimportant = detect_drift(build_reference(train, kinds, importance={
        "c0": 0.0, "c1": 0.0, **{f"c{i}": 1.0 for i in range(2, 10)}}), window, DriftSpec())
    assert unimportant.weighted_share < 0.5 and not unimportant.dataset_drift


def test_the_domain_classifiers_verdict_makes_the_data_set_drift() -> None:
    import dataclasses

    train = _ten_columns(2000, 2)
    report = detect_drift(build_reference(train, dict.fromkeys(train.columns, "numeric")),
                          _ten_columns(500, 3), DriftSpec())
    assert not report.dataset_drift and report.reasons == []
    joint = dataclasses.replace(report, multivariate_drift=True)
    assert joint.dataset_drift and joint.reasons == [
        "the domain classifier tells the window from the reference"]


def test_a_float32_column_sent_as_json_text_is_compared_at_float32_precision() -> None:
    rng = np.random.default_rng(4)
    train = pd.DataFrame({"ratio": rng.choice([0.221, 0.265, 0.3, 0.187], 3000).astype(
        np.float32), "share": rng.beta(2, 5, 3000).astype(np.float32)})
    kinds = dict.fromkeys(train.columns, "numeric")
    reference = build_reference(train, kinds)
    window = train.sample(800, random_state=5)
    # What a client sends: each value as its shortest text ("0.221"), read back as float64.
    sent = pd.DataFrame({c: [float(str(np.float32(v))) for v in window[c]]
                         for c in window.columns})
    assert not np.array_equal(sent["ratio"].to_numpy(), window["ratio"].to_numpy(float))
    report = detect_drift(reference, sent, DriftSpec())
    assert report.drifted == [] and len(report.columns) == 2
