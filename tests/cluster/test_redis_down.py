"""``cluster.on_redis_down`` with real processes: Redis SIGKILLed under live calls, new calls
placed while it is down, Redis back (empty), then a node killed.

- ``fail`` (the default): new calls fail fast (outbound ``ClusterUnavailable``, inbound the
  busy answer); the calls in progress go on.
- ``local``: new calls run unclustered on the node that got them (the configured gateway);
  once Redis is back their leases are written, so that they survive that node's death like any
  clustered call.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from actors.cluster.redis import RedisDirectory
from actors.config import ClusterConfig

from .nodes import FAST, Cluster, NodeProcess, cluster, flowing, sessions_of, wait_owner
from .redis_server import redis_server_binary

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)


def _grow(node: NodeProcess, sid: str, by: int, timeout: float = 10.0) -> None:
    start = len(node.frames(sid))
    node.wait_for(flowing(sid, start + by), timeout, f"{by} more frames on {sid}")


def _observer(c: Cluster) -> RedisDirectory:
    config = ClusterConfig(
        redis_url=c.redis.url,
        key_prefix=c.prefix,
        node_id="observer",
        **FAST,  # type: ignore[arg-type]
    )
    return RedisDirectory(config)


def _new_session(node: NodeProcess, known: set[str], timeout: float = 10.0) -> str:
    found: list[str] = []

    def check(_: object) -> bool:
        found[:] = [sid for sid in sessions_of(node) if sid not in known]
        return bool(found)

    node.wait_for(check, timeout, "a new session")
    return found[0]


def _live(node: NodeProcess) -> int:
    with node.changed:
        return len(set(node.log.sessions) - set(node.log.ends))


def _leased(node: NodeProcess) -> int:
    """The sessions the node's cluster member holds, as its ``status`` says."""
    with node.changed:
        seen = len(node.log.events)
    node.command("status")
    found: list[int] = []

    def check(log: object) -> bool:
        with_status = [e for e in node.log.events[seen:] if e.get("e") == "status"]
        found[:] = [int(e["sessions"]) for e in with_status]
        return bool(found)

    node.wait_for(check, 5, "its status")
    return found[0]


@pytest.mark.parametrize("mode", ["fail", "local"])
def test_new_calls_while_redis_is_down(tmp_path: Path, mode: str) -> None:
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4, on_redis_down=mode) as c:
        running = c.dial_in()
        holder, running_sid = wait_owner(c, running)
        holder.wait_for(flowing(running_sid, 10), 10, "audio")
        c.redis.kill()
        _grow(holder, running_sid, 25)  # half a second of audio with no Redis at all

        # An outbound call and an inbound one, placed while Redis is down.
        caller = c.nodes[0]
        known = set(sessions_of(caller))
        started = time.monotonic()
        caller.command("call +15550140")
        inbound = c.dial_in()
        made: dict[str, tuple[NodeProcess, str]] = {}
        if mode == "fail":
            caller.wait_for(lambda log: any(e["op"] == "call" for e in log.errors), 5, "refused")
            with caller.changed:
                error = next(e for e in caller.log.errors if e["op"] == "call")["error"]
            assert error.startswith("ClusterUnavailable"), error
            assert time.monotonic() - started < 2.0  # fast: no wait on the dead Redis
            assert c.emulator.wait_ended(inbound, 10).status == "busy"
        else:
            out_sid = _new_session(caller, known)
            caller.wait_for(flowing(out_sid, 10), 10, "audio on the outbound call")
            made["outbound"] = (caller, out_sid)
            made["inbound"] = wait_owner(c, inbound)
            node, in_sid = made["inbound"]
            node.wait_for(flowing(in_sid, 10), 10, "audio on the inbound call")
            # Twilio retries the webhook: the same session, no second lease for the call.
            status, answer = c.balancer.replay_voice(inbound, node)
            assert status == 200 and in_sid.encode() in answer, answer
            assert _leased(node) == _live(node), (_leased(node), _live(node))
            assert not any(e["op"] == "call" for e in caller.log.errors), caller.log.errors

        c.redis.start()  # empty: the nodes register again and write their leases back
        observer = _observer(c)
        try:
            expected = {running_sid: holder.node_id}
            expected.update({sid: node.node_id for node, sid in made.values()})
            deadline, pause = time.monotonic() + 10, threading.Event()
            while True:
                leases = {sid: observer.lease(sid) for sid in expected}
                owners = {sid: lease.node_id if lease else None for sid, lease in leases.items()}
                if owners == expected or time.monotonic() > deadline:
                    break
                pause.wait(0.05)
            assert owners == expected, owners  # the local calls are clustered now too
        finally:
            observer.close()
        _grow(holder, running_sid, 10)

        # Their node dies: every one of its calls goes on on the other node.
        victim = holder
        survivor = next(n for n in c.nodes if n is not victim)
        moving = [running_sid] + [sid for node, sid in made.values() if node is victim]
        victim.kill()
        last_seen = {sid: victim.frames(sid)[-1].seq for sid in moving}
        for sid in moving:
            survivor.wait_for(lambda log, s=sid: s in log.sessions, 10, f"takeover of {sid}")
            assert sessions_of(survivor)[sid]["resumed"] is True
            survivor.wait_for(flowing(sid, 10), 10, f"audio on {sid} after the takeover")
            lost = survivor.frames(sid)[0].seq - last_seen[sid] - 1
            print(f"{mode}: {sid} taken over, frames lost {max(0, lost)}, twice {max(0, -lost)}")
            assert lost <= 0, f"{lost} frames of {sid} lost on its takeover"
        for node, sid in made.values():
            if node is survivor:
                _grow(survivor, sid, 10)
