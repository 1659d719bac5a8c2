"""ClusterMember against a real redis-server: leases kept alive by its thread, a SIGKILLed
node's sessions taken over with their state, offers, draining, and Redis killed, hung and
restarted under it."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import redis

from actors.cluster import ClusterMember, Lease
from actors.cluster.redis import RedisDirectory
from actors.errors import ClusterUnavailable, SessionNotFound, StateTooLarge

from ..conftest import eventually
from ..processes import _Child
from .conftest import ConfigFactory
from .redis_server import RedisServer

pytestmark = pytest.mark.timeout(40)

_NODE_PROCESS = """
import sys
from actors.cluster import ClusterMember
from actors.config import ClusterConfig

url, prefix, node_id, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = ClusterConfig(redis_url=url, key_prefix=prefix, node_id=node_id, heartbeat_s=0.1,
                       ttl_s=0.5, lease_s=0.5, lease_renew_s=0.1, redis_timeout_s=0.3)
member = ClusterMember(config).start()
for i in range(count):
    member.register_session(f"{node_id}-s{i}", {"provider": "twilio", "call_id": f"CA{i}"})
    member.save_state(f"{node_id}-s{i}", f"state of call {i}".encode() + bytes([0, 255, i]))
assert member.flush(5), "not written"
print("ready", flush=True)
sys.stdin.read()
member.stop()
"""


class Recorder:
    """What a member's callbacks received, with the time each arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leases: list[tuple[float, Lease]] = []
        self.lost: list[str] = []

    def lease(self, lease: Lease) -> None:
        with self.lock:
            self.leases.append((time.monotonic(), lease))

    def lose(self, session_id: str) -> None:
        with self.lock:
            self.lost.append(session_id)

    def ids(self) -> list[str]:
        with self.lock:
            return [lease.session_id for _, lease in self.leases]


@contextmanager
def members(*made: ClusterMember) -> Iterator[list[ClusterMember]]:
    with ExitStack() as stack:
        for member in made:
            stack.enter_context(member)
        yield list(made)


def test_member_registers_keeps_its_leases_and_deregisters(
    cluster_config: ConfigFactory, directory: RedisDirectory
) -> None:
    config = cluster_config(node_id="n1", capacity=7)
    with ClusterMember(config, urls={"webhook": "http://n1/"}) as member:
        [found] = directory.members("node")
        assert (found.id, found.capacity, found.urls["webhook"]) == ("n1", 7, "http://n1/")
        member.register_session("s1", {"provider": "twilio"})
        assert member.flush(2)
        lease = directory.lease("s1")
        assert lease is not None and lease.node_id == "n1" and lease.meta["provider"] == "twilio"
        # Several lease periods later it is still n1's, never an orphan: the thread renews it.
        renewed = member.status()["renew_ms"]["count"]
        deadline = time.monotonic() + 3 * config.lease_s
        pause = threading.Event()
        while time.monotonic() < deadline:
            assert directory.orphans(10) == []
            pause.wait(0.05)
        assert member.status()["renew_ms"]["count"] >= renewed + 8
        assert directory.members("node")[0].load == 1
        member.release("s1")
        assert member.flush(2)
        assert directory.lease("s1") is None
    assert directory.members("node") == []  # deregistered by stop


def test_save_state_is_bounded(cluster_config: ConfigFactory, directory: RedisDirectory) -> None:
    config = cluster_config(node_id="n1", max_state_bytes=1024)
    with ClusterMember(config) as member:
        member.register_session("s1", {})
        with pytest.raises(StateTooLarge) as info:
            member.save_state("s1", b"x" * 1025)
        assert (info.value.size, info.value.limit) == (1025, 1024)
        with pytest.raises(SessionNotFound):
            member.save_state("nobody", b"")
        member.save_state("s1", b"\x00" * 1024)  # exactly the bound: kept
        assert member.flush(2)
        lease = directory.lease("s1")
        assert lease is not None and lease.state == b"\x00" * 1024


def test_sigkilled_node_sessions_are_taken_over_once_each_with_their_state(
    cluster_config: ConfigFactory, redis_server: RedisServer, directory: RedisDirectory
) -> None:
    config = cluster_config()
    count = 6
    child = _Child(
        [
            sys.executable,
            "-c",
            _NODE_PROCESS,
            redis_server.url,
            config.key_prefix,
            "doomed",
            str(count),
        ],
        stdin=True,
    )
    recorders = [Recorder() for _ in range(3)]
    made = [
        ClusterMember(cluster_config(node_id=f"n{i}", capacity=4), on_orphan=r.lease)
        for i, r in enumerate(recorders)
    ]
    with members(*made):
        child.start()
        try:
            assert {m.id for m in directory.members("node")} == {"doomed", "n0", "n1", "n2"}
            child.kill()
            killed = time.monotonic()
            taken = lambda: sum(len(r.ids()) for r in recorders)  # noqa: E731
            assert eventually(lambda: taken() == count, 10), [r.ids() for r in recorders]
            assert "doomed" not in {m.id for m in directory.members("node")}
        finally:
            child.stop()
        all_ids = [sid for r in recorders for sid in r.ids()]
        assert sorted(all_ids) == sorted(f"doomed-s{i}" for i in range(count))  # each once
        for recorder in recorders:
            for arrived, lease in recorder.leases:
                i = int(lease.session_id.rsplit("s", 1)[1])
                assert lease.state == f"state of call {i}".encode() + bytes([0, 255, i])
                assert lease.meta["call_id"] == f"CA{i}" and lease.previous_node == "doomed"
                assert lease.epoch == 2
                # Detection (one lease) + a scan period + the claim; generous for a busy CI.
                assert arrived - killed < config.lease_s + 1.0
        assert all(len(r.ids()) <= 4 for r in recorders)  # capacity held during takeovers
        assert sum(m.status()["counters"]["takeovers"] for m in made) == count
        # The new holders renew them: nothing is orphaned again.
        assert eventually(lambda: directory.orphans(10) == [], 2)


def test_inbound_calls_are_offered_to_nodes_with_room_and_refused_when_full(
    cluster_config: ConfigFactory,
) -> None:
    recorders = {name: Recorder() for name in ("small", "mid", "big")}
    capacities = {"small": 1, "mid": 2, "big": 3}
    made = [
        ClusterMember(cluster_config(node_id=n, capacity=capacities[n]), on_offer=r.lease)
        for n, r in recorders.items()
    ]
    with members(*made) as (small, _, _):
        claimed = []
        for i in range(6):
            claim = small.claim_inbound(f"CA{i}", {"from": f"+1555{i}"})
            assert claim is not None and not claim.duplicate
            claimed.append(claim)
        assert small.claim_inbound("CA-over", {}) is None  # the whole cluster is full
        repeat = small.claim_inbound("CA0", {})
        assert repeat is not None and repeat.duplicate
        assert repeat.session_id == claimed[0].session_id
        total = lambda: sum(len(r.ids()) for r in recorders.values())  # noqa: E731
        assert eventually(lambda: total() == 6, 5)
        for name, recorder in recorders.items():
            assert len(recorder.ids()) == capacities[name]  # spread by room, never past it
            for _, lease in recorder.leases:
                assert lease.meta["from"].startswith("+1555") and lease.call_id
            assert set(recorder.ids()) <= {c.session_id for c in claimed}
        status = small.status()["counters"]
        assert (status["claims"], status["refused"]) == (6, 1)
        assert sorted(made[2].sessions()) == sorted(recorders["big"].ids())


def test_draining_node_takes_no_new_call_nor_orphan(
    cluster_config: ConfigFactory, directory: RedisDirectory
) -> None:
    leaving_calls, staying_calls = Recorder(), Recorder()
    leaving = ClusterMember(
        cluster_config(node_id="leaving", capacity=10),
        on_offer=leaving_calls.lease,
        on_orphan=leaving_calls.lease,
    )
    staying = ClusterMember(
        cluster_config(node_id="staying", capacity=1), on_offer=staying_calls.lease
    )
    with members(leaving, staying):
        leaving.drain()
        assert eventually(lambda: any(m.draining for m in directory.members("node")), 2)
        first = leaving.claim_inbound("CA1", {})
        assert first is not None and first.node_id == "staying"
        assert leaving.claim_inbound("CA2", {}) is None  # the only other node is full
        assert directory.acquire(Lease("s-orphan", "dead"))
        assert eventually(lambda: "s-orphan" in directory.orphans(10), 3)
        assert not eventually(lambda: bool(leaving_calls.ids()), 3 * leaving.config.heartbeat_s)
        assert leaving.status()["draining"] is True


def test_a_lease_taken_by_another_node_is_reported_lost(
    cluster_config: ConfigFactory, redis_server: RedisServer, directory: RedisDirectory
) -> None:
    recorder = Recorder()
    config = cluster_config(node_id="n1")
    with ClusterMember(config, on_lost=recorder.lose) as member:
        member.register_session("s1", {})
        member.register_session("s2", {})
        assert member.flush(2)
        # Another node took s1 over (as if n1 had not renewed in time): say so in Redis.
        raw = redis.Redis.from_url(redis_server.url)
        try:
            raw.hset(f"{config.key_prefix}:l:s1", mapping={"node": "n2", "epoch": 2})
        finally:
            raw.close()
        assert eventually(lambda: recorder.lost == ["s1"], 2)
        assert member.sessions() == ["s2"]
        assert member.status()["counters"]["lost"] == 1


def test_redis_killed_new_calls_fail_fast_and_restart_restores_everything(
    cluster_config: ConfigFactory, redis_server: RedisServer
) -> None:
    config = cluster_config(node_id="n1", capacity=5)
    with ClusterMember(config, on_offer=Recorder().lease) as member:
        for i in range(3):
            member.register_session(f"s{i}", {"n": str(i)})
            member.save_state(f"s{i}", f"state {i}".encode())
        assert member.flush(2)
        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable):
            member.claim_inbound("CA1", {})
        assert time.monotonic() - started < config.redis_timeout_s + 0.2
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable):  # known down now: at once
            member.pick_gateway()
        assert time.monotonic() - started < 0.05
        member.save_state("s1", b"saved while Redis was down")  # queued, never waits
        member.register_session("s3", {"n": "3"})
        assert member.status()["connected"] is False
        redis_server.start()  # same port, empty: the node must register and lease again
        observer = RedisDirectory(config)
        try:
            assert eventually(lambda: [m.id for m in observer.members("node")] == ["n1"], 5)
            assert member.flush(5)
            states = {f"s{i}": f"state {i}".encode() for i in range(3)}
            states["s1"] = b"saved while Redis was down"
            for sid, state in states.items():
                lease = observer.lease(sid)
                assert lease is not None and lease.node_id == "n1" and lease.state == state
            assert observer.lease("s3") is not None
            counters = member.status()["counters"]
            assert counters["reconnects"] >= 1 and counters["redis_errors"] >= 1
            assert member.claim_inbound("CA2", {}) is not None  # new calls work again
        finally:
            observer.close()


def test_a_hung_redis_blocks_nothing_but_the_bounded_calls(
    cluster_config: ConfigFactory, redis_server: RedisServer
) -> None:
    config = cluster_config(node_id="n1")
    member = ClusterMember(config, on_offer=Recorder().lease, on_orphan=Recorder().lease).start()
    try:
        member.register_session("s1", {})
        assert member.flush(2)
        redis_server.freeze()
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable):
            member.claim_inbound("CA1", {})
        assert time.monotonic() - started < config.redis_timeout_s + 0.3
        started = time.monotonic()
        member.register_session("s2", {})  # what an actor may call: never waits on Redis
        member.save_state("s1", b"x")
        member.release("s2")
        assert time.monotonic() - started < 0.05
    finally:
        started = time.monotonic()
        member.stop()  # bounded even with Redis hung
        stopped = time.monotonic() - started
        redis_server.thaw()
    assert stopped < 3 * config.redis_timeout_s + 1.5, stopped


def test_on_redis_down_local_runs_calls_on_this_node(
    cluster_config: ConfigFactory, redis_server: RedisServer
) -> None:
    recorder = Recorder()
    config = cluster_config(node_id="n1", capacity=2, on_redis_down="local")
    with ClusterMember(config, on_offer=recorder.lease) as member:
        redis_server.kill()
        claims = [member.claim_inbound(f"CA{i}", {"i": str(i)}) for i in range(3)]
        assert [c.node_id if c else None for c in claims] == ["n1", "n1", None]  # room: 2
        assert member.pick_gateway() is None  # the configured gateway, then
        assert len(recorder.ids()) == 2
        redis_server.start()
        observer = RedisDirectory(config)
        try:
            assert member.flush(5)
            for claim in claims[:2]:
                assert claim is not None
                lease = observer.lease(claim.session_id)
                assert lease is not None and lease.node_id == "n1"
        finally:
            observer.close()


def test_on_redis_down_local_a_repeated_webhook_is_the_same_call(
    cluster_config: ConfigFactory, redis_server: RedisServer
) -> None:
    recorder = Recorder()
    config = cluster_config(node_id="n1", capacity=3, on_redis_down="local")
    with ClusterMember(config, on_offer=recorder.lease) as member:
        redis_server.kill()
        first = member.claim_inbound("CA1", {"i": "1"})
        again = member.claim_inbound("CA1", {"i": "1"})  # Twilio delivered it twice
        assert first is not None and not first.duplicate
        assert again is not None and again.duplicate
        assert (again.session_id, again.node_id) == (first.session_id, "n1")
        assert member.sessions() == [first.session_id]  # no second lease for one call
        assert recorder.ids() == [first.session_id]  # offered once
        redis_server.start()
        observer = RedisDirectory(config)
        try:
            assert member.flush(5)
            assert observer.members("node")[0].load == 1  # what Redis counts once back
        finally:
            observer.close()


def test_a_dead_node_s_sessions_even_out_the_survivors_loads(
    cluster_config: ConfigFactory, redis_server: RedisServer, directory: RedisDirectory
) -> None:
    count, before = 30, {"n0": 0, "n1": 5, "n2": 10}
    config = cluster_config()
    argv = [sys.executable, "-c", _NODE_PROCESS, redis_server.url, config.key_prefix]
    child = _Child([*argv, "doomed", str(count)], stdin=True)
    recorders = {name: Recorder() for name in before}
    made = [
        ClusterMember(cluster_config(node_id=name, capacity=20), on_orphan=recorders[name].lease)
        for name in before
    ]
    with members(*made):
        for member in made:
            for i in range(before[member.node_id]):
                member.register_session(f"{member.node_id}-own-{i}", {})
            assert member.flush(5)
        child.start()
        try:
            child.kill()
            taken = lambda: sum(len(r.ids()) for r in recorders.values())  # noqa: E731
            assert eventually(lambda: taken() == count, 10), {
                n: r.ids() for n, r in recorders.items()
            }
        finally:
            child.stop()
        ids = [sid for r in recorders.values() for sid in r.ids()]
        assert sorted(ids) == sorted(f"doomed-s{i}" for i in range(count))  # each once
        loads = {m.node_id: len(m.sessions()) for m in made}
        shares = {name: len(r.ids()) for name, r in recorders.items()}
        print(f"takeovers {shares}: loads {before} -> {loads}")
        # 45 sessions over three nodes of capacity 20: 15 each, give or take the odd one.
        assert max(loads.values()) - min(loads.values()) <= 1, (shares, loads)
