"""The anchor: a minimal hand-written ASGI handler around the same model (its compiled form),
with no validation, logging, routing, batching or metrics. Run by bench/serving_vs_mlflow.py;
not part of flywheel.

Env: BARE_CONFIG (flywheel.yaml of the project whose champion it serves).
"""

from __future__ import annotations

import os

import orjson

from flywheel import Project
from flywheel.features import compile_predictor

_project = Project.load(os.environ["BARE_CONFIG"])
_model = _project.registry().load_model("champion")
_compiled = compile_predictor(_model, _project.schema, task=_project.spec.target.task)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    message = await receive()
    proba = _compiled.predict_records([orjson.loads(message.get("body", b""))])
    body = orjson.dumps({"probabilities": proba.tolist()})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
