"""The HTTP layer both emulators share (actors/emulator/_http.py), and what each provider says
at its edges: requests no client of ours makes (HEAD, OPTIONS, a chunked or oversized body, a
bad Content-Length), answered over a raw HTTP connection on 127.0.0.1, each in the provider's
own words, and recorded before the client sees the answer.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from actors.emulator import DailyApiServer, TwilioApiServer
from actors.emulator._http import HTTPApiServer

pytestmark = pytest.mark.timeout(30)

ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_CALLS = f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"


@pytest.fixture
def twilio() -> Iterator[TwilioApiServer]:
    with TwilioApiServer({ACCOUNT: "token"}, max_body=1024) as server:
        yield server


@pytest.fixture
def daily() -> Iterator[DailyApiServer]:
    with DailyApiServer(["key"], max_body=1024) as server:
        yield server


def ask(
    server: HTTPApiServer, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, http.client.HTTPMessage, Any]:
    """One request on a fresh connection: (status, headers, the JSON body or None)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5.0)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        data = response.read()
        payload = json.loads(data) if data and "json" in response.headers["Content-Type"] else None
        return response.status, response.headers, payload
    finally:
        connection.close()


def test_twilio_answers_head_and_options_itself(twilio: TwilioApiServer) -> None:
    status, headers, payload = ask(twilio, "HEAD", "/nowhere", {})
    assert status == 404
    assert payload is None  # a HEAD answer has the length of its body, not the body
    assert int(headers["Content-Length"]) > 0
    assert headers["Twilio-Request-Id"].startswith("RQ")
    assert headers["Server"].startswith("TwilioEmulator/1.0")
    status, headers, payload = ask(twilio, "OPTIONS", TWILIO_CALLS, {})
    assert (status, headers["Allow"], payload["code"]) == (405, "POST", 20004)
    assert [(r.method, r.status, r.operation) for r in twilio.requests] == [
        ("HEAD", 404, None),
        ("OPTIONS", 405, None),
    ]


def test_daily_leaves_head_and_options_unimplemented(daily: DailyApiServer) -> None:
    for method in ("HEAD", "OPTIONS"):
        status, headers, _ = ask(daily, method, "/v1/rooms", {})
        assert status == 501
        assert "Twilio-Request-Id" not in headers
    assert daily.requests == []  # refused by http.server before the API saw them


def test_twilio_body_edges_in_twilio_words(twilio: TwilioApiServer) -> None:
    cases = [
        ({"Transfer-Encoding": "chunked"}, 411, "Length Required: send a Content-Length"),
        ({"Content-Length": "-1"}, 400, "Invalid Content-Length"),
        ({"Content-Length": "x"}, 400, "Invalid Content-Length"),
        (
            {"Content-Length": "2048"},
            413,
            "Request body of 2048 bytes exceeds the limit of 1024 bytes",
        ),
    ]
    for headers, want_status, message in cases:
        status, answer, payload = ask(twilio, "POST", TWILIO_CALLS, headers)
        assert (status, payload) == (
            want_status,
            {"code": None, "message": message, "more_info": None, "status": want_status},
        )
        assert answer["Connection"] == "close"  # the unread body makes the stream unusable
        assert answer["Twilio-Request-Id"].startswith("RQ")
    assert [r.status for r in twilio.requests] == [411, 400, 400, 413]


def test_daily_body_edges_in_daily_words(daily: DailyApiServer) -> None:
    cases = [
        ({"Transfer-Encoding": "chunked"}, "send a Content-Length"),
        ({"Content-Length": "-1"}, "invalid Content-Length"),
        ({"Content-Length": "x"}, "invalid Content-Length"),
        ({"Content-Length": "2048"}, "the body exceeds 1024 bytes"),
    ]
    for headers, info in cases:
        status, answer, payload = ask(daily, "POST", "/v1/rooms", headers)
        assert (status, payload) == (400, {"error": "invalid-request-error", "info": info})
        assert answer["Connection"] == "close"
        assert answer["Server"].startswith("DailyEmulator/1.0")
        assert "Twilio-Request-Id" not in answer
    assert [(r.path, r.status, r.operation) for r in daily.requests] == [
        ("/v1/rooms", 400, None)
    ] * 4


def test_faults_repeat_then_give_way_in_each_providers_shape(
    twilio: TwilioApiServer, daily: DailyApiServer
) -> None:
    twilio.inject("create", 429, times=2, retry_after=1.5)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT}:token".encode()).decode()}
    for _ in range(2):
        status, headers, payload = ask(twilio, "POST", TWILIO_CALLS, auth)
        assert (status, headers["Retry-After"], payload["code"]) == (429, "1.5", 20429)
    status, _, payload = ask(twilio, "POST", TWILIO_CALLS, auth)
    assert (status, payload["code"]) == (400, 21201)  # the fault is spent: no To
    daily.inject("create_room", 503, retry_after=2)
    bearer = {"Authorization": "Bearer key"}
    status, headers, payload = ask(daily, "POST", "/v1/rooms", bearer)
    assert (status, headers["Retry-After"]) == (503, "2")
    assert payload == {"error": "server-error", "info": "Service Unavailable"}
    status, _, _ = ask(daily, "POST", "/v1/rooms", bearer)
    assert status == 200
    for server, operation in ((twilio, "create"), (daily, "create_room")):
        with pytest.raises(ValueError, match="status must be an HTTP error status"):
            server.inject(operation, 200)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="times must be at least 1"):
            server.inject(operation, 500, times=0)  # type: ignore[arg-type]
