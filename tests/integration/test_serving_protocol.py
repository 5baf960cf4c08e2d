"""The service's protocols against their reference clients and validators, on a real server:
tritonclient with its defaults (binary tensors), the OpenAPI document under an OpenAPI
validator, and the Open Inference Protocol's malformed requests. schemathesis runs against every
operation in the hardening suite (tests/hardening/test_schemathesis.py)."""

from __future__ import annotations

import json

import httpx
import jsonschema
import numpy as np
import pytest
import tritonclient.http as triton
from openapi_spec_validator import validate

from tests.integration import test_serving

served = test_serving.served  # the module's trained project and its server
rows = test_serving.rows


def _triton_inputs(meta: dict, records: list[dict]) -> list[triton.InferInput]:
    inputs = []
    for spec in meta["inputs"]:
        values = [r[spec["name"]] for r in records]
        array = np.array(values, dtype=object if spec["datatype"] == "BYTES" else np.float64)
        tensor = triton.InferInput(spec["name"], [len(records)], spec["datatype"])
        tensor.set_data_from_numpy(array)  # the default: binary data after the JSON header
        inputs.append(tensor)
    return inputs


def test_tritonclient_defaults_send_and_get_binary_tensors_with_predicts_numbers(
        served, rows) -> None:
    project, server = served
    records, expected = rows
    name = project.registry().model_name
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(name)
    result = client.infer(name, _triton_inputs(meta, records))  # no outputs: all, binary
    assert result.get_output("probabilities")["parameters"]["binary_data_size"] > 0
    assert np.allclose(result.as_numpy("probabilities"), expected, atol=1e-9)
    labels = [b.decode() for b in result.as_numpy("predictions")]
    assert labels == [["no", "yes"][int(p.argmax())] for p in expected]
    asked = client.infer(name, _triton_inputs(meta, records), model_version="1",
                         outputs=[triton.InferRequestedOutput("probabilities")])
    assert [o["name"] for o in asked.get_response()["outputs"]] == ["probabilities"]
    assert np.allclose(asked.as_numpy("probabilities"), expected, atol=1e-9)
    for algorithm in ("gzip", "deflate"):  # the client's request compression
        packed = client.infer(name, _triton_inputs(meta, records),
                              request_compression_algorithm=algorithm)
        assert np.allclose(packed.as_numpy("probabilities"), expected, atol=1e-9)


def test_binary_data_that_does_not_add_up_gets_a_400_saying_why(served, rows) -> None:
    project, server = served
    name = project.registry().model_name
    url = f"{server.url}/v2/models/{name}/infer"
    feature = project.schema.feature_columns[1]  # account_length, a number
    header = json.dumps({"inputs": [{"name": feature, "datatype": "FP64", "shape": [2],
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    short = httpx.post(url, content=header + b"\0" * 8,
                       headers={"inference-header-content-length": str(len(header))})
    assert short.status_code == 400 and "16 bytes asked for, 8 left" in short.text
    bad_length = httpx.post(url, content=header, headers={
        "inference-header-content-length": "999999"})
    assert bad_length.status_code == 400 and "Inference-Header-Content-Length" in bad_length.text
    no_header = httpx.post(url, content=header + b"\0" * 16)
    assert no_header.status_code == 400 and "Inference-Header-Content-Length" in no_header.text


@pytest.mark.parametrize(("tensor", "field"), [
    ({"name": "account_length", "datatype": [], "shape": [1], "data": [30]}, "datatype"),
    ({"name": ["account_length"], "datatype": "FP64", "shape": [1], "data": [30]}, "name"),
    ({"name": {"a": 1}, "datatype": "FP64", "shape": [1], "data": [30]}, "name"),
    ({"name": "account_length", "datatype": {"x": 1}, "shape": [1], "data": [30]}, "datatype"),
    ({"name": "account_length", "datatype": "FP64", "shape": "1", "data": [30]}, "shape"),
    ({"name": "account_length", "datatype": "FP64", "shape": [[1]], "data": [30]}, "shape"),
    ({"name": "account_length", "datatype": "FP64", "shape": [1], "data": {"a": 30}}, "data"),
    ({"name": "account_length", "datatype": "FP64", "shape": [1], "data": [30],
      "parameters": []}, "parameters"),
    ({"name": "account_length", "datatype": "FP64", "shape": [1],
      "parameters": {"binary_data_size": [8]}}, "binary_data_size"),
])
def test_a_mistyped_field_of_an_input_tensor_gets_a_400_naming_it(served, tensor: dict,
                                                                  field: str) -> None:
    project, server = served
    name = project.registry().model_name
    response = httpx.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": [tensor]})
    assert response.status_code == 400, response.text
    assert any(field in p["loc"] for p in response.json()["problems"]), response.text


@pytest.mark.parametrize("body", [
    {"inputs": "x"}, {"inputs": [1]}, {"id": 7, "inputs": []}, {"inputs": [], "outputs": "x"},
    {"inputs": [], "outputs": [{"name": ["predictions"]}]}, {"inputs": [], "parameters": 3},
    {"inputs": [], "parameters": {"binary_data_output": "yes"}},
    {"inputs": [], "outputs": [{"name": "probabilities", "parameters": {"binary_data": 1}}]},
])
def test_a_mistyped_field_of_an_inference_request_gets_a_400(served, body: dict) -> None:
    project, server = served
    name = project.registry().model_name
    response = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body)
    assert response.status_code == 400, response.text


def test_the_openapi_document_is_valid_openapi_and_its_version_is_what_it_uses(served) -> None:
    _, server = served
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on anything OpenAPI 3.1 does not allow


def test_the_document_and_the_server_agree_on_empty_bodies(served) -> None:
    project, server = served
    doc = httpx.get(server.url + "/openapi.json").json()
    paths = doc["paths"]

    def body_schema(path: str) -> dict:
        return paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    jsonschema.validate([], body_schema("/feedback"))  # allowed: and accepted
    accepted = httpx.post(server.url + "/feedback", json=[])
    assert accepted.status_code == 202 and accepted.json() == {"accepted": 0}
    with pytest.raises(jsonschema.ValidationError):  # refused by both
        jsonschema.validate({"inputs": []}, body_schema("/v2/models/{name}/infer"))
    name = project.registry().model_name
    assert httpx.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": []}
                      ).status_code == 400
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([], body_schema("/predict"))
    assert httpx.post(server.url + "/predict", json=[]).status_code == 422


def test_every_v2_path_documents_its_404(served) -> None:
    _, server = served
    doc = httpx.get(server.url + "/openapi.json").json()
    model_paths = [p for p in doc["paths"] if p.startswith("/v2/models/")]
    assert len(model_paths) == 6
    for path in model_paths:
        for operation in doc["paths"][path].values():
            assert "404" in operation["responses"], path


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/predict", "POST"), ("PUT", "/feedback", "POST"), ("POST", "/healthz", "GET"),
    ("DELETE", "/metrics", "GET"), ("GET", "/admin/reload", "POST"),
    ("GET", "/v2/models/mlc_churn/infer", "POST"), ("POST", "/v2/models/mlc_churn", "GET"),
    ("PUT", "/v2/models/mlc_churn/versions/1/ready", "GET"),
])
def test_a_405_says_which_methods_are_allowed(served, method: str, path: str,
                                              allow: str) -> None:
    _, server = served
    response = httpx.request(method, server.url + path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow and allow in response.json()["error"]
