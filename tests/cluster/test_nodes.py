"""Runtime nodes as processes in a cluster (scripts/cluster_node.py), with standalone gateways,
the emulator and a Redis of the test's own: calls spread over the nodes by capacity, a
SIGKILLed node's calls go on elsewhere (``resumed``), Redis down and back, a drained node."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .nodes import Cluster, NodeLog, NodeProcess, cluster
from .redis_server import redis_server_binary

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)


def flowing(sid: str, at_least: int) -> object:
    return lambda log: len(log.frames.get(sid, ())) >= at_least


def sessions_of(node: NodeProcess) -> dict[str, dict[str, object]]:
    with node.changed:
        return dict(node.log.sessions)


def wait_owner(c: Cluster, call: str, timeout: float = 10.0) -> tuple[NodeProcess, str]:
    node0 = c.nodes[0]
    found: list[tuple[NodeProcess, str]] = []

    def check(_: NodeLog) -> bool:
        owner = c.owner_of(call)
        if owner is not None:
            found.append(owner)
        return owner is not None

    node0.wait_for(check, timeout, f"a session for {call}")
    return found[-1]


def test_inbound_calls_spread_and_a_killed_node_s_calls_resume_elsewhere(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=3, gateways=2, capacity=4) as c:
        calls = [c.dial_in(c.nodes[0]) for _ in range(6)]  # one load balancer target
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
