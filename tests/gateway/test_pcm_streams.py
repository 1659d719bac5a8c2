"""The gateway's ``/vonage`` and ``/exotel`` paths over real sockets: pairing by the stream
token in Vonage's ``websocket:connected`` headers and in Exotel's URL query or ``start``,
every frame relayed unchanged both ways (Vonage's binary frames as binary), a dropped session
hop resumed with nothing lost, and Exotel's Basic auth checked at the handshake."""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import Iterator

import pytest
import websocket as wsc
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from actors.codecs.exotel import ExotelStream
from actors.codecs.vonage import VonageSocket
from actors.gateway.server import MediaGateway
from actors.gateway.streams import STREAM_KINDS
from actors.signing import hop_token, stream_token
from tests.gateway.sides import dial_hop, gateway_config

SECRET = "test-gateway-secret"


@pytest.fixture
def gateway() -> Iterator[MediaGateway]:
    with MediaGateway(gateway_config(SECRET)) as gw:
        yield gw


def hop(gateway: MediaGateway, sid: str, resume_from: int = 0) -> wsc.WebSocket:
    return dial_hop(gateway.url, sid, hop_token(SECRET, sid), resume_from)


def recv(ws: wsc.WebSocket) -> str | bytes:
    opcode, data = ws.recv_data()
    return data if opcode == wsc.ABNF.OPCODE_BINARY else data.decode()


@contextlib.contextmanager
def provider(url: str, **headers: str) -> Iterator[ClientConnection]:
    with connect(url, open_timeout=5, additional_headers=headers) as ws:
        yield ws


def test_a_vonage_stream_pairs_by_its_headers_and_binary_stays_binary(
    gateway: MediaGateway,
) -> None:
    sid = "vonage-relay"
    socket_ = VonageSocket(16000, {"session": sid, "token": stream_token(SECRET, sid)})
    session = hop(gateway, sid)
    try:
        with provider(gateway.public_url + "/vonage") as ws:
            ws.send(socket_.connected())
            audio = [bytes([i]) * 640 for i in range(30)]
            for frame in audio:
                ws.send(frame)
            ws.send(socket_.dtmf("9"))
            got = [recv(session) for _ in range(32)]
            assert got[0] == socket_.connected()
            assert got[1:31] == audio  # bytes, as sent: relayed as binary frames
            assert got[31] == socket_.dtmf("9")
            outbound: list[str | bytes] = [bytes([7]) * 640, '{"action":"clear"}', b"\x01" * 640]
            for frame in outbound:
                if isinstance(frame, bytes):
                    session.send_binary(frame)
                else:
                    session.send(frame)
            assert [ws.recv(timeout=5) for _ in outbound] == outbound
    finally:
        session.close()
    assert gateway.stats().pairings == 1


def test_an_exotel_stream_pairs_by_its_url_query(gateway: MediaGateway) -> None:
    sid = "exotel-relay"
    stream = ExotelStream("ST1", "CA1", "acct")  # no custom parameters in its start
    session = hop(gateway, sid)
    try:
        query = f"?sample-rate=8000&session={sid}&token={stream_token(SECRET, sid)}"
        with provider(gateway.public_url + "/exotel" + query) as ws:
            opening = [stream.connected(), stream.start()]
            for frame in opening:
                ws.send(frame)
            assert [recv(session) for _ in opening] == opening  # paired: the budget is lifted
            sent = [stream.media(bytes(3200), i * 100) for i in range(5)]
            for frame in sent:
                ws.send(frame)
            assert [recv(session) for _ in sent] == sent
            mark = '{"event":"mark","stream_sid":"ST1","mark":{"name":"m"}}'
            session.send(mark)
            assert ws.recv(timeout=5) == mark
    finally:
        session.close()


def test_an_exotel_stream_without_its_basic_credentials_is_refused() -> None:
    cfg = gateway_config(SECRET, exotel_username="exo", exotel_password="pa:ss")
    with MediaGateway(cfg) as gw:
        sid = "exotel-auth"
        parameters = {"session": sid, "token": stream_token(SECRET, sid)}
        stream = ExotelStream("ST2", "CA2", "acct", custom_parameters=parameters)
        for wrong in (None, "Basic " + base64.b64encode(b"exo:nope").decode(), "Bearer x"):
            headers = {} if wrong is None else {"Authorization": wrong}
            with (
                pytest.raises(InvalidStatus) as refused,
                provider(gw.public_url + "/exotel", **headers),
            ):
                pass
            assert refused.value.response.status_code == 401
        assert gw.stats().rejected["bad_basic_auth"] == 3
        right = "Basic " + base64.b64encode(b"exo:pa:ss").decode()
        session = hop(gw, sid)
        try:
            with provider(gw.public_url + "/exotel", Authorization=right) as ws:
                ws.send(stream.connected())
                ws.send(stream.start())
                assert recv(session) == stream.connected()
                assert gw.stats().pairings == 1
        finally:
            session.close()


def test_a_dropped_hop_resumes_a_vonage_stream_with_nothing_lost(gateway: MediaGateway) -> None:
    sid = "vonage-resume"
    socket_ = VonageSocket(8000, {"session": sid, "token": stream_token(SECRET, sid)})
    first = hop(gateway, sid)
    with provider(gateway.public_url + "/vonage") as ws:
        ws.send(socket_.connected())
        audio = [bytes([i]) * 320 for i in range(40)]
        for frame in audio[:20]:
            ws.send(frame)
        got = [recv(first) for _ in range(11)]  # connected + 10 frames, then the hop dies
        assert first.sock is not None
        first.sock.shutdown(socket.SHUT_RDWR)
        first.shutdown()
        for frame in audio[20:]:
            ws.send(frame)
        second = hop(gateway, sid, resume_from=len(got))
        try:
            rest = [recv(second) for _ in range(41 - len(got))]
        finally:
            second.close()
    assert got + rest == [socket_.connected(), *audio]  # nothing lost, nothing doubled
    assert gateway.stats().resumes == 1


def test_the_stream_table_reads_each_providers_first_frames() -> None:
    vonage, exotel = STREAM_KINDS["vonage"], STREAM_KINDS["exotel"]
    connected = VonageSocket(16000, {"session": "s", "token": "t", "n": 1}).connected()
    assert vonage.parameters(connected) == {"session": "s", "token": "t"}  # strings only
    assert vonage.parameters('{"event":"websocket:dtmf"}') is None
    with pytest.raises(ValueError, match="binary frame"):
        vonage.parameters(b"\x00" * 640)
    stream = ExotelStream("S", "C", "A", custom_parameters={"session": "s", "token": "t"})
    assert exotel.parameters(stream.connected()) is None
    assert exotel.parameters(stream.start()) == {"session": "s", "token": "t"}
    assert exotel.query_parameters and exotel.exotel_basic_auth
    with pytest.raises(ValueError, match="non-JSON"):
        exotel.parameters("{nope")
