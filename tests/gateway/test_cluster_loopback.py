"""The gateway's cluster behaviour over real sockets: a call redirected here from a dead gateway
(fresh stream credential, a hop that resumes), lease-epoch fencing of connectors, stream
nonces bound to a gateway, and draining.

The provider side is a ``websockets`` client speaking Twilio's Media Streams; the session side
raw ``websocket-client`` connections, so that every handshake header is set by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import websocket as wsc

from actors.gateway.server import SESSION_FENCED, MediaGateway
from actors.signing import hop_token, stream_nonce, stream_token
from actors.wire.constants import EPOCH_HEADER, RECEIVED_HEADER, SENT_HEADER
from tests.gateway.sides import TwilioSide, dial_hop, gateway_config

pytestmark = pytest.mark.timeout(30)

SECRET = "cluster-gateway-secret"
ACCOUNT = "AC" + "2" * 32


@pytest.fixture
def gateway() -> Iterator[MediaGateway]:
    with MediaGateway(gateway_config(SECRET), gateway_id="gw-b") as gw:
        yield gw


class Provider(TwilioSide):
    """Twilio's side of one stream: its ``nonce`` (minted if omitted) and the one its token
    covers (``signed``: the same unless given)."""

    def __init__(
        self, gateway: MediaGateway, sid: str, nonce: str | None = None, signed: str | None = None
    ) -> None:
        nonce = stream_nonce(gateway.gateway_id) if nonce is None else nonce
        token = stream_token(SECRET, sid, nonce if signed is None else signed)
        super().__init__(gateway, ACCOUNT, {"session": sid, "token": token, "nonce": nonce})


def hop(gateway: MediaGateway, sid: str, resume_from: int = 0, **headers: int) -> wsc.WebSocket:
    """A session hop; ``epoch=``/``sent=`` add X-Session-Epoch / X-Session-Sent."""
    names = {"epoch": EPOCH_HEADER, "sent": SENT_HEADER}
    lines = [f"{names[k]}: {v}" for k, v in headers.items()]
    return dial_hop(gateway.url, sid, hop_token(SECRET, sid), resume_from, lines)


def received(ws: wsc.WebSocket) -> int:
    return int((ws.getheaders() or {})[RECEIVED_HEADER.lower()])


def close_code(ws: wsc.WebSocket) -> int | None:
    """Read up to the peer's close frame (skipping data); its code. The socket is closed."""
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == wsc.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big") if len(data) >= 2 else None
    finally:
        ws.shutdown()


def test_a_call_redirected_here_is_adopted_by_its_resuming_hop(gateway: MediaGateway) -> None:
    sid = "failover-1"
    provider = Provider(gateway, sid)  # the redirected stream, arriving first
    try:
        early = provider.begin() + provider.media(5)
        # The session had received 120 frames and sent 300 through the dead gateway.
        session = hop(gateway, sid, 120, epoch=1, sent=300)
        assert received(session) == 300  # not 4404; nothing asked again
        assert [session.recv() for _ in range(7)] == early  # from our first frame
        session.send("to-caller-1")
        assert provider.recv() == "to-caller-1"
        session.shutdown()  # the hop drops (no close frame); it comes back
        later = provider.media(3, first=5)
        again = hop(gateway, sid, 127, epoch=1, sent=301)
        assert received(again) == 301
        assert [again.recv() for _ in range(3)] == later  # exactly what it missed: no doubling
        stats = gateway.stats()
        assert (stats.lost_to_session, stats.rejected.get("unknown_call", 0)) == (0, 0)
        again.close()
    finally:
        provider.close()


def test_without_a_sent_count_the_adopting_gateway_asks_from_zero(gateway: MediaGateway) -> None:
    sid = "failover-2"
    provider = Provider(gateway, sid)
    try:
        provider.begin()
        session = hop(gateway, sid, 40, epoch=2)
        assert received(session) == 0  # the connector resends what its SentLog holds
        assert json.loads(session.recv())["event"] == "connected"
        session.close()
    finally:
        provider.close()


def test_old_credentials_are_refused_and_a_stream_pairs_once(gateway: MediaGateway) -> None:
    sid = "replay-1"
    forged = stream_nonce("gw-b")
    for stale, reason in (
        (Provider(gateway, sid, stream_nonce("gw-a")), "wrong_gateway"),  # for the dead one
        (Provider(gateway, sid, forged, signed=stream_nonce("gw-b")), "bad_token"),
    ):
        try:
            stale.begin()
            assert stale.wait_closed()[0] == 1008
            assert gateway.stats().rejected.get(reason, 0) == 1
        finally:
            stale.close()
    nonce = stream_nonce("gw-b")
    first = Provider(gateway, sid, nonce)
    try:
        first.begin()
        session = hop(gateway, sid)
        assert json.loads(session.recv())["event"] == "connected"
        replay = Provider(gateway, sid, nonce)  # the same credential again
        try:
            replay.begin()
            assert replay.wait_closed()[0] == 1008
            assert gateway.stats().rejected.get("duplicate_stream", 0) == 1
        finally:
            replay.close()
        session.close()  # the session ends the call...
        assert first.wait_closed()[0] == 1000
    finally:
        first.close()
    after = Provider(gateway, sid, nonce)  # ...and the credential is refused after its call
    try:
        after.begin()
        assert after.wait_closed()[0] == 1008
        assert gateway.stats().rejected.get("ended", 0) == 1
    finally:
        after.close()


def test_the_gateway_keeps_only_the_newest_connector(gateway: MediaGateway) -> None:
    sid = "fenced-1"
    provider = Provider(gateway, sid)
    try:
        provider.begin()
        old = hop(gateway, sid, epoch=1)
        assert [old.recv() for _ in range(2)]
        new = hop(gateway, sid, 2, epoch=2)  # another node took the session over
        assert close_code(old) == SESSION_FENCED
        stale = hop(gateway, sid, 2, epoch=1)  # the old node, still alive, redials
        assert close_code(stale) == SESSION_FENCED
        sent = provider.media(3)
        assert [new.recv() for _ in range(3)] == sent
        new.send("from-the-new-node")
        assert provider.recv() == "from-the-new-node"
        assert gateway.stats().rejected.get("stale_epoch", 0) == 1
        new.close()
    finally:
        provider.close()


def test_a_draining_gateway_takes_no_new_call_and_keeps_its_calls(gateway: MediaGateway) -> None:
    live = Provider(gateway, "drain-live")
    try:
        live.begin()
        session = hop(gateway, "drain-live")
        assert json.loads(session.recv())["event"] == "connected"
        gateway.drain()
        assert gateway.draining and gateway.calls_active == 1
        late = Provider(gateway, "drain-new")
        try:
            late.begin()
            code, reason = late.wait_closed()
            assert code == 1008 and "draining" in reason
        finally:
            late.close()
        sent = live.media(3)
        assert json.loads(session.recv())["event"] == "start"
        assert [session.recv() for _ in range(3)] == sent
        session.close()
        assert live.wait_closed()[0] == 1000
    finally:
        live.close()
