"""``send_dtmf`` in a cluster (real node processes, two gateway processes, a real Redis, the
Twilio emulator): the re-stream after the digits names the gateway the session's hop is on
now, whichever gateway the node's config names. An outbound and an inbound call placed on
the other gateway, a call taken over by another node, and a call whose gateway died and
moved it each take the digits and stream on: the session stays open and audio flows both
ways on the new stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from .nodes import (
    Cluster,
    GatewayProcess,
    NodeLog,
    NodeProcess,
    cluster,
    flowing,
    sessions_of,
    wait_owner,
)
from .redis_server import redis_server_binary

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)


def _stream_gateway(c: Cluster, call: str) -> str:
    """The public URL of the gateway the call's latest TwiML streams it to."""
    emulated = c.emulator.api.call(call)
    assert emulated is not None and emulated.documents
    url = emulated.documents[-1].split('url="', 1)[1].split('"', 1)[0]
    return url.removesuffix("/twilio")


def _call_on(c: Cluster, node: NodeProcess, gateway: GatewayProcess) -> tuple[str, str]:
    """An outbound call from ``node`` that the registry placed on ``gateway`` (least loaded:
    one of the first two calls), with audio flowing; (session id, call sid)."""
    for i in range(4):
        node.command(f"call +1555014{i}")
        node.wait_for(lambda log, i=i: len(log.sessions) > i, 10, f"outbound call {i}")
        sid, info = list(sessions_of(node).items())[-1]
        node.wait_for(flowing(sid, 5), 10, f"audio on {sid}")
        call = str(info["call"])
        if _stream_gateway(c, call) == gateway.public_url:
            return sid, call
    raise AssertionError(f"no call on {gateway.member_id} in 4")


def _dtmf_streams_on(
    c: Cluster, node: NodeProcess, sid: str, call: str, gateway: GatewayProcess, digits: str
) -> None:
    """``send_dtmf`` from ``node``: the call plays the digits, streams again to ``gateway``
    for the same session, and audio goes on both ways with the session open."""
    old = c.emulator.call_media(call)
    assert old is not None
    documents = len(c.emulator.api.call(call).documents)
    sent: list[float] = []

    def sent_now(log: NodeLog) -> list[float]:
        return [e["t"] for e in log.events if e.get("e") == "dtmf" and e["sid"] == sid]

    def done(log: NodeLog) -> bool:
        assert not [e for e in log.errors if e["op"] == "dtmf"], log.errors
        sent[:] = sent_now(log)
        return len(sent) > before

    with node.changed:
        before = len(sent_now(node.log))
    node.command(f"dtmf {sid} {digits}")
    node.wait_for(done, 10, "the DTMF sent")
    sent_at = sent[-1]

    def streams_on(log: NodeLog) -> bool:
        assert sid not in log.ends, log.ends.get(sid)  # the session ended: no re-stream
        after = [f for f in log.frames.get(sid, ()) if f.t > sent_at]
        media = c.emulator.call_media(call)
        return (
            len(after) >= 25
            and media is not None
            and media is not old
            and media.stream_sid != old.stream_sid
            and media.frames_received >= 10  # the node's echo reached the caller
        )

    node.wait_for(streams_on, 15, f"audio both ways on {sid} after the DTMF")
    with node.changed:
        first = next(f for f in node.log.frames[sid] if f.t > sent_at)
    took = (first.t - sent_at) * 1000
    print(f"\nsend_dtmf({digits!r}) answered -> audio on the new stream: {took:.0f} ms")
    emulated = c.emulator.api.call(call)
    assert emulated.dtmf_played[-1] == digits and emulated.status == "in-progress"
    assert len(emulated.documents) > documents
    assert _stream_gateway(c, call) == gateway.public_url  # the hop's gateway, not the config's
    assert sid not in node.log.ends


def test_a_call_on_another_gateway_than_the_configured_one_takes_dtmf_and_streams_on(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, nodes=1, gateways=2, capacity=4, configured_gateway=0) as c:
        node, other = c.nodes[0], c.gateways[1]
        sid, call = _call_on(c, node, other)
        _dtmf_streams_on(c, node, sid, call, other, "12")
        _dtmf_streams_on(c, node, sid, call, other, "3")  # and again, a credential of its own


def test_an_inbound_call_claimed_on_another_gateway_takes_dtmf_and_streams_on(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, nodes=2, gateways=2, capacity=4, configured_gateway=0) as c:
        other = c.gateways[1]
        for _ in range(4):  # claimed on either node, through the webhook of either
            call = c.dial_in()
            node, sid = wait_owner(c, call)
            node.wait_for(flowing(sid, 5), 10, f"audio on {sid}")
            if _stream_gateway(c, call) == other.public_url:
                break
        else:
            raise AssertionError(f"no inbound call on {other.member_id} in 4")
        _dtmf_streams_on(c, node, sid, call, other, "#")


def test_after_a_takeover_the_new_node_s_dtmf_streams_the_call_on_through_its_gateway(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, nodes=2, gateways=2, capacity=4, configured_gateway=0) as c:
        first, second = c.nodes
        other = c.gateways[1]
        sid, call = _call_on(c, first, other)
        first.kill()
        second.wait_for(lambda log: sid in log.sessions, 10, f"the takeover of {sid}")
        assert sessions_of(second)[sid]["resumed"] is True
        second.wait_for(flowing(sid, 10), 10, "audio after the takeover")
        _dtmf_streams_on(c, second, sid, call, other, "4")


def test_a_call_moved_by_a_gateway_s_death_takes_dtmf_on_the_gateway_it_moved_to(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, nodes=1, gateways=2, capacity=4, configured_gateway=0) as c:
        node = c.nodes[0]
        configured, other = c.gateways
        sid, call = _call_on(c, node, configured)
        documents = len(c.emulator.api.call(call).documents)
        configured.kill()

        def moved(log: NodeLog) -> bool:
            emulated = c.emulator.api.call(call)
            if len(emulated.documents) <= documents or _stream_gateway(c, call) != other.public_url:
                return False
            media = c.emulator.call_media(call)
            return media is not None and media.frames_received >= 5

        node.wait_for(moved, 15, "the call streamed again through the other gateway")
        _dtmf_streams_on(c, node, sid, call, other, "5")
