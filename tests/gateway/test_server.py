"""The media gateway over real sockets: pairing, auth, relay, resume and its ends.

The provider side is played by a ``websockets`` client speaking Twilio's Media Streams (frames
built by :class:`TwilioStream`); the session side by raw ``websocket-client`` connections, so
that the resume headers are driven by hand.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import websocket as wsc
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from actors.config import GatewayConfig
from actors.gateway.server import MediaGateway
from actors.signing import hop_token, stream_token, twilio_signature
from tests.gateway.sides import TwilioSide, dial_hop, gateway_config

SECRET = "test-gateway-secret"
ACCOUNT = "AC" + "1" * 32


def config(**overrides: object) -> GatewayConfig:
    return gateway_config(SECRET, **{"buffer_frames": 1000, **overrides})


@pytest.fixture
def gateway() -> Iterator[MediaGateway]:
    with MediaGateway(config()) as gw:
        yield gw


class Provider(TwilioSide):
    """Twilio's side of one stream, its start carrying the session and ``token`` (by default
    the session's own)."""

    def __init__(self, gateway: MediaGateway, session_id: str, token: str | None = None) -> None:
        token = token if token is not None else stream_token(SECRET, session_id)
        super().__init__(gateway, ACCOUNT, {"session": session_id, "token": token})


def hop(
    gateway: MediaGateway, session_id: str, *, resume_from: int = 0, token: str | None = None
) -> wsc.WebSocket:
    """A session hop, as a connector makes it."""
    token = token if token is not None else hop_token(SECRET, session_id)
    return dial_hop(gateway.url, session_id, token, resume_from)


def received_header(ws: wsc.WebSocket) -> int:
    return int((ws.getheaders() or {})["x-gateway-received"])


def read_until_close(ws: wsc.WebSocket) -> tuple[list[str], int | None]:
    """Every frame up to the peer's close frame, and its code; the socket is closed after."""
    frames: list[str] = []
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == wsc.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                return frames, code
            frames.append(data.decode())
    finally:
        ws.shutdown()  # close() does nothing once a close frame has been received


def drop(ws: wsc.WebSocket) -> None:
    """Cut a hop the way a crash or a network fault does: no close frame."""
    assert ws.sock is not None
    ws.sock.shutdown(socket.SHUT_RDWR)
    ws.shutdown()


def test_relays_both_ways_in_order_and_unchanged(gateway: MediaGateway) -> None:
    sid = "session-relay"
    session = hop(gateway, sid)
    assert received_header(session) == 0
    provider = Provider(gateway, sid)
    try:
        provider.begin()
        sent = provider.media(50)
        got = [session.recv() for _ in range(52)]
        assert json.loads(got[0])["event"] == "connected"
        assert json.loads(got[1])["event"] == "start"
        assert got[2:] == sent  # byte for byte, in order
        outbound = [
            json.dumps({"event": "mark", "streamSid": "x", "mark": {"name": str(i)}})
            for i in range(3)
        ]
        outbound.append(json.dumps({"event": "clear", "streamSid": "x"}))
        for frame in outbound:
            session.send(frame)
        assert [provider.recv() for _ in outbound] == outbound
    finally:
        session.close()
        provider.close()


def test_session_frames_wait_for_the_provider_stream(gateway: MediaGateway) -> None:
    sid = "session-early"
    session = hop(gateway, sid)
    try:
        early = [json.dumps({"event": "media", "n": i}) for i in range(5)]
        for frame in early:
            session.send(frame)
        provider = Provider(gateway, sid)
        provider.begin()
        assert [provider.recv() for _ in early] == early
        provider.close()
    finally:
        session.close()


def test_provider_first_then_session_gets_everything(gateway: MediaGateway) -> None:
    sid = "session-late"
    provider = Provider(gateway, sid)
    try:
        provider.begin()
        sent = provider.media(20)
        session = hop(gateway, sid)
        got = [session.recv() for _ in range(22)]
        assert got[2:] == sent
        session.close()
    finally:
        provider.close()


def test_a_session_hop_without_a_valid_token_is_refused(gateway: MediaGateway) -> None:
    tokens = (
        "",
        "wrong",
        hop_token("other-secret", "s1"),
        hop_token(SECRET, "s2"),
        stream_token(SECRET, "s1"),  # the TwiML's token opens no session hop
    )
    for token in tokens:
        with pytest.raises(wsc.WebSocketBadStatusException) as info:
            hop(gateway, "s1", token=token)
        assert info.value.status_code == 403
    assert gateway.stats().rejected["bad_token"] == len(tokens)


def test_a_provider_stream_with_a_bad_token_is_closed_and_others_go_on(
    gateway: MediaGateway,
) -> None:
    good = hop(gateway, "good")
    healthy = Provider(gateway, "good")
    bad = Provider(gateway, "victim", token="forged")
    try:
        healthy.begin()
        bad.begin()
        assert bad.wait_closed() == (1008, "session victim: invalid token")
        sent = healthy.media(10)
        assert [good.recv() for _ in range(12)][2:] == sent
    finally:
        good.close()
        healthy.close()


def test_a_second_provider_stream_for_a_session_is_refused(gateway: MediaGateway) -> None:
    session = hop(gateway, "dup")
    first, second = Provider(gateway, "dup"), Provider(gateway, "dup")
    try:
        first.begin()
        assert json.loads(session.recv())["event"] == "connected"
        second.begin()
        code, reason = second.wait_closed()
        assert code == 1008
        assert "already has a provider stream" in reason
        sent = first.media(3)  # the first stream is untouched
        session.recv()  # start
        assert [session.recv() for _ in range(3)] == sent
    finally:
        session.close()
        first.close()


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ("not json", 1007, "non-JSON"),
        ("[1, 2]", 1007, "event object"),
        (b"\x00\x01", 1007, "binary"),
        (json.dumps({"event": "start", "start": {"customParameters": {}}}), 1008, "no session"),
    ],
)
def test_garbage_before_start_is_refused_with_a_clear_code(
    gateway: MediaGateway, frame: str | bytes, code: int, words: str
) -> None:
    with connect(gateway.url + "/twilio", open_timeout=5) as ws:
        ws.send(frame)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == code
        assert words in (ws.close_reason or "")


def test_unknown_paths_are_refused(gateway: MediaGateway) -> None:
    for path in ("/sinch", "/"):
        with pytest.raises(InvalidStatus) as info, connect(gateway.url + path, open_timeout=5):
            pass
        assert info.value.response.status_code == 404


def test_a_dropped_hop_resumes_with_every_frame_exactly_once(gateway: MediaGateway) -> None:
    sid = "session-resume"
    provider = Provider(gateway, sid)
    first = hop(gateway, sid)
    try:
        provider.begin()
        sent = [*provider.media(30)]
        got = [first.recv() for _ in range(12)]  # connected, start, 10 media
        for i in range(7):  # and the session sends some of its own
            first.send(json.dumps({"event": "media", "n": i}))
        outbound = [provider.recv() for _ in range(7)]
        drop(first)
        sent += provider.media(30)  # the call goes on while the hop is away
        second = hop(gateway, sid, resume_from=len(got))
        assert received_header(second) == 7  # so the session resends nothing it sent
        rest = [second.recv() for _ in range(62 - len(got))]
        assert got[2:] + rest == sent  # nothing lost, nothing twice
        second.send(json.dumps({"event": "media", "n": 7}))
        outbound.append(provider.recv())
        assert [json.loads(f)["n"] for f in outbound] == list(range(8))
        assert gateway.stats().resumes == 1
        second.close()
    finally:
        provider.close()


def test_a_hop_that_stays_away_past_the_resume_window_ends_the_stream() -> None:
    with MediaGateway(config(resume_window_s=0.3)) as gateway:
        provider = Provider(gateway, "gone")
        session = hop(gateway, "gone")
        provider.begin()
        session.recv()
        drop(session)
        code, reason = provider.wait_closed()
        assert code == 1001
        assert "did not return within 0.3 s" in reason
        assert gateway.stats().expired == 1
        # A hop that comes back now finds the call over.
        late = hop(gateway, "gone", resume_from=1)
        assert read_until_close(late) == ([], 1000)
        late.close()


def test_a_session_that_closes_normally_ends_the_provider_stream(gateway: MediaGateway) -> None:
    provider = Provider(gateway, "bye")
    session = hop(gateway, "bye")
    provider.begin()
    session.recv()
    session.close(status=1000)
    assert provider.wait_closed() == (1000, "session ended")


def test_a_provider_that_ends_is_relayed_to_its_last_frame_then_closed(
    gateway: MediaGateway,
) -> None:
    provider = Provider(gateway, "hangup")
    session = hop(gateway, "hangup")
    provider.begin()
    sent = provider.media(5)
    provider.ws.send(provider.stream.stop())
    provider.close()
    frames, code = read_until_close(session)
    assert frames[2:7] == sent
    assert json.loads(frames[-1])["event"] == "stop"
    assert code == 1000
    session.close()


def test_a_session_waiting_for_a_provider_stream_gives_up() -> None:
    with MediaGateway(config(pair_timeout_s=0.3)) as gateway:
        session = hop(gateway, "lonely")
        frames, code = read_until_close(session)
        assert (frames, code) == ([], 1008)
        session.close()


def test_twilio_signatures_are_checked_when_configured() -> None:
    with MediaGateway(config(twilio_auth_token="twilio-auth")) as gateway:
        url = gateway.public_url + "/twilio"
        with pytest.raises(InvalidStatus) as info, connect(url, open_timeout=5):
            pass
        assert info.value.response.status_code == 403
        forged = {"X-Twilio-Signature": twilio_signature("other", url)}
        with pytest.raises(InvalidStatus), connect(url, additional_headers=forged, open_timeout=5):
            pass
        signed = {"X-Twilio-Signature": twilio_signature("twilio-auth", url)}
        with connect(url, additional_headers=signed, open_timeout=5) as ws:
            ws.send("{}")  # accepted: then refused as garbage, which proves it was let in
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        assert gateway.stats().rejected["bad_signature"] == 2


def test_the_standalone_gateway_needs_a_secret() -> None:
    with pytest.raises(ValueError, match=r"gateway\.secret"):
        MediaGateway(GatewayConfig(embedded=False))


def test_a_hop_resuming_a_call_the_gateway_never_saw_is_told_so(gateway: MediaGateway) -> None:
    """What a session meets after its gateway restarted: a clear end, not a wait."""
    session = hop(gateway, "from-before", resume_from=40)
    frames, code = read_until_close(session)
    assert (frames, code) == ([], 4404)
    assert gateway.stats().rejected["unknown_call"] == 1
