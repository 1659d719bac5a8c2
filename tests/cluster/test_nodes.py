"""Runtime nodes as processes in a cluster (scripts/cluster_node.py), with standalone gateways,
the emulator and a Redis of the test's own: calls spread over the nodes by capacity, a
SIGKILLed node's calls go on elsewhere (``resumed``), Redis down and back, a drained node."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from .nodes import NodeProcess, cluster, flowing, sessions_of, wait_owner
from .redis_server import redis_server_binary

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)


def test_inbound_calls_spread_and_a_killed_node_s_calls_resume_elsewhere(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=3, gateways=2, capacity=4) as c:
        calls = [c.dial_in() for _ in range(6)]  # through the balancer, to any node
        owners = {call: wait_owner(c, call) for call in calls}
        per_node = {n.node_id: sum(1 for o, _ in owners.values() if o is n) for n in c.nodes}
        assert sorted(per_node.values()) == [2, 2, 2], per_node  # least loaded first
        for node, sid in owners.values():
            node.wait_for(flowing(sid, 10), 10, f"audio on {sid}")
        victim = c.nodes[1]
        theirs = {call: sid for call, (n, sid) in owners.items() if n is victim}
        killed_at = time.monotonic()
        victim.kill()  # its reader has parsed every line it printed before it died
        last_seen = {sid: victim.frames(sid)[-1].seq for sid in theirs.values()}
        for call, sid in theirs.items():
            node, new_sid = wait_owner(c, call)
            assert new_sid == sid and node is not victim
            info = sessions_of(node)[sid]
            assert info["resumed"] is True
            node.wait_for(flowing(sid, 10), 10, f"audio on the resumed {sid}")
            first = node.frames(sid)[0]
            lost = first.seq - last_seen[sid] - 1
            print(
                f"takeover of {sid}: audio again {1000 * (first.t - killed_at):.0f} ms after the "
                f"kill; frames lost {max(0, lost)}, delivered twice {max(0, -lost)}"
            )
            assert lost <= 0, f"{lost} frames lost on takeover"
        for call in calls:  # every call is still up on the emulator
            media = c.emulator.call_media(call)
            assert media is not None and not media.ended.is_set()


def _frames_grow(node: NodeProcess, sid: str, by: int, timeout: float = 10.0) -> None:
    start = len(node.frames(sid))
    node.wait_for(flowing(sid, start + by), timeout, f"{by} more frames on {sid}")


def test_redis_down_running_calls_go_on_new_calls_fail_fast_then_resume(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4) as c:
        call = c.dial_in()
        node, sid = wait_owner(c, call)
        node.wait_for(flowing(sid, 10), 10, "audio")
        c.redis.kill()
        _frames_grow(node, sid, 50)  # a second of audio with no Redis at all
        # New calls: outbound fails fast with ClusterUnavailable, inbound gets the busy answer.
        node.command("call +15550111")
        node.wait_for(lambda log: any(e["op"] == "call" for e in log.errors), 5, "refused")
        with node.changed:
            error = next(e for e in node.log.errors if e["op"] == "call")["error"]
        assert error.startswith("ClusterUnavailable"), error
        refused = c.dial_in()
        ended = c.emulator.wait_ended(refused, 10)
        assert ended.status == "busy"
        c.redis.start()  # empty: the nodes register again and restore their leases
        _frames_grow(node, sid, 25)
        again = c.dial_in()
        owner, new_sid = wait_owner(c, again, 15)
        owner.wait_for(flowing(new_sid, 10), 10, "audio on the call after Redis came back")
        _frames_grow(node, sid, 10)
        assert c.owner_of(call) == (node, sid)  # never taken over meanwhile


def test_a_drained_node_finishes_its_calls_and_takes_no_new_one(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4) as c:
        first = [c.dial_in() for _ in range(2)]
        owners = [wait_owner(c, call) for call in first]
        drained = c.nodes[1]
        assert any(node is drained for node, _ in owners)
        drained.command("drain")
        drained.wait_for(lambda log: any(e["e"] == "draining" for e in log.events), 5, "draining")
        later = [c.dial_in() for _ in range(3)]  # its own webhook gets some of them
        for call in later:
            node, _ = wait_owner(c, call)
            assert node is not drained
        for node, sid in owners:  # the drained node's call goes on
            _frames_grow(node, sid, 25)
        drained.command("call +15550112")
        drained.wait_for(lambda log: any(e["op"] == "call" for e in log.errors), 5, "refused")
        assert "Draining" in drained.log.errors[-1]["error"]


def test_outbound_calls_are_leased_and_spread_over_the_gateways(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=2, gateways=2, capacity=4) as c:
        node = c.nodes[0]
        sids: list[str] = []
        for i in range(4):
            node.command(f"call +1555012{i}")
            node.wait_for(lambda log, i=i: len(log.sessions) > i, 10, f"outbound call {i}")
            sid = list(sessions_of(node))[-1]
            node.wait_for(flowing(sid, 5), 10, "audio")
            sids.append(sid)
        streams = set()
        for info in sessions_of(node).values():
            call = c.emulator.api.call(str(info["call"]))
            assert call is not None and call.twiml is not None
            streams.add(call.twiml.split('url="', 1)[1].split('"', 1)[0])
        assert len(streams) == 2, streams  # the least-loaded gateway each time
        node.kill()  # outbound calls are taken over like inbound ones
        for sid in sids:
            other = c.nodes[1]
            other.wait_for(lambda log, s=sid: s in log.sessions, 10, f"takeover of {sid}")
            assert sessions_of(other)[sid]["resumed"] is True
            assert sessions_of(other)[sid]["dir"] == "outbound"
            other.wait_for(flowing(sid, 10), 10, "audio after the takeover")


def test_a_killed_gateway_s_calls_go_on_through_the_other(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=2, gateways=2, capacity=4) as c:
        calls = [c.dial_in() for _ in range(4)]
        owners = {call: wait_owner(c, call) for call in calls}
        for node, sid in owners.values():
            node.wait_for(flowing(sid, 10), 10, "audio")
        victim = c.gateways[0]
        victim_url = victim.output[1].split()[4].split("/sessions")[0]
        on_victim = [
            call
            for call in calls
            if victim_url.replace("ws://", "") in (c.emulator.api.call(call).documents[-1])
        ]
        assert on_victim, "the calls went to one gateway only"
        killed_at = time.monotonic()
        victim.kill()
        for call in calls:
            node, sid = owners[call]
            _frames_grow(node, sid, 25, 15)
            frames = node.frames(sid)
            gap = max(b.t - a.t for a, b in itertools.pairwise(frames))
            print(
                f"call {call}: longest gap {gap * 1000:.0f} ms (gateway killed at {killed_at:.1f})"
            )
        for call in on_victim:
            assert len(c.emulator.api.call(call).documents) >= 2  # streamed again


def test_an_outbound_call_survives_its_gateway(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=1, gateways=2, capacity=4) as c:
        node = c.nodes[0]
        node.command("call +15550130")
        node.wait_for(lambda log: len(log.sessions) == 1, 10, "the outbound call")
        sid, info = next(iter(sessions_of(node).items()))
        node.wait_for(flowing(sid, 10), 10, "audio")
        twiml = c.emulator.api.call(str(info["call"])).twiml or ""
        assert "reattach=" in twiml
        victim = next(g for g in c.gateways if g.output[2].split()[4].rsplit("/", 1)[0] in twiml)
        victim.kill()
        _frames_grow(node, sid, 25, 15)


def test_a_frozen_node_loses_its_call_to_another_and_lets_it_go_without_hanging_up(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4) as c:
        call = c.dial_in()
        frozen, sid = wait_owner(c, call)
        frozen.wait_for(flowing(sid, 10), 10, "audio")
        other = next(n for n in c.nodes if n is not frozen)
        assert frozen.pid is not None
        os.kill(frozen.pid, signal.SIGSTOP)  # alive, but silent: its lease expires
        try:
            other.wait_for(lambda log: sid in log.sessions, 10, "the takeover")
            other.wait_for(flowing(sid, 10), 10, "audio on the new node")
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        frozen.wait_for(lambda log: sid in log.ends, 10, "the quiet end on the old node")
        _frames_grow(other, sid, 25)  # the call goes on: the old node did not hang it up
        emulated = c.emulator.api.call(call)
        assert emulated is not None and emulated.status == "in-progress"
