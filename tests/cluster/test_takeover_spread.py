"""A dead node's calls spread over the survivors by free capacity (real node processes, a real
Redis): each survivor takes its share at its own scan, not the first to scan all of them;
every call is taken over exactly once and no frame the gateway held is lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .nodes import cluster, flowing, sessions_of, wait_owner
from .redis_server import redis_server_binary

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

#: Survivors' takeovers differ by at most this many calls (equal loads and capacities: the
#: split is exact but for the odd one).
SPREAD_BOUND = 1


def test_a_dead_node_s_calls_are_shared_by_the_survivors(tmp_path: Path) -> None:
    per_node = 4
    with cluster(tmp_path, nodes=3, gateways=1, capacity=2 * per_node) as c:
        calls = [c.dial_in() for _ in range(3 * per_node)]
        owners = {call: wait_owner(c, call) for call in calls}
        loads = {n.node_id: sum(1 for o, _ in owners.values() if o is n) for n in c.nodes}
        assert sorted(loads.values()) == [per_node] * 3, loads
        for node, sid in owners.values():
            node.wait_for(flowing(sid, 10), 10, f"audio on {sid}")
        victim = c.nodes[0]
        survivors = [n for n in c.nodes if n is not victim]
        before = {n.node_id: set(sessions_of(n)) for n in survivors}
        theirs = {call: sid for call, (n, sid) in owners.items() if n is victim}
        killed_at = time.monotonic()
        victim.kill()
        last_seen = {sid: victim.frames(sid)[-1].seq for sid in theirs.values()}
        for call, sid in theirs.items():
            node, new_sid = wait_owner(c, call, 15)
            assert new_sid == sid and node is not victim
            assert sessions_of(node)[sid]["resumed"] is True
            node.wait_for(flowing(sid, 10), 10, f"audio on the resumed {sid}")
        taken: dict[str, list[str]] = {}
        for node in survivors:
            new = set(sessions_of(node)) - before[node.node_id]
            taken[node.node_id] = sorted(new)
            assert new <= set(theirs.values()), new  # only the dead node's calls moved
        everything = [sid for sids in taken.values() for sid in sids]
        assert sorted(everything) == sorted(theirs.values())  # each taken over exactly once
        shares = sorted(len(sids) for sids in taken.values())
        print(f"takeover spread over the survivors: {shares} of {len(theirs)} calls")
        assert shares[-1] - shares[0] <= SPREAD_BOUND, taken
        for node in survivors:
            for sid in taken[node.node_id]:
                first = node.frames(sid)[0]
                lost = first.seq - last_seen[sid] - 1
                print(
                    f"  {sid} on {node.node_id}: audio again "
                    f"{1000 * (first.t - killed_at):.0f} ms after the kill, "
                    f"frames lost {max(0, lost)}, delivered twice {max(0, -lost)}"
                )
                assert lost <= 0, f"{lost} frames lost on takeover"
        for call in calls:  # every call is still up, on exactly one live node
            media = c.emulator.call_media(call)
            assert media is not None and not media.ended.is_set()
            holders = [
                n for n in survivors if any(i.get("call") == call for i in sessions_of(n).values())
            ]
            assert len(holders) == 1, (call, [n.node_id for n in holders])
