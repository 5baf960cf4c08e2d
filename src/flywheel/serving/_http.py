"""HTTP at the edge of the service: errors answered as JSON, headers, and sending a response.

Plain ASGI, no framework: these run on every request (see ``app.py``).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from flywheel.core.timeparse import parse_iso_time

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
BINARY_HEADER = (b"content-type", b"application/octet-stream")


class HttpError(Exception):
    """An error answered as JSON with a 4xx status (and extra headers, such as a 405's
    ``Allow``)."""

    def __init__(self, status: int, message: str, problems: list[Any] | None = None, *,
                 headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []
        self.headers = list(headers)

    def body(self) -> bytes:
        payload: dict[str, Any] = {"error": self.message}
        if self.problems:
            payload["problems"] = self.problems
        return orjson.dumps(payload)


def decoded_body(raw: bytes, encoding: bytes, limit: int) -> bytes:
    """``raw`` decompressed as its ``Content-Encoding`` says (gzip, deflate; none: as is).

    Raises:
        HttpError: 415 for another encoding, 400 for data that does not decompress, 413 when
            it decompresses to more than ``limit`` bytes.
    """
    name = encoding.strip().lower()
    if not name or name == b"identity":
        return raw
    if name not in (b"gzip", b"deflate"):
        raise HttpError(415, f"Content-Encoding {name[:20].decode('latin-1')!r} is not "
                             "supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if name == b"gzip" else 15)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise HttpError(400, f"the body is not valid {name.decode()} data: {exc}") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise HttpError(413, f"the request body decompresses to over the limit of {limit} "
                             "bytes")
    return body


def not_allowed(method: str, path: str, allowed: list[str]) -> HttpError:
    methods = ", ".join(sorted(allowed))
    return HttpError(405, f"{method} {path} is not allowed; use {methods}",
                     headers=[(b"allow", methods.encode())])


def v2_label(path: str) -> str:
    """The metrics label of a /v2/models/... path."""
    if path.endswith("/infer"):
        return "v2/models/infer"
    return "v2/models/ready" if path.endswith("/ready") else "v2/models/metadata"


def header_value(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


def request_id_of(scope: Scope) -> str:
    given = header_value(scope, b"x-request-id")
    if given and len(given) <= 128:
        return given.decode("latin-1")
    return os.urandom(16).hex()  # as random as uuid4().hex, a sixth of the time


def event_time_of(scope: Scope) -> float | None:
    """The client's event time (header x-flywheel-event-time: Unix seconds or ISO 8601)."""
    given = header_value(scope, b"x-flywheel-event-time")
    if not given:
        return None
    text = given.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds == seconds and abs(seconds) < 1e11:  # finite, within years 0-5000
            return seconds
        raise HttpError(400, f"x-flywheel-event-time: {text[:40]!r} is not a time")
    try:
        return parse_iso_time(text).timestamp()
    except ValueError:
        raise HttpError(400, f"x-flywheel-event-time: expected Unix seconds or an ISO 8601 "
                             f"time, got {text[:40]!r}") from None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, received whole.

    Raises:
        HttpError: 413 when the declared or the received body is over ``limit`` bytes.
    """
    declared = header_value(scope, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"request body of {int(declared)} bytes is over the limit of "
                             f"{limit}")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def send_response(send: Send, status: int, body: bytes,
                        headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
