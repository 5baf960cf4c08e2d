"""Who may call what: bearer tokens for the request endpoints, and a per-client limit on
requests in flight.

Tokens are compared with ``hmac.compare_digest`` against every accepted token (no early exit
on the first match), so the time taken says nothing about how much of a token was right.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Sequence
from urllib.parse import parse_qs

from flywheel.serving._http import HttpError, Scope, header_value

__all__ = ["ClientLimiter", "TokenCheck", "bearer_of"]


def bearer_of(scope: Scope, *, query: bool = False) -> bytes:
    """The token of ``Authorization: Bearer <token>`` (with ``query``, also ``?token=``: a
    browser opening the dashboard page cannot send a header); empty if none."""
    given = header_value(scope, b"authorization")
    if given.startswith(b"Bearer "):
        return given[7:].strip()
    if query:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if values:
            return str(values[0]).encode()
    return b""


def token_matches(given: bytes, accepted: Sequence[bytes]) -> bool:
    """True if ``given`` is one of ``accepted``, compared in constant time with each."""
    found = False
    for token in accepted:
        found |= hmac.compare_digest(given, token)
    return found and bool(given)


class TokenCheck:
    """The API tokens ``serving.auth`` asks for on some endpoints.

    Args:
        tokens: The accepted tokens.
        endpoints: Endpoints that need one: ``predict``, ``feedback``, ``dashboard``.
    """

    def __init__(self, tokens: Sequence[str], endpoints: Collection[str]) -> None:
        self.tokens_text = tuple(t for t in tokens if t)
        self.tokens = tuple(t.encode() for t in self.tokens_text)
        self.endpoints = frozenset(endpoints)

    def guards(self, endpoint: str) -> bool:
        return endpoint in self.endpoints

    def accepts(self, given: bytes) -> bool:
        return token_matches(given, self.tokens)

    def check(self, scope: Scope, endpoint: str) -> None:
        """Let the request through, or raise.

        Raises:
            HttpError: 401 (with ``WWW-Authenticate: Bearer``) if ``endpoint`` needs a token
                and the request has none of the accepted ones.
        """
        if endpoint in self.endpoints and not self.accepts(bearer_of(scope)):
            raise unauthorized(f"/{endpoint} needs an API token (Authorization: Bearer "
                               "<token>; serving.auth)")


def unauthorized(message: str) -> HttpError:
    return HttpError(401, f"missing or wrong token: {message}",
                     headers=[(b"www-authenticate", b"Bearer")])


class ClientLimiter:
    """At most ``limit`` requests in flight per client address.

    The server answers on one event loop, so the counts need no lock.
    """

    def __init__(self, limit: int, *, retry_after: int = 1) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.in_flight: dict[str, int] = {}
        self.refused = 0

    def acquire(self, scope: Scope) -> str:
        """Count one more request of the client of ``scope``; its key, for ``release``.

        Raises:
            HttpError: 429 with ``Retry-After`` if the client already has ``limit`` in flight.
        """
        client = scope.get("client")
        key = str(client[0]) if client else "-"
        count = self.in_flight.get(key, 0)
        if count >= self.limit:
            self.refused += 1
            raise HttpError(429, f"too many requests in flight from {key}: at most "
                                 f"{self.limit} at once (serving.max_concurrent_per_client); "
                                 f"retry after {self.retry_after} s",
                            headers=[(b"retry-after", str(self.retry_after).encode())])
        self.in_flight[key] = count + 1
        return key

    def release(self, key: str) -> None:
        count = self.in_flight.get(key, 0) - 1
        if count > 0:
            self.in_flight[key] = count
        else:
            self.in_flight.pop(key, None)
