from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
import sklearn
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from flywheel.core.errors import ConfigError
from flywheel.core.spec import ColumnFeatureSpec, FeaturesSpec
from flywheel.data import DataSchema, infer_schema
from flywheel.features import FEATURE_TRUSTED_TYPES, build_feature_pipeline
from tests.conftest import CHURN, make_mixed


@pytest.fixture(scope="module")
def churn_frame() -> pd.DataFrame:
    return pd.read_parquet(CHURN)


@pytest.fixture(scope="module")
def churn_schema(churn_frame: pd.DataFrame) -> DataSchema:
    return infer_schema(churn_frame, "churn")


@pytest.fixture(scope="module")
def churn_y(churn_frame: pd.DataFrame) -> np.ndarray:
    return (churn_frame["churn"] == "yes").to_numpy(dtype=int)


@pytest.fixture(scope="module")
def churn_ct(churn_frame: pd.DataFrame, churn_schema: DataSchema, churn_y: np.ndarray) -> object:
    return build_feature_pipeline(churn_schema, FeaturesSpec(), task="binary").fit(churn_frame, churn_y)


@pytest.fixture(scope="module")
def mixed_frame() -> pd.DataFrame:
    frame = make_mixed()
    frame.loc[::10, "x"] = np.nan  # makes x nullable in the schema
    return frame


@pytest.fixture(scope="module")
def mixed_schema(mixed_frame: pd.DataFrame) -> DataSchema:
    return infer_schema(mixed_frame, "label")


@pytest.fixture(scope="module")
def mixed_y(mixed_frame: pd.DataFrame) -> np.ndarray:
    return (mixed_frame["label"] == "yes").to_numpy(dtype=int)


@pytest.fixture(scope="module")
def mixed_ct(mixed_frame: pd.DataFrame, mixed_schema: DataSchema, mixed_y: np.ndarray) -> object:
    return build_feature_pipeline(mixed_schema, FeaturesSpec(), task="binary").fit(mixed_frame, mixed_y)


def _names(ct: object) -> list[str]:
    return list(ct.get_feature_names_out())  # type: ignore[attr-defined]


def _column(ct: object, X: pd.DataFrame, name: str) -> np.ndarray:
    return ct.transform(X)[:, _names(ct).index(name)]  # type: ignore[attr-defined]


def _with_overrides(**columns: ColumnFeatureSpec) -> FeaturesSpec:
    return FeaturesSpec(columns=columns)


def _assert_clean(out: np.ndarray, rows: int) -> None:
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float64
    assert out.shape[0] == rows
    assert np.isfinite(out).all()


# --- output shape and names ---------------------------------------------------------------------


def test_churn_features_are_finite_float64_with_one_row_per_input_row(churn_ct, churn_frame) -> None:
    out = churn_ct.transform(churn_frame)
    _assert_clean(out, len(churn_frame))
    assert out.shape[1] == len(_names(churn_ct))


def test_mixed_features_are_finite_float64_with_readable_names(mixed_ct, mixed_frame) -> None:
    _assert_clean(mixed_ct.transform(mixed_frame), len(mixed_frame))
    assert _names(mixed_ct) == [
        "x", "count", "missingindicator_x", "flag",
        "when_hour", "when_day_of_week", "when_month", "when_day_of_month",
        "colour_blue", "colour_green", "colour_red",
    ]


def test_names_get_branch_prefixes_only_when_plain_names_could_clash(mixed_frame, mixed_y) -> None:
    frame = mixed_frame.assign(colour_red=np.linspace(0.0, 1.0, len(mixed_frame)))
    schema = infer_schema(frame, "label")
    ct = build_feature_pipeline(schema, FeaturesSpec(), task="binary").fit(frame, mixed_y)
    names = _names(ct)
    assert len(set(names)) == len(names)
    assert {"numeric_median__colour_red", "one_hot__colour_red", "datetime__when_hour"} <= set(names)


def test_single_row_transform_matches_the_batch_transform(churn_ct, churn_frame) -> None:
    batch = churn_ct.transform(churn_frame.iloc[:50])
    for i in (0, 17, 49):
        np.testing.assert_array_equal(churn_ct.transform(churn_frame.iloc[[i]])[0], batch[i])


def test_output_stays_numpy_when_sklearn_is_configured_for_pandas_output(
        mixed_schema, mixed_frame, mixed_y) -> None:
    with sklearn.config_context(transform_output="pandas"):
        ct = build_feature_pipeline(mixed_schema, FeaturesSpec(), task="binary")
        out = ct.fit(mixed_frame, mixed_y).transform(mixed_frame)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64


# --- robustness to what serving receives ----------------------------------------------------------


def test_shuffled_columns_extra_columns_and_no_target_give_identical_output(
        churn_ct, churn_frame) -> None:
    clean = churn_ct.transform(churn_frame)
    messy = churn_frame.drop(columns="churn").sample(frac=1.0, axis=1, random_state=1)
    messy = messy.assign(unrelated=1.0, note="hello")
    np.testing.assert_array_equal(churn_ct.transform(messy), clean)


def test_unseen_categories_encode_without_error(churn_ct, churn_frame) -> None:
    clean = churn_frame.iloc[:20]
    unseen = clean.assign(state="ZZ", area_code="area_code_999", international_plan="maybe")
    out, expected = churn_ct.transform(unseen), churn_ct.transform(clean)
    _assert_clean(out, len(clean))
    names = _names(churn_ct)
    touched = [i for i, n in enumerate(names)
               if n.split("_")[0] in ("state", "area", "international")]
    kept = [i for i in range(len(names)) if i not in touched]
    np.testing.assert_array_equal(out[:, kept], expected[:, kept])
    area = [i for i, n in enumerate(names) if n.startswith("area_code_")]
    assert (out[:, area] == 0.0).all()
    # The target encoder encodes an unseen category as the overall target mean, one value.
    assert np.unique(out[:, names.index("state")]).size == 1


def test_missing_values_in_every_column_transform_to_finite_features(
        churn_ct, churn_frame, mixed_ct, mixed_frame) -> None:
    for ct, frame in ((churn_ct, churn_frame), (mixed_ct, mixed_frame)):
        holes = frame.iloc[:5].copy().astype(object)
        holes.iloc[0, :] = None
        holes.iloc[1, :] = np.nan
        _assert_clean(ct.transform(holes), 5)


def test_text_in_a_numeric_column_is_imputed_like_a_missing_value(churn_ct, churn_frame) -> None:
    clean = churn_frame.iloc[:3]
    garbled = clean.astype({"account_length": object})
    garbled.loc[garbled.index[0], "account_length"] = "not a number"
    out = _column(churn_ct, garbled, "account_length")
    median = churn_frame["account_length"].median()
    assert out[0] == median
    np.testing.assert_array_equal(out[1:], clean["account_length"].to_numpy(dtype=float)[1:])


def test_numbers_sent_as_text_read_as_numbers(churn_ct, churn_frame) -> None:
    clean = churn_frame.iloc[:10]
    as_text = clean.astype({"total_day_minutes": str, "account_length": str})
    np.testing.assert_array_equal(churn_ct.transform(as_text), churn_ct.transform(clean))


def test_boolean_values_in_any_spelling_map_to_one_and_zero(mixed_ct, mixed_frame) -> None:
    spellings = ["true", "False", " YES ", "no", 1, 0, "y", "N", True, False]
    rows = pd.concat([mixed_frame.iloc[[0]]] * len(spellings), ignore_index=True)
    rows["flag"] = pd.Series(spellings, dtype=object)
    assert list(_column(mixed_ct, rows, "flag")) == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def test_datetime_strings_and_datetime64_give_the_same_parts(mixed_ct, mixed_frame) -> None:
    expected = mixed_ct.transform(mixed_frame)
    aware = mixed_frame.assign(when=pd.to_datetime(mixed_frame["when"], utc=True))
    naive = aware.assign(when=aware["when"].dt.tz_localize(None))
    shifted = mixed_frame.assign(when=aware["when"].dt.tz_convert("Europe/Paris").astype(str))
    for frame in (aware, naive, shifted):
        np.testing.assert_array_equal(mixed_ct.transform(frame), expected)


def test_datetime_expands_into_calendar_parts_without_a_raw_timestamp(mixed_ct) -> None:
    row = make_mixed(n=1).assign(when="2024-03-15T13:45:00Z")  # a Friday
    names = _names(mixed_ct)
    when = [n for n in names if n.startswith("when")]
    assert when == ["when_hour", "when_day_of_week", "when_month", "when_day_of_month"]
    out = mixed_ct.transform(row)[0]
    assert [out[names.index(n)] for n in when] == [13, 4, 3, 15]


def test_unparseable_datetime_is_imputed(mixed_ct, mixed_frame) -> None:
    row = mixed_frame.iloc[[0]].assign(when="sometime last week")
    _assert_clean(mixed_ct.transform(row), 1)


# --- encoding choices -----------------------------------------------------------------------------


def test_high_cardinality_column_is_target_encoded_and_low_cardinality_one_hot(
        churn_ct, churn_schema) -> None:
    assert len(churn_schema.columns["state"].categories or {}) == 51
    branches = {name: cols for name, _, cols in churn_ct.transformers_}
    assert "state" in branches["target"]
    assert {"area_code", "international_plan", "voice_mail_plan"} <= set(branches["one_hot"])
    names = _names(churn_ct)
    assert "state" in names and not any(n.startswith("state_") for n in names)
    assert {"area_code_area_code_415", "international_plan_yes"} <= set(names)


def test_high_cardinality_ordinal_setting_uses_ordinal_codes(
        churn_schema, churn_frame, churn_y) -> None:
    spec = FeaturesSpec(high_cardinality="ordinal")
    ct = build_feature_pipeline(churn_schema, spec, task="binary").fit(churn_frame, churn_y)
    codes = _column(ct, churn_frame, "state")
    assert set(np.unique(codes)) == set(range(51))


def test_drop_override_removes_the_column(churn_schema, churn_frame, churn_y) -> None:
    spec = _with_overrides(state=ColumnFeatureSpec(encoding="drop"),
                           account_length=ColumnFeatureSpec(encoding="drop"))
    ct = build_feature_pipeline(churn_schema, spec, task="binary").fit(churn_frame, churn_y)
    names = _names(ct)
    assert not any(n.startswith(("state", "account_length")) for n in names)
    assert "total_day_minutes" in names


def test_ordinal_override_uses_ordinal_encoding(churn_schema, churn_frame, churn_y) -> None:
    spec = _with_overrides(area_code=ColumnFeatureSpec(encoding="ordinal"))
    ct = build_feature_pipeline(churn_schema, spec, task="binary").fit(churn_frame, churn_y)
    branches = {name: cols for name, _, cols in ct.transformers_}
    assert branches["ordinal"] == ["area_code"]
    assert set(np.unique(_column(ct, churn_frame, "area_code"))) == {0.0, 1.0, 2.0}
    unseen = churn_frame.iloc[:2].assign(area_code=["area_code_999", None])
    assert list(_column(ct, unseen, "area_code")) == [-1.0, -1.0]


def test_one_hot_override_applies_to_a_high_cardinality_column(
        churn_schema, churn_frame, churn_y) -> None:
    spec = _with_overrides(state=ColumnFeatureSpec(encoding="one_hot"))
    ct = build_feature_pipeline(churn_schema, spec, task="binary").fit(churn_frame, churn_y)
    assert sum(n.startswith("state_") for n in _names(ct)) == 51


def test_multiclass_target_encoding_gives_one_column_per_class(
        churn_schema, churn_frame) -> None:
    y = np.arange(len(churn_frame)) % 3
    ct = build_feature_pipeline(churn_schema, FeaturesSpec(), task="multiclass").fit(churn_frame, y)
    assert [n for n in _names(ct) if n.startswith("state")] == ["state_0", "state_1", "state_2"]


def test_regression_target_encoding_encodes_a_continuous_target(churn_schema, churn_frame) -> None:
    y = churn_frame["total_day_minutes"].to_numpy()
    ct = build_feature_pipeline(churn_schema, FeaturesSpec(), task="regression").fit(churn_frame, y)
    state = _column(ct, churn_frame, "state")
    assert y.min() < state.min() and state.max() < y.max()


def test_refitting_on_the_same_data_gives_the_same_features(
        churn_schema, churn_frame, churn_y) -> None:
    def fit_transform() -> np.ndarray:
        ct = build_feature_pipeline(churn_schema, FeaturesSpec(), task="binary")
        return ct.fit_transform(churn_frame, churn_y)
    np.testing.assert_array_equal(fit_transform(), fit_transform())


# --- column roles, imputation and scaling ---------------------------------------------------------


def test_id_and_constant_columns_are_not_used(mixed_ct, mixed_frame) -> None:
    changed = mixed_frame.assign(customer_id="someone else", constant="different")
    np.testing.assert_array_equal(mixed_ct.transform(changed), mixed_ct.transform(mixed_frame))
    assert not any(n.startswith(("customer_id", "constant", "label")) for n in _names(mixed_ct))


def test_leakage_columns_are_not_used(churn_schema, churn_frame, churn_y) -> None:
    leaky = churn_schema.columns["total_day_charge"].model_copy(update={"role": "leakage"})
    schema = churn_schema.model_copy(
        update={"columns": {**churn_schema.columns, "total_day_charge": leaky}})
    ct = build_feature_pipeline(schema, FeaturesSpec(), task="binary").fit(churn_frame, churn_y)
    assert "total_day_charge" not in _names(ct)
    changed = churn_frame.assign(total_day_charge=-1.0)
    np.testing.assert_array_equal(ct.transform(changed), ct.transform(churn_frame))


def test_missing_indicator_is_added_only_for_columns_with_nulls_in_the_schema(
        mixed_ct, mixed_schema, mixed_frame) -> None:
    assert mixed_schema.columns["x"].nullable and not mixed_schema.columns["count"].nullable
    assert [n for n in _names(mixed_ct) if n.startswith("missingindicator_")] == [
        "missingindicator_x"]
    np.testing.assert_array_equal(_column(mixed_ct, mixed_frame, "missingindicator_x"),
                                  mixed_frame["x"].isna().to_numpy(dtype=float))


def test_impute_overrides_choose_the_fill_value(mixed_schema, mixed_frame, mixed_y) -> None:
    row = mixed_frame.iloc[[0]]  # x is NaN in row 0
    assert pd.isna(row["x"].iloc[0])
    fills = {}
    for impute in ("median", "mean", "zero", "none"):
        spec = _with_overrides(x=ColumnFeatureSpec(impute=impute))
        ct = build_feature_pipeline(mixed_schema, spec, task="binary").fit(mixed_frame, mixed_y)
        fills[impute] = _column(ct, row, "x")[0]
    assert fills["median"] == pytest.approx(mixed_frame["x"].median())
    assert fills["mean"] == pytest.approx(mixed_frame["x"].mean())
    assert fills["zero"] == 0.0
    assert np.isnan(fills["none"])


def test_scale_numeric_standardizes_numeric_columns(mixed_schema, mixed_frame, mixed_y) -> None:
    ct = build_feature_pipeline(mixed_schema, FeaturesSpec(), task="binary", scale_numeric=True)
    out = ct.fit_transform(mixed_frame, mixed_y)
    names = _names(ct)
    for name in ("x", "count", "when_hour"):
        column = out[:, names.index(name)]
        assert column.mean() == pytest.approx(0.0, abs=1e-9)
        assert column.std() == pytest.approx(1.0)
    assert set(np.unique(out[:, names.index("colour_red")])) == {0.0, 1.0}


def test_scale_override_wins_over_the_learner_default(mixed_schema, mixed_frame, mixed_y) -> None:
    spec = _with_overrides(x=ColumnFeatureSpec(scale=False), count=ColumnFeatureSpec(scale=True))
    for scale_numeric in (True, False):
        ct = build_feature_pipeline(mixed_schema, spec, task="binary", scale_numeric=scale_numeric)
        out = ct.fit(mixed_frame, mixed_y).transform(mixed_frame)
        present = mixed_frame["x"].notna().to_numpy()
        np.testing.assert_array_equal(out[present, _names(ct).index("x")],
                                      mixed_frame["x"][present])
        assert out[:, _names(ct).index("count")].std() == pytest.approx(1.0)


# --- configuration errors -------------------------------------------------------------------------


def test_override_of_an_unknown_column_is_a_config_error(churn_schema) -> None:
    spec = _with_overrides(stat=ColumnFeatureSpec(encoding="drop"))
    with pytest.raises(ConfigError, match="did you mean 'state'"):
        build_feature_pipeline(churn_schema, spec, task="binary")


def test_categorical_encoding_of_a_numeric_column_is_a_config_error(churn_schema) -> None:
    spec = _with_overrides(account_length=ColumnFeatureSpec(encoding="one_hot"))
    with pytest.raises(ConfigError, match="kind: categorical"):
        build_feature_pipeline(churn_schema, spec, task="binary")


def test_dropping_every_feature_is_a_config_error(mixed_schema) -> None:
    spec = FeaturesSpec(columns={name: ColumnFeatureSpec(encoding="drop")
                                 for name in mixed_schema.feature_columns})
    with pytest.raises(ConfigError, match="no feature columns"):
        build_feature_pipeline(mixed_schema, spec, task="binary")


# --- serialization and end to end -----------------------------------------------------------------


@pytest.mark.parametrize("which", ["churn", "mixed"])
def test_skops_round_trip_gives_identical_output(which: str, request: pytest.FixtureRequest) -> None:
    ct = request.getfixturevalue(f"{which}_ct")
    frame = request.getfixturevalue(f"{which}_frame")
    data = sio.dumps(ct)
    assert set(sio.get_untrusted_types(data=data)) <= set(FEATURE_TRUSTED_TYPES)
    loaded = sio.loads(data, trusted=FEATURE_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.transform(frame), ct.transform(frame))
    assert list(loaded.get_feature_names_out()) == _names(ct)


def test_skops_round_trip_of_a_regression_pipeline_needs_only_the_trusted_types(
        churn_schema, churn_frame) -> None:
    y = churn_frame["total_day_minutes"].to_numpy()
    ct = build_feature_pipeline(churn_schema, FeaturesSpec(), task="regression").fit(churn_frame, y)
    loaded = sio.loads(sio.dumps(ct), trusted=FEATURE_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.transform(churn_frame), ct.transform(churn_frame))


def test_trusted_types_are_flywheel_functions_or_library_types() -> None:
    flywheel_names = [n for n in FEATURE_TRUSTED_TYPES if n.startswith("flywheel.")]
    assert {n.rpartition(".")[2] for n in flywheel_names} >= {"to_floats", "to_category_strings"}
    for name in FEATURE_TRUSTED_TYPES:
        module, _, attr = name.rpartition(".")
        assert module.split(".")[0] in ("flywheel", "sklearn", "numpy")
        assert getattr(importlib.import_module(module), attr) is not None


def test_logistic_regression_on_churn_features_reaches_auc_above_0_75(
        churn_schema, churn_frame, churn_y) -> None:
    X_train, X_test, y_train, y_test = train_test_split(
        churn_frame, churn_y, test_size=0.25, stratify=churn_y, random_state=0)
    ct = build_feature_pipeline(churn_schema, FeaturesSpec(), task="binary", scale_numeric=True)
    model = Pipeline([("features", ct), ("model", LogisticRegression(max_iter=1000))])
    model.fit(X_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    assert auc > 0.75


