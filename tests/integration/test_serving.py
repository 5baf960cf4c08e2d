"""The prediction service, started for real (`flywheel serve` on a free loopback port)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel import Project
from flywheel.demo import ServerProcess
from flywheel.serving import read_predictions
from tests.conftest import CHURN, make_project
from tests.integration.conftest import start_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, ServerProcess]]:
    root = tmp_path_factory.mktemp("serving")
    project = make_project(root, training={"learners": ["lightgbm"]})
    project.train()
    server = start_server(root)
    yield project, server
    server.stop()


@pytest.fixture(scope="module")
def rows(served: tuple[Project, ServerProcess]) -> tuple[list[dict[str, object]], np.ndarray]:
    project, _ = served
    frame = pd.read_parquet(CHURN).sample(40, random_state=3)
    features = project.schema.feature_columns
    records = json.loads(frame[features].to_json(orient="records"))
    model = project.registry().load_model("champion")
    return records, model.predict_proba(frame[features])


def test_one_record_gets_the_pipelines_probabilities_and_the_version(served, rows) -> None:
    _, server = served
    records, expected = rows
    response = httpx.post(server.url + "/predict", json=records[0])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1" and len(body["request_id"]) >= 16
    assert body["classes"] == ["no", "yes"]
    assert np.allclose(body["probabilities"][0], expected[0], atol=1e-9)
    assert body["predictions"][0] == ["no", "yes"][int(expected[0].argmax())]


def test_lists_and_columns_give_the_same_answers_as_single_records(served, rows) -> None:
    _, server = served
    records, expected = rows
    listed = httpx.post(server.url + "/predict", json=records).json()
    columns = {k: [r[k] for r in records] for k in records[0]}
    columnar = httpx.post(server.url + "/predict", json={"columns": columns}).json()
    assert np.allclose(listed["probabilities"], expected, atol=1e-9)
    assert np.allclose(columnar["probabilities"], expected, atol=1e-9)


def test_concurrent_distinct_requests_each_get_their_own_rows(served, rows) -> None:
    _, server = served
    records, expected = rows

    async def burst() -> list[dict[str, object]]:
        async with httpx.AsyncClient(base_url=server.url) as client:
            calls = [client.post("/predict", json=r) for r in records * 3]
            return [r.json() for r in await asyncio.gather(*calls)]

    answers = asyncio.run(burst())
    for i, answer in enumerate(answers):
        assert np.allclose(answer["probabilities"][0], expected[i % len(records)], atol=1e-9)


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"{not json", 400, "not valid JSON"),
    (b'{"x": NaN}', 400, "not valid JSON"),
    (b"[]", 422, "no records"),
    (b'"text"', 422, "expected a record"),
])
def test_malformed_bodies_get_a_4xx_with_a_reason(served, body: bytes, status: int,
                                                   needle: str) -> None:
    _, server = served
    response = httpx.post(server.url + "/predict", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == status and needle in response.text


def test_missing_extra_and_mistyped_fields_are_each_listed(served, rows) -> None:
    _, server = served
    record = dict(rows[0][0])
    record.pop("state")
    record["surprise"] = 1
    record["total_day_minutes"] = "lots"
    record["account_length"] = float("inf")
    response = httpx.post(server.url + "/predict", content=json.dumps(record).replace(
        "Infinity", "1e999"), headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    if response.status_code == 422:
        problems = {tuple(p["loc"][2:]): p["msg"] for p in response.json()["problems"]}
        assert problems[("state",)] == "missing field"
        assert "unknown field" in problems[("surprise",)]
        assert "expected a number" in problems[("total_day_minutes",)]


def test_missing_fields_are_listed_in_the_schemas_order(served, rows) -> None:
    project, server = served
    features = project.schema.feature_columns
    dropped = features[::2]
    record = {k: v for k, v in rows[0][0].items() if k not in dropped}
    for _ in range(3):
        response = httpx.post(server.url + "/predict", json=record)
        assert response.status_code == 422
        assert [p["loc"][2] for p in response.json()["problems"]] == dropped


def test_a_number_for_a_categorical_field_is_answered_with_a_warning_naming_it(served,
                                                                               rows) -> None:
    project, server = served
    record = {**rows[0][0], "area_code": 415}  # the categories are "area_code_415", ...
    response = httpx.post(server.url + "/predict", json=record)
    assert response.status_code == 200, response.text
    (warning,) = response.json()["warnings"]
    assert warning["loc"] == ["records", 0, "area_code"]
    assert "'415' is not one of the 3 known categories" in warning["msg"]
    assert "area_code_408" in warning["msg"]
    clean = httpx.post(server.url + "/predict", json=rows[0][0]).json()
    assert "warnings" not in clean
    name = project.registry().model_name
    inputs = [{"name": k, "datatype": "FP64" if k == "area_code" else
               ("BYTES" if isinstance(v, str) else "FP64"), "shape": [1], "data": [v]}
              for k, v in record.items()]
    v2 = httpx.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": inputs})
    assert v2.status_code == 200, v2.text
    assert "inputs.0.area_code: '415' is not one of" in v2.json()["parameters"]["warnings"]


def test_oversized_body_is_refused_with_413(served) -> None:
    _, server = served
    response = httpx.post(server.url + "/predict", content=b"[" + b"1," * 700_000 + b"1]",
                          headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_unknown_routes_models_and_versions_are_4xx(served) -> None:
    project, server = served
    assert httpx.get(server.url + "/predict").status_code == 405
    assert httpx.get(server.url + "/nope").status_code == 404
    assert httpx.get(server.url + "/v2/models/other").status_code == 404
    name = project.registry().model_name
    missing = httpx.get(f"{server.url}/v2/models/{name}/versions/99")
    assert missing.status_code == 404 and "not loaded" in missing.json()["error"]
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_open_inference_protocol_infer_matches_predict(served, rows) -> None:
    project, server = served
    records, expected = rows
    name = project.registry().model_name
    meta = httpx.get(f"{server.url}/v2/models/{name}").json()
    kinds = {i["name"]: i["datatype"] for i in meta["inputs"]}
    inputs = [{"name": k, "datatype": kinds[k], "shape": [len(records)],
               "data": [r[k] for r in records]} for k in kinds]
    response = httpx.post(f"{server.url}/v2/models/{name}/versions/1/infer",
                          json={"id": "abc", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "abc" and body["model_version"] == "1"
    proba = {o["name"]: o for o in body["outputs"]}["probabilities"]
    assert proba["shape"] == [len(records), 2]
    assert np.allclose(np.array(proba["data"]).reshape(-1, 2), expected, atol=1e-9)
    assert httpx.get(f"{server.url}/v2/models/{name}/ready").json()["ready"] is True
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200


def test_tritonclient_gets_the_same_numbers_as_predict(served, rows) -> None:
    import tritonclient.http as tritonclient  # a dev dependency: missing, this fails

    project, server = served
    records, expected = rows
    name = project.registry().model_name
    meta = httpx.get(f"{server.url}/v2/models/{name}").json()
    client = tritonclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    inputs = []
    for spec in meta["inputs"]:
        values = [r[spec["name"]] for r in records]
        array = np.array(values, dtype=object if spec["datatype"] == "BYTES" else np.float64)
        tensor = tritonclient.InferInput(spec["name"], [len(records)], spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    outputs = [tritonclient.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer(name, inputs, outputs=outputs)
    assert np.allclose(result.as_numpy("probabilities").reshape(-1, 2), expected, atol=1e-9)


def test_feedback_is_logged_and_joined_to_its_prediction(served, rows) -> None:
    project, server = served
    answer = httpx.post(server.url + "/predict", json=rows[0][1]).json()
    request_id = answer["request_id"]
    accepted = httpx.post(server.url + "/feedback", json=[{"request_id": request_id,
                                                            "label": "yes"}])
    assert accepted.status_code == 202 and accepted.json() == {"accepted": 1}
    bad = httpx.post(server.url + "/feedback", json=[{"request": request_id}])
    assert bad.status_code == 422
    single = httpx.post(server.url + "/feedback", json={"request_id": "other", "label": "no"})
    assert single.status_code == 202 and single.json() == {"accepted": 1}
    time.sleep(1.6)  # one flush interval
    log = read_predictions(project.workspace.predictions)
    row = log[log["request_id"] == request_id].iloc[0]
    assert row["label"] == "yes" and row["model_version"] == "1"
    assert row["prediction"] == answer["predictions"][0]
    assert row["in.state"] == rows[0][1]["state"]


def test_a_feedback_label_that_is_not_a_class_is_refused_naming_the_classes(served) -> None:
    _, server = served
    response = httpx.post(server.url + "/feedback", json=[
        {"request_id": "a", "label": "yes"}, {"request_id": "b", "label": "maybe"},
        {"request_id": "c", "label": 1}])
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [p["loc"] for p in problems] == [["feedback", 1, "label"], ["feedback", 2, "label"]]
    assert "'maybe' is not a class of the model; expected one of 'no', 'yes'" in \
        problems[0]["msg"]


def test_event_time_header_is_logged_and_a_bad_one_is_refused(served, rows) -> None:
    project, server = served
    headers = {"x-flywheel-event-time": "2013-07-01T08:30:00Z"}
    answer = httpx.post(server.url + "/predict", json=rows[0][1], headers=headers).json()
    for bad in ("yesterday", "nan", "1e20"):
        refused = httpx.post(server.url + "/predict", json=rows[0][1],
                             headers={"x-flywheel-event-time": bad})
        assert refused.status_code == 400 and "x-flywheel-event-time" in refused.json()["error"]
    time.sleep(1.6)  # one flush interval
    log = read_predictions(project.workspace.predictions)
    row = log[log["request_id"] == answer["request_id"]].iloc[0]
    assert row["event_ts"].isoformat() == "2013-07-01T08:30:00+00:00"


def test_metrics_count_requests_by_version_and_status(served, rows) -> None:
    _, server = served
    httpx.post(server.url + "/predict", json=rows[0][0])
    text = httpx.get(server.url + "/metrics").text
    assert 'flywheel_requests_total{endpoint="predict",model_version="1",status="200"}' in text
    assert "flywheel_request_latency_seconds_bucket" in text
    assert "flywheel_batch_rows_bucket" in text
    assert 'flywheel_predictions_total{model_version="1"' in text
    assert 'flywheel_model_compiled{model_version="1"} 1.0' in text


def test_metrics_label_each_endpoint_once_whatever_the_method_or_path(served, rows) -> None:
    project, server = served
    name = project.registry().model_name
    httpx.post(server.url + "/predict", json=rows[0][0])
    httpx.get(server.url + "/predict")  # 405
    httpx.post(server.url + "/feedback", json=[])
    for junk in ("/nope", "/nope/2", "/predict/"):
        httpx.get(server.url + junk)
    httpx.get(f"{server.url}/v2/models/{name}")
    text = httpx.get(server.url + "/metrics").text
    endpoints = {line.split('endpoint="')[1].split('"')[0]
                 for line in text.splitlines() if line.startswith("flywheel_requests_total{")}
    assert "/predict" not in endpoints and "/feedback" not in endpoints
    assert {"predict", "feedback", "other", "v2/models/metadata"} <= endpoints
    assert not any(e.startswith("/") or "nope" in e for e in endpoints)


def test_admin_reload_needs_the_token(served) -> None:
    _, server = served
    assert httpx.post(server.url + "/admin/reload").status_code == 401
    ok = httpx.post(server.url + "/admin/reload", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["models"]["champion"] == "1"


def test_openapi_document_describes_the_models_features(served) -> None:
    project, server = served
    doc = httpx.get(server.url + "/openapi.json").json()
    record = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    first = record["schema"]["oneOf"][0]
    assert set(first["required"]) == set(project.schema.feature_columns)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12))
def test_fuzzed_bodies_never_get_a_5xx(served, body: object) -> None:
    _, server = served
    for path in ("/predict", "/explain", "/feedback", "/v2/models/x/infer"):
        response = httpx.post(server.url + path, content=json.dumps(body).encode())
        assert response.status_code < 500, (path, body, response.text)


def test_explain_on_the_running_server_sums_to_the_log_odds_of_each_served_probability(
        served, rows) -> None:
    _, server = served
    records, expected = rows
    response = httpx.post(server.url + "/explain", json=records[:10])
    assert response.status_code == 200, response.text
    answer = response.json()
    np.testing.assert_allclose(answer["probabilities"], expected[:10], atol=1e-9)
    p = expected[:10, 1]
    for row, log_odds in zip(answer["explanations"], np.log(p / (1 - p)), strict=True):
        assert abs(sum(row["contributions"].values()) + row["bias"] - log_odds) <= 1e-6
    bad = httpx.post(server.url + "/predict", json={**records[0], "explain": 1})
    assert bad.status_code == 422 and "expected true or false" in bad.text
