"""The gateway as an attacker meets it (issue 11): no call hijack from the TwiML, nothing left
behind by a refused handshake, signatures checked by default, garbage refused in one line.

Real components over loopback: the service with its embedded emulator and gateway, or a
gateway of its own; the attacker's side is raw sockets, ``websocket-client`` and
``websockets``' sync client.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket as wsc
import yaml
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from actors import Audio, Binary, CallStatus, Started, TransportService
from actors.codecs.twilio import TwilioStream, new_sid
from actors.config import (
    EmulatorConfig,
    TransportConfig,
    parse_config,
)
from actors.emulator.phone import TwilioEmulator
from actors.gateway.server import MediaGateway
from actors.signing import hop_token, stream_token, twilio_signature
from tests.conftest import eventually, fast_config
from tests.gateway.sides import closed_with, dial_hop, gateway_config

SECRET = "security-test-gateway-secret"
ACCOUNT = "AC" + "2" * 32
TO, FROM = "+15550100", "+15550199"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway() -> Iterator[MediaGateway]:
    with MediaGateway(gateway_config(SECRET)) as gw:
        yield gw


@contextlib.contextmanager
def provider(
    url: str, session_id: str, token: str, nonce: str | None = None
) -> Iterator[tuple[ClientConnection, TwilioStream]]:
    """Twilio's side of a stream: connected, then start with the session and ``token``
    (and the ``nonce`` the token covers, if any)."""
    parameters = {"session": session_id, "token": token}
    if nonce is not None:
        parameters["nonce"] = nonce
    stream = TwilioStream(new_sid("MZ"), new_sid("CA"), ACCOUNT, custom_parameters=parameters)
    with connect(url + "/twilio", open_timeout=5, close_timeout=1) as ws:
        ws.send(stream.connected())
        ws.send(stream.start())
        yield ws, stream


def twiml_values(twiml: str) -> list[str]:
    """Every attribute value and text in a TwiML document: what anyone who sees it knows."""
    values: list[str] = []
    for element in ET.fromstring(twiml).iter():
        values.extend(element.attrib.values())
        values.extend(t.strip() for t in (element.text, element.tail) if t and t.strip())
    return values


# -- item 1: the TwiML cannot open a session hop ------------------------------------------------


def test_no_value_in_a_calls_twiml_opens_its_session_hop() -> None:
    """Place a call through the emulator, take every value of the TwiML it received (the
    stream URL, every parameter name and value) and offer each as the session hop's
    credential: all are refused with 403, and replaying the TwiML's stream is refused too.
    The real session is not disturbed: no resume, no restart, audio both ways after."""
    config = dataclasses.replace(fast_config(), emulator=EmulatorConfig(media="echo"))
    with TransportService(config) as service:
        info = service.create_session(provider="twilio", to=TO, from_=FROM, parameters={"a": "b"})
        sid = info.session_id
        started = service.read_websocket_message(sid, timeout=5)
        while isinstance(started, CallStatus):  # the call's progress comes before its stream
            started = service.read_websocket_message(sid, timeout=5)
        assert isinstance(started, Started)
        emulator = service.infrastructure.running["emulator"]
        gateway = service.infrastructure.running["gateway"]
        assert isinstance(emulator, TwilioEmulator) and isinstance(gateway, MediaGateway)
        assert info.call_id is not None
        twiml = emulator.api.call(info.call_id).twiml
        assert twiml is not None
        values = twiml_values(twiml)
        nonce = values[values.index("nonce") + 1]  # <Parameter name="nonce" value="...">
        token = stream_token(gateway.secret, sid, nonce)
        assert token in values  # what the TwiML does carry
        assert hop_token(gateway.secret, sid) not in twiml
        for value in values:
            with pytest.raises(wsc.WebSocketBadStatusException) as refused:
                dial_hop(gateway.url, sid, value).close()
            assert refused.value.status_code == 403, value
        # The TwiML's stream, replayed: that stream token has paired its one stream.
        with provider(gateway.url, sid, token, nonce) as (replay, _):
            code, reason = closed_with(replay)
        assert (code, "already has a provider stream" in reason) == (1008, True)
        stats = gateway.stats()
        assert stats.rejected["bad_token"] == len(values)
        assert (stats.resumes, stats.session_hops) == (0, 1)
        service.write_websocket_message(sid, Binary(b"\x22" * 160))
        while True:  # the echo of our frame comes back: the call is still ours
            message = service.read_websocket_message(sid, timeout=5)
            if isinstance(message, Audio) and message.data == b"\x22" * 160:
                break
        status = service.status(sid)
        assert (status.restarts, status.connected) == (0, True)
        service.end_session(sid)
        # And once the call is over, its stream token pairs nothing any more.
        with provider(gateway.url, sid, stream_token(gateway.secret, sid)) as (late, _):
            assert closed_with(late)[0] == 1008


def test_the_two_credentials_are_bound_to_their_purpose(gateway: MediaGateway) -> None:
    """A hop token does not pair a provider stream; a stream token does not open a hop."""
    sid = "purpose"
    with pytest.raises(wsc.WebSocketBadStatusException) as refused:
        dial_hop(gateway.url, sid, stream_token(SECRET, sid))
    assert refused.value.status_code == 403
    with provider(gateway.url, sid, hop_token(SECRET, sid)) as (ws, _):
        assert closed_with(ws) == (1008, f"session {sid}: invalid token")
    session = dial_hop(gateway.url, sid, hop_token(SECRET, sid))
    with provider(gateway.url, sid, stream_token(SECRET, sid)):
        assert json.loads(session.recv())["event"] == "connected"
        session.close()
    assert gateway.stats().rejected["bad_token"] == 2


# -- item 4: a refused handshake leaves nothing ---------------------------------------------------


def broken_handshake(url: str, session_id: str, token: str) -> int:
    """A request with a valid hop token whose WebSocket handshake is invalid (no
    Sec-WebSocket-Key): the HTTP status it gets."""
    host, port = url.removeprefix("ws://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            (
                f"GET /sessions/{session_id} HTTP/1.1\r\nHost: {host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\nX-Resume-From: 0\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_refused_handshakes_with_a_valid_token_leave_nothing_and_disturb_no_one(
    gateway: MediaGateway,
) -> None:
    """200 handshakes with a valid hop token that websockets then refuses (400) leave no call
    record and no connection; 200 more against a live session leave it relaying."""
    for i in range(200):
        sid = f"ghost-{i}"
        assert broken_handshake(gateway.url, sid, hop_token(SECRET, sid)) == 400
    assert eventually(lambda: gateway.stats().connections == 0, 5)
    assert gateway.stats().calls_active == 0
    sid = "live"
    session = dial_hop(gateway.url, sid, hop_token(SECRET, sid))
    with provider(gateway.url, sid, stream_token(SECRET, sid)) as (ws, stream):
        assert json.loads(session.recv())["event"] == "connected"
        for _ in range(200):
            assert broken_handshake(gateway.url, sid, hop_token(SECRET, sid)) == 400
        session.recv()  # start
        media = stream.media(b"\x01" * 160, 0)
        ws.send(media)
        assert session.recv() == media  # the live hop still has the call
        session.send("from the session")
        assert ws.recv(timeout=5) == "from the session"
        stats = gateway.stats()
        assert (stats.calls_active, stats.session_hops, stats.resumes) == (1, 1, 0)
        session.close()
    assert eventually(lambda: gateway.stats().calls_active == 0, 5)


# -- item 3: Twilio's signature, checked by default ---------------------------------------------


def test_the_gateway_checks_signatures_with_the_twilio_providers_auth_token() -> None:
    """With a Twilio provider's auth_token in the same file the gateway validates
    X-Twilio-Signature without being told; the URL is the public one Twilio dialled
    (its path prefix included, which the proxy strips), with or without ``:443``."""
    text = (
        "providers:\n"
        "  twilio:\n"
        f"    account_sid: {ACCOUNT}\n"
        "    auth_token: ${TWILIO_AUTH_TOKEN}\n"
        "gateway:\n"
        "  listen: 127.0.0.1:0\n"
        "  public_url: wss://voice.example.com/media\n"
        f"  secret: {SECRET}\n"
    )
    config = parse_config(yaml.safe_load(text), environ={"TWILIO_AUTH_TOKEN": "the-auth-token"})
    assert config.gateway.signature_tokens == ("the-auth-token",)
    assert config.gateway.security_warnings() == []
    with MediaGateway(config.gateway) as gateway:
        local = gateway.url + "/twilio"
        signed_for = [
            "wss://voice.example.com/media/twilio",
            "wss://voice.example.com:443/media/twilio",
        ]
        for public in signed_for:
            signature = twilio_signature("the-auth-token", public)
            headers = {"X-Twilio-Signature": signature}
            with connect(local, additional_headers=headers, open_timeout=5) as ws:
                ws.send("{}")  # let in, then refused as garbage
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=5)
                assert ws.close_code == 1007
        wrong = [
            {},  # unsigned
            {"X-Twilio-Signature": twilio_signature("other-token", signed_for[0])},
            {"X-Twilio-Signature": twilio_signature("the-auth-token", local)},  # not the URL
            {
                "X-Twilio-Signature": twilio_signature(
                    "the-auth-token", "wss://voice.example.com/twilio"
                )
            },
        ]
        for headers in wrong:
            with pytest.raises(InvalidStatus) as info, connect(local, additional_headers=headers):
                pass
            assert info.value.response.status_code == 403
        assert gateway.stats().rejected["bad_signature"] == len(wrong)


def test_an_exposed_gateway_without_a_token_warns_at_start_and_in_check(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    exposed = gateway_config(SECRET, public_url="wss://voice.example.com")
    caplog.set_level(logging.WARNING, logger="actors.gateway.server")
    with MediaGateway(exposed):
        pass
    warned = [r for r in caplog.records if "X-Twilio-Signature is not validated" in r.message]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    # Loopback only, nothing public: the dev default says nothing.
    assert gateway_config(SECRET).security_warnings() == []
    assert TransportConfig().gateway.security_warnings() == []
    path = tmp_path / "exposed.yaml"
    path.write_text(
        f"gateway:\n  embedded: false\n  listen: 0.0.0.0:0\n  secret: {SECRET}\n"
        "  url: ws://10.0.0.5:8765\n  public_url: wss://voice.example.com\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "actors.cli", "check", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: gateway: X-Twilio-Signature is not validated" in done.stderr
    assert SECRET not in done.stdout + done.stderr


# -- item 13 (gateway): garbage before authentication -------------------------------------------


def raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("ws://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                answer += chunk
    return answer


def upgrade(path: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer \xed\xa0\x80\r\n\r\n"
    )


def test_garbage_before_authentication_logs_one_warning_line_and_no_traceback(
    gateway: MediaGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Each hostile connection gets one WARNING line (no traceback, nothing at ERROR) and a
    clear refusal; a lone surrogate anywhere is handled like any other wrong value."""
    caplog.set_level(logging.DEBUG)
    start_with = {
        "lone surrogate session": json.dumps(
            {"event": "start", "start": {"customParameters": {"session": "\ud800", "token": "x"}}}
        ),
        "lone surrogate token": json.dumps(
            {"event": "start", "start": {"customParameters": {"session": "s", "token": "\udfff"}}}
        ),
    }
    frames = {"deep brackets": "[" * 5000, "60000 brackets": "[" * 60000, **start_with}
    codes: dict[str, int | None] = {}
    for name, frame in frames.items():
        with connect(gateway.url + "/twilio", open_timeout=5, max_size=None) as ws:
            with contextlib.suppress(ConnectionClosed):
                ws.send(frame)
            codes[name] = closed_with(ws)[0]
    assert codes == {
        "deep brackets": 1007,
        "60000 brackets": 1006,  # dropped at once: past the byte budget before authentication
        "lone surrogate session": 1008,
        "lone surrogate token": 1008,
    }
    answers = [
        raw_request(gateway.url, upgrade(b"/sessions/%ED%A0%80")),  # a lone surrogate, encoded
        raw_request(gateway.url, upgrade(b"/sessions/\xed\xa0\x80")),  # ... and raw
        raw_request(gateway.url, b"\xff\xfe garbage\r\n\r\n"),
    ]
    assert answers[0].startswith(b"HTTP/1.1 400")
    rejected = gateway.stats().rejected
    assert rejected["pending_bytes"] == 1 and rejected["bad_session_id"] == 2
    assert eventually(lambda: gateway.stats().connections == 0, 5)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.INFO), [
        r.getMessage() for r in caplog.records if r.exc_info
    ]
    assert [r.levelno for r in loud] == [logging.WARNING] * (len(frames) + len(answers)), [
        r.getMessage() for r in loud
    ]
