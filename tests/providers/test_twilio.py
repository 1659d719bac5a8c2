"""The Twilio REST client against a real Twilio-compatible API (the emulator) on 127.0.0.1:
fields, errors, retries that never place a call twice, timeouts, and secrets kept out of sight.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests

from actors.emulator import EmulatedCall, TwilioApiServer, parse_stream_target
from actors.errors import ProviderError
from actors.providers.twilio import TwilioRestClient, build_stream_twiml, parse_error_response
from tests.processes import free_port

pytestmark = pytest.mark.timeout(30)

ACCOUNT = "AC" + "0123456789abcdef" * 2
OTHER_ACCOUNT = "AC" + "fedcba9876543210" * 2
TOKEN = "tok-5e3c7a1f9b2d4e6a8c0b"
OTHER_TOKEN = "tok-other-0c0ffee0c0ffee"
API_KEY = "SK" + "a1" * 16
API_SECRET = "sec-4f1d2c3b5a69788796a5"
OTHER_KEY = "SK" + "b2" * 16
OTHER_SECRET = "sec-other-77aa88bb99cc"
TO, FROM = "+15558675310", "+15017122661"
UNKNOWN_CALL = "CA" + "0" * 32
TWIML = build_stream_twiml("wss://gateway.example/twilio", {"session": "s1", "token": "t1"})


def make_server(**options: object) -> TwilioApiServer:
    return TwilioApiServer(
        {ACCOUNT: TOKEN, OTHER_ACCOUNT: OTHER_TOKEN},
        api_keys={API_KEY: (API_SECRET, ACCOUNT), OTHER_KEY: (OTHER_SECRET, OTHER_ACCOUNT)},
        **options,  # type: ignore[arg-type]
    )


def make_client(base_url: str, **options: object) -> TwilioRestClient:
    settings: dict[str, object] = {
        "account_sid": ACCOUNT,
        "auth_token": TOKEN,
        "api_base_url": base_url,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
    }
    settings.update(options)
    return TwilioRestClient(**settings)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[TwilioApiServer]:
    with make_server() as api:
        yield api


@pytest.fixture
def client(server: TwilioApiServer) -> Iterator[TwilioRestClient]:
    with make_client(server.url) as rest:
        yield rest


def accept_all(listener: socket.socket) -> int:
    """Accept and close every connection queued on ``listener``; return how many there were."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def calls_url(server: TwilioApiServer, account: str = ACCOUNT) -> str:
    return f"{server.url}/2010-04-01/Accounts/{account}/Calls.json"


# -- the happy path ---------------------------------------------------------------------------


def test_create_call_sends_every_field(server: TwilioApiServer, client: TwilioRestClient) -> None:
    call = client.create_call(
        to=TO,
        from_=FROM,
        twiml=TWIML,
        status_callback="https://app.example/status",
        status_callback_events=("initiated", "answered", "completed"),
        status_callback_method="POST",
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", call["sid"])
    assert call["status"] == "queued"
    assert call["direction"] == "outbound-api"
    assert (call["to"], call["from"], call["account_sid"]) == (TO, FROM, ACCOUNT)
    assert call["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call['sid']}.json"

    stored = server.call(call["sid"])
    assert (stored.to, stored.from_, stored.account_sid) == (TO, FROM, ACCOUNT)
    assert stored.twiml == TWIML
    assert stored.status_callback == "https://app.example/status"
    assert stored.status_callback_events == ("initiated", "answered", "completed")
    assert stored.status_callback_method == "POST"
    assert stored.stream is not None
    assert stored.stream.url == "wss://gateway.example/twilio"
    assert dict(stored.stream.parameters) == {"session": "s1", "token": "t1"}
    assert list(server.calls) == [call["sid"]]


def test_hang_up_ends_the_call(server: TwilioApiServer, client: TwilioRestClient) -> None:
    sid = client.create_call(to=TO, from_=FROM, twiml=TWIML)["sid"]
    assert client.hang_up(sid) is True
    assert server.call(sid).status == "completed"
    assert server.call(sid).ended


def test_hang_up_an_ended_call_is_already_ended(
    server: TwilioApiServer, client: TwilioRestClient, raw: requests.Session
) -> None:
    sid = client.create_call(to=TO, from_=FROM, twiml=TWIML)["sid"]
    assert client.hang_up(sid) is True
    assert client.hang_up(sid) is False
    # What the emulator says underneath, as Twilio does for a call that is over.
    answer = raw.post(
        f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json",
        data={"Status": "completed"},
        auth=(ACCOUNT, TOKEN),
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == 21220


def test_hang_up_an_unknown_call_is_already_ended(
    server: TwilioApiServer, client: TwilioRestClient, raw: requests.Session
) -> None:
    assert client.hang_up(UNKNOWN_CALL) is False
    answer = raw.get(
        f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{UNKNOWN_CALL}.json",
        auth=(ACCOUNT, TOKEN),
        timeout=5,
    )
    assert answer.status_code == 404
    assert answer.json() == {
        "code": 20404,
        "message": f"The requested resource /2010-04-01/Accounts/{ACCOUNT}/Calls/"
        f"{UNKNOWN_CALL}.json was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }


def test_hang_up_refuses_a_malformed_sid(client: TwilioRestClient) -> None:
    with pytest.raises(ValueError, match="call_sid"):
        client.hang_up("../../Accounts")


def test_callbacks_run_after_the_response() -> None:
    created, ended = threading.Event(), threading.Event()
    seen: list[tuple[str, str]] = []

    def on_create(call: EmulatedCall) -> None:
        seen.append(("create", call.status))
        created.set()

    def on_hang_up(call: EmulatedCall) -> None:
        seen.append(("hang_up", call.status))
        ended.set()

    with (
        make_server(on_create=on_create, on_hang_up=on_hang_up) as server,
        make_client(server.url) as client,
    ):
        sid = client.create_call(to=TO, from_=FROM, twiml=TWIML)["sid"]
        assert created.wait(5)
        assert client.hang_up(sid)
        assert ended.wait(5)
    assert seen == [("create", "queued"), ("hang_up", "completed")]


def test_a_failing_callback_does_not_break_the_server(caplog: pytest.LogCaptureFixture) -> None:
    def explode(call: EmulatedCall) -> None:
        raise RuntimeError("callback bug")

    with make_server(on_create=explode) as server, make_client(server.url) as client:
        first = client.create_call(to=TO, from_=FROM, twiml=TWIML)["sid"]
        second = client.create_call(to=TO, from_=FROM, twiml=TWIML)["sid"]
    assert first != second
    assert "on_create callback failed" in caplog.text


def test_api_key_and_secret(server: TwilioApiServer) -> None:
    with make_client(server.url, auth_token=None, api_key=API_KEY, api_secret=API_SECRET) as c:
        sid = c.create_call(to=TO, from_=FROM, twiml=TWIML)["sid"]
        assert c.hang_up(sid) is True
    with (
        make_client(server.url, auth_token=None, api_key=API_KEY, api_secret="wrong") as c,
        pytest.raises(ProviderError) as wrong,
    ):
        c.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert (wrong.value.status, wrong.value.code) == (401, 20003)
    # A real key of another account opens nothing here.
    with (
        make_client(server.url, auth_token=None, api_key=OTHER_KEY, api_secret=OTHER_SECRET) as c,
        pytest.raises(ProviderError) as foreign,
    ):
        c.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert (foreign.value.status, foreign.value.code) == (401, 20003)
    assert len(server.calls) == 1


# -- errors -----------------------------------------------------------------------------------


def test_wrong_token_is_401_and_never_shown(
    server: TwilioApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "tok-WRONG-9a8b7c6d5e4f"
    with make_client(server.url, auth_token=wrong) as client:
        with pytest.raises(ProviderError) as caught:
            client.create_call(to=TO, from_=FROM, twiml=TWIML)
        shown = [str(caught.value), repr(caught.value), repr(client), caplog.text]
    error = caught.value
    assert (error.provider, error.status, error.code) == ("twilio", 401, 20003)
    assert error.message == "Authenticate"
    assert error.more_info == "https://www.twilio.com/docs/errors/20003"
    assert "/Calls.json -> 401" in caplog.text  # the request was logged...
    for text in shown:  # ...and no secret anywhere
        assert wrong not in text
        assert TOKEN not in text
    assert server.calls == {}


def test_credentials_of_another_account_are_refused(server: TwilioApiServer) -> None:
    with make_client(server.url, account_sid=ACCOUNT, auth_token=OTHER_TOKEN) as client:
        with pytest.raises(ProviderError) as caught:
            client.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert (caught.value.status, caught.value.code) == (401, 20003)


@pytest.mark.parametrize(
    ("to", "from_", "code"),
    [
        ("5551234567", FROM, 21211),
        (TO, "not a number", 21212),
        ("", FROM, 21201),
        (TO, "", 21213),
    ],
)
def test_invalid_numbers(
    server: TwilioApiServer, client: TwilioRestClient, to: str, from_: str, code: int
) -> None:
    with pytest.raises(ProviderError) as caught:
        client.create_call(to=to, from_=from_, twiml=TWIML)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert caught.value.more_info == f"https://www.twilio.com/docs/errors/{code}"
    assert server.calls == {}


def test_client_and_sip_endpoints_are_accepted(client: TwilioRestClient) -> None:
    assert client.create_call(to="client:alice", from_=FROM, twiml=TWIML)["to"] == "client:alice"
    assert client.create_call(to="sip:bob@example.com", from_=FROM, twiml=TWIML)["sid"]


def test_broken_twiml_is_refused(server: TwilioApiServer, client: TwilioRestClient) -> None:
    with pytest.raises(ProviderError) as caught:
        client.create_call(to=TO, from_=FROM, twiml="<Response><Connect></Response>")
    assert (caught.value.status, caught.value.code) == (400, 12100)
    assert "not valid XML" in caught.value.message
    bomb = '<!DOCTYPE r [<!ENTITY a "aaaa">]><Response>&a;</Response>'
    with pytest.raises(ProviderError, match="refused"):
        client.create_call(to=TO, from_=FROM, twiml=bomb)
    assert server.calls == {}


def test_create_needs_instructions(server: TwilioApiServer, raw: requests.Session) -> None:
    answer = raw.post(calls_url(server), data={"To": TO, "From": FROM}, auth=(ACCOUNT, TOKEN))
    assert answer.status_code == 400
    assert answer.json()["code"] == 21205
    answer = raw.post(
        calls_url(server),
        data={"To": TO, "From": FROM, "Url": "https://app.example/voice"},
        auth=(ACCOUNT, TOKEN),
    )
    assert answer.status_code == 201
    assert answer.json()["status"] == "queued"


def test_repeated_and_invalid_status_callback_events(
    server: TwilioApiServer, raw: requests.Session
) -> None:
    form = [("To", TO), ("From", FROM), ("Twiml", TWIML)]
    ok = raw.post(
        calls_url(server),
        data=[*form, ("StatusCallbackEvent", "initiated"), ("StatusCallbackEvent", "ringing")],
        auth=(ACCOUNT, TOKEN),
    )
    assert ok.status_code == 201
    assert server.call(ok.json()["sid"]).status_callback_events == ("initiated", "ringing")
    bad = raw.post(
        calls_url(server),
        data=[*form, ("StatusCallbackEvent", "exploded")],
        auth=(ACCOUNT, TOKEN),
    )
    assert (bad.status_code, bad.json()["code"]) == (400, 21626)


def test_emulator_edges(server: TwilioApiServer, raw: requests.Session) -> None:
    auth = (ACCOUNT, TOKEN)
    unknown = raw.get(f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Nope.json", auth=auth)
    assert (unknown.status_code, unknown.json()["code"]) == (404, 20404)
    malformed = raw.post(calls_url(server, "ACnope"), data={"To": TO}, auth=auth)
    assert (malformed.status_code, malformed.json()["code"]) == (404, 20404)
    no_auth = raw.post(calls_url(server), data={"To": TO})
    assert (no_auth.status_code, no_auth.json()["code"]) == (401, 20003)
    assert no_auth.headers["WWW-Authenticate"].startswith("Basic")
    delete = raw.delete(calls_url(server), auth=auth)
    assert delete.status_code == 405
    assert delete.headers["Allow"] == "POST"
    huge = raw.post(calls_url(server), data={"Twiml": "x" * (70 * 1024)}, auth=auth)
    assert huge.status_code == 413
    assert set(huge.json()) == {"code", "message", "more_info", "status"}
    created = raw.post(calls_url(server), data={"To": TO, "From": FROM, "Twiml": TWIML}, auth=auth)
    assert created.status_code == 201
    sid = created.json()["sid"]
    fetched = raw.get(f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json", auth=auth)
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    # A call of one account is not found under another, even with that account's credentials.
    foreign = raw.get(
        f"{server.url}/2010-04-01/Accounts/{OTHER_ACCOUNT}/Calls/{sid}.json",
        auth=(OTHER_ACCOUNT, OTHER_TOKEN),
    )
    assert foreign.status_code == 404
    canceled = raw.post(
        f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json",
        data={"Status": "canceled"},
        auth=auth,
    )
    assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled")


# -- retries ----------------------------------------------------------------------------------


def test_429_is_retried_and_one_call_is_made(
    server: TwilioApiServer, client: TwilioRestClient
) -> None:
    server.inject("create", 429, times=2)
    call = client.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert server.attempts("create") == 3
    assert [r.status for r in server.requests] == [429, 429, 201]
    assert list(server.calls) == [call["sid"]]


def test_429_retry_after_is_capped(server: TwilioApiServer, client: TwilioRestClient) -> None:
    server.inject("create", 429, retry_after=3600)
    started = time.monotonic()
    client.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert time.monotonic() - started < 2.0  # backoff_max_s=0.05 caps the hour
    assert server.attempts("create") == 2


def test_429_until_retries_run_out(server: TwilioApiServer) -> None:
    server.inject("create", 429, times=10)
    with make_client(server.url, retries=2) as client, pytest.raises(ProviderError) as caught:
        client.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert server.attempts("create") == 3
    assert server.calls == {}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_on_create_is_not_retried(
    server: TwilioApiServer, client: TwilioRestClient, status: int
) -> None:
    # Retry-After must not tempt the client either: the call may exist.
    server.inject("create", status, retry_after=0)
    with pytest.raises(ProviderError) as caught:
        client.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert caught.value.status == status
    assert server.attempts("create") == 1
    assert server.calls == {}


def test_500_on_create_reports_twilio_code(
    server: TwilioApiServer, client: TwilioRestClient
) -> None:
    server.inject("create", 500)
    with pytest.raises(ProviderError) as caught:
        client.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert (caught.value.status, caught.value.code) == (500, 20500)
    assert server.attempts("create") == 1


def test_5xx_on_hang_up_is_retried(server: TwilioApiServer, client: TwilioRestClient) -> None:
    sid = client.create_call(to=TO, from_=FROM, twiml=TWIML)["sid"]
    server.inject("update", 500)
    server.inject("update", 503)
    assert client.hang_up(sid) is True
    assert server.attempts("update") == 3
    assert server.call(sid).status == "completed"


def test_connection_refused_is_a_provider_error() -> None:
    port = free_port()  # nothing listens there any more
    started = time.monotonic()
    with make_client(f"http://127.0.0.1:{port}") as client, pytest.raises(ProviderError) as caught:
        client.create_call(to=TO, from_=FROM, twiml=TWIML)
    assert time.monotonic() - started < 2.0
    error = caught.value
    assert str(error) == f"twilio: POST Calls.json: connection refused to http://127.0.0.1:{port}"
    assert error.status is None
    assert error.__cause__ is None and error.__suppress_context__
    assert TOKEN not in repr(error)


def test_timeout_on_create_is_reported_not_repeated() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        with (
            make_client(f"http://127.0.0.1:{port}", timeout_s=0.3) as client,
            pytest.raises(ProviderError) as caught,
        ):
            client.create_call(to=TO, from_=FROM, twiml=TWIML)
        elapsed = time.monotonic() - started
        connections = accept_all(silent)
    assert elapsed < 1.0
    assert "no response within 0.3 s" in str(caught.value)
    assert connections == 1  # the create may have happened: never sent twice


def test_timeout_on_hang_up_is_retried() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with (
            make_client(f"http://127.0.0.1:{port}", timeout_s=0.2, retries=1) as client,
            pytest.raises(ProviderError, match=r"no response within 0\.2 s"),
        ):
            client.hang_up(UNKNOWN_CALL)
        connections = accept_all(silent)
    assert connections == 2  # hanging up is idempotent: one retry


def test_server_stop_closes_open_connections() -> None:
    """stop() ends keep-alive connections a client still holds (the leak check verifies)."""
    server = make_server().start()
    client = make_client(server.url)
    try:
        client.create_call(to=TO, from_=FROM, twiml=TWIML)
    finally:
        server.stop()
        client.close()


# -- constructor ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ({}, "auth_token"),
        ({"api_key": API_KEY}, "api_secret"),
        ({"api_secret": API_SECRET}, "api_key"),
        ({"auth_token": TOKEN, "api_key": API_KEY, "api_secret": API_SECRET}, "not both"),
    ],
)
def test_exactly_one_credential_pair(credentials: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named) as caught:
        TwilioRestClient(account_sid=ACCOUNT, **credentials)
    for secret in credentials.values():
        assert secret not in str(caught.value)


def test_repr_shows_no_secret() -> None:
    with make_client("http://127.0.0.1:9") as client:
        assert TOKEN not in repr(client)
        assert ACCOUNT in repr(client)


# -- error bodies -----------------------------------------------------------------------------


def test_parse_legacy_twilio_body() -> None:
    error = parse_error_response(
        404,
        b'{"code": 20404, "message": "The requested resource /x was not found", '
        b'"more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}',
        content_type="application/json",
    )
    assert (error.provider, error.status, error.code) == ("twilio", 404, 20404)
    assert error.message == "The requested resource /x was not found"
    assert error.more_info == "https://www.twilio.com/docs/errors/20404"


def test_parse_legacy_body_with_detail() -> None:
    error = parse_error_response(
        401,
        '{"code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.", '
        '"message": "Authenticate", "status": 401}',
    )
    assert error.code == 20003
    assert error.message == "Authenticate: Your AccountSid or AuthToken was incorrect."


def test_parse_problem_body_with_code() -> None:
    error = parse_error_response(
        400,
        b'{"type": "https://www.twilio.com/docs/errors/21211", "title": "Invalid To",'
        b' "status": 400, "detail": "The number 123 is not valid", "instance": "/Calls",'
        b' "code": 21211}',
        content_type="application/problem+json",
    )
    assert (error.status, error.code) == (400, 21211)
    assert error.message == "Invalid To: The number 123 is not valid"
    assert error.more_info == "https://www.twilio.com/docs/errors/21211"


def test_parse_problem_body_code_from_type() -> None:
    error = parse_error_response(
        429,
        '{"type": "https://www.twilio.com/docs/errors/20429", "title": "Too Many Requests",'
        ' "status": 429}',
        content_type="application/problem+json; charset=utf-8",
    )
    assert (error.status, error.code, error.message) == (429, 20429, "Too Many Requests")


def test_parse_prism_problem_body() -> None:
    error = parse_error_response(
        422,
        '{"type":"https://stoplight.io/prism/errors#UNPROCESSABLE_ENTITY","title":"Invalid'
        ' request","status":422,"detail":"Your request is not valid"}',
        content_type="application/problem+json",
    )
    assert (error.status, error.code) == (422, None)
    assert error.message == "Invalid request: Your request is not valid"


def test_parse_problem_body_without_content_type() -> None:
    error = parse_error_response(503, '{"type": "about:blank", "title": "Service Unavailable"}')
    assert (error.code, error.message, error.more_info) == (None, "Service Unavailable", None)


@pytest.mark.parametrize(
    "body", [b"<html><body>Bad gateway, secret stuff</body></html>", b"", b"\xff\xfe", b"[1, 2]"]
)
def test_parse_non_json_body(body: bytes) -> None:
    error = parse_error_response(502, body, content_type="text/html", reason="Bad Gateway")
    assert (error.status, error.code, error.message) == (502, None, "Bad Gateway")
    assert str(error) == "twilio: HTTP 502 Bad Gateway"


def test_parse_non_json_body_without_reason() -> None:
    assert parse_error_response(504, b"upstream").message == "Gateway Timeout"


# -- TwiML ------------------------------------------------------------------------------------

HOSTILE = [
    'say "hi"',
    "it's",
    "<Hangup/>",
    "a & b &amp; c",
    "]]> end",
    "line\nbreak\r\nand\ttab",
    "  padded  ",
    "ünïcødé ✓ 😀 中文",
    '"/><Parameter name="token" value="forged',
    "",
]


def test_stream_twiml_round_trips_hostile_values() -> None:
    parameters = {f"p{i}": value for i, value in enumerate(HOSTILE)}
    parameters['na"me<&>'] = "value"
    url = "wss://gw.example/twilio?a=1&b=<2>"
    twiml = build_stream_twiml(url, parameters)
    assert not twiml.startswith("<?xml")

    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    stream = root.find("Connect/Stream")
    assert stream is not None
    assert stream.get("url") == url
    parsed = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parsed == parameters

    target = parse_stream_target(twiml)  # the emulator's (defusedxml) reading agrees
    assert target is not None
    assert (target.url, dict(target.parameters)) == (url, parameters)


@pytest.mark.parametrize("bad", ["nul\x00", "bell\x07", "esc\x1b", "\ufffe"])
def test_stream_twiml_refuses_what_xml_cannot_carry(bad: str) -> None:
    with pytest.raises(ValueError, match="XML cannot carry"):
        build_stream_twiml("wss://gw.example/twilio", {"session": bad})
    with pytest.raises(ValueError, match="XML cannot carry"):
        build_stream_twiml(f"wss://gw.example/{bad}", {})


def test_stream_twiml_reaches_the_emulator_intact(
    server: TwilioApiServer, client: TwilioRestClient
) -> None:
    parameters = {"session": HOSTILE[4], "token": HOSTILE[8], "note": HOSTILE[5]}
    sid = client.create_call(
        to=TO, from_=FROM, twiml=build_stream_twiml("wss://gw.example/twilio", parameters)
    )["sid"]
    stream = server.call(sid).stream
    assert stream is not None
    assert dict(stream.parameters) == parameters


def test_twiml_without_a_stream(server: TwilioApiServer, client: TwilioRestClient) -> None:
    sid = client.create_call(to=TO, from_=FROM, twiml="<Response><Say>hi</Say></Response>")["sid"]
    assert server.call(sid).stream is None
    with pytest.raises(KeyError):
        server.call(UNKNOWN_CALL)
