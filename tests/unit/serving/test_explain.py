"""``POST /explain`` and ``"explain": true`` on ``/predict``, through the ASGI app with a real
LightGBM model and prediction log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from flywheel.predlog import read_predictions
from flywheel.serving import ServedModel, build_loaded_model
from tests.unit.serving.conftest import ChurnModel
from tests.unit.serving.test_app import call, make_app


def _log_odds(probabilities: list[list[float]]) -> np.ndarray:
    p = np.asarray(probabilities)[:, 1]
    return np.log(p / (1 - p))


def test_explain_returns_contributions_per_column_that_sum_to_each_rows_log_odds(
        churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    status, _, body = call(app, "POST", "/explain", churn.records[:8])
    assert status == 200
    answer = orjson.loads(body)
    assert answer["explained"] == "the log-odds of 'yes'"
    np.testing.assert_allclose(answer["probabilities"], churn.expected[:8], atol=1e-12)
    rows = answer["explanations"]
    assert len(rows) == 8
    for row, log_odds in zip(rows, _log_odds(answer["probabilities"]), strict=True):
        assert list(row["contributions"]) == churn.schema.feature_columns
        total = sum(row["contributions"].values()) + row["bias"]
        assert abs(total - row["raw_score"]) <= 1e-9
        assert abs(row["raw_score"] - log_odds) <= 1e-6


def test_explain_true_on_predict_explains_the_logged_answer_in_every_body_form(
        churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    record = churn.records[0]
    status, _, body = call(app, "POST", "/predict", {**record, "explain": True},
                           headers={"x-request-id": "e-1"})
    assert status == 200
    one = orjson.loads(body)
    assert len(one["explanations"]) == 1
    columns = {name: [r[name] for r in churn.records[:3]] for name in record}
    status, _, body = call(app, "POST", "/predict", {"columns": columns, "explain": True})
    assert status == 200
    three = orjson.loads(body)
    first, alone = three["explanations"][0], one["explanations"][0]
    assert first["raw_score"] == pytest.approx(alone["raw_score"], abs=1e-9)
    assert first["contributions"] == pytest.approx(alone["contributions"], abs=1e-9)
    status, _, body = call(app, "POST", "/predict", {**record, "explain": False})
    assert status == 200 and "explanations" not in orjson.loads(body)
    app.log.close()  # type: ignore[union-attr]
    logged = read_predictions(tmp_path)
    assert "e-1" in set(logged["request_id"])  # an explained prediction is still logged


@pytest.mark.parametrize(("body", "status", "where"), [
    (b"{not json", 400, "not valid JSON"),
    ([], 422, "no records"),
    ({"explain": "yes"}, 422, "expected true or false"),
    ("a string", 422, "expected a record"),
    ({"state": "KS"}, 422, "missing"),
])
def test_malformed_explain_requests_get_a_4xx_saying_what_is_wrong(
        churn: ChurnModel, tmp_path: Path, body: Any, status: int, where: str) -> None:
    app = make_app(churn, tmp_path)
    got, _, raw = call(app, "POST", "/explain", body)
    assert got == status, raw
    assert where in raw.decode()
    if isinstance(body, dict) and "explain" in body:
        got, _, raw = call(app, "POST", "/predict", {**churn.records[0], **body})
        assert got == 422 and "expected true or false" in raw.decode()


def test_a_version_that_cannot_be_explained_answers_409_naming_why(
        churn: ChurnModel, tmp_path: Path) -> None:
    frame = pd.DataFrame.from_records(churn.records, columns=churn.schema.feature_columns)
    linear = Pipeline([("features", churn.pipeline[0]),
                       ("model", LogisticRegression(max_iter=1000))])
    linear[-1].fit(churn.pipeline[0].transform(frame), np.arange(len(frame)) % 2)
    tags = {"flywheel.task": "binary", "flywheel.classes": '["no", "yes"]'}
    served = ServedModel(build_loaded_model("churn", "2", linear, churn.schema, tags))
    app = make_app(None, tmp_path)
    app.store.by_alias["champion"] = app.store.by_version["2"] = served
    status, _, raw = call(app, "POST", "/explain", churn.records[0])
    assert status == 409
    assert "version 2 cannot be explained" in raw.decode()
    assert "LogisticRegression" in raw.decode()
    status, _, _ = call(app, "POST", "/predict", churn.records[0])
    assert status == 200  # its predictions still work


def test_explain_before_any_model_is_loaded_is_503(tmp_path: Path) -> None:
    status, _, raw = call(make_app(None, tmp_path), "POST", "/explain", {"x": 1})
    assert status == 503 and "no model is loaded" in raw.decode()


def test_a_multiclass_version_explains_each_class_raw_score(tmp_path: Path) -> None:
    import lightgbm as lgb

    from flywheel.core.spec import FeaturesSpec
    from flywheel.data import infer_schema
    from flywheel.features import build_feature_pipeline

    frame = pd.read_parquet(Path(__file__).resolve().parents[3] / "examples" / "diamonds"
                            / "diamonds.parquet").head(1500)
    schema = infer_schema(frame, "cut")
    classes = sorted(frame["cut"].astype(str).unique())
    y = frame["cut"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    x = frame[schema.feature_columns]
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(),
                                                          task="multiclass")),
                      ("model", lgb.LGBMClassifier(n_estimators=15, verbosity=-1))]).fit(x, y)
    tags = {"flywheel.task": "multiclass", "flywheel.classes": orjson.dumps(classes).decode()}
    app = make_app(None, tmp_path)
    app.store.by_alias["champion"] = app.store.by_version["1"] = ServedModel(
        build_loaded_model("cut", "1", model, schema, tags))
    record = orjson.loads(x.head(1).to_json(orient="records"))[0]
    status, _, raw = call(app, "POST", "/explain", record)
    assert status == 200, raw
    answer = orjson.loads(raw)
    per_class = answer["explanations"][0]["classes"]
    assert list(per_class) == classes
    scores = np.array([per_class[c]["raw_score"] for c in classes])
    softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(softmax, answer["probabilities"][0], atol=1e-9)


@pytest.mark.parametrize("learner", ["xgboost", "catboost"])
def test_explain_on_an_xgboost_or_catboost_version_sums_to_each_rows_log_odds(
        churn: ChurnModel, tmp_path: Path, learner: str) -> None:
    from flywheel.training import BUILTIN_LEARNERS
    from tests.conftest import require_learner

    require_learner(learner)
    frame = pd.DataFrame.from_records(churn.records, columns=churn.schema.feature_columns)
    train = pd.read_parquet(Path(__file__).resolve().parents[3] / "examples" / "churn"
                            / "mlc_churn.parquet").head(600)
    estimator = BUILTIN_LEARNERS[learner].build({"n_estimators": 40}, "binary", 0, 1)
    model = Pipeline([("features", churn.pipeline[0]), ("model", estimator)])
    model[-1].fit(churn.pipeline[0].transform(train[churn.schema.feature_columns]),
                  (train["churn"] == "yes").to_numpy(int))
    tags = {"flywheel.task": "binary", "flywheel.classes": '["no", "yes"]',
            "flywheel.compiled.verified": "true"}
    served = ServedModel(build_loaded_model("churn", "2", model, churn.schema, tags))
    assert served.model.form == "compiled"
    app = make_app(None, tmp_path)
    app.store.by_alias["champion"] = app.store.by_version["2"] = served
    status, _, raw = call(app, "POST", "/explain", churn.records[:8])
    assert status == 200, raw
    answer = orjson.loads(raw)
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(frame.head(8)),
                               atol=1e-6)
    for row, log_odds in zip(answer["explanations"], _log_odds(answer["probabilities"]),
                             strict=True):
        assert list(row["contributions"]) == churn.schema.feature_columns
        assert abs(sum(row["contributions"].values()) + row["bias"] - row["raw_score"]) <= 1e-9
        assert abs(row["raw_score"] - log_odds) <= 1e-5  # log-odds of float32 probabilities


def test_a_poisson_price_model_serves_prices_and_explains_their_log(tmp_path: Path) -> None:
    import lightgbm as lgb

    from flywheel.core.spec import FeaturesSpec
    from flywheel.data import infer_schema
    from flywheel.features import build_feature_pipeline

    frame = pd.read_parquet(Path(__file__).resolve().parents[3] / "examples" / "diamonds"
                            / "diamonds.parquet").head(1500)
    schema = infer_schema(frame, "price")
    x = frame[schema.feature_columns]
    model = Pipeline([("features", build_feature_pipeline(schema, FeaturesSpec(),
                                                          task="regression")),
                      ("model", lgb.LGBMRegressor(objective="poisson", n_estimators=30,
                                                  verbosity=-1))]).fit(x, frame["price"])
    app = make_app(None, tmp_path)
    app.store.by_alias["champion"] = app.store.by_version["1"] = ServedModel(
        build_loaded_model("price", "1", model, schema, {"flywheel.task": "regression"}))
    records = orjson.loads(x.head(5).to_json(orient="records"))
    status, _, raw = call(app, "POST", "/explain", records)
    assert status == 200, raw
    answer = orjson.loads(raw)
    assert answer["explained"] == "the log of the predicted value"
    np.testing.assert_allclose(answer["predictions"], model.predict(x.head(5)), rtol=1e-12)
    scores = [row["raw_score"] for row in answer["explanations"]]
    np.testing.assert_allclose(np.exp(scores), answer["predictions"], rtol=1e-6)
