"""The prediction service: a small ASGI application run by uvicorn.

The hot endpoints (``POST /predict`` and the Open Inference Protocol's ``infer``) are handled
by plain ASGI code: at the target of well under a millisecond per request, a framework's
request objects, routing and response classes would cost more than the model does. The other
endpoints are few and simple and share the same dispatch table.

Endpoints: POST /predict, POST /explain, POST /feedback, GET /healthz, /readyz, /metrics,
/openapi.json, GET /dashboard and /dashboard.json (``_dashboard.py``), POST /admin/reload
(token), and the Open Inference Protocol v2 under /v2; given a
gRPC address, the same protocol over gRPC on the same event loop (``_grpc.py``, through
``v2_infer``).

While a rollout runs (the state the model store reads from the registry), ``/predict`` and the
model's ``infer`` go through ``RolloutResponder`` (``_routed.py``): the router picks the version,
a failing challenger is covered by the champion, and a share may be mirrored to a shadow.
Without one, the request path checks a single attribute and is otherwise unchanged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from flywheel._version import __version__
from flywheel.predlog import PredictionLog
from flywheel.serving._auth import ClientLimiter, TokenCheck
from flywheel.serving._batching import Batcher
from flywheel.serving._dashboard import DASHBOARD_PATHS, DashboardRoutes
from flywheel.serving._explain import explain_flag, explanations
from flywheel.serving._feedback import feedback_items
from flywheel.serving._http import (
    BINARY_HEADER,
    JSON_HEADERS,
    HttpError,
    Receive,
    Scope,
    Send,
    decoded_body,
    event_time_of,
    header_value,
    not_allowed,
    read_body,
    request_id_of,
    send_response,
    v2_label,
)
from flywheel.serving._inputs import InputProblems
from flywheel.serving._metrics import ServingMetrics
from flywheel.serving._models import ModelStore, ServedModel
from flywheel.serving._openapi import openapi_document
from flywheel.serving._routed import RolloutResponder
from flywheel.serving._v2 import V2Error, V2Request, v2_metadata, v2_request, v2_response
from flywheel.serving._v2_binary import BINARY_EXTENSION, HEADER_LENGTH, BinaryProblem, split_body

log = logging.getLogger("flywheel.serving")


MAX_BODY_BYTES = 1 << 20
_UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live",
                        "/v2/health/ready"})
"""Probes and scrapes: never counted against a client's limit of requests in flight."""
_V2_MODEL = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<tail>/ready|/infer)?$")


class ServingApp:
    """The ASGI application.

    Args:
        store: The models, kept in step with the registry.
        prediction_log: Where answered requests are recorded (None: not recorded).
        admin_token: Required (as ``Authorization: Bearer <token>``) by state-changing
            endpoints other than predict, infer and feedback.
        max_body_bytes: Larger request bodies get 413.
        dashboard: ``GET /dashboard`` and ``/dashboard.json`` (None: not served).
        auth: API tokens on /predict (and OIP infer) and /feedback (``serving.auth``).
        client_limit: Requests one client address may have in flight; more get 429.
    """

    def __init__(self, store: ModelStore, *, prediction_log: PredictionLog | None = None,
                 admin_token: str | None = None, max_body_bytes: int = MAX_BODY_BYTES,
                 max_batch_rows: int = 512, background: Sequence[Any] = (),
                 grpc_address: str | None = None, dashboard: DashboardRoutes | None = None,
                 auth: TokenCheck | None = None, client_limit: int | None = None) -> None:
        self.store = store
        self.dashboard = dashboard
        self.auth = auth
        self.limiter = ClientLimiter(client_limit) if client_limit else None
        self.log = prediction_log
        self.admin_token = admin_token
        self.max_body_bytes = max_body_bytes
        self.metrics = ServingMetrics()
        self.batcher = Batcher(max_rows=max_batch_rows, on_batch=self.metrics.batch_rows.observe)
        self.rollout = RolloutResponder(self.batcher, prediction_log, self.metrics)
        self.background = tuple(background)
        """Started with the server and stopped with it (the rollout controller's driver)."""
        self.grpc_address = grpc_address
        """``HOST:PORT`` of the Open Inference Protocol over gRPC (None: HTTP only)."""
        self.grpc: Any = None
        """The running ``GrpcService`` (``_grpc.py``), once started."""
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[tuple[int, Any]]]] = {
            ("POST", "/feedback"): self._feedback,
            ("POST", "/explain"): self._explain,
            ("GET", "/healthz"): self._live,
            ("GET", "/readyz"): self._ready,
            ("GET", "/v2/health/live"): self._live,
            ("GET", "/v2/health/ready"): self._ready,
            ("GET", "/v2"): self._server_metadata,
            ("GET", "/openapi.json"): self._openapi,
            ("POST", "/admin/reload"): self._reload,
        }
        self._allowed: dict[str, list[str]] = {"/predict": ["POST"], "/metrics": ["GET"]}
        for route_method, route_path in self._routes:
            self._allowed.setdefault(route_path, []).append(route_method)
        # One metrics label per endpoint (its path without the slash); other paths share one.
        self._labels = {route_path: route_path[1:] for route_path in self._allowed}

    # ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                    await self.start_grpc()
                except Exception as exc:  # noqa: BLE001 - reported to uvicorn, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.grpc is not None:
                    await self.grpc.stop()
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        # Background threads (prediction log, reconciler) hold the GIL for up to the switch
        # interval (5 ms by default) before a request can run again: keep it short.
        sys.setswitchinterval(0.0002)
        # The log's converter child starts first: its imports then overlap loading and
        # warming up the models rather than the first requests.
        if self.log is not None:
            self.log.start()
        self.store.on_change = self._model_changed
        self.store.reconcile()
        self.store.start()
        for task in self.background:
            task.start()
        # Everything loaded so far lives as long as the process: keep the garbage collector
        # from scanning it again and again (full collections paused servers 120-170 ms).
        import gc

        gc.collect()
        gc.freeze()

    async def start_grpc(self) -> None:
        """Serve the Open Inference Protocol over gRPC on ``grpc_address``, on this event loop
        (so gRPC and HTTP requests share the batcher), if one is given."""
        if self.grpc_address is None:
            return
        # grpcio is imported only here: the HTTP-only server never loads it.
        from flywheel.serving._grpc import GrpcService

        self.grpc = GrpcService(self, self.grpc_address)
        await self.grpc.start()

    def shutdown(self) -> None:
        for task in self.background:
            task.stop()
        self.store.stop()
        self.rollout.stop()
        if self.log is not None:
            self.log.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        version, headers = "-", JSON_HEADERS
        client, endpoint = None, self._labels.get(path, "other")
        try:
            if self.limiter is not None and path not in _UNLIMITED:
                client = self.limiter.acquire(scope)
            if path in DASHBOARD_PATHS and self.dashboard is not None:
                served = {a: m.version for a, m in self.store.by_alias.items()}
                status = await self.dashboard.answer(scope, send, served)
                self.metrics.request("dashboard", "-", status, time.perf_counter() - started)
                return
            if path == "/predict" and method == "POST":
                endpoint = "predict"
                status, payload, version = await self._predict(scope, receive, started)
            elif path.startswith("/v2/models/"):
                endpoint = v2_label(path)
                status, payload, version, headers = await self._v2_model(
                    scope, receive, method, path, started)
            elif path == "/metrics" and method == "GET":
                body, content_type = self.metrics.render()
                await send_response(send, 200, body, [(b"content-type", content_type.encode())])
                return
            else:
                endpoint = self._labels.get(path, "other")
                handler = self._routes.get((method, path))
                if handler is None:
                    allowed = self._allowed.get(path)
                    if allowed:
                        raise not_allowed(method, path, allowed)
                    raise HttpError(404, f"{path} is not an endpoint of this server; "
                                         "/openapi.json lists them")
                status, payload = await handler(scope, receive)
            body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        except HttpError as exc:
            status, body = exc.status, exc.body()
            if exc.headers:
                headers = [*JSON_HEADERS, *exc.headers]
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            log.exception("unexpected error answering %s %s", method, path)
            status, body = 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}"})
        finally:
            if client is not None:
                self.limiter.release(client)  # type: ignore[union-attr]
        await send_response(send, status, body, headers)
        self.metrics.request(endpoint, version, status, time.perf_counter() - started)

    # Prediction --------------------------------------------------------------------------

    async def _default_records(self, scope: Scope, receive: Receive
                               ) -> tuple[ServedModel, Any, bool, list[dict[str, Any]],
                                          list[dict[str, Any]]]:
        """The default version and the request's records checked against its features: the
        version, the body (``explain`` taken out), the ``explain`` flag, records, warnings.

        Raises:
            HttpError: 503 before any model is loaded; 422 listing every input problem.
        """
        served = self.store.default
        if served is None:
            raise HttpError(503, "no model is loaded yet; see /readyz")
        body, explain = explain_flag(await self._json(scope, receive), served.model.features)
        try:
            records, warnings = served.checker.records(body)
        except InputProblems as exc:
            raise HttpError(422, "the input does not match the model's features",
                            exc.problems) from None
        return served, body, explain, records, warnings

    async def _predict(self, scope: Scope, receive: Receive,
                       started: float) -> tuple[int, bytes, str]:
        if self.auth is not None:
            self.auth.check(scope, "predict")
        served, body, explain, records, warnings = await self._default_records(scope, receive)
        request_id = request_id_of(scope)
        served, predictions, probabilities = await self._respond(
            scope, served, body, records, request_id, started)
        payload = _answer(request_id, served, predictions, probabilities, warnings)
        if explain:  # the version that answered explains its own prediction
            payload.update(explanations(served, records))
        return 200, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), served.version

    async def _respond(self, scope: Scope, served: ServedModel, body: Any,
                       records: list[dict[str, Any]], request_id: str, started: float, *,
                       follow_rollout: bool = True) -> tuple[ServedModel, list[Any], Any]:
        """Answer checked ``records`` (``/predict`` and ``infer``): from ``served``, or as a
        running rollout routes them, then count and log the answer; (the version that
        answered, predictions, probabilities or None).

        Args:
            body: The request as the client sent it (a shadow gets it as is).
            follow_rollout: False when the client named the version (OIP ``versions/<v>``).

        Raises:
            HttpError: 400 for a bad event-time header, 422 if the model fails on the input.
        """
        event_time = event_time_of(scope)
        arm = "champion"
        if not follow_rollout or self.rollout.router.plan is None:
            predictions, probabilities = await self._answer(served, records, request_id, started)
        else:
            served, arm, records, (predictions, probabilities) = await self.rollout.answer(
                scope["headers"], served, body, records, request_id, started, self._answer)
        self._record(request_id, served, records, predictions, probabilities, started,
                     event_time, arm)
        return served, predictions, probabilities

    async def _answer(self, served: ServedModel, records: list[dict[str, Any]],
                      request_id: str, started: float, arm: str = "champion") -> Any:
        try:
            return await self.batcher.submit(served, records)
        except Exception as exc:  # the model raised on this input
            log.warning("version %s failed on a request: %s", served.version, exc)
            if self.log is not None:
                self.log.append_error(request_id, time.time(), served.version,
                                      (time.perf_counter() - started) * 1000.0, arm,
                                      f"{type(exc).__name__}: {exc}"[:500])
            raise HttpError(422, f"the model could not score this input: {exc}") from None

    def _record(self, request_id: str, served: ServedModel, records: list[dict[str, Any]],
                predictions: list[Any], probabilities: Any, started: float,
                event_time: float | None = None, arm: str = "champion") -> None:
        self.metrics.predicted(served.version, predictions, probabilities is None)
        if self.log is not None:
            self.log.append(served.log_layout, request_id, time.time(), served.version,
                            (time.perf_counter() - started) * 1000.0, records, predictions,
                            probabilities, arm=arm, event_time=event_time)

    # Open Inference Protocol v2 ------------------------------------------------------------

    async def _v2_model(self, scope: Scope, receive: Receive, method: str, path: str,
                        started: float) -> tuple[int, Any, str, list[tuple[bytes, bytes]]]:
        match = _V2_MODEL.match(path)
        if match is None:
            raise HttpError(404, f"{path} is not an endpoint of this server; /openapi.json "
                                 "lists them")
        tail = match["tail"]
        wanted = "POST" if tail == "/infer" else "GET"
        if method != wanted:
            raise not_allowed(method, path, [wanted])
        served = self.v2_served(match["name"], match["version"])
        if tail is None:
            return 200, v2_metadata(served), served.version, JSON_HEADERS
        if tail == "/ready":
            return 200, {"name": match["name"], "ready": True}, served.version, JSON_HEADERS
        if self.auth is not None:  # infer is a prediction: the same token as /predict
            self.auth.check(scope, "predict")
        raw = decoded_body(await read_body(scope, receive, self.max_body_bytes),
                           header_value(scope, b"content-encoding"), self.max_body_bytes)
        try:
            header, binary = split_body(raw, header_value(scope, HEADER_LENGTH))
        except BinaryProblem as exc:
            raise HttpError(400, str(exc)) from None
        try:
            parsed = orjson.loads(header)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc} (binary tensors need the "
                                 "Inference-Header-Content-Length header)") from None
        # The model's own endpoint follows the rollout, like /predict; a named version does not.
        served, request, request_id, predictions, probabilities = await self.v2_infer(
            scope, served, parsed, binary, started, follow_rollout=match["version"] is None)
        body, header_length = v2_response(served, request, request_id, predictions,
                                          probabilities)
        if header_length is None:
            return 200, body, served.version, JSON_HEADERS
        return 200, body, served.version, [BINARY_HEADER,
                                            (HEADER_LENGTH, str(header_length).encode())]

    async def v2_infer(self, scope: Scope, served: ServedModel, body: Any, binary: bytes,
                       started: float, *, follow_rollout: bool
                       ) -> tuple[ServedModel, V2Request, str, list[Any], Any]:
        """One Open Inference Protocol inference, over HTTP or gRPC (``_grpc.py``): the
        request (its JSON form ``body`` and ``binary`` data) checked, answered as
        ``_respond`` answers, counted and logged; (the version that answered, the checked
        request, its id, predictions, probabilities or None).

        Raises:
            HttpError: 400 for a malformed request, 422 for inputs that do not fit the
                model's features or that it cannot score.
        """
        try:
            request = v2_request(body, binary, served)
        except V2Error as exc:
            raise HttpError(400, str(exc), exc.problems) from None
        except InputProblems as exc:
            raise HttpError(422, "the inputs do not match the model's features",
                            exc.problems) from None
        request_id = request.id or request_id_of(scope)
        served, predictions, probabilities = await self._respond(
            scope, served, request.records, request.records, request_id, started,
            follow_rollout=follow_rollout)
        return served, request, request_id, predictions, probabilities

    def v2_served(self, name: str, version: str | None) -> ServedModel:
        """The loaded model ``name`` names: ``version``, or the default (the champion).

        Raises:
            HttpError: 404 for another model or a version not loaded, 503 before a model is
                loaded.
        """
        if name != self.store.registry.model_name:
            raise HttpError(404, f"unknown model {name!r}; this server serves "
                                 f"{self.store.registry.model_name!r}")
        if version is None:
            served = self.store.default
            if served is None:
                raise HttpError(503, "no model is loaded yet; see /v2/health/ready")
            return served
        served = self.store.by_version.get(version)
        if served is None:
            loaded = sorted(self.store.by_version)
            raise HttpError(404, f"version {version!r} of {name!r} is not loaded; loaded: "
                                 f"{', '.join(loaded) or 'none'}")
        return served

    # Other endpoints -------------------------------------------------------------------

    async def _feedback(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        if self.auth is not None:
            self.auth.check(scope, "feedback")
        body = await self._json(scope, receive)
        try:
            items = feedback_items(body, self.store.by_version.values())
        except InputProblems as exc:
            raise HttpError(422, "invalid feedback", exc.problems) from None
        accepted = 0
        if self.log is not None and items:
            accepted = self.log.append_feedback(items)
        return 202, {"accepted": accepted}

    async def _explain(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        """Predictions and their explanations from the default version; not logged or
        routed (``"explain": true`` on /predict explains live traffic)."""
        served, _, _, records, warnings = await self._default_records(scope, receive)
        explained = explanations(served, records)
        predictions, probabilities = served.answer(records)
        payload = _answer(request_id_of(scope), served, predictions, probabilities, warnings)
        return 200, {**payload, **explained}

    async def _live(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        return 200, {"live": True}

    async def _ready(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        loaded = {alias: m.version for alias, m in self.store.by_alias.items()}
        ready = self.store.default is not None
        payload = {"ready": ready, "models": loaded}
        if self.store.last_error:
            payload["registry"] = self.store.last_error
        features = self.store.feature_stats()
        if features:  # online-feature lookups and misses (imputed), per version
            payload["features"] = features
        for task in self.background:  # such as the rollout controller: is this one leading
            readiness = getattr(task, "readiness", None)
            if callable(readiness):
                payload.update(readiness())
        state, router = self.store.rollout, self.rollout.router
        if state is not None and state.running and router.plan is not None:
            payload["rollout"] = {  # as applied by this worker's router
                "id": router.plan.rollout, "kind": state.kind, "revision": state.revision,
                "weights": {f"{arm}:{v}": w for (arm, v), w in router.weights.items()},
                **({"problem": router.problem} if router.problem else {})}
        return (200 if ready else 503), payload

    async def _server_metadata(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        return 200, {"name": "flywheel", "version": __version__,
                     "extensions": [BINARY_EXTENSION]}

    async def _openapi(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        return 200, openapi_document(self.store.default)

    async def _reload(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        self._authorize(scope)
        await read_body(scope, receive, self.max_body_bytes)
        changed = await asyncio.get_running_loop().run_in_executor(None, self.store.reconcile)
        return 200, {"changed": changed,
                     "models": {a: m.version for a, m in self.store.by_alias.items()}}

    def _authorize(self, scope: Scope) -> None:
        if not self.admin_token:
            raise HttpError(403, "admin endpoints are disabled: no admin token is configured")
        given = header_value(scope, b"authorization").removeprefix(b"Bearer ")
        if not hmac.compare_digest(given, self.admin_token.encode()):
            raise HttpError(401, "missing or wrong admin token (Authorization: Bearer <token>)")

    def _model_changed(self, alias: str, version: str | None) -> None:
        router = self.rollout.router
        before = router.plan.rollout if router.plan is not None else None
        router.update(self.store.rollout, self.store.by_version)
        after = router.plan.rollout if router.plan is not None else None
        if alias != "rollout":
            log.info("alias %s now serves version %s", alias, version)
        elif after != before:
            log.info("rollout %s", f"{after} routes traffic" if after else f"{before} ended")
        self.metrics.set_weights(self.rollout.router.weights)
        for a in self.store.aliases:
            served = self.store.by_alias.get(a)
            if served is not None:
                self.metrics.model_info.labels(a, served.version).set(1)
        for served in self.store.by_version.values():
            self.metrics.compiled.labels(served.version).set(1 if served.model.fast else 0)
            self.metrics.prepare(served.version, served.model.classes)

    # Bodies ------------------------------------------------------------------------------

    async def _json(self, scope: Scope, receive: Receive) -> Any:
        raw = await read_body(scope, receive, self.max_body_bytes)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc}") from None


def _answer(request_id: str, served: ServedModel, predictions: list[Any], probabilities: Any,
            warnings: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of a /predict or /explain answer: the request, the version that answered, its
    predictions, the classes and probabilities of a classifier, and any input warnings."""
    payload: dict[str, Any] = {"request_id": request_id, "model_version": served.version,
                               "predictions": predictions}
    if probabilities is not None:
        payload["classes"] = served.model.classes
        payload["probabilities"] = probabilities
    if warnings:
        payload["warnings"] = warnings
    return payload
