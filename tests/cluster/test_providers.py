"""The cluster with each provider whose calls go through the gateway (Telnyx, Plivo, Vonage,
Exotel), as tests/cluster/test_nodes.py shows it for Twilio: runtime nodes as processes, a
standalone gateway, a Redis of the test's own and the provider's emulator, shared by the nodes.

A node SIGKILLed mid-call: another takes the call over (``accept_session(resumed=True)``, its
metadata and saved state), and the audio goes on both ways, with no frame the gateway held
lost (the frames' numbers on both nodes say so). A gateway SIGKILLed mid-call: the call goes
on through the other, each provider brought back its own way; Exotel's call cannot be, and
its session ends at once, saying so.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from .nodes import (
    GatewayProcess,
    NodeLog,
    NodeProcess,
    cluster,
    flowing,
    sessions_of,
    wait_owner,
)
from .redis_server import redis_server_binary
from .telephony import PROVIDERS, heard

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)


def _one_session(log: NodeLog) -> bool:
    return len(log.sessions) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_killed_node_s_call_is_taken_over_and_goes_on_both_ways(
    tmp_path: Path, provider: str
) -> None:
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4, provider=provider) as c:
        phone = c.telephony
        assert phone is not None
        node, other = c.nodes
        node.command(f"call +15550140 {provider}")
        node.wait_for(_one_session, 15, f"the outbound {provider} call")
        sid, info = next(iter(sessions_of(node).items()))
        call = str(info["call"])
        node.wait_for(flowing(sid, 60), 15, "audio")  # the state is saved every 50 frames
        assert info["provider"] == provider
        killed_at = time.monotonic()
        node.kill()
        last = node.frames(sid)[-1].seq
        before = heard(phone, call)
        other.wait_for(lambda log: sid in log.sessions, 10, f"the takeover of {sid}")
        taken = sessions_of(other)[sid]
        assert taken["resumed"] is True
        assert taken["dir"] == "outbound" and taken["provider"] == provider
        assert taken["call"] == call
        assert json.loads(str(taken["state"]))["frames"] >= 50  # what the dead node saved
        other.wait_for(flowing(sid, 25), 10, "audio on the new node")
        first = other.frames(sid)[0]
        lost = first.seq - last - 1
        print(
            f"{provider} takeover of {sid}: audio again {1000 * (first.t - killed_at):.0f} ms "
            f"after the kill; frames lost {max(0, lost)}, delivered twice {max(0, -lost)}"
        )
        assert lost <= 0, f"{lost} frames lost on takeover"
        numbers = [f.seq for f in other.frames(sid)]
        distinct = list(dict.fromkeys(numbers))  # Exotel's frames carry several 20 ms each
        assert numbers == sorted(numbers)
        assert distinct == list(range(numbers[0], numbers[0] + len(distinct)))  # none missing
        deadline = time.monotonic() + 10  # the new node's echo reaches the phone
        while heard(phone, call) < before + 4000 and time.monotonic() < deadline:
            other.wait_for(flowing(sid, len(other.frames(sid)) + 5), 5, "more audio")
        assert heard(phone, call) >= before + 4000, "no audio played since the takeover"
        assert phone.up(call)


@pytest.mark.parametrize("provider", ("telnyx", "plivo", "vonage"))
def test_inbound_calls_are_claimed_across_nodes_and_a_killed_node_s_call_resumes(
    tmp_path: Path, provider: str
) -> None:
    """Every call's webhook lands on one node; the cluster claims each for the least-loaded
    node, whose ``accept_session`` gets it (answered by the node that took the webhook, with
    the provider's own document); a killed node's call is taken over, inbound still, with
    nothing lost."""
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4, provider=provider) as c:
        phone = c.telephony
        assert phone is not None
        victim = c.nodes[0]
        c.balancer.only = c.nodes[1]  # which answers every webhook, for both nodes
        calls = [phone.dial_in(c.balancer.url, "+15550100", f"+1555017{i}") for i in range(4)]
        owners = {call: wait_owner(c, call, timeout=15.0) for call in calls}
        per_node = sorted(sum(1 for n, _ in owners.values() if n is node) for node in c.nodes)
        assert per_node == [2, 2], per_node  # least loaded first, wherever the webhook went
        for node, sid in owners.values():
            node.wait_for(flowing(sid, 30), 15, f"audio on {sid}")
            assert sessions_of(node)[sid]["dir"] == "inbound"
        theirs = {call: sid for call, (n, sid) in owners.items() if n is victim}
        victim.kill()
        last = {sid: victim.frames(sid)[-1].seq for sid in theirs.values()}
        for call, sid in theirs.items():
            node, again = wait_owner(c, call, timeout=15.0)
            assert again == sid and node is not victim
            assert sessions_of(node)[sid]["resumed"] is True
            assert sessions_of(node)[sid]["dir"] == "inbound"
            node.wait_for(flowing(sid, 25), 10, f"audio on the resumed {sid}")
            lost = node.frames(sid)[0].seq - last[sid] - 1
            assert lost <= 0, f"{lost} frames lost on the takeover of an inbound {provider} call"
        for call in calls:
            assert phone.up(call)


def _public_url(gateway: GatewayProcess) -> str:
    line = next(line for line in gateway.output if "providers dial" in line)
    return line.split("providers dial ", 1)[1].rsplit("/", 1)[0]


def _frames_grow(node: NodeProcess, sid: str, by: int, timeout: float) -> None:
    start = len(node.frames(sid))
    node.wait_for(flowing(sid, start + by), timeout, f"{by} more frames on {sid}")


@pytest.mark.parametrize("provider", ("telnyx", "plivo", "vonage"))
def test_a_killed_gateway_s_call_goes_on_through_the_other(tmp_path: Path, provider: str) -> None:
    """Telnyx: Call Control's ``streaming.stopped`` answered with ``streaming_start`` over
    REST; Plivo: the ``<Redirect>`` after ``<Stream keepCallAlive>``; Vonage: the websocket's
    ``disconnected`` event answered with a new NCCO (a synchronous ``eventUrl``)."""
    with cluster(tmp_path, nodes=1, gateways=2, capacity=4, provider=provider) as c:
        phone = c.telephony
        assert phone is not None
        node = c.nodes[0]
        node.command(f"call +15550150 {provider}")
        node.wait_for(_one_session, 15, f"the outbound {provider} call")
        sid, info = next(iter(sessions_of(node).items()))
        call = str(info["call"])
        node.wait_for(flowing(sid, 25), 15, "audio")
        victim = next(g for g in c.gateways if phone.streams_to(call).startswith(_public_url(g)))
        killed_at = time.monotonic()
        victim.kill()
        _frames_grow(node, sid, 50, 20)  # a second of audio through the other gateway
        assert not phone.streams_to(call).startswith(_public_url(victim))
        after = [f for f in node.frames(sid) if f.t >= killed_at - 0.2]
        gap = max(b.t - a.t for a, b in itertools.pairwise(after))
        print(f"{provider} call {call}: gateway killed, longest gap in audio {gap * 1000:.0f} ms")
        assert phone.up(call)
        assert sid not in node.log.ends


def test_an_exotel_call_whose_gateway_dies_ends_cleanly(tmp_path: Path) -> None:
    """Exotel streams a call to one URL, and when that stream closes "the call flow [goes
    on] to the next applet" (Exotel's AgentStream best practices); a call placed with
    Calls/connect has none, so it ends. No Exotel API streams a live call again: the session
    ends with ``gateway lost`` once its gateway has left the registry, instead of redialling
    a gateway that is gone until the resume window runs out."""
    with cluster(tmp_path, nodes=1, gateways=2, capacity=4, provider="exotel") as c:
        phone = c.telephony
        assert phone is not None
        node = c.nodes[0]
        node.command("call +15550160 exotel")
        node.wait_for(_one_session, 15, "the outbound exotel call")
        sid, info = next(iter(sessions_of(node).items()))
        call = str(info["call"])
        node.wait_for(flowing(sid, 25), 15, "audio")
        victim = next(g for g in c.gateways if phone.streams_to(call).startswith(_public_url(g)))
        killed_at = time.monotonic()
        victim.kill()
        node.wait_for(lambda log: sid in log.ends, 8, "the session's end")
        took = time.monotonic() - killed_at
        with node.changed:
            end = node.log.ends[sid]
        print(f"exotel call {call}: gateway killed, session ended in {took * 1000:.0f} ms")
        assert end["reason"] == "gateway lost", end
        assert not phone.up(call)  # the stream's end ended the call at Exotel


@pytest.mark.parametrize("provider", ("telnyx", "plivo", "vonage"))
def test_an_inbound_call_survives_its_gateway(tmp_path: Path, provider: str) -> None:
    """The answer's way back, per provider: TeXML's ``<Redirect>`` after ``<Connect>``, Plivo's
    ``<Redirect>`` after ``<Stream keepCallAlive>``, Vonage's synchronous ``eventUrl``; any
    node answers it with the call streamed to the other gateway, for the same session."""
    with cluster(tmp_path, nodes=1, gateways=2, capacity=4, provider=provider) as c:
        phone = c.telephony
        assert phone is not None
        call = phone.dial_in(c.balancer.url, "+15550100", "+15550181")
        node, sid = wait_owner(c, call, timeout=15.0)
        node.wait_for(flowing(sid, 25), 15, "audio")
        victim = next(g for g in c.gateways if phone.streams_to(call).startswith(_public_url(g)))
        killed_at = time.monotonic()
        victim.kill()
        _frames_grow(node, sid, 50, 20)
        assert not phone.streams_to(call).startswith(_public_url(victim))
        after = [f for f in node.frames(sid) if f.t >= killed_at - 0.2]
        gap = max(b.t - a.t for a, b in itertools.pairwise(after))
        print(f"inbound {provider} call {call}: gateway killed, longest gap {gap * 1000:.0f} ms")
        assert phone.up(call)


def test_a_plivo_call_placed_on_one_node_is_answered_by_another(tmp_path: Path) -> None:
    """Plivo asks the answer URL of a call we placed once it is picked up: behind a
    balancer that may be any node, not the one that placed it and expects the answer. That
    node makes the answer from the gateway the (signed) URL names."""
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4, provider="plivo") as c:
        placing, answering = c.nodes
        c.balancer.only = answering
        placing.command("call +15550170 plivo")
        placing.wait_for(_one_session, 15, "the outbound plivo call")
        sid = next(iter(sessions_of(placing)))
        placing.wait_for(flowing(sid, 25), 15, "audio through the other node's answer")
        assert not sessions_of(answering)


def test_exotel_status_urls_of_one_node_are_good_on_every_node(tmp_path: Path) -> None:
    """An Exotel call's StatusCallback carries a capability minted under a per-provider key;
    in a cluster every node derives the same key from the secret they share, since any node
    may get the callback (out of a cluster, the key is random per process)."""
    from actors.config import load_config  # noqa: PLC0415
    from actors.embedded import _provider_keys  # noqa: PLC0415

    def keys(cluster: bool) -> str:
        path = tmp_path / "node.yaml"
        path.write_text(
            'gateway: {embedded: false, url: "ws://127.0.0.1:9", secret: "s' + "x" * 31 + '"}\n'
            "providers:\n"
            '  exotel: {type: exotel, account_sid: "acc", api_key: "k", api_token: "t"}\n'
            + ('cluster: {redis_url: "redis://127.0.0.1:9"}\n' if cluster else "")
        )
        return _provider_keys(load_config(path)).exotel["exotel"]

    assert keys(cluster=True) == keys(cluster=True)
    assert keys(cluster=False) != keys(cluster=False)
