from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)
from threadpoolctl import threadpool_limits

from flywheel.core.errors import CompileError, FlywheelError
from flywheel.core.spec import ColumnFeatureSpec, FeaturesSpec, Task
from flywheel.data import DataSchema, infer_schema
from flywheel.features import (
    CompiledPredictor,
    CompileReport,
    build_feature_pipeline,
    compile_predictor,
    verify_compiled,
)
from flywheel.features._compiled import _compile_estimator
from flywheel.features._compiled_values import (
    read_bool,
    read_category,
    read_datetime,
    read_float,
)
from flywheel.features._convert import (
    to_bool_floats,
    to_category_strings,
    to_datetime_parts,
    to_floats,
)
from tests.conftest import CHURN, DIAMONDS, make_mixed

TOL = 1e-9


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """OpenMP threads waiting for busy cores make single-row calls take milliseconds."""
    with threadpool_limits(limits=1):
        yield


# --- building fitted pipelines the way training does ----------------------------------------------


def _fit(frame: pd.DataFrame, y: np.ndarray, schema: DataSchema, estimator: Any, *, task: Task,
         spec: FeaturesSpec | None = None, scale: bool = False) -> Pipeline:
    """Like pipelines.train._refit: fit the features, then the estimator on their output."""
    features = build_feature_pipeline(schema, spec or FeaturesSpec(), task=task,
                                      scale_numeric=scale)
    estimator.fit(features.fit_transform(frame, y), y)
    return Pipeline([("features", features), ("model", estimator)])


def _lgbm(cls: type, **params: Any) -> Any:
    settings = {"n_estimators": 40, "num_leaves": 15, "verbosity": -1, "n_jobs": 1,
                "random_state": 0, **params}
    return cls(**settings)


class Case:
    """A fitted pipeline with its schema, task and held-out rows."""

    def __init__(self, model: Pipeline, schema: DataSchema, task: Task,
                 holdout: pd.DataFrame) -> None:
        self.model, self.schema, self.task, self.holdout = model, schema, task, holdout
        self.compiled = compile_predictor(model, schema, task=task)

    def expected(self, frame: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.model.predict(frame), dtype=float)
        return np.asarray(self.model.predict_proba(frame), dtype=float)


def _split(frame: pd.DataFrame, n_train: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return shuffled.iloc[:n_train].reset_index(drop=True), \
        shuffled.iloc[n_train:].reset_index(drop=True)


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame, DataSchema]:
    frame = pd.read_parquet(CHURN)
    train, holdout = _split(frame, 3000)
    return train, holdout.iloc[:400].reset_index(drop=True), infer_schema(frame, "churn")


@pytest.fixture(scope="module")
def mixed() -> tuple[pd.DataFrame, pd.DataFrame, DataSchema]:
    frame = make_mixed(n=600, seed=1)
    frame.loc[::7, "x"] = np.nan  # nullable in the schema: a missing indicator
    frame.loc[3::11, "count"] = np.nan
    train, holdout = _split(frame, 450)
    return train, holdout, infer_schema(frame, "label")


@pytest.fixture(scope="module")
def diamonds() -> tuple[pd.DataFrame, pd.DataFrame, DataSchema]:
    frame = pd.read_parquet(DIAMONDS).sample(n=2500, random_state=0).reset_index(drop=True)
    train, holdout = _split(frame, 2000)
    return train, holdout, infer_schema(frame, "price")


def _churn_y(frame: pd.DataFrame) -> np.ndarray:
    return (frame["churn"] == "yes").to_numpy(dtype=int)


def _three_classes(frame: pd.DataFrame) -> np.ndarray:
    minutes = frame["total_day_minutes"].to_numpy()
    return np.digitize(minutes + 20 * (frame["state"] < "M"), [150.0, 210.0])


def _mixed_y(frame: pd.DataFrame) -> np.ndarray:
    return (frame["label"] == "yes").to_numpy(dtype=int)


CASES: dict[str, Callable[[Any], Case]] = {}


_BUILT: dict[str, Case] = {}


def case(fixture: str) -> Callable[[Callable[..., Case]], Callable[..., Case]]:
    """Register a case builder; each case is fitted once per test session."""
    def register(build: Callable[..., Case]) -> Callable[..., Case]:
        def built(request: pytest.FixtureRequest) -> Case:
            if build.__name__ not in _BUILT:
                _BUILT[build.__name__] = build(request.getfixturevalue(fixture))
            return _BUILT[build.__name__]
        CASES[build.__name__] = built
        return build
    return register


@case("churn")
def lightgbm_binary_churn(data: Any) -> Case:
    train, holdout, schema = data  # state target-encoded, the plans one-hot
    model = _fit(train, _churn_y(train), schema, _lgbm(lgb.LGBMClassifier), task="binary")
    return Case(model, schema, "binary", holdout)


@case("churn")
def lightgbm_multiclass_churn(data: Any) -> Case:
    train, holdout, schema = data  # multiclass target encoding: one state column per class
    model = _fit(train, _three_classes(train), schema, _lgbm(lgb.LGBMClassifier),
                 task="multiclass")
    return Case(model, schema, "multiclass", holdout)


@case("churn")
def lightgbm_early_stopped_churn(data: Any) -> Case:
    train, holdout, schema = data
    features = build_feature_pipeline(schema, FeaturesSpec(), task="binary")
    y = _churn_y(train)
    matrix = features.fit_transform(train, y)
    estimator = lgb.LGBMClassifier(n_estimators=300, verbosity=-1, n_jobs=1, random_state=0)
    estimator.fit(matrix[:2400], y[:2400], eval_X=(matrix[2400:],), eval_y=(y[2400:],),
                  callbacks=[lgb.early_stopping(5, verbose=False)])
    assert 0 < estimator.best_iteration_ < 300
    model = Pipeline([("features", features), ("model", estimator)])
    return Case(model, schema, "binary", holdout)


@case("churn")
def logistic_scaled_churn(data: Any) -> Case:
    train, holdout, schema = data
    model = _fit(train, _churn_y(train), schema, LogisticRegression(max_iter=2000),
                 task="binary", scale=True)
    return Case(model, schema, "binary", holdout)


@case("churn")
def logistic_multiclass_ordinal_churn(data: Any) -> Case:
    train, holdout, schema = data
    spec = FeaturesSpec(high_cardinality="ordinal",
                        columns={"area_code": ColumnFeatureSpec(encoding="ordinal")})
    model = _fit(train, _three_classes(train), schema, LogisticRegression(max_iter=3000),
                 task="multiclass", spec=spec, scale=True)
    return Case(model, schema, "multiclass", holdout)


@case("diamonds")
def lightgbm_regression_diamonds(data: Any) -> Case:
    train, holdout, schema = data  # one-hot, plus target (continuous) and ordinal overrides
    spec = FeaturesSpec(columns={"color": ColumnFeatureSpec(encoding="target"),
                                 "clarity": ColumnFeatureSpec(encoding="ordinal")})
    model = _fit(train, train["price"].to_numpy(dtype=float), schema,
                 _lgbm(lgb.LGBMRegressor), task="regression", spec=spec)
    return Case(model, schema, "regression", holdout)


@case("diamonds")
def ridge_scaled_diamonds(data: Any) -> Case:
    train, holdout, schema = data
    model = _fit(train, train["price"].to_numpy(dtype=float), schema, Ridge(alpha=1.0),
                 task="regression", scale=True)
    return Case(model, schema, "regression", holdout)


@case("mixed")
def lightgbm_mixed(data: Any) -> Case:
    train, holdout, schema = data  # missing indicators, booleans, datetimes, one-hot
    model = _fit(train, _mixed_y(train), schema, _lgbm(lgb.LGBMClassifier, min_child_samples=5),
                 task="binary")
    return Case(model, schema, "binary", holdout)


@case("mixed")
def logistic_mixed(data: Any) -> Case:
    train, holdout, schema = data  # scaled numeric and datetime parts, mean imputation
    spec = FeaturesSpec(impute="mean", columns={"count": ColumnFeatureSpec(impute="zero")})
    model = _fit(train, _mixed_y(train), schema, LogisticRegression(max_iter=2000),
                 task="binary", spec=spec, scale=True)
    return Case(model, schema, "binary", holdout)


@case("mixed")
def random_forest_mixed(data: Any) -> Case:
    train, holdout, schema = data  # colour ordinal-encoded, through the estimator's own method
    spec = FeaturesSpec(columns={"colour": ColumnFeatureSpec(encoding="ordinal")})
    model = _fit(train, _mixed_y(train), schema,
                 RandomForestClassifier(n_estimators=30, random_state=0), task="binary",
                 spec=spec)
    return Case(model, schema, "binary", holdout)


@case("mixed")
def hist_gradient_boosting_mixed(data: Any) -> Case:
    train, holdout, schema = data
    spec = FeaturesSpec(columns={"colour": ColumnFeatureSpec(encoding="target")})
    model = _fit(train, _mixed_y(train), schema, HistGradientBoostingClassifier(max_iter=30),
                 task="binary", spec=spec)
    return Case(model, schema, "binary", holdout)


@case("churn")
def hist_gradient_boosting_multiclass_churn(data: Any) -> Case:
    train, holdout, schema = data  # numeric splits with NaN going either way, three classes
    train = train.copy()
    train.loc[::9, "total_day_minutes"] = np.nan
    model = _fit(train, _three_classes(train.fillna(0.0)), schema,
                 HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=31, random_state=0),
                 task="multiclass")
    return Case(model, schema, "multiclass", holdout)


@case("diamonds")
def hist_gradient_boosting_regression_diamonds(data: Any) -> Case:
    train, holdout, schema = data
    model = _fit(train, train["price"].to_numpy(dtype=float), schema,
                 HistGradientBoostingRegressor(max_iter=40, random_state=0), task="regression")
    return Case(model, schema, "regression", holdout)


@pytest.fixture(params=sorted(CASES), scope="module")
def fitted(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param](request)


# --- odd request values ---------------------------------------------------------------------------


def _messy_records(c: Case, rows: int = 40, seed: int = 0) -> list[dict[str, Any]]:
    """Held-out rows as JSON-like records, with holes, unseen values, text and extra keys."""
    rng = np.random.default_rng(seed)
    kinds = {name: c.schema.columns[name].kind for name in c.compiled.feature_columns}
    records = c.holdout.head(rows)[list(kinds)].to_dict(orient="records")
    for i, record in enumerate(records):
        record["request_id"] = f"r{i}"  # an extra key the model ignores
        for name, kind in kinds.items():
            roll = rng.random()
            if roll < 0.08:
                record[name] = None
            elif roll < 0.12:
                del record[name]  # a missing key is a missing value
            elif roll < 0.2:
                record[name] = _odd_value(kind, record[name], rng)
    return records


def _odd_value(kind: str, value: Any, rng: np.random.Generator) -> Any:
    options: list[Any] = {
        "numeric": ["not a number", f"{value}", " 7 ", "1e2", "", "-0", True, 3],
        "categorical": ["never-seen", 415, 415.0, 2.5, True, "", " padded "],
        "boolean": ["yes", " No ", "t", "0", 1, 0.0, "maybe", 2],
        "datetime": ["2024-03-15T13:45:00+05:30", "2024-03-15 23:10", "2024-03-15",
                     "20240315", "2024-02-30", "last tuesday", 1_700_000_000],
    }[kind if kind != "integer" else "numeric"]
    return options[int(rng.integers(len(options)))]


def _pipeline_one_row(c: Case, record: dict[str, Any]) -> np.ndarray:
    """What the pipeline answers for one request: its record as a one-row DataFrame."""
    row = {name: record.get(name) for name in c.compiled.feature_columns}
    return c.expected(pd.DataFrame([row]))


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


# --- exactness -----------------------------------------------------------------------------------


def test_encoded_matrix_is_bit_identical_to_the_column_transformer(fitted: Case) -> None:
    expected = fitted.model[:-1].transform(fitted.holdout)
    given = {c: fitted.holdout[c] for c in fitted.compiled.feature_columns}
    np.testing.assert_array_equal(fitted.compiled.encode_columns(given), expected)
    records = fitted.holdout.head(50).to_dict(orient="records")
    np.testing.assert_array_equal(fitted.compiled.encode_records(records), expected[:50])
    for i in (0, 7, 31):
        np.testing.assert_array_equal(fitted.compiled.encode_records([records[i]]),
                                      expected[i:i + 1])


def test_compiled_predictions_equal_the_pipeline_on_held_out_rows(fitted: Case) -> None:
    expected = fitted.expected(fitted.holdout)
    given = {c: fitted.holdout[c].tolist() for c in fitted.compiled.feature_columns}
    _assert_close(fitted.compiled.predict_columns(given), expected)
    records = fitted.holdout.to_dict(orient="records")
    _assert_close(fitted.compiled.predict_records(records), expected)
    for i in range(0, len(records), 25):
        _assert_close(fitted.compiled.predict_records([records[i]]), expected[i:i + 1])


def test_messy_requests_predict_what_the_pipeline_predicts_for_them(fitted: Case) -> None:
    records = _messy_records(fitted)
    batch = fitted.compiled.predict_records(records)
    for i, record in enumerate(records):
        expected = _pipeline_one_row(fitted, record)
        _assert_close(fitted.compiled.predict_records([record]), expected)
        _assert_close(batch[i:i + 1], expected)


def test_verify_compiled_reports_a_verified_match(fitted: Case) -> None:
    report = verify_compiled(fitted.compiled, fitted.model, fitted.holdout)
    assert report.verified and report.rows == len(fitted.holdout)
    assert report.max_abs_diff <= TOL and report.atol == 1e-6


def test_output_shapes_follow_the_task(fitted: Case) -> None:
    records = fitted.holdout.head(3).to_dict(orient="records")
    out = fitted.compiled.predict_records(records)
    empty = fitted.compiled.predict_records([])
    if fitted.task == "regression":
        assert out.shape == (3,) and empty.shape == (0,)
    else:
        k = len(fitted.model[-1].classes_)
        assert out.shape == (3, k) and empty.shape == (0, k)
        np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_estimators_are_called_the_cheapest_exact_way(request: pytest.FixtureRequest) -> None:
    kinds = {name: CASES[name](request).compiled.kind
             for name in ("lightgbm_binary_churn", "logistic_scaled_churn",
                          "ridge_scaled_diamonds", "random_forest_mixed",
                          "hist_gradient_boosting_mixed",
                          "hist_gradient_boosting_regression_diamonds")}
    assert kinds == {"lightgbm_binary_churn": "lightgbm", "logistic_scaled_churn": "logistic",
                     "ridge_scaled_diamonds": "linear", "random_forest_mixed": "sklearn",
                     "hist_gradient_boosting_mixed": "hist_gradient_boosting",
                     "hist_gradient_boosting_regression_diamonds": "hist_gradient_boosting"}


def test_hist_gradient_boosting_splitting_on_categories_answers_through_its_own_method(
        ) -> None:
    rng = np.random.default_rng(0)
    matrix = np.column_stack([rng.integers(0, 4, 300), rng.random(300)]).astype(float)
    y = (matrix[:, 0] == 2).astype(int)
    estimator = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0])
    predict, kind, _ = _compile_estimator(estimator.fit(matrix, y), "binary", "model", 1)
    assert kind == "sklearn"
    np.testing.assert_array_equal(predict(matrix), estimator.predict_proba(matrix))


# --- serving behaviour ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_case(request: pytest.FixtureRequest) -> Case:
    return CASES["lightgbm_binary_churn"](request)


def test_feature_columns_follow_the_schema_and_skip_the_target(churn_case: Case) -> None:
    expected = [c for c in churn_case.schema.columns if c != "churn"]
    assert churn_case.compiled.feature_columns == expected


def test_unseen_categories_encode_like_the_pipeline(churn_case: Case) -> None:
    record = churn_case.holdout.iloc[0].to_dict()
    unseen = {**record, "state": "ZZ", "area_code": "area_code_999", "voice_mail_plan": None}
    np.testing.assert_array_equal(churn_case.compiled.encode_records([unseen]),
                                  churn_case.model[:-1].transform(pd.DataFrame([unseen])))


def test_an_empty_record_predicts_like_an_all_missing_row(churn_case: Case) -> None:
    expected = _pipeline_one_row(churn_case, {})
    _assert_close(churn_case.compiled.predict_records([{}]), expected)
    _assert_close(churn_case.compiled.predict_columns({"unrelated": [1]}), expected)


def test_predict_columns_accepts_lists_arrays_and_series(churn_case: Case) -> None:
    frame = churn_case.holdout.head(20)
    expected = churn_case.expected(frame)
    for convert in (lambda s: s, lambda s: s.tolist(), lambda s: s.to_numpy()):
        got = churn_case.compiled.predict_columns(
            {c: convert(frame[c]) for c in churn_case.compiled.feature_columns})
        _assert_close(got, expected)


def test_pandas_nullable_dtypes_read_like_the_pipeline_reads_them(request: pytest.FixtureRequest
                                                                  ) -> None:
    mixed_case = CASES["lightgbm_mixed"](request)
    frame = mixed_case.holdout.convert_dtypes()  # Float64, Int64, boolean, string, with <NA>
    frame.loc[frame.index[:5], ["flag", "colour", "when"]] = pd.NA
    given = {c: frame[c] for c in mixed_case.compiled.feature_columns}
    np.testing.assert_array_equal(mixed_case.compiled.encode_columns(given),
                                  mixed_case.model[:-1].transform(frame))


def test_a_model_loaded_with_skops_compiles_to_the_same_predictions(churn_case: Case) -> None:
    data = sio.dumps(churn_case.model)
    loaded = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    compiled = compile_predictor(loaded, churn_case.schema, task="binary")
    records = churn_case.holdout.head(20).to_dict(orient="records")
    np.testing.assert_array_equal(compiled.predict_records(records),
                                  churn_case.compiled.predict_records(records))


def test_columns_of_different_lengths_are_rejected(churn_case: Case) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        churn_case.compiled.predict_columns({"state": ["KS", "OH"], "account_length": [1]})


def test_a_row_predicts_the_same_alone_or_in_a_batch(churn_case: Case) -> None:
    records = _messy_records(churn_case, rows=30, seed=3)
    batch = churn_case.compiled.predict_records(records)
    alone = np.vstack([churn_case.compiled.predict_records([r]) for r in records])
    np.testing.assert_array_equal(batch, alone)


def test_concurrent_callers_each_get_their_own_rows(churn_case: Case) -> None:
    records = churn_case.holdout.head(64).to_dict(orient="records")
    expected = churn_case.expected(churn_case.holdout.head(64))
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda r: churn_case.compiled.predict_records([r]), records))
    _assert_close(np.vstack(got), expected)


def test_verify_compiled_flags_a_predictor_that_does_not_match(churn: Any,
                                                                churn_case: Case) -> None:
    train, holdout, schema = churn
    other = _fit(train, _churn_y(train), schema, _lgbm(lgb.LGBMClassifier, num_leaves=4),
                 task="binary")
    report = verify_compiled(churn_case.compiled, other, holdout)
    assert not report.verified and report.max_abs_diff > report.atol


def test_report_tags_are_strings_for_mlflow() -> None:
    report = CompileReport(verified=True, rows=500, max_abs_diff=0.0, atol=1e-6)
    assert report.to_tags() == {
        "flywheel.compiled.verified": "true", "flywheel.compiled.rows": "500",
        "flywheel.compiled.max_abs_diff": "0", "flywheel.compiled.atol": "1e-06"}


def test_verify_compiled_needs_rows(churn_case: Case) -> None:
    with pytest.raises(ValueError, match="at least one"):
        verify_compiled(churn_case.compiled, churn_case.model, churn_case.holdout.iloc[:0])


# --- steps walked generically --------------------------------------------------------------------


def _hand_built(branches: list[tuple[str, Any, list[str]]], estimator: Any,
                frame: pd.DataFrame, y: np.ndarray) -> Pipeline:
    ct = ColumnTransformer(branches, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("features", ct), ("model", estimator)]).fit(frame, y)


def _convert(func: Any) -> FunctionTransformer:
    return FunctionTransformer(func, feature_names_out="one-to-one")


@pytest.mark.filterwarnings("ignore:Found unknown categories")
def test_other_settings_of_the_supported_steps_compile_exactly(mixed: Any) -> None:
    train, holdout, schema = mixed
    branches = [
        ("num", Pipeline([("f", _convert(to_floats)),
                          ("i", SimpleImputer(strategy="mean", add_indicator=True)),
                          ("s", StandardScaler(with_mean=False))]), ["x", "count"]),
        ("only_missing", Pipeline([("f", _convert(to_floats)),
                                   ("m", MissingIndicator(features="missing-only"))]),
         ["x", "flag", "count"]),
        ("flag", Pipeline([("f", _convert(to_bool_floats)),
                           ("s", StandardScaler())]), ["flag"]),
        ("when", Pipeline([("f", FunctionTransformer(to_datetime_parts)),
                           ("i", SimpleImputer(strategy="constant", fill_value=-1.0))]),
         ["when"]),
        ("colour", Pipeline([("f", _convert(to_category_strings)),
                             ("e", OneHotEncoder(drop="first", handle_unknown="ignore",
                                                 sparse_output=False))]), ["colour"]),
        ("colour_code", Pipeline([("f", _convert(to_category_strings)),
                                  ("e", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                       unknown_value=np.nan))]), ["colour"]),
    ]
    y = _mixed_y(train)
    model = _hand_built(branches, _lgbm(lgb.LGBMClassifier, n_estimators=20), train, y)
    compiled = compile_predictor(model, schema, task="binary")
    messy = holdout.assign(colour=holdout["colour"].where(holdout.index % 5 > 0, "purple"))
    np.testing.assert_array_equal(
        compiled.encode_columns({c: messy[c] for c in compiled.feature_columns}),
        model[:-1].transform(messy))
    assert verify_compiled(compiled, model, messy).verified


@pytest.mark.parametrize(("branch", "step"), [
    (Pipeline([("f", _convert(to_floats)), ("pca", PCA(n_components=1))]), "num/pca"),
    (Pipeline([("f", _convert(to_floats)),
               ("bins", KBinsDiscretizer(n_bins=3, encode="ordinal"))]), "num/bins"),
    (Pipeline([("scale", StandardScaler())]), "num/scale"),
    (Pipeline([("f", FunctionTransformer(np.abs))]), "num/f"),
    ("passthrough", "num"),
], ids=["pca", "binning", "no-converter", "unknown-function", "passthrough"])
def test_an_unsupported_numeric_step_is_a_compile_error_naming_it(mixed: Any, branch: Any,
                                                                   step: str) -> None:
    train, _, schema = mixed
    frame = train.fillna({"x": 0.0, "count": 0.0})
    model = _hand_built([("num", branch, ["x", "count"])], LogisticRegression(), frame,
                        _mixed_y(frame))
    with pytest.raises(CompileError, match=f"step 'features/{step}'") as caught:
        compile_predictor(model, schema, task="binary")
    assert isinstance(caught.value, FlywheelError) and caught.value.step == f"features/{step}"


@pytest.mark.parametrize("encoder", [
    OneHotEncoder(handle_unknown="error", sparse_output=False),
    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=50, sparse_output=False),
    OrdinalEncoder(),
], ids=["one-hot-error", "one-hot-infrequent", "ordinal-error"])
def test_encoders_that_would_raise_or_group_categories_are_compile_errors(
        mixed: Any, encoder: Any) -> None:
    train, _, schema = mixed
    branch = Pipeline([("f", _convert(to_category_strings)), ("e", encoder)])
    model = _hand_built([("cat", branch, ["colour"])], LogisticRegression(), train,
                        _mixed_y(train))
    with pytest.raises(CompileError, match="features/cat/e"):
        compile_predictor(model, schema, task="binary")


def test_a_step_between_features_and_model_is_a_compile_error(churn_case: Case) -> None:
    schema = churn_case.schema
    features, estimator = churn_case.model.steps[0][1], churn_case.model.steps[1][1]
    model = Pipeline([("features", features), ("scale", StandardScaler()),
                      ("model", estimator)])
    with pytest.raises(CompileError, match="one feature step"):
        compile_predictor(model, schema, task="binary")


def test_a_task_the_estimator_cannot_answer_is_a_compile_error(churn_case: Case) -> None:
    with pytest.raises(CompileError, match="regression"):
        compile_predictor(churn_case.model, churn_case.schema, task="regression")


def test_a_schema_without_a_column_the_model_reads_is_a_compile_error(churn_case: Case) -> None:
    columns = {n: c for n, c in churn_case.schema.columns.items() if n != "state"}
    schema = churn_case.schema.model_copy(update={"columns": columns})
    with pytest.raises(CompileError, match="state"):
        compile_predictor(churn_case.model, schema, task="binary")


def test_compiled_predictor_describes_itself(churn_case: Case) -> None:
    assert isinstance(churn_case.compiled, CompiledPredictor)
    assert "lightgbm" in repr(churn_case.compiled)


# --- reading single values exactly like the converters -------------------------------------------

ODD_VALUES = [
    True, False, None, math.nan, 0, 1, 2, -3, 2.0, 2.5, -0.0, 0.1, 1e16, math.inf, 2**70,
    "12", " 12 ", "-0", "1e3", "1_000", "0x10", "abc", "", "yes", " No ", "T", "1", "0", "1.0",
    np.int64(4), np.float64(1.0), np.float32(0.1), np.bool_(True), pd.NA, pd.NaT,
    pd.Timestamp("2024-05-05 05:05", tz="Asia/Tokyo"), dt.datetime(2024, 5, 5, 5, 5),
    dt.date(2024, 5, 5), "2024-01-01T10:00:00Z", "2024-01-01T23:30:00-05:00",
    "2024-01-01T23:30:00+0530", "2024-02-30", "2024-01-01 10:00", "20240101", "2024-W01-1",
    "1600-01-01T00:00:00", [1], {"a": 1}, 1_700_000_000,
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_values_read_exactly_as_the_converters_read_a_one_row_frame(value: Any) -> None:
    frame = pd.DataFrame([{"v": value}])
    for convert, read in ((to_floats, read_float), (to_bool_floats, read_bool),
                          (to_datetime_parts, read_datetime)):
        expected = convert(frame)[0]
        got = np.atleast_1d(np.asarray(read(value), dtype=float))
        np.testing.assert_array_equal(got, expected, err_msg=convert.__name__)
        assert (np.signbit(got) == np.signbit(expected)).all()
    with np.errstate(invalid="ignore"):
        expected_text = to_category_strings(frame)[0, 0]
    assert read_category(value) == expected_text


def test_iso_datetimes_read_like_pandas_at_random() -> None:
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(500):
        y, mo, d = rng.integers(1700, 2300), rng.integers(1, 13), rng.integers(1, 32)
        h, mi, s = rng.integers(0, 24), rng.integers(0, 60), rng.integers(0, 60)
        offset = f"{rng.choice(['+', '-'])}{rng.integers(0, 15):02d}:{rng.choice(['00', '30'])}"
        day = f"{y}-{mo:02d}-{d:02d}"
        texts.append(str(rng.choice([day, f"{day}T{h:02d}:{mi:02d}",
                                     f"{day} {h:02d}:{mi:02d}:{s:02d}.25Z",
                                     f"{day}T{h:02d}:{mi:02d}:{s:02d}{offset}"])))
    expected = to_datetime_parts(pd.DataFrame({"v": texts}))
    np.testing.assert_array_equal(np.array([read_datetime(t) for t in texts]), expected)


def test_numeric_text_reads_like_pandas_at_random() -> None:
    rng = np.random.default_rng(0)
    texts = [repr(float(v)) for v in rng.normal(scale=1e4, size=300)]
    texts += [f"{v:.{int(rng.integers(0, 20))}e}" for v in rng.uniform(-1e3, 1e3, size=300)]
    texts += [str(int(v)) for v in rng.integers(-2**62, 2**62, size=300)]
    expected = to_floats(pd.DataFrame({"v": pd.Series(texts, dtype="str")}))[:, 0]
    np.testing.assert_array_equal(np.array([read_float(t) for t in texts]), expected)


@pytest.mark.parametrize("case", ["lightgbm_binary_churn", "lightgbm_multiclass_churn",
                                  "lightgbm_early_stopped_churn", "lightgbm_regression_diamonds"])
def test_lightgbm_single_rows_use_the_c_single_row_api_with_identical_results(
        request: pytest.FixtureRequest, case: str) -> None:
    from flywheel.features._compiled_lightgbm import _SingleRow

    fitted = CASES[case](request)
    booster = fitted.model[-1].booster_
    single = _SingleRow.create(booster, {"num_threads": 1})
    assert single is not None
    matrix = fitted.compiled.encode_records(fitted.holdout.head(200).to_dict(orient="records"))
    expected = booster.predict(matrix, num_threads=1)
    got = np.array([single(row) for row in matrix]).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)
