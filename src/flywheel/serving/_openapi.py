"""The OpenAPI 3.1 document of the service, with the loaded model's feature schema.

What the document allows, the server accepts, and the other way round where JSON Schema can say
it; what it cannot say (columns of equal length, one input tensor per feature) gets a 4xx that
the document lists. A test validates the document and runs schemathesis against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flywheel._version import __version__
from flywheel.serving._inputs import MAX_ROWS
from flywheel.serving._v2 import DATATYPES, output_names

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel

OPENAPI_VERSION = "3.1.0"
_JSON_TYPES: dict[str, dict[str, Any]] = {
    "numeric": {"type": ["number", "null"]}, "integer": {"type": ["number", "null"]},
    "categorical": {"type": ["string", "number", "boolean", "null"]},
    "boolean": {"type": ["boolean", "string", "integer", "null"]},
    "datetime": {"type": ["string", "null"], "format": "date-time"}}
_EXPLAIN = {"type": "boolean", "description": "also return each row's contributions per column"}
_PROBLEMS = {"type": "array", "items": {"type": "object", "properties": {
    "loc": {"type": "array"}, "msg": {"type": "string"}}}}


def _feature_schemas(served: ServedModel | None) -> dict[str, dict[str, Any]] | None:
    if served is None:
        return None
    columns = served.model.schema.columns
    return {name: dict(_JSON_TYPES[columns[name].kind]) for name in served.model.features}


def _predict_body(features: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    if features is None:
        record: dict[str, Any] = {"type": "object"}
        item, columns = record, dict(record)
    else:
        item = {"type": "object", "properties": features, "required": list(features),
                "additionalProperties": False}
        # A record may ask for explanations (``_explain.py``), unless a feature has that name.
        flag = {} if "explain" in features else {"explain": _EXPLAIN}
        record = {**item, "properties": {**features, **flag}}
        columns = {"type": "object", "required": list(features), "additionalProperties": False,
                   "properties": {name: {"type": "array", "items": schema, "minItems": 1,
                                         "maxItems": MAX_ROWS}
                                  for name, schema in features.items()}}
    return {"oneOf": [
        record,
        {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_ROWS},
        {"type": "object", "properties": {"columns": columns, "explain": _EXPLAIN},
         "required": ["columns"], "additionalProperties": False},
    ]}


def _feedback_body(served: ServedModel | None) -> dict[str, Any]:
    label: dict[str, Any] = {"type": ["string", "number", "boolean"]}
    if served is not None:
        if served.model.task == "regression":
            label = {"type": "number"}
        else:
            label = {"enum": list(served.model.classes),
                     "description": "one of the model's classes"}
    item = {"type": "object", "required": ["request_id", "label"], "additionalProperties": False,
            "properties": {"request_id": {"type": "string", "minLength": 1}, "label": label}}
    items = {"type": "array", "items": item}
    return {"oneOf": [item, items, {"type": "object", "required": ["feedback"],
                                    "additionalProperties": False,
                                    "properties": {"feedback": items}}]}


def _infer_body(served: ServedModel | None) -> dict[str, Any]:
    name: dict[str, Any] = {"type": "string", "minLength": 1, "description": "a feature's name"}
    if served is not None:
        name = {"enum": list(served.model.features), "description": "a feature's name"}
    tensor = {"type": "object", "required": ["name", "datatype"], "anyOf": [
        {"required": ["data"]},
        {"required": ["parameters"], "properties": {"parameters": {
            "required": ["binary_data_size"]}}}], "properties": {
        "name": name,
        "datatype": {"enum": list(DATATYPES)},
        "shape": {"oneOf": [
            {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1,
             "maxItems": 1},
            {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0},
                                              {"const": 1}], "minItems": 2, "maxItems": 2}]},
        "data": {"type": "array", "description": "one value per record, or [[value], ...]"},
        "parameters": {"type": "object", "properties": {
            "binary_data_size": {"type": "integer", "minimum": 0,
                                 "description": "bytes of this tensor in the binary data "
                                                "after the JSON header"}}}}}
    names = output_names(served) if served is not None else ["predictions", "probabilities"]
    output = {"type": "object", "required": ["name"], "properties": {
        "name": {"enum": names},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {
            "binary_data_output": {"type": "boolean"}}},
        "inputs": {"type": "array", "minItems": 1, "items": tensor},
        "outputs": {"type": "array", "items": output}}}


_TOKEN_PARAM = {"name": "token", "in": "query", "required": False,
                "schema": {"type": "string"},
                "description": "the token, for a browser that cannot send Authorization"}


def _error(description: str = "a problem with the request") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"}, "problems": _PROBLEMS}}}}}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _v2_paths(errors: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    missing = {"404": _error("unknown model, or version not loaded")}
    unready = {"503": _error("no model is loaded yet")}
    infer = {"summary": "Open Inference Protocol v2 inference (JSON or binary tensors: send "
                        "Inference-Header-Content-Length with binary data after the JSON)",
             "requestBody": {"required": True, "content": {"application/json": {
                 "schema": body}}},
             "responses": {"200": _json("the requested outputs (binary ones after the JSON "
                                        "header when asked for)"),
                           **errors, **missing, **unready,
                           "415": _error("a Content-Encoding other than gzip or deflate")}}
    paths: dict[str, Any] = {}
    for prefix, params in (("/v2/models/{name}", [name]),
                           ("/v2/models/{name}/versions/{version}", [name, version])):
        paths[prefix] = {"get": {"summary": "model metadata", "parameters": params,
                                 "responses": {"200": _json("inputs, outputs and classes"),
                                               **missing, **unready}}}
        paths[prefix + "/ready"] = {"get": {"parameters": params, "responses": {
            "200": _json("the model is ready"), **missing, **unready}}}
        paths[prefix + "/infer"] = {"post": {**infer, "parameters": params}}
    return paths


def openapi_document(served: ServedModel | None) -> dict[str, Any]:
    """The service's OpenAPI document for the model ``served`` (None: none loaded yet)."""
    features = _feature_schemas(served)
    errors = {"400": _error(), "413": _error("the body is over the size limit"),
              "422": _error("the input does not fit the model"),
              "401": _error("missing or wrong API token (serving.auth guards the endpoint)"),
              "429": _error("too many requests in flight from this client "
                            "(serving.max_concurrent_per_client); see Retry-After")}
    unready = {"503": _error("no model is loaded yet")}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "flywheel prediction service", "version": __version__},
        "paths": {
            "/predict": {"post": {
                "summary": "Predict for one record, a list of records, or columnar input",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _predict_body(features)}}},
                "responses": {"200": _json("predictions, the answering model version, a "
                                           "request id, and warnings about unseen categories"),
                              **errors, **unready}}},
            "/explain": {"post": {
                "summary": "Predictions with each row's exact contributions per input column, "
                           "which add up to its raw score (the default version; not logged)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _predict_body(features)}}},
                "responses": {"200": _json("predictions and explanations: raw_score, bias and "
                                           "contributions per row (per class for multiclass)"),
                              **errors, **unready,
                              "409": _error("the version cannot be explained (not LightGBM)")}}},
            "/feedback": {"post": {
                "summary": "Ground-truth labels for earlier request ids",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _feedback_body(served)}}},
                "responses": {"202": _json("accepted"), **errors}}},
            "/healthz": {"get": {"responses": {"200": _json("alive")}}},
            "/readyz": {"get": {"responses": {"200": _json("ready"),
                                              "503": _json("no model loaded")}}},
            "/metrics": {"get": {"responses": {"200": {
                "description": "Prometheus metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"responses": {"200": _json("this document")}}},
            "/v2": {"get": {"responses": {"200": _json("server metadata and extensions")}}},
            "/v2/health/live": {"get": {"responses": {"200": _json("alive")}}},
            "/v2/health/ready": {"get": {"responses": {"200": _json("ready"),
                                                       "503": _json("no model loaded")}}},
            **_v2_paths(errors, _infer_body(served)),
            "/dashboard": {"get": {
                "summary": "The live dashboard (one HTML page; read-only)",
                "security": [{"bearer": []}],
                "parameters": [_TOKEN_PARAM],
                "responses": {"200": {"description": "the page", "content": {
                    "text/html": {"schema": {"type": "string"}}}},
                              "401": _error("missing or wrong token")}}},
            "/dashboard.json": {"get": {
                "summary": "What the dashboard shows: the JSON of `flywheel models`, `rollout "
                           "status`, `monitor` and `history` with --json, and latency and "
                           "errors per minute",
                "security": [{"bearer": []}],
                "parameters": [_TOKEN_PARAM],
                "responses": {"200": _json("the dashboard's document"),
                              "401": _error("missing or wrong token")}}},
            "/admin/reload": {"post": {
                "summary": "Re-read the registry now",
                "security": [{"bearer": []}],
                "responses": {"200": _json("reconciled with the registry"),
                              "401": _error("missing or wrong token"),
                              "403": _error("no admin token is configured")}}},
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
