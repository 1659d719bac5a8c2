"""The Daily REST client against a real Daily-compatible API (the emulator) on 127.0.0.1:
rooms, tokens, dial-out, deletion, Daily's errors, retries split by what is safe to repeat (a
room is created once, a phone is dialled once), and the API key kept out of sight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from actors.config import DailyProviderConfig, load_config
from actors.emulator.daily import DailyApiServer
from actors.errors import ProviderError
from actors.providers.daily import DailyRestClient, parse_error_response
from tests.processes import free_port

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
KEY = "dk-5e3c7a1f9b2d4e6a8c0b"
OTHER_KEY = "dk-other-0c0ffee0c0ffee"
ROOM = "sess-A1_b2"


def make_client(base_url: str, **options: object) -> DailyRestClient:
    settings: dict[str, object] = {
        "api_key": KEY,
        "api_base_url": base_url,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
    }
    settings.update(options)
    return DailyRestClient(**settings)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[DailyApiServer]:
    with DailyApiServer([KEY]) as api:
        yield api


@pytest.fixture
def client(server: DailyApiServer) -> Iterator[DailyRestClient]:
    with make_client(server.api_url) as rest:
        yield rest


def in_an_hour() -> int:
    return int(time.time()) + 3600


# -- the happy path ---------------------------------------------------------------------------


def test_room_token_dial_out_and_delete(server: DailyApiServer, client: DailyRestClient) -> None:
    exp = in_an_hour()
    room = client.create_room(
        ROOM,
        privacy="private",
        properties={"exp": exp, "max_participants": 4, "enable_dialout": True},
    )
    assert room["name"] == ROOM
    assert room["url"] == f"{server.url}/{ROOM}"
    assert room["privacy"] == "private"
    assert room["config"] == {"exp": exp, "max_participants": 4, "enable_dialout": True}
    assert set(room) >= {"id", "api_created", "created_at"}
    assert list(server.rooms) == [ROOM]

    token = client.create_meeting_token(ROOM, exp=exp, is_owner=True, user_name="bot")
    assert server.token_properties(token) == {
        "room_name": ROOM,
        "is_owner": True,
        "exp": exp,
        "user_name": "bot",
    }
    stored = server.room(ROOM)
    assert stored is not None
    assert server.check_token(token, stored) is None
    assert server.check_token(None, stored) == "a private room needs a meeting token"

    session = client.start_dial_out(ROOM, "+15550100", caller_id="number-id-1")
    assert session is not None
    (dial_out,) = stored.dial_outs
    assert (dial_out.session_id, dial_out.to, dial_out.caller_id) == (
        session,
        "+15550100",
        "number-id-1",
    )
    assert client.stop_dial_out(ROOM, session) is True
    assert client.stop_dial_out(ROOM, session) is False  # already over: not an error
    assert not dial_out.active

    assert client.get_room(ROOM)["name"] == ROOM
    assert client.delete_room(ROOM) is True
    assert server.rooms == {}
    assert client.delete_room(ROOM) is False  # already gone counts as success
    with pytest.raises(ProviderError) as info:
        client.get_room(ROOM)
    assert (info.value.status, info.value.code) == (404, "not-found")


def test_requests_carry_bearer_auth_json_and_a_timeout(
    server: DailyApiServer, client: DailyRestClient
) -> None:
    sent: list[requests.PreparedRequest] = []
    client.http.hooks["response"].append(lambda r, *args, **kwargs: sent.append(r.request))
    client.create_room(ROOM, properties={"exp": in_an_hour()})
    (request,) = sent
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.method == "POST"
    assert request.url == f"{server.api_url}/rooms"
    assert client.timeout_s == 5.0


def test_sip_dial_out(server: DailyApiServer, client: DailyRestClient) -> None:
    client.create_room(ROOM, properties={"enable_dialout": True})
    assert client.start_dial_out(ROOM, "sip:desk@pbx.example.com") is not None
    room = server.room(ROOM)
    assert room is not None
    assert room.dial_outs[0].to == "sip:desk@pbx.example.com"


def test_an_expired_room_is_gone(server: DailyApiServer, client: DailyRestClient) -> None:
    client.create_room(ROOM, properties={"exp": int(time.time()) - 1})
    assert server.rooms == {}
    with pytest.raises(ProviderError) as info:
        client.get_room(ROOM)
    assert info.value.status == 404
    assert client.delete_room(ROOM) is False


# -- Daily's errors ---------------------------------------------------------------------------


def test_a_400_carries_dailys_error_type_and_info(client: DailyRestClient) -> None:
    with pytest.raises(ProviderError) as info:
        client.create_room(ROOM, properties={"colour": "blue"})
    error = info.value
    assert (error.provider, error.status, error.code) == ("daily", 400, "invalid-request-error")
    assert error.message == "unknown property 'colour'"
    assert str(error) == ("daily: HTTP 400 (code invalid-request-error) unknown property 'colour'")


def test_dial_out_needs_a_room_that_allows_it(client: DailyRestClient) -> None:
    client.create_room(ROOM)
    with pytest.raises(ProviderError) as info:
        client.start_dial_out(ROOM, "+15550100")
    assert (info.value.status, info.value.code) == (400, "invalid-request-error")
    assert "enable_dialout" in info.value.message
    with pytest.raises(ProviderError) as missing:
        client.start_dial_out("no-such-room", "+15550100")
    assert missing.value.status == 404


def test_a_wrong_key_is_a_401_and_never_shown(server: DailyApiServer) -> None:
    with make_client(server.api_url, api_key=OTHER_KEY) as other:
        with pytest.raises(ProviderError) as info:
            other.create_room(ROOM)
        assert repr(other) == f"DailyRestClient(api_base_url={server.api_url!r}, auth='api_key')"
    assert (info.value.status, info.value.code) == (401, "authentication-error")
    assert OTHER_KEY not in str(info.value)
    assert server.rooms == {}


def test_the_emulator_checks_the_header_and_the_body(
    server: DailyApiServer, raw: requests.Session
) -> None:
    rooms = f"{server.api_url}/rooms"
    answer = raw.post(rooms, json={"name": ROOM}, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"] == "authorization-header-error"
    auth = {"Authorization": f"Bearer {KEY}"}
    answer = raw.post(rooms, data=b"{not json", headers=auth, timeout=5)
    assert (answer.status_code, answer.json()["error"]) == (400, "json-parsing-error")
    answer = raw.post(rooms, json={"name": "bad name!"}, headers=auth, timeout=5)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid-request-error")
    answer = raw.post(rooms, json={}, headers=auth, timeout=5)  # a name is made up
    assert answer.status_code == 200
    assert answer.json()["name"] in server.rooms
    answer = raw.get(f"{server.api_url}/rooms/nope", headers=auth, timeout=5)
    assert answer.status_code == 404
    assert set(answer.json()) == {"error", "info"}


def test_parse_error_response_never_echoes_an_unknown_body() -> None:
    error = parse_error_response(502, b"<html>proxy says no: secret-123</html>", reason="")
    assert (error.status, error.code, error.message) == (502, None, "Bad Gateway")
    assert "secret-123" not in str(error)
    error = parse_error_response(429, b'{"error": "rate-limit-error"}')
    assert (error.code, error.message) == ("rate-limit-error", "rate-limit-error")
    long = parse_error_response(
        400, '{"error": "invalid-request-error", "info": "%s"}' % ("x" * 900)
    )
    assert len(long.message) == 500 and long.message.endswith("...")


def test_room_names_are_checked_before_any_request(client: DailyRestClient) -> None:
    for bad in ("", "a/b", "x" * 129, "room name"):
        with pytest.raises(ValueError):
            client.create_room(bad)


def test_an_unreachable_api_is_a_provider_error() -> None:
    port = free_port()
    with make_client(f"http://127.0.0.1:{port}/v1", retries=0) as rest:
        with pytest.raises(ProviderError) as info:
            rest.create_room(ROOM)
    assert (
        str(info.value) == f"daily: POST /rooms: connection refused to http://127.0.0.1:{port}/v1"
    )
    assert KEY not in str(info.value)


# -- retries ----------------------------------------------------------------------------------


def test_a_room_whose_create_answer_was_lost_is_created_once(
    server: DailyApiServer, client: DailyRestClient
) -> None:
    # Daily made the room, but its answer was a 500: the retry finds it "already exists".
    server.inject("create_room", 500, performed=True)
    room = client.create_room(ROOM, properties={"exp": in_an_hour()})
    assert room["name"] == ROOM
    assert server.attempts("create_room") == 2
    assert server.attempts("get_room") == 1
    assert list(server.rooms) == [ROOM]


def test_5xx_and_429_are_retried_where_safe(
    server: DailyApiServer, client: DailyRestClient
) -> None:
    server.inject("create_room", 503, times=2)
    client.create_room(ROOM, properties={"enable_dialout": True})
    assert server.attempts("create_room") == 3
    server.inject("create_token", 429, retry_after=0)
    client.create_meeting_token(ROOM, exp=in_an_hour())
    assert server.attempts("create_token") == 2
    server.inject("delete_room", 502, performed=True)  # deleted; the answer was lost
    assert client.delete_room(ROOM) is False  # the retry finds it gone: success all the same
    assert server.attempts("delete_room") == 2
    assert server.rooms == {}


def test_a_dial_out_is_never_repeated_after_a_5xx(
    server: DailyApiServer, client: DailyRestClient
) -> None:
    client.create_room(ROOM, properties={"enable_dialout": True})
    server.inject("dial_out_start", 500, performed=True)  # the phone rings; the answer is lost
    with pytest.raises(ProviderError) as info:
        client.start_dial_out(ROOM, "+15550100")
    assert (info.value.status, info.value.code) == (500, "server-error")
    assert server.attempts("dial_out_start") == 1
    room = server.room(ROOM)
    assert room is not None and len(room.dial_outs) == 1


def test_a_dial_out_is_retried_after_a_429(server: DailyApiServer, client: DailyRestClient) -> None:
    client.create_room(ROOM, properties={"enable_dialout": True})
    server.inject("dial_out_start", 429, times=2)
    assert client.start_dial_out(ROOM, "+15550100") is not None
    assert server.attempts("dial_out_start") == 3
    room = server.room(ROOM)
    assert room is not None and len(room.dial_outs) == 1


def test_retries_end_with_the_last_error(server: DailyApiServer) -> None:
    server.inject("create_room", 500, times=10)
    with make_client(server.api_url, retries=2) as rest:
        with pytest.raises(ProviderError) as info:
            rest.create_room(ROOM)
    assert (info.value.status, info.value.code) == (500, "server-error")
    assert server.attempts("create_room") == 3
    assert server.rooms == {}


def test_the_api_key_never_reaches_a_log(
    server: DailyApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.inject("create_room", 500)
    with make_client(server.api_url) as rest:
        rest.create_room(ROOM, properties={"enable_dialout": True})
        token = rest.create_meeting_token(ROOM, exp=in_an_hour())
        rest.start_dial_out(ROOM, "+15550100")
        rest.delete_room(ROOM)
    assert KEY not in caplog.text
    assert token not in caplog.text


# -- config -----------------------------------------------------------------------------------


def test_example_daily_yaml_takes_its_key_from_the_environment() -> None:
    config = load_config(
        ROOT / "config" / "examples" / "daily.yaml", environ={"DAILY_API_KEY": KEY}
    )
    daily = config.provider("daily")
    assert isinstance(daily, DailyProviderConfig)
    assert (daily.api_key, daily.api_base_url) == (KEY, "https://api.daily.co/v1")
    assert daily.caller_id is None  # an empty default means "not set"
    assert KEY not in repr(daily)
    assert config.redacted()["providers"]["daily"]["api_key"] == "${DAILY_API_KEY}"
