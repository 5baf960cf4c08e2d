"""The monitoring reference: exact while it can be, a close sketch beyond, stored as JSON with a
lossless Parquet sample of raw rows and the features' importance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flywheel.core.errors import MonitoringError
from flywheel.data import infer_schema, profile_frame
from flywheel.monitoring import (
    CategoricalReference,
    MonitoringReference,
    NumericReference,
    build_reference,
    reference_from_profile,
)
from flywheel.monitoring._reference import SUPPORT_LIMIT, importance_shares, like_stored_sample
from flywheel.monitoring._stattests import ks_weighted


def test_a_column_with_few_distinct_values_keeps_each_with_its_exact_count() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 2.0, np.nan, 3.0, 3.0, 3.0]})
    ref = build_reference(frame, {"x": "numeric"}).columns["x"]
    assert isinstance(ref, NumericReference) and ref.exact
    assert ref.values.tolist() == [1.0, 2.0, 3.0] and ref.weights.tolist() == [1, 2, 3]
    assert (ref.count, ref.nulls) == (6, 1)


def test_a_continuous_column_becomes_a_sketch_whose_ks_error_is_below_one_over_its_size() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=50_000)
    ref = build_reference(pd.DataFrame({"x": raw}), {"x": "numeric"}).columns["x"]
    assert isinstance(ref, NumericReference) and not ref.exact
    assert len(ref.values) <= SUPPORT_LIMIT and ref.weights.sum() == pytest.approx(50_000)
    cur = np.sort(rng.normal(0.02, size=8_000))
    d, _ = ks_weighted(ref.values, ref.weights, ref.count, cur)
    assert abs(d - stats.ks_2samp(raw, cur).statistic) <= 1 / SUPPORT_LIMIT + 1e-9


def test_categories_keep_exact_counts_and_booleans_read_as_text() -> None:
    frame = pd.DataFrame({"c": ["a", "b", "a", None], "flag": [True, False, True, True]})
    ref = build_reference(frame, {"c": "categorical", "flag": "categorical"})
    c, flag = ref.columns["c"], ref.columns["flag"]
    assert isinstance(c, CategoricalReference)
    assert dict(zip(c.categories, c.counts.tolist(), strict=True)) == {"a": 2, "b": 1}
    assert c.nulls == 1
    assert isinstance(flag, CategoricalReference) and set(flag.categories) == {"true", "false"}


def test_the_reference_survives_a_json_round_trip_with_its_sample(mixed: pd.DataFrame) -> None:
    kinds = {"x": "numeric", "count": "numeric", "colour": "categorical", "label": "categorical"}
    ref = build_reference(mixed, kinds, roles={"label": "target"}, sample_rows=50)
    back = MonitoringReference.from_json(ref.to_json())
    assert back.rows == len(mixed) and back.role_of("label") == "target"
    assert np.array_equal(back.columns["x"].values, ref.columns["x"].values)
    assert back.sample is not None and back.sample.shape == (50, 3)


def test_a_damaged_reference_is_a_monitoring_error_that_says_to_retrain() -> None:
    with pytest.raises(MonitoringError, match="retrain"):
        MonitoringReference.from_json('{"rows": 1}')


def test_an_old_versions_profile_gives_an_approximate_reference(mixed: pd.DataFrame) -> None:
    schema = infer_schema(mixed, "label")
    ref = reference_from_profile(profile_frame(mixed, schema), schema)
    assert not ref.exact and "approximate" in ref.source
    assert ref.columns["label"].role == "target" and "customer_id" not in ref.columns
    x = ref.columns["x"]
    assert isinstance(x, NumericReference) and x.weights.sum() == len(mixed)


def test_the_stored_sample_keeps_every_number_and_type_exactly() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "f32": rng.choice([0.221, 0.265, 0.3], 200).astype(np.float32),
        "thirds": rng.integers(1, 100, 200) / 3.0,
        "tiny": rng.normal(size=200) * 1e-12,
        "area": rng.choice(["415", "408", "510"], 200),
        "when": pd.date_range("2024-01-01", periods=200, freq="37min", tz="UTC"),
        "flag": rng.random(200) < 0.5,
    })
    kinds = {"f32": "numeric", "thirds": "numeric", "tiny": "numeric", "area": "categorical",
             "when": "numeric", "flag": "categorical"}
    back = MonitoringReference.from_json(build_reference(frame, kinds).to_json())
    assert back.sample is not None and back.sample_exact
    expected = build_reference(frame, kinds).sample
    pd.testing.assert_frame_equal(back.sample, expected)
    assert back.columns["f32"].float32 and not back.columns["thirds"].float32  # type: ignore[union-attr]


def test_a_version_1_reference_reads_its_rounded_sample_and_says_so(mixed: pd.DataFrame) -> None:
    kinds = {"x": "numeric", "colour": "categorical"}
    raw = json.loads(build_reference(mixed, kinds).to_json())
    sample = mixed[["x", "colour"]]
    raw.pop("sample_parquet")
    raw["version"] = 1
    raw["sample"] = json.loads(sample.to_json(orient="split", index=False))  # 10 decimals
    back = MonitoringReference.from_json(json.dumps(raw))
    assert back.sample is not None and not back.sample_exact
    assert back.sample["x"].tolist() == like_stored_sample(sample)["x"].tolist()
    assert back.sample["x"].tolist() != sample["x"].tolist()


def test_permutation_importances_are_kept_as_shares_of_their_positive_total(
        mixed: pd.DataFrame) -> None:
    ref = build_reference(mixed, {"x": "numeric", "count": "numeric"},
                          importance={"x": 0.3, "count": 0.1, "noise": -0.02})
    back = MonitoringReference.from_json(ref.to_json())
    assert back.importance == pytest.approx({"x": 0.75, "count": 0.25, "noise": 0.0})
    assert importance_shares({"a": -0.1, "b": 0.0}) is None
    assert build_reference(mixed, {"x": "numeric"}).importance is None
