"""The bad-input suite: every kind of wrong input, in one place, each with the error it gets.

Each case proves two things: the error is clear (its type, and a message that NAMES what was
wrong: the file and key, the id, the value, the size and the limit, the HTTP status and code),
and nothing else breaks (a healthy session kept alongside still does a round trip afterwards).
Everything is real: real files, real servers on 127.0.0.1, the real gateway and Twilio
emulator; nothing of ours is mocked. No error message (nor log line, for the auth cases)
carries a secret used in the test. The tests below follow the table's order.

| bad input | what it gets |
|---|---|
| malformed YAML | ``ConfigError``: file, line, column |
| a value of the wrong type in YAML | ``ConfigError``: file, key path, the type expected |
| an unknown key in YAML | ``ConfigError``: key path, "did you mean ...?" |
| an unknown provider ``type`` in YAML | ``ConfigError``: key path, the known types |
| an unknown provider in ``create_session`` | ``ConfigError``: the name, configured ones |
| an unknown session id: read, write, status, connected?, end | ``SessionNotFound``: the id |
| a read ``timeout`` < 0, NaN, inf, 1e300, "5", True, [1.0] | ``ValueError``/``TypeError``: value |
| a write after ``end_session`` | ``SessionClosed``: the id |
| ``Mark`` to a websocket session, ``Text`` to a twilio one | ``UnsupportedMessage``: the type |
| ``Binary(123)``, ``Text(None)``, ``Binary("str")``, ``Text(b"")`` | ``TypeError``: the type |
| a peer frame over ``runtime.max_message_bytes`` | ``Close(1009)``: the size and the limit |
| invalid UTF-8 in a peer's text frame | ``Close(1007)``, that session only |
| non-JSON on a paired Twilio stream | goes on; counted in ``status().malformed_in`` |
| a wrong gateway token, session side | ``ConnectionFailed``: HTTP 403; the call is hung up |
| a wrong gateway token, provider side | stream closed 1008 naming the session |
| Twilio 400 (``To`` not a number) | ``ProviderError``: status 400, code 21211 |
| Twilio 401 (wrong credentials) | ``ProviderError``: status 401, code 20003; no secret |
| Twilio 404 on hang-up | none: the call counts as already ended |
| Twilio 429 on create (twice) | retried; exactly one call created |
| Twilio 500 on create | ``ProviderError``: status 500; not retried; no session left |
| DEBUG logging on, a session hop to the gateway | no token in any log line, wire traces too |
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from actors import (
    Audio,
    Binary,
    Close,
    ConfigError,
    ConnectionFailed,
    Mark,
    Message,
    ProviderError,
    SessionClosed,
    SessionNotFound,
    SessionState,
    Started,
    Text,
    TransportService,
    UnsupportedMessage,
    load_config,
)
from actors.codecs.twilio import TwilioStream, new_sid
from actors.config import (
    EmulatorConfig,
    GatewayConfig,
    ProviderConfig,
    TransportConfig,
    TwilioProviderConfig,
    WebSocketProviderConfig,
)
from actors.emulator.phone import TwilioEmulator
from actors.emulator.rest import TwilioApiServer
from actors.gateway import ServerConnection, ServerThread
from actors.gateway.server import MediaGateway
from actors.providers.twilio import TwilioRestClient
from actors.signing import hop_token, stream_token
from tests.conftest import fast_config
from tests.peers import RawPeer, send_then_wait, server_frame

pytestmark = pytest.mark.timeout(30)

TO, FROM = "+15550100", "+15550199"
ACCOUNT = "AC" + "5" * 32
AUTH_TOKEN = "auth-token-right-3f9c1e"  # the emulator's credentials
WRONG_TOKEN = "auth-token-wrong-77ab20"
GATEWAY_SECRET = "gateway-secret-b81d4a"
WRONG_SECRET = "gateway-secret-wrong-0c6e55"
AUDIO = b"\x2a" * 160  # 20 ms of mu-law


# -- helpers --------------------------------------------------------------------------------------


def texts_of(exc: BaseException) -> str:
    """Everything an error shows: its str and repr, and those of every exception chained."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret leaked into: {text!r}"


def read_all(service: TransportService, sid: str) -> list[Message]:
    """Every message up to the end of the session (``None``), each read bounded."""
    seen: list[Message] = []
    while (message := service.read_websocket_message(sid, timeout=5)) is not None:
        seen.append(message)
    return seen


def round_trip(service: TransportService, sid: str) -> None:
    """A plain WebSocket session to an echo peer still carries audio and text both ways."""
    service.write_websocket_message(sid, Binary(AUDIO))
    service.write_websocket_message(sid, Text("still here"))
    assert service.read_websocket_message(sid, timeout=5) == Binary(AUDIO)
    assert service.read_websocket_message(sid, timeout=5) == Text("still here")


def twilio_round_trip(service: TransportService, sid: str, mark: str = "healthy") -> None:
    """An emulated call still plays what it is sent and echoes it, up to a mark."""
    service.write_websocket_message(sid, Binary(AUDIO))
    service.write_websocket_message(sid, Mark(mark))
    heard = b""
    while True:
        message = service.read_websocket_message(sid, timeout=5)
        assert message is not None, "the call ended before its mark came back"
        if isinstance(message, Audio):
            heard += message.data
        elif message == Mark(mark):
            break
    assert heard == AUDIO


def twilio_provider(api_url: str, auth_token: str = AUTH_TOKEN) -> TwilioProviderConfig:
    """The ``twilio`` provider of a service, talking to a standalone emulator's REST API."""
    return TwilioProviderConfig(
        name="twilio",
        account_sid=ACCOUNT,
        auth_token=auth_token,
        api_base_url=api_url,
        timeout_s=5.0,
        retries=3,
        backoff_s=0.01,
    )


def with_providers(config: TransportConfig, **providers: ProviderConfig) -> TransportConfig:
    every: dict[str, ProviderConfig] = {
        "websocket": WebSocketProviderConfig(name="websocket"),
        **providers,
    }
    return dataclasses.replace(config, providers=every)


@pytest.fixture
def service() -> Iterator[TransportService]:
    """A service with fast timeouts and the default providers."""
    with TransportService(fast_config()) as svc:
        yield svc


@pytest.fixture
def healthy(service: TransportService, echo_server: ServerThread) -> Iterator[str]:
    """A healthy session beside the bad one; it must still round-trip afterwards."""
    sid = service.create_session(provider="websocket", url=echo_server.url).session_id
    round_trip(service, sid)
    yield sid
    service.end_session(sid)


@pytest.fixture
def emulator() -> Iterator[TwilioEmulator]:
    """A standalone Twilio emulator (REST API and the phone that dials each call's stream),
    with known credentials, so that its REST faults can be injected before the first call."""
    with TwilioEmulator(EmulatorConfig(), {ACCOUNT: AUTH_TOKEN}) as emu:
        yield emu


@pytest.fixture
def twilio_service(emulator: TwilioEmulator) -> Iterator[TransportService]:
    """A service whose ``twilio`` provider calls ``emulator`` (its gateway is embedded)."""
    config = with_providers(fast_config(), twilio=twilio_provider(emulator.url))
    with TransportService(config) as svc:
        yield svc


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key_path", "words"),
    [
        pytest.param(
            "runtime:\n  ask_timeout_s: 1.0\n  inbox_max: [1, 2\n",
            "",
            ["invalid YAML at line 4, column 1", "expected ',' or ']'"],
            id="malformed-yaml",
        ),
        pytest.param(
            "runtime:\n  inbox_max: lots\n",
            "runtime.inbox_max",
            ["expected a whole number (int), got 'lots' (str)"],
            id="wrong-type",
        ),
        pytest.param(
            "supervisor:\n  within_s: [30]\n",
            "supervisor.within_s",
            ["expected a number of seconds (float), got [30] (list)"],
            id="wrong-type-list",
        ),
        pytest.param(
            "runtime:\n  ping_intervall_s: 3\n",
            "runtime.ping_intervall_s",
            ["unknown key 'ping_intervall_s'; did you mean 'ping_interval_s'?"],
            id="unknown-key",
        ),
        pytest.param(
            "providers:\n  phone:\n    type: sip\n",
            "providers.phone.type",
            ["unknown provider type 'sip'", "websocket", "twilio"],
            id="unknown-provider-type",
        ),
    ],
)
def test_a_bad_config_file_names_file_and_key(
    tmp_path: Path, text: str, key_path: str, words: list[str]
) -> None:
    """A config file that is not YAML, or whose values are wrong, raises ConfigError naming
    the file and the key path (or, for a syntax error, the line and column) and saying what
    was expected."""
    path = tmp_path / "deployment.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert error.file == str(path)
    assert error.key_path == key_path
    message = str(error)
    assert message.startswith(f"{path}: {key_path + ': ' if key_path else ''}")
    for word in words:
        assert word in message


def test_an_unknown_provider_is_named_with_the_configured_ones(
    service: TransportService, healthy: str
) -> None:
    """create_session(provider=<unknown>) raises ConfigError naming it, listing the configured
    providers and suggesting the closest; no session is left, and the others go on."""
    with pytest.raises(ConfigError) as info:
        service.create_session(provider="twillio", to=TO, from_=FROM)
    message = str(info.value)
    assert "unknown provider 'twillio'" in message
    configured = ", ".join(service.config.providers)
    assert f"configured providers: {configured}" in message
    assert "websocket" in configured and "twilio" in configured
    assert "did you mean 'twilio'?" in message
    assert info.value.key_path == "providers.twillio"
    assert [s.session_id for s in service.sessions()] == [healthy]
    round_trip(service, healthy)


# -- calls on the facade --------------------------------------------------------------------------

_OPERATIONS: dict[str, Callable[[TransportService, str], object]] = {
    "read": lambda svc, sid: svc.read_websocket_message(sid, timeout=1),
    "write": lambda svc, sid: svc.write_websocket_message(sid, Text("x")),
    "status": lambda svc, sid: svc.status(sid),
    "is_websocket_connected": lambda svc, sid: svc.is_websocket_connected(sid),
    "end": lambda svc, sid: svc.end_session(sid),
}


@pytest.mark.parametrize("operation", list(_OPERATIONS))
def test_an_unknown_session_id_is_named(
    service: TransportService, healthy: str, operation: str
) -> None:
    """Every per-session call with an id that never existed raises SessionNotFound naming
    the id; the live session is untouched."""
    bogus = "no-such-session-" + operation
    with pytest.raises(SessionNotFound) as info:
        _OPERATIONS[operation](service, bogus)
    assert info.value.session_id == bogus
    assert repr(bogus) in str(info.value)
    round_trip(service, healthy)


@pytest.mark.parametrize(
    ("timeout", "kind"),
    [
        (-1.0, ValueError),
        (-0.001, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (1e300, ValueError),
        ("5", TypeError),
        (True, TypeError),
        ([1.0], TypeError),
    ],
    ids=["negative", "tiny-negative", "nan", "inf", "1e300", "string", "bool", "list"],
)
def test_an_absurd_read_timeout_is_refused_naming_the_value(
    service: TransportService, healthy: str, timeout: object, kind: type[Exception]
) -> None:
    """A read timeout that is not a sane number of seconds is refused at once (no wait, no
    read consumed) with an error that shows the value given."""
    with pytest.raises(kind) as info:
        service.read_websocket_message(healthy, timeout=timeout)  # type: ignore[arg-type]
    assert repr(timeout) in str(info.value)
    assert "timeout" in str(info.value)
    round_trip(service, healthy)  # nothing was read or lost by the refused call


def test_a_write_after_end_session_is_refused(
    service: TransportService, healthy: str, echo_server: ServerThread
) -> None:
    """Writing to a session that end_session ended raises SessionClosed naming it; reading
    it says it is over (None)."""
    sid = service.create_session(provider="websocket", url=echo_server.url).session_id
    service.end_session(sid)
    with pytest.raises(SessionClosed) as info:
        service.write_websocket_message(sid, Binary(AUDIO))
    assert info.value.session_id == sid
    assert repr(sid) in str(info.value)
    assert service.read_websocket_message(sid, timeout=1) is None
    round_trip(service, healthy)


def test_a_type_the_provider_cannot_carry_is_refused(
    service: TransportService, healthy: str
) -> None:
    """A plain WebSocket cannot carry a telephony Mark: UnsupportedMessage names the type and
    the provider, at once; the session itself goes on."""
    with pytest.raises(UnsupportedMessage) as info:
        service.write_websocket_message(healthy, Mark("m"))
    assert info.value.message_type == "Mark"
    assert "cannot carry Mark" in str(info.value)
    assert "'websocket'" in str(info.value)
    round_trip(service, healthy)


@pytest.mark.parametrize(
    ("make", "wrong"),
    [
        (lambda: Binary(cast(Any, 123)), "int"),
        (lambda: Text(cast(Any, None)), "NoneType"),
        (lambda: Binary(cast(Any, "text")), "str"),
        (lambda: Text(cast(Any, b"x")), "bytes"),
    ],
    ids=["binary-int", "text-none", "binary-str", "text-bytes"],
)
def test_a_payload_of_the_wrong_type_is_refused(
    service: TransportService, healthy: str, make: Callable[[], Message], wrong: str
) -> None:
    """A message whose payload is of the wrong type (an int or a str as audio, bytes or None
    as text) is refused before it reaches the session, with a TypeError naming the type
    given: the session neither restarts nor sends anything (a str as Binary must not leave
    as a text frame, nor crash the writer thread)."""
    with pytest.raises(TypeError) as info:
        service.write_websocket_message(healthy, make())
    assert wrong in str(info.value)
    round_trip(service, healthy)
    assert service.status(healthy).restarts == 0


# -- what a peer sends ----------------------------------------------------------------------------


async def big_on_request(connection: ServerConnection) -> None:
    """Echo, except that ``big:N`` is answered with a binary frame of N bytes."""
    with contextlib.suppress(ConnectionClosed):
        async for message in connection:
            if isinstance(message, str) and message.startswith("big:"):
                await connection.send(b"x" * int(message[4:]))
            else:
                await connection.send(message)


def test_an_oversized_frame_from_the_peer_ends_only_its_session() -> None:
    """A frame over runtime.max_message_bytes ends that session with Close(1009) whose reason
    names the size and the limit; a session to the same peer goes on."""
    with (
        ServerThread(big_on_request, name="big-server") as peer,
        TransportService(fast_config(max_message_bytes=1000)) as service,
    ):
        healthy = service.create_session(provider="websocket", url=peer.url).session_id
        victim = service.create_session(provider="websocket", url=peer.url).session_id
        service.write_websocket_message(victim, Text("big:1000"))  # at the limit: fine
        service.write_websocket_message(victim, Text("big:5000"))
        messages = read_all(service, victim)
        assert messages[0] == Binary(b"x" * 1000)
        assert messages[1:] == [Close(1009, "a frame of 5000 bytes exceeds max_message_bytes=1000")]
        assert service.status(victim).state is SessionState.CLOSED
        round_trip(service, healthy)
        service.end_session(victim)
        service.end_session(healthy)


def test_invalid_utf8_from_the_peer_ends_only_its_session(
    service: TransportService, healthy: str
) -> None:
    """A text frame that is not UTF-8 ends that session with Close(1007) saying so; the
    healthy session goes on."""
    bad = server_frame(0x1, b"fine") + server_frame(0x1, b"\xc3\x28 not utf-8")
    with RawPeer(send_then_wait(bad)) as peer:
        sid = service.create_session(provider="websocket", url=peer.url).session_id
        assert read_all(service, sid) == [
            Text("fine"),
            Close(1007, "invalid UTF-8 in a text frame"),
        ]
        round_trip(service, healthy)
        service.end_session(sid)


# -- the media gateway ----------------------------------------------------------------------------


@contextlib.contextmanager
def gateway_and_api() -> Iterator[tuple[MediaGateway, TwilioApiServer]]:
    """A standalone gateway with a known secret, and a Twilio REST API that places calls but
    dials nothing: the test plays Twilio's side of the stream itself."""
    gateway_config = GatewayConfig(
        embedded=False, secret=GATEWAY_SECRET, pair_timeout_s=5.0, resume_window_s=5.0
    )
    with (
        MediaGateway(gateway_config) as gateway,
        TwilioApiServer({ACCOUNT: AUTH_TOKEN}, name="bad-input-api") as api,
    ):
        yield gateway, api


def gateway_service(
    gateway: MediaGateway, api: TwilioApiServer, secret: str = GATEWAY_SECRET
) -> TransportService:
    """A service that dials the standalone gateway, sharing ``secret`` with it."""
    config = dataclasses.replace(
        with_providers(fast_config(), twilio=twilio_provider(api.url)),
        gateway=GatewayConfig(
            embedded=False, url=gateway.url, public_url=gateway.url, secret=secret
        ),
    )
    return TransportService(config)


def stream_for(sid: str, call_id: str | None, token: str) -> TwilioStream:
    return TwilioStream(
        new_sid("MZ"),
        call_id or new_sid("CA"),
        ACCOUNT,
        custom_parameters={"session": sid, "token": token},
    )


def test_non_json_on_a_twilio_stream_is_counted_and_the_call_goes_on() -> None:
    """Garbage on a paired Twilio stream reaches the session (the gateway relays frames
    unchanged once a stream has started); the session's codec drops and counts it in
    status().malformed_in, and the call goes on both ways.

    The route is the real one end to end: create_session places the call over REST (a
    standalone API server that dials nothing), the connector dials the standalone gateway,
    and the test plays Twilio's side: ``connected``, ``start`` (with the session's id and
    token), then non-JSON, then a valid media frame. (An emulator that dialled too would give
    the session a second provider stream, which the gateway refuses.)"""
    with gateway_and_api() as (gateway, api), gateway_service(gateway, api) as service:
        info = service.create_session(provider="twilio", to=TO, from_=FROM)
        sid = info.session_id
        stream = stream_for(sid, info.call_id, stream_token(GATEWAY_SECRET, sid))
        with connect(gateway.url + "/twilio", open_timeout=5, close_timeout=2) as ws:
            ws.send(stream.connected())
            ws.send(stream.start())
            ws.send("not json")
            ws.send("[1, 2]")
            ws.send(stream.media(AUDIO, 0))
            started = service.read_websocket_message(sid, timeout=5)
            assert isinstance(started, Started) and started.call_id == info.call_id
            audio = service.read_websocket_message(sid, timeout=5)
            assert isinstance(audio, Audio) and audio.data == AUDIO
            assert service.status(sid).malformed_in == 2
            # And the other way: a write still becomes a media frame on the call.
            service.write_websocket_message(sid, Binary(b"\x11" * 160))
            frame = json.loads(ws.recv(timeout=5))
            assert frame["event"] == "media"
            assert base64.b64decode(frame["media"]["payload"]) == b"\x11" * 160
            assert service.status(sid).state is SessionState.OPEN
        service.end_session(sid)


def test_a_session_hop_with_a_wrong_token_gets_403(
    echo_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """A service whose gateway secret is not the gateway's signs a token the gateway refuses:
    create_session raises ConnectionFailed naming the HTTP 403; the call it placed is hung
    up, no session is left, and neither secret nor token shows in the error or the logs."""
    caplog.set_level(logging.DEBUG)
    with (
        gateway_and_api() as (gateway, api),
        gateway_service(gateway, api, secret=WRONG_SECRET) as service,
    ):
        healthy = service.create_session(provider="websocket", url=echo_server.url).session_id
        with pytest.raises(ConnectionFailed) as info:
            service.create_session(provider="twilio", to=TO, from_=FROM)
        assert "403" in str(info.value)
        assert "/sessions/" in info.value.url
        assert [s.session_id for s in service.sessions()] == [healthy]
        (call,) = api.calls.values()
        assert call.status == "completed"  # the call placed for it was hung up
        assert gateway.stats().rejected["bad_token"] >= 1
        session_id = info.value.session_id
        assert session_id is not None
        secrets = (
            GATEWAY_SECRET,
            WRONG_SECRET,
            AUTH_TOKEN,
            hop_token(WRONG_SECRET, session_id),
            hop_token(GATEWAY_SECRET, session_id),
            stream_token(WRONG_SECRET, session_id),
            stream_token(GATEWAY_SECRET, session_id),
        )
        assert_no_secret(texts_of(info.value), *secrets)
        round_trip(service, healthy)
        service.end_session(healthy)
    assert_no_secret(caplog.text, *secrets)


def test_a_provider_stream_with_a_wrong_token_is_closed_1008(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A provider stream whose token is not the session's is closed with 1008 naming the
    session; the session then pairs with the real stream and carries audio both ways."""
    caplog.set_level(logging.DEBUG)
    with gateway_and_api() as (gateway, api), gateway_service(gateway, api) as service:
        info = service.create_session(provider="twilio", to=TO, from_=FROM)
        sid = info.session_id
        forged = stream_token(WRONG_SECRET, sid)
        with connect(gateway.url + "/twilio", open_timeout=5, close_timeout=2) as bad:
            impostor = stream_for(sid, info.call_id, forged)
            bad.send(impostor.connected())
            bad.send(impostor.start())
            with pytest.raises(ConnectionClosed):
                bad.recv(timeout=5)
            assert bad.close_code == 1008
            assert bad.close_reason == f"session {sid}: invalid token"
        real = stream_token(GATEWAY_SECRET, sid)
        assert_no_secret(caplog.text, forged, real, GATEWAY_SECRET, WRONG_SECRET)
        stream = stream_for(sid, info.call_id, real)
        with connect(gateway.url + "/twilio", open_timeout=5, close_timeout=2) as ws:
            ws.send(stream.connected())
            ws.send(stream.start())
            ws.send(stream.media(AUDIO, 0))
            assert isinstance(service.read_websocket_message(sid, timeout=5), Started)
            audio = service.read_websocket_message(sid, timeout=5)
            assert isinstance(audio, Audio) and audio.data == AUDIO
            service.write_websocket_message(sid, Mark("back"))
            assert json.loads(ws.recv(timeout=5))["mark"] == {"name": "back"}
        service.end_session(sid)
        assert gateway.stats().rejected["bad_token"] == 1


# -- Twilio's REST API ----------------------------------------------------------------------------


def test_twilio_400_names_status_and_code(
    twilio_service: TransportService, emulator: TwilioEmulator
) -> None:
    """A To that is not a phone number: Twilio's 400 with code 21211 comes back as a
    ProviderError carrying both; no session is left and another call goes on."""
    healthy = twilio_service.create_session(provider="twilio", to=TO, from_=FROM).session_id
    with pytest.raises(ProviderError) as info:
        twilio_service.create_session(provider="twilio", to="12345", from_=FROM)
    error = info.value
    assert (error.provider, error.status, error.code) == ("twilio", 400, 21211)
    assert "HTTP 400" in str(error) and "21211" in str(error)
    assert "To" in error.message
    assert [s.session_id for s in twilio_service.sessions()] == [healthy]
    assert len(emulator.api.calls) == 1
    twilio_round_trip(twilio_service, healthy)


def test_twilio_401_wrong_credentials(
    emulator: TwilioEmulator, echo_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong credentials: Twilio's 401 (code 20003) as a ProviderError; neither the right
    nor the wrong auth token appears in the error or in any log line."""
    caplog.set_level(logging.DEBUG)
    config = with_providers(fast_config(), twilio=twilio_provider(emulator.url, WRONG_TOKEN))
    with TransportService(config) as service:
        healthy = service.create_session(provider="websocket", url=echo_server.url).session_id
        with pytest.raises(ProviderError) as info:
            service.create_session(provider="twilio", to=TO, from_=FROM)
        error = info.value
        assert (error.status, error.code) == (401, 20003)
        assert "HTTP 401" in str(error)
        assert emulator.api.attempts("create") == 1  # refused, not retried
        assert_no_secret(texts_of(error), AUTH_TOKEN, WRONG_TOKEN)
        assert [s.session_id for s in service.sessions()] == [healthy]
        assert emulator.api.calls == {}
        round_trip(service, healthy)
        service.end_session(healthy)
    assert_no_secret(caplog.text, AUTH_TOKEN, WRONG_TOKEN)


def test_twilio_404_on_hang_up_counts_as_already_ended(
    twilio_service: TransportService, emulator: TwilioEmulator
) -> None:
    """Hanging up a call Twilio no longer knows (404, code 20404) is success: end_session
    raises nothing and the session is CLOSED. The REST client says so for a call SID the
    emulator has never seen (a real 404)."""
    info = twilio_service.create_session(provider="twilio", to=TO, from_=FROM)
    twilio_round_trip(twilio_service, info.session_id)
    emulator.api.inject("update", 404, code=20404, message="The requested resource was not found")
    twilio_service.end_session(info.session_id)
    assert twilio_service.status(info.session_id).state is SessionState.CLOSED
    assert emulator.api.attempts("update") == 1
    with TwilioRestClient(
        account_sid=ACCOUNT, auth_token=AUTH_TOKEN, api_base_url=emulator.url, retries=0
    ) as client:
        assert client.hang_up(new_sid("CA")) is False


def test_twilio_429_is_retried_and_creates_one_call(
    twilio_service: TransportService, emulator: TwilioEmulator
) -> None:
    """Two 429s on create are retried (Twilio did not act on them); the third attempt
    creates the call, exactly one, and the call carries audio."""
    emulator.api.inject("create", 429, times=2)
    info = twilio_service.create_session(provider="twilio", to=TO, from_=FROM)
    assert emulator.api.attempts("create") == 3
    assert list(emulator.api.calls) == [info.call_id]
    twilio_round_trip(twilio_service, info.session_id)
    twilio_service.end_session(info.session_id)


def test_twilio_500_on_create_leaves_no_session(
    twilio_service: TransportService, emulator: TwilioEmulator
) -> None:
    """A 500 on create is reported, not retried (the call might exist: never dial twice):
    ProviderError with status 500; no session is left behind, and the next call works."""
    emulator.api.inject("create", 500)
    with pytest.raises(ProviderError) as info:
        twilio_service.create_session(provider="twilio", to=TO, from_=FROM)
    assert (info.value.status, info.value.code) == (500, 20500)
    assert emulator.api.attempts("create") == 1
    assert twilio_service.sessions() == []
    sid = twilio_service.create_session(provider="twilio", to=TO, from_=FROM).session_id
    twilio_round_trip(twilio_service, sid)
    twilio_service.end_session(sid)


def test_twilio_sessions_refuse_text(twilio_service: TransportService) -> None:
    """A Twilio stream carries audio and marks, not text: UnsupportedMessage names Text and
    the provider, and the call goes on."""
    sid = twilio_service.create_session(provider="twilio", to=TO, from_=FROM).session_id
    with pytest.raises(UnsupportedMessage) as info:
        twilio_service.write_websocket_message(sid, Text("hello"))
    assert info.value.message_type == "Text"
    assert "'twilio'" in str(info.value) and "cannot carry Text" in str(info.value)
    twilio_round_trip(twilio_service, sid)
    twilio_service.end_session(sid)


def test_debug_traces_of_the_gateway_do_not_carry_the_session_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With DEBUG logging on, no log line (the libraries' wire traces included) shows a
    session's tokens or the gateway's secret: the hop token is the key to that call's audio.
    (websockets logs every handshake header at DEBUG, ``Authorization`` included.)"""
    caplog.set_level(logging.DEBUG)
    with gateway_and_api() as (gateway, api), gateway_service(gateway, api) as service:
        sid = service.create_session(provider="twilio", to=TO, from_=FROM).session_id
        service.end_session(sid)
    assert_no_secret(caplog.text, hop_token(GATEWAY_SECRET, sid), GATEWAY_SECRET)
