"""The ASGI application, called as uvicorn calls it (scope, receive, send), with a real model
and a real prediction log; the registry is not read (the models are set in the store)."""

from __future__ import annotations

import asyncio
import gzip
import types
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from flywheel.predlog import PredictionLog, read_predictions
from flywheel.serving import ModelStore, ServingApp
from flywheel.serving._v2 import v2_metadata
from tests.unit.serving.conftest import ChurnModel


def make_app(churn: ChurnModel | None, folder: Path, **options: Any) -> ServingApp:
    registry = types.SimpleNamespace(model_name="churn", store_stamp=lambda: None)
    store = ModelStore(registry)  # type: ignore[arg-type]
    if churn is not None:
        store.by_alias["champion"] = store.by_version["1"] = churn.served
    return ServingApp(store, prediction_log=PredictionLog(folder), **options)


def call(app: ServingApp, method: str, path: str, body: Any = None, *,
         headers: dict[str, str] | None = None, chunks: int = 1) -> tuple[int, dict[str, str],
                                                                          bytes]:
    """One request; the body (JSON unless bytes) arrives in ``chunks`` messages."""
    raw = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
    step = max(1, -(-len(raw) // chunks))
    parts = [raw[i:i + step] for i in range(0, len(raw), step)] or [b""]
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                for i, part in enumerate(parts)]
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode(), v.encode())
                         for k, v in (headers or {}).items()]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, end = sent
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            end["body"])


def infer_body(churn: ChurnModel, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    datatypes = {t["name"]: t["datatype"] for t in v2_metadata(churn.served)["inputs"]}
    return {"inputs": [{"name": name, "datatype": datatypes[name], "shape": [len(rows)],
                        "data": [row[name] for row in rows]} for name in datatypes], **extra}


def test_predict_and_infer_answer_the_same_rows_alike_and_both_are_logged(
        churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    rows = churn.records[:5]
    status, _, body = call(app, "POST", "/predict", rows, headers={"x-request-id": "p-1"})
    assert status == 200
    predicted = orjson.loads(body)
    assert predicted["model_version"] == "1" and predicted["request_id"] == "p-1"
    assert predicted["classes"] == ["no", "yes"]
    np.testing.assert_allclose(predicted["probabilities"], churn.expected[:5], atol=1e-12)
    status, headers, body = call(app, "POST", "/v2/models/churn/infer",
                                 infer_body(churn, rows, id="i-1"))
    assert status == 200 and headers["content-type"] == "application/json"
    inferred = orjson.loads(body)
    assert inferred["id"] == "i-1" and inferred["model_version"] == "1"
    outputs = {o["name"]: o["data"] for o in inferred["outputs"]}
    assert outputs["predictions"] == predicted["predictions"]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"], (5, 2)),
                               churn.expected[:5], atol=1e-12)
    app.log.flush()  # type: ignore[union-attr]
    logged = read_predictions(tmp_path)
    # Each row of a request is logged under "<request id>:<row>".
    assert sorted(logged["request_id"]) == sorted(f"{rid}:{i}" for rid in ("i-1", "p-1")
                                                  for i in range(5))
    assert set(logged["model_version"]) == {"1"} and set(logged["arm"]) == {"champion"}


def test_a_bad_event_time_is_a_400_on_both_endpoints_and_nothing_is_logged(
        churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    headers = {"x-flywheel-event-time": "last tuesday"}
    for path, body in (("/predict", churn.records[0]),
                       ("/v2/models/churn/infer", infer_body(churn, churn.records[:1]))):
        status, _, answer = call(app, "POST", path, body, headers=headers)
        assert status == 400, answer
        assert "x-flywheel-event-time" in orjson.loads(answer)["error"]
    app.log.flush()  # type: ignore[union-attr]
    assert read_predictions(tmp_path).empty


def test_an_iso_event_time_with_z_is_logged_as_that_utc_instant(churn: ChurnModel,
                                                                tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    status, _, _ = call(app, "POST", "/predict", churn.records[0],
                        headers={"x-flywheel-event-time": "2024-07-01T12:00:00Z"})
    assert status == 200
    app.log.flush()  # type: ignore[union-attr]
    logged = read_predictions(tmp_path)
    assert logged["event_ts"].iloc[0] == pd.Timestamp("2024-07-01T12:00:00", tz="UTC")


def test_without_a_loaded_model_predict_and_infer_answer_503(tmp_path: Path,
                                                              churn: ChurnModel) -> None:
    app = make_app(None, tmp_path)
    assert call(app, "POST", "/predict", churn.records[0])[0] == 503
    assert call(app, "POST", "/v2/models/churn/infer",
                infer_body(churn, churn.records[:1]))[0] == 503
    assert call(app, "GET", "/readyz")[0] == 503


def test_records_that_do_not_fit_get_422_with_every_problem_and_bad_json_400(
        churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    record = dict(churn.records[0])
    dropped = sorted(record)[:2]
    for name in dropped:
        del record[name]
    status, _, body = call(app, "POST", "/predict", record)
    assert status == 422
    assert sorted(p["loc"][-1] for p in orjson.loads(body)["problems"]) == dropped
    status, _, body = call(app, "POST", "/predict", b'{"broken": ')
    assert status == 400 and "not valid JSON" in orjson.loads(body)["error"]


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(churn: ChurnModel,
                                                                   tmp_path: Path) -> None:
    app = make_app(churn, tmp_path, max_body_bytes=2000)
    big = orjson.dumps(churn.records[:20])
    assert len(big) > 2000
    assert call(app, "POST", "/predict", big, headers={"content-length": str(len(big))})[0] == 413
    assert call(app, "POST", "/predict", big, chunks=4)[0] == 413
    small = orjson.dumps(churn.records[:2])
    assert call(app, "POST", "/predict", small, chunks=3)[0] == 200


def test_infer_takes_a_gzip_body_and_a_named_version_must_be_loaded(churn: ChurnModel,
                                                                    tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    packed = gzip.compress(orjson.dumps(infer_body(churn, churn.records[:3])))
    status, _, body = call(app, "POST", "/v2/models/churn/versions/1/infer", packed,
                           headers={"content-encoding": "gzip"})
    assert status == 200 and orjson.loads(body)["model_version"] == "1"
    status, _, body = call(app, "POST", "/v2/models/churn/versions/7/infer",
                           infer_body(churn, churn.records[:1]))
    assert status == 404 and "loaded: 1" in orjson.loads(body)["error"]
    assert call(app, "POST", "/v2/models/other/infer", infer_body(churn, churn.records[:1])
                )[0] == 404


@pytest.mark.parametrize(("method", "path", "allow"), [("GET", "/predict", "POST"),
                                                        ("GET", "/v2/models/churn/infer", "POST"),
                                                        ("POST", "/readyz", "GET")])
def test_a_wrong_method_is_405_naming_the_allowed_one(churn: ChurnModel, tmp_path: Path,
                                                      method: str, path: str, allow: str) -> None:
    status, headers, _ = call(make_app(churn, tmp_path), method, path)
    assert status == 405 and headers["allow"] == allow


def test_metrics_count_each_endpoint_and_version(churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path)
    call(app, "POST", "/predict", churn.records[0])
    call(app, "POST", "/v2/models/churn/infer", infer_body(churn, churn.records[:1]))
    call(app, "GET", "/nowhere")
    status, _, body = call(app, "GET", "/metrics")
    text = body.decode()
    assert status == 200
    assert 'endpoint="predict"' in text and 'endpoint="v2/models/infer"' in text
    assert 'endpoint="other"' in text
