"""The Open Inference Protocol v2 over gRPC, served beside HTTP from the same process.

``GrpcService`` runs a grpc.aio server on the event loop uvicorn runs the ASGI app on, so a
gRPC inference takes the path an HTTP one takes (``ServingApp.v2_infer``): the same checks
(``v2_request``), the running rollout's routing, the batcher (gRPC and HTTP requests that
arrive together share one model call), the prediction log and the Prometheus metrics
(endpoint ``grpc/ModelInfer`` and so on, status the gRPC code's name).

An HTTP status becomes a gRPC code at this edge (``_CODES``): a malformed request or input the
model's features do not fit is INVALID_ARGUMENT with every problem in the message (and as JSON
in the trailing metadata ``flywheel-problems-bin``), an unknown model or version NOT_FOUND, no
model loaded yet UNAVAILABLE. The gRPC health service (``grpc.health.v1``) answers SERVING
while a model is loaded, and server reflection is on. Importing this module imports grpcio:
the app does so only when a gRPC port is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from flywheel._version import __version__
from flywheel.core.errors import ServingError
from flywheel.serving._grpc_tensors import infer_response, metadata_response, request_body
from flywheel.serving._http import HttpError
from flywheel.serving._inputs import InputProblems
from flywheel.serving._v2 import V2Error, v2_metadata, v2_request
from flywheel.serving._v2_binary import BINARY_EXTENSION
from flywheel.serving.proto import grpc_predict_v2_pb2 as pb
from flywheel.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from flywheel.serving._models import ServedModel
    from flywheel.serving.app import ServingApp

__all__ = ["SERVICE_NAME", "GrpcService"]

log = logging.getLogger("flywheel.serving")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.INVALID_ARGUMENT,
          415: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
          404: grpc.StatusCode.NOT_FOUND, 503: grpc.StatusCode.UNAVAILABLE}
_PROBLEMS_KEY = "flywheel-problems-bin"
_HEALTH_SECONDS = 0.5
_R = TypeVar("_R")


class GrpcService:
    """The gRPC server of one ``ServingApp`` (one per worker process).

    Args:
        app: Answers the inferences; its model store, router, batcher, log and metrics.
        address: ``HOST:PORT`` to listen on. Workers of one ``flywheel serve`` share the
            port (SO_REUSEPORT), as they share the HTTP one.
    """

    def __init__(self, app: ServingApp, address: str) -> None:
        self.app = app
        self.address = address
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen and serve; the health service follows the model store from then on.

        Raises:
            ServingError: If the address cannot be bound (a port in use, a bad host).
        """
        limit = self.app.max_body_bytes
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                          ("grpc.so_reuseport", 1)])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _Servicer(self.app), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)
        try:
            bound = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            bound, detail = 0, f": {exc}"
        else:
            detail = ""
        if not bound:
            raise ServingError(f"gRPC cannot listen on {self.address}{detail}; expected a free "
                               "port on a local address; choose another --grpc-port")
        await server.start()
        self.server = server
        await self._set_health()
        self._watch = asyncio.get_running_loop().create_task(self._follow_store())
        log.info("gRPC (Open Inference Protocol v2) on %s", self.address)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking calls; calls in flight get ``grace`` seconds to finish."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace)

    async def _follow_store(self) -> None:
        while True:
            await asyncio.sleep(_HEALTH_SECONDS)
            await self._set_health()

    async def _set_health(self) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if self.app.store.default is not None \
            else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)


class _Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six calls of GRPCInferenceService, answered from the HTTP app's state."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app

    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ServerLiveResponse:
        return await self._call("grpc/ServerLive", context,
                                lambda: _ready(pb.ServerLiveResponse(live=True)))

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext[Any, Any]
                          ) -> pb.ServerReadyResponse:
        ready = self.app.store.default is not None
        return await self._call("grpc/ServerReady", context,
                                lambda: _ready(pb.ServerReadyResponse(ready=ready)))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext[Any, Any]
                             ) -> pb.ServerMetadataResponse:
        return await self._call("grpc/ServerMetadata", context, lambda: _ready(
            pb.ServerMetadataResponse(name="flywheel", version=__version__,
                                      extensions=[BINARY_EXTENSION])))

    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelReadyResponse:
        async def answer() -> pb.ModelReadyResponse:
            self.app.v2_served(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=True)

        return await self._call("grpc/ModelReady", context, answer)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext[Any, Any]
                            ) -> pb.ModelMetadataResponse:
        async def answer() -> pb.ModelMetadataResponse:
            served = self.app.v2_served(request.name, request.version or None)
            return metadata_response(v2_metadata(served))

        return await self._call("grpc/ModelMetadata", context, answer)

    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelInferResponse:
        started = time.perf_counter()
        version = "-"

        async def answer() -> pb.ModelInferResponse:
            nonlocal version
            served = self.app.v2_served(request.model_name, request.model_version or None)
            body, binary, problems = request_body(request)
            scope = {"headers": _headers(context)}
            if problems:
                raise _with_shared_problems(served, body, binary, problems)
            served, checked, request_id, predictions, probabilities = \
                await self.app.v2_infer(scope, served, body, binary, started,
                                        follow_rollout=not request.model_version)
            version = served.version
            return infer_response(served, checked, request_id, predictions, probabilities)

        return await self._call("grpc/ModelInfer", context, answer, started=started,
                                version=lambda: version)

    async def _call(self, endpoint: str, context: grpc.aio.ServicerContext[Any, Any],
                    answer: Callable[[], Awaitable[_R]], *, started: float | None = None,
                    version: Callable[[], str] = lambda: "-") -> _R:
        """``answer()``, with its error as a gRPC status and the call counted."""
        began = time.perf_counter() if started is None else started
        code = grpc.StatusCode.OK
        try:
            return await answer()
        except HttpError as exc:
            code = _CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
            message = _message(exc)
            if exc.problems:
                context.set_trailing_metadata(((_PROBLEMS_KEY, orjson.dumps(exc.problems)),))
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            log.exception("unexpected error answering gRPC %s", endpoint)
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
        finally:
            self.app.metrics.request(endpoint, version(), code.name,
                                     time.perf_counter() - began)
        await context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


async def _ready(response: _R) -> _R:
    return response


def _headers(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[bytes, bytes]]:
    """The call's metadata as the (lowercase name, value) header pairs the router, the
    request id and the event time read (``x-request-id``, ``x-flywheel-event-time``)."""
    pairs: list[tuple[bytes, bytes]] = []
    for key, value in context.invocation_metadata() or ():
        pairs.append((key.encode("latin-1"),
                      value if isinstance(value, bytes) else value.encode("latin-1")))
    return pairs


def _with_shared_problems(served: ServedModel, body: dict[str, Any], binary: bytes,
                          problems: list[dict[str, Any]]) -> HttpError:
    """The gRPC-only problems together with those the shared checks find in the rest."""
    try:
        v2_request(body, binary, served)
    except (V2Error, InputProblems) as exc:
        problems = problems + exc.problems
    return HttpError(400, "invalid inference request", problems)


def _message(exc: HttpError) -> str:
    """The error and every problem, one per clause (``loc: msg``)."""
    if not exc.problems:
        return exc.message
    listed = "; ".join(f"{'.'.join(map(str, p.get('loc', [])))}: {p.get('msg', p)}"
                       if isinstance(p, dict) else str(p) for p in exc.problems)
    return f"{exc.message}: {listed}"
