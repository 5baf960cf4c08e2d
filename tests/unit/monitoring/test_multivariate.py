"""The domain classifier separates July from January-February, not two halves of one period,
and never a sample of the training data from the reference stored with the version."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from flywheel.demo import FEATURES
from flywheel.demo._flights import WEATHER
from flywheel.monitoring import MonitoringReference, build_reference, domain_classifier


def test_july_is_told_apart_from_january_february_by_weather_columns(
        jan_feb: pd.DataFrame, july: pd.DataFrame) -> None:
    result = domain_classifier(jan_feb[FEATURES], july[FEATURES], rows=2000, threshold=0.7)
    assert result.drifted and result.roc_auc > 0.95
    assert result.top_columns[0][0] in WEATHER
    assert (result.reference_rows, result.current_rows) == (2000, 2000)


def test_two_random_halves_of_one_period_are_indistinguishable(jan_feb: pd.DataFrame) -> None:
    half = np.random.default_rng(0).permutation(len(jan_feb)) < len(jan_feb) // 2
    result = domain_classifier(jan_feb[half][FEATURES], jan_feb[~half][FEATURES], rows=2000,
                               threshold=0.7)
    assert not result.drifted and abs(result.roc_auc - 0.5) < 0.05


def test_frames_without_shared_columns_or_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="share no columns"):
        domain_classifier(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"b": [1.0]}), rows=10,
                          threshold=0.7)
    with pytest.raises(ValueError, match="too few rows"):
        domain_classifier(pd.DataFrame({"a": [1.0, 2.0]}), pd.DataFrame({"a": [1.0, 2.0]}),
                          rows=10, threshold=0.7)


def _training_table(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Like the mortgage table of issue 13: float columns read as float32 and as float64, some
    with few distinct values, one with many digits (thirds), a categorical of digits."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "ratio_f32": rng.choice([0.221, 0.265, 0.3, 0.187, 0.4, 0.35], n).astype(np.float32),
        "rate_f32": rng.beta(5, 2, n).astype(np.float32),
        "uria": rng.choice([1.8, 3.1, 3.9, 3.2, 10.6, 4.3, 3.6], n),
        "thirds": rng.integers(1, 100, n) / 3.0,
        "score": rng.normal(size=n),
        "area": rng.choice(["415", "408", "510"], n),
    })


def _stored(table: pd.DataFrame) -> pd.DataFrame:
    kinds = {c: "categorical" if c == "area" else "numeric" for c in table.columns}
    sample = MonitoringReference.from_json(build_reference(table, kinds).to_json()).sample
    assert sample is not None
    return sample


def test_a_sample_of_the_training_data_is_never_flagged_as_drifted() -> None:
    table = _training_table()
    sample = _stored(table)  # as monitoring reads it back from the version
    rng = np.random.default_rng(1)
    results = [domain_classifier(sample, table.iloc[rng.choice(len(table), 500, replace=False)],
                                 rows=5000, threshold=0.7, seed=i) for i in range(30)]
    assert [r.roc_auc for r in results if r.drifted] == []
    assert max(r.roc_auc for r in results) < 0.6


def test_float32_columns_sent_as_json_text_compare_equal_to_the_training_file() -> None:
    table = _training_table()
    sample = _stored(table)
    window = table.sample(500, random_state=2)
    # What a client sends: each float32 as its shortest text ("0.221"), read back as float64.
    floats = ["ratio_f32", "rate_f32"]
    records = [{k: float(str(np.float32(v))) if k in floats else v for k, v in row.items()}
               for row in window.to_dict(orient="records")]
    sent = pd.read_json(io.StringIO(json.dumps(records)), dtype=False)
    assert sent["ratio_f32"].dtype == np.float64
    assert not np.array_equal(sent["ratio_f32"].to_numpy(), window["ratio_f32"].to_numpy(float))
    result = domain_classifier(sample, sent, rows=5000, threshold=0.7)
    assert not result.drifted and result.roc_auc < 0.6


def test_the_verdict_is_a_test_whose_false_alarm_rate_is_at_most_its_significance() -> None:
    # Reference and window drawn apart from one distribution, and an AUC threshold barely
    # above chance, so the test alone decides: over 100 windows it flags at most 5 % of them.
    # (One test on the pooled out-of-fold scores flagged 7-9 % at 5 %.)
    rng = np.random.default_rng(5)

    def table(n: int) -> pd.DataFrame:
        return pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(list("abc"), n),
                             "k": rng.integers(0, 4, n).astype(np.float32)})

    flagged = [domain_classifier(table(600), table(300), rows=600, threshold=0.5001,
                                 significance=0.05, seed=i).drifted for i in range(100)]
    assert sum(flagged) <= 5


def test_a_high_auc_on_a_handful_of_rows_is_not_drift_unless_the_test_agrees() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(size=8)})
    shifted = pd.DataFrame({"x": rng.normal(3.0, size=8)})
    few = domain_classifier(ref, shifted, rows=100, threshold=0.7, significance=1e-6)
    assert few.p_value > 1e-6 and not few.drifted
    many = domain_classifier(pd.DataFrame({"x": rng.normal(size=400)}),
                             pd.DataFrame({"x": rng.normal(3.0, size=400)}), rows=400,
                             threshold=0.7, significance=1e-6)
    assert many.drifted and many.roc_auc > 0.9 and many.p_value < 1e-20
    assert {"p_value", "significance"} <= set(many.to_dict())
