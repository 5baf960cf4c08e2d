"""The OpenAPI document of the service, with the loaded model's feature schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flywheel._version import __version__

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel

_JSON_TYPES = {"numeric": {"type": "number"}, "integer": {"type": "number"},
               "categorical": {"type": ["string", "number", "boolean"]},
               "boolean": {"type": ["boolean", "string", "integer"]},
               "datetime": {"type": "string", "format": "date-time"}}


def _record_schema(served: ServedModel | None) -> dict[str, Any]:
    if served is None:
        return {"type": "object"}
    columns = served.model.schema.columns
    props = {name: {**_JSON_TYPES[columns[name].kind], "nullable": True}
             for name in served.model.features}
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def _error() -> dict[str, Any]:
    return {"description": "a problem with the request", "content": {"application/json": {
        "schema": {"type": "object", "properties": {"error": {"type": "string"},
                                                    "problems": {"type": "array"}}}}}}


def openapi_document(served: ServedModel | None) -> dict[str, Any]:
    record = _record_schema(served)
    predict_body = {"oneOf": [
        record, {"type": "array", "items": record, "minItems": 1},
        {"type": "object", "properties": {"columns": {"type": "object"}},
         "required": ["columns"], "additionalProperties": False},
    ]}
    errors = {str(code): _error() for code in (400, 413, 422, 503)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "flywheel prediction service", "version": __version__},
        "paths": {
            "/predict": {"post": {
                "summary": "Predict for one record, a list of records, or columnar input",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": predict_body}}},
                "responses": {"200": {"description": "predictions, the answering model "
                                                     "version and a request id"}, **errors}}},
            "/feedback": {"post": {
                "summary": "Ground-truth labels for earlier request ids",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "array", "items": {"type": "object", "properties": {
                        "request_id": {"type": "string"}, "label": {}},
                        "required": ["request_id", "label"]}}}}},
                "responses": {"202": {"description": "accepted"}, **errors}}},
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"responses": {"200": {"description": "ready"},
                                              "503": {"description": "no model loaded"}}}},
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus metrics"}}}},
            "/v2/health/live": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/v2/health/ready": {"get": {"responses": {"200": {"description": "ready"}}}},
            "/v2/models/{name}": {"get": {
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "model metadata"}, **errors}}},
            "/v2/models/{name}/infer": {"post": {
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["inputs"], "properties": {
                        "id": {"type": "string"}, "inputs": {"type": "array", "items": {
                            "type": "object", "required": ["name", "datatype", "data"]}}}}}}},
                "responses": {"200": {"description": "inference response"}, **errors}}},
            "/admin/reload": {"post": {
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "reconciled with the registry"},
                              "401": {"description": "missing or wrong token"}}}},
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
