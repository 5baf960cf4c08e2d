"""``GET /dashboard`` (one HTML page, no build step) and ``GET /dashboard.json`` (what it
shows), read-only.

The document comes from a provider the composing layer passes in (``flywheel.pipelines.
dashboard.dashboard_data``: the CLI's ``--json`` outputs in one object); it reads the
registry and the prediction log, so it runs in a thread and is kept for ``max_age`` seconds
however many browsers poll. ``DashboardApp`` is the same two routes as a server of their own
(``flywheel dashboard``, for a workspace that nothing serves).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import orjson

from flywheel.serving._auth import bearer_of, token_matches, unauthorized
from flywheel.serving._http import JSON_HEADERS, HttpError, Receive, Scope, Send, send_response

__all__ = ["DASHBOARD_PATHS", "DashboardApp", "DashboardRoutes"]

DASHBOARD_PATHS = ("/dashboard", "/dashboard.json")
Provider = Callable[[dict[str, str] | None], dict[str, Any]]
"""What the dashboard shows, given what the server has loaded (alias to version)."""
_HTML_HEADERS = [(b"content-type", b"text/html; charset=utf-8"),
                 (b"cache-control", b"no-store"),
                 # The page loads nothing from elsewhere (no CDN): say so to the browser.
                 (b"content-security-policy",
                  b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                  b"connect-src 'self'; img-src 'self' data:")]


def page() -> bytes:
    """The dashboard's HTML (package data ``serving/static/dashboard.html``)."""
    return resources.files("flywheel.serving").joinpath("static/dashboard.html").read_bytes()


class DashboardRoutes:
    """The two read-only routes.

    Args:
        provider: Builds the JSON document.
        tokens: Accepted as ``Authorization: Bearer`` or ``?token=`` (the admin token and,
            when ``serving.auth`` guards the dashboard, the API tokens); empty: open.
        max_age: Seconds a built document is answered again before it is rebuilt.
    """

    def __init__(self, provider: Provider, *, tokens: Sequence[str] = (),
                 max_age: float = 1.0) -> None:
        self.provider = provider
        self.tokens = tuple(t.encode() for t in tokens if t)
        self.max_age = max_age
        self._cached: tuple[float, bytes] | None = None
        self._building: asyncio.Future[bytes] | None = None

    async def answer(self, scope: Scope, send: Send, served: dict[str, str] | None) -> int:
        """Answer a GET of one of ``DASHBOARD_PATHS``; the status sent."""
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise HttpError(405, f"{scope['method']} is not allowed on {scope['path']}; "
                                     "the dashboard is read-only (GET)",
                                headers=[(b"allow", b"GET")])
            if self.tokens and not token_matches(bearer_of(scope, query=True), self.tokens):
                raise unauthorized("the dashboard needs the admin token (or an API token "
                                   "when serving.auth guards it): open /dashboard?token=<token>"
                                   " or send Authorization: Bearer <token>")
            if scope["path"] == "/dashboard":
                await send_response(send, 200, page(), _HTML_HEADERS)
                return 200
            body = await self._document(served)
        except HttpError as exc:
            await send_response(send, exc.status, exc.body(), [*JSON_HEADERS, *exc.headers])
            return exc.status
        await send_response(send, 200, body, [*JSON_HEADERS, (b"cache-control", b"no-store")])
        return 200

    async def _document(self, served: dict[str, str] | None) -> bytes:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.max_age:
            return self._cached[1]
        if self._building is None:  # one build at a time; concurrent polls wait for it
            self._building = asyncio.ensure_future(self._build(served))
        building = self._building
        try:
            return await asyncio.shield(building)
        finally:
            if building.done() and self._building is building:
                self._building = None

    async def _build(self, served: dict[str, str] | None) -> bytes:
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, self.provider, served)
        body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        self._cached = (time.monotonic(), body)
        return body


class DashboardApp:
    """An ASGI app that serves only the dashboard (``flywheel dashboard``)."""

    def __init__(self, routes: DashboardRoutes) -> None:
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["path"] in DASHBOARD_PATHS:
            await self.routes.answer(scope, send, None)
        elif scope["path"] == "/":
            await send_response(send, 307, b"", [(b"location", b"/dashboard")])
        else:
            error = HttpError(404, f"{scope['path']} is not served here; this is the "
                                   "dashboard alone: /dashboard, /dashboard.json")
            await send_response(send, 404, error.body(), JSON_HEADERS)
