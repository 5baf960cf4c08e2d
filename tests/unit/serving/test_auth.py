"""API tokens (serving.auth), the per-client limit on requests in flight and the dashboard's
token, through the ASGI application as uvicorn calls it, with a real model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from flywheel.core.errors import ConfigError
from flywheel.core.spec import parse_spec
from flywheel.serving import ClientLimiter, DashboardRoutes, TokenCheck
from flywheel.serving._auth import token_matches
from tests.unit.serving.conftest import ChurnModel
from tests.unit.serving.test_app import call, make_app

MINIMAL = {"name": "p", "data": {"path": "d.csv"}, "target": {"column": "y", "task": "binary"}}


def guarded(churn: ChurnModel, folder: Path, **options: Any) -> Any:
    return make_app(churn, folder, auth=TokenCheck(["alpha", "beta"], ["predict", "feedback"]),
                    **options)


def test_predict_without_a_token_is_401_with_a_bearer_challenge(
        churn: ChurnModel, tmp_path: Path) -> None:
    status, headers, body = call(guarded(churn, tmp_path), "POST", "/predict", churn.records[0])
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in orjson.loads(body)["error"]


@pytest.mark.parametrize("header", ["Bearer alph", "Bearer alphaa", "Bearer ", "alpha",
                                    "Basic alpha"])
def test_a_wrong_or_malformed_token_is_refused(churn: ChurnModel, tmp_path: Path,
                                               header: str) -> None:
    status, _, _ = call(guarded(churn, tmp_path), "POST", "/predict", churn.records[0],
                        headers={"Authorization": header})
    assert status == 401


def test_each_accepted_token_opens_predict_and_feedback(churn: ChurnModel, tmp_path: Path) -> None:
    app = guarded(churn, tmp_path)
    for token in ("alpha", "beta"):
        status, _, body = call(app, "POST", "/predict", churn.records[0],
                               headers={"Authorization": f"Bearer {token}"})
        assert status == 200, body
        request_id = orjson.loads(body)["request_id"]
        status, _, _ = call(app, "POST", "/feedback", {"request_id": request_id, "label": "no"},
                            headers={"Authorization": f"Bearer {token}"})
        assert status == 202
    status, _, _ = call(app, "POST", "/feedback", {"request_id": "x", "label": "no"})
    assert status == 401


def test_open_inference_protocol_infer_needs_the_predict_token_but_metadata_does_not(
        churn: ChurnModel, tmp_path: Path) -> None:
    app = guarded(churn, tmp_path)
    assert call(app, "GET", "/v2/models/churn")[0] == 200
    assert call(app, "POST", "/v2/models/churn/infer", {"inputs": []})[0] == 401


def test_endpoints_not_listed_stay_open(churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path, auth=TokenCheck(["alpha"], ["feedback"]))
    assert call(app, "POST", "/predict", churn.records[0])[0] == 200
    assert call(app, "GET", "/readyz")[0] == 200


def test_token_matching_compares_whole_tokens_and_never_accepts_an_empty_one() -> None:
    assert token_matches(b"alpha", (b"beta", b"alpha"))
    assert not token_matches(b"alph", (b"alpha",))
    assert not token_matches(b"", (b"",))
    assert not token_matches(b"alpha", ())


def test_serving_auth_with_a_bad_endpoint_or_variable_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="serving.auth.endpoints"):
        parse_spec({**MINIMAL, "serving": {"auth": {"endpoints": ["admin"]}}})
    with pytest.raises(ConfigError, match="serving.auth.token_env"):
        parse_spec({**MINIMAL, "serving": {"auth": {"token_env": "no spaces"}}})


def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ssl_certfile and serving.ssl_keyfile go together"):
        parse_spec({**MINIMAL, "serving": {"ssl_certfile": "cert.pem"}})


def test_a_limit_below_one_request_in_flight_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_concurrent_per_client"):
        parse_spec({**MINIMAL, "serving": {"max_concurrent_per_client": 0}})


# Requests in flight --------------------------------------------------------------------------

async def _request(app: Any, path: str, body: bytes, client: str, *, held: asyncio.Event | None
                   = None) -> tuple[int, dict[str, str]]:
    """One POST from ``client``; with ``held``, its body arrives only once ``held`` is set."""
    scope = {"type": "http", "method": "POST", "path": path, "headers": [],
             "client": (client, 40000), "query_string": b""}
    parts = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if held is not None:
            await held.wait()
        return parts.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}


def test_a_client_over_its_limit_in_flight_gets_429_with_retry_after_and_others_are_served(
        churn: ChurnModel, tmp_path: Path) -> None:
    app = make_app(churn, tmp_path, client_limit=2)
    body = orjson.dumps(churn.records[0])

    async def scenario() -> list[tuple[int, dict[str, str]]]:
        held = asyncio.Event()
        slow = [asyncio.ensure_future(_request(app, "/predict", body, "10.0.0.1", held=held))
                for _ in range(2)]
        await asyncio.sleep(0.05)  # both are in flight, waiting for their bodies
        over = await _request(app, "/predict", body, "10.0.0.1")
        other = await _request(app, "/predict", body, "10.0.0.2")
        held.set()
        done = [await s for s in slow]
        after = await _request(app, "/predict", body, "10.0.0.1")
        return [over, other, *done, after]

    over, other, first, second, after = asyncio.run(scenario())
    assert over[0] == 429
    assert over[1]["retry-after"] == "1"
    assert [other[0], first[0], second[0], after[0]] == [200, 200, 200, 200]
    assert app.limiter is not None and app.limiter.in_flight == {}


def test_a_failed_request_gives_its_place_in_flight_back(churn: ChurnModel,
                                                         tmp_path: Path) -> None:
    app = make_app(churn, tmp_path, client_limit=1)

    async def scenario() -> list[int]:
        statuses = [(await _request(app, "/predict", b"{not json", "10.0.0.1"))[0]]
        statuses.append((await _request(app, "/predict", orjson.dumps(churn.records[0]),
                                        "10.0.0.1"))[0])
        return statuses

    assert asyncio.run(scenario()) == [400, 200]


def test_the_limiter_counts_per_client_and_forgets_idle_ones() -> None:
    limiter = ClientLimiter(1)
    key = limiter.acquire({"client": ("1.2.3.4", 1)})
    limiter.acquire({"client": ("5.6.7.8", 1)})
    assert limiter.in_flight == {"1.2.3.4": 1, "5.6.7.8": 1}
    limiter.release(key)
    assert limiter.in_flight == {"5.6.7.8": 1}


# The dashboard's token ------------------------------------------------------------------------

def _dashboard_app(churn: ChurnModel, folder: Path) -> Any:
    routes = DashboardRoutes(lambda served: {"served": served, "n": 1}, tokens=["adm1n"])
    return make_app(churn, folder, dashboard=routes)


def test_the_dashboard_needs_the_admin_token_as_a_header_or_query(churn: ChurnModel,
                                                                  tmp_path: Path) -> None:
    app = _dashboard_app(churn, tmp_path)
    assert call(app, "GET", "/dashboard.json")[0] == 401
    status, headers, body = call(app, "GET", "/dashboard.json",
                                 headers={"Authorization": "Bearer adm1n"})
    assert status == 200
    assert orjson.loads(body) == {"served": {"champion": "1"}, "n": 1}
    scope_query = call_with_query(app, "/dashboard", b"token=adm1n")
    assert scope_query[0] == 200
    assert scope_query[1]["content-type"].startswith("text/html")
    assert b"/dashboard.json" in scope_query[2]
    assert call_with_query(app, "/dashboard", b"token=wrong")[0] == 401


def test_the_dashboard_is_read_only(churn: ChurnModel, tmp_path: Path) -> None:
    status, headers, _ = call(_dashboard_app(churn, tmp_path), "POST", "/dashboard.json", {},
                              headers={"Authorization": "Bearer adm1n"})
    assert status == 405
    assert headers["allow"] == "GET"


def call_with_query(app: Any, path: str, query: bytes) -> tuple[int, dict[str, str], bytes]:
    scope = {"type": "http", "method": "GET", "path": path, "headers": [],
             "query_string": query}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return (sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]},
            sent[1]["body"])
