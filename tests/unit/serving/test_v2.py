"""The Open Inference Protocol's JSON tensors: requests checked field by field, answers shaped
as the metadata says."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from flywheel.serving._inputs import InputProblems
from flywheel.serving._v2 import V2Error, v2_metadata, v2_request, v2_response
from flywheel.serving._v2_binary import decode_tensor
from tests.unit.serving.conftest import ChurnModel


def tensors(churn: ChurnModel, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    datatypes = {t["name"]: t["datatype"] for t in v2_metadata(churn.served)["inputs"]}
    return [{"name": name, "datatype": datatypes[name], "shape": [len(rows)],
             "data": [row[name] for row in rows]} for name in datatypes]


def test_the_metadata_lists_one_input_per_feature_and_both_outputs(churn: ChurnModel) -> None:
    metadata = v2_metadata(churn.served)
    assert [t["name"] for t in metadata["inputs"]] == list(churn.served.model.features)
    assert {t["datatype"] for t in metadata["inputs"]} <= {"FP64", "BYTES", "BOOL"}
    assert [o["name"] for o in metadata["outputs"]] == ["predictions", "probabilities"]
    assert metadata["parameters"]["classes"] == ["no", "yes"]


def test_a_request_becomes_the_same_records_a_client_would_post(churn: ChurnModel) -> None:
    rows = churn.records[:4]
    request = v2_request({"id": "r", "inputs": tensors(churn, rows)}, b"", churn.served)
    assert request.id == "r" and request.warnings == []
    assert request.records == [{name: row[name] for name in request.records[0]} for row in rows]
    assert request.outputs == [("predictions", False), ("probabilities", False)]


def test_int64_numbers_and_nested_n_by_1_data_are_read_like_fp64(churn: ChurnModel) -> None:
    inputs = tensors(churn, churn.records[:2])
    numeric = next(t for t in inputs if t["datatype"] == "FP64")
    numeric.update(datatype="INT64", shape=[2, 1], data=[[3], [4]])
    request = v2_request({"inputs": inputs}, b"", churn.served)
    assert [r[numeric["name"]] for r in request.records] == [3.0, 4.0]
    assert all(type(r[numeric["name"]]) is float for r in request.records)


def test_every_malformed_field_is_listed_in_one_400(churn: ChurnModel) -> None:
    inputs = tensors(churn, churn.records[:1])
    inputs[0]["datatype"] = "FP128"
    inputs[1]["shape"] = [1, 2]
    body = {"id": 7, "inputs": inputs, "outputs": [{"name": "logits"}],
            "parameters": {"binary_data_output": "yes"}}
    with pytest.raises(V2Error) as caught:
        v2_request(body, b"", churn.served)
    locs = [p["loc"] for p in caught.value.problems]
    assert ["id"] in locs and ["parameters", "binary_data_output"] in locs
    assert ["outputs", 0, "name"] in locs
    assert ["inputs", 0, "datatype"] in locs and ["inputs", 1, "shape"] in locs


@pytest.mark.parametrize("body", [[], {"inputs": []}, {"inputs": "x"}])
def test_a_body_that_is_no_inference_request_is_a_v2_error(churn: ChurnModel,
                                                           body: Any) -> None:
    with pytest.raises(V2Error):
        v2_request(body, b"", churn.served)


def test_missing_and_unknown_tensors_are_input_problems_naming_them(churn: ChurnModel) -> None:
    inputs = tensors(churn, churn.records[:1])
    dropped = inputs.pop(0)["name"]
    inputs.append({"name": "shoe_size", "datatype": "FP64", "shape": [1], "data": [44.0]})
    with pytest.raises(InputProblems) as caught:
        v2_request({"inputs": inputs}, b"", churn.served)
    assert {p["loc"][1] for p in caught.value.problems} == {dropped, "shoe_size"}


def test_tensors_of_different_lengths_are_refused(churn: ChurnModel) -> None:
    inputs = tensors(churn, churn.records[:2])
    inputs[0] = tensors(churn, churn.records[:3])[0]
    with pytest.raises(V2Error, match="different lengths"):
        v2_request({"inputs": inputs}, b"", churn.served)


def test_the_response_holds_the_asked_outputs_and_binary_ones_after_the_json(
        churn: ChurnModel) -> None:
    rows = churn.records[:3]
    labels, probabilities = churn.served.answer(rows)
    body = {"inputs": tensors(churn, rows),
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
    request = v2_request(body, b"", churn.served)
    raw, header_length = v2_response(churn.served, request, "r", labels, probabilities)
    assert header_length is not None
    header = orjson.loads(raw[:header_length])
    (output,) = header["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [3, 2]
    values = decode_tensor("FP64", raw[header_length:])
    np.testing.assert_allclose(np.reshape(values, (3, 2)), churn.expected[:3], atol=1e-12)
    plain, none = v2_response(churn.served, v2_request({"inputs": body["inputs"]}, b"",
                                                       churn.served), "r", labels, probabilities)
    assert none is None
    assert [o["name"] for o in orjson.loads(plain)["outputs"]] == ["predictions",
                                                                   "probabilities"]
