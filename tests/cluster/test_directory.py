"""The Redis directory against a real redis-server: registry TTLs, the least-loaded gateway,
inbound claims exactly once within capacity, orphans taken by exactly one contender."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from actors.cluster import Lease, Member, Renewal
from actors.cluster.redis import RedisDirectory
from actors.errors import ClusterUnavailable

from ..conftest import eventually
from .conftest import ConfigFactory
from .redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)


def node(member_id: str, capacity: int, *, draining: bool = False) -> Member:
    return Member(member_id, "node", capacity=capacity, draining=draining)


def gateway(member_id: str, load: int, capacity: int = 10, *, draining: bool = False) -> Member:
    urls = {"public": f"wss://{member_id}.example/twilio", "session": f"ws://{member_id}:1/"}
    return Member(member_id, "gateway", urls, load, capacity, draining)


def test_member_that_stops_beating_is_out_within_one_ttl(
    directory: RedisDirectory, cluster_config: ConfigFactory
) -> None:
    ttl = cluster_config().ttl_s
    directory.heartbeat(node("alive", 5))
    directory.heartbeat(node("silent", 5))
    assert {m.id for m in directory.members("node")} == {"alive", "silent"}
    last_beat = time.monotonic()
    stop = threading.Event()

    def beat() -> None:  # "alive" goes on beating; "silent" never again
        while not stop.wait(0.1):
            directory.heartbeat(node("alive", 5))

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        assert eventually(lambda: "silent" not in {m.id for m in directory.members("node")}, 5)
        out_after = time.monotonic() - last_beat
        assert out_after <= ttl + 0.15, out_after  # out within one TTL (plus polling)
        assert out_after >= ttl - 0.1, out_after  # and not before it
        assert [m.id for m in directory.members("node")] == ["alive"]
    finally:
        stop.set()
        beater.join(5)


def test_deregister_takes_a_member_out_at_once(directory: RedisDirectory) -> None:
    directory.heartbeat(gateway("g1", 0))
    directory.deregister("gateway", "g1")
    assert directory.members("gateway") == []


def test_least_loaded_healthy_gateway_is_picked(directory: RedisDirectory) -> None:
    assert directory.pick_gateway() is None  # no gateway at all
    directory.heartbeat(gateway("g-busy", 9))
    directory.heartbeat(gateway("g-light", 2))
    directory.heartbeat(gateway("g-mid", 5))
    directory.heartbeat(gateway("g-draining", 0, draining=True))
    directory.heartbeat(gateway("g-full", 4, capacity=4))
    picked = directory.pick_gateway()
    assert picked is not None and picked.id == "g-light"
    assert picked.urls["public"] == "wss://g-light.example/twilio"
    assert picked.urls["session"] == "ws://g-light:1/"
    # By share of capacity, not by count: 3 of 100 is lighter than 2 of 10.
    directory.heartbeat(gateway("g-big", 3, capacity=100))
    picked = directory.pick_gateway()
    assert picked is not None and picked.id == "g-big"


def test_inbound_claims_exactly_once_within_capacity_under_contention(
    cluster_config: ConfigFactory,
) -> None:
    capacities = {"n1": 2, "n2": 3, "n3": 5}  # 10 in all
    config = cluster_config()
    contenders = [RedisDirectory(config) for _ in range(6)]  # six webhook threads, own pools
    try:
        for member_id, capacity in capacities.items():
            contenders[0].heartbeat(node(member_id, capacity))
        calls = [f"CA{i:02d}" for i in range(25)]
        results: list[tuple[str, object]] = []
        lock = threading.Lock()
        start = threading.Barrier(len(contenders))

        def webhook(index: int, directory: RedisDirectory) -> None:
            start.wait(5)
            for call_id in calls:  # every thread tries every call: each arrives six times
                claim = directory.claim_inbound(
                    call_id, f"s-{call_id}-{index}", {"to": "+1555"}, prefer=None
                )
                with lock:
                    results.append((call_id, claim))

        threads = [threading.Thread(target=webhook, args=(i, d)) for i, d in enumerate(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        first = [(c, r) for c, r in results if r is not None and not r.duplicate]  # type: ignore[attr-defined]
        placed = Counter(r.node_id for _, r in first)  # type: ignore[attr-defined]
        assert len(first) == 10, first  # the cluster's whole capacity, no more
        assert len({c for c, _ in first}) == 10  # each placed call placed exactly once
        assert all(placed[n] == capacities[n] for n in capacities), placed  # none past capacity
        # Every repeat of a placed call got that same session; every other call was refused.
        sessions = {c: r.session_id for c, r in first}  # type: ignore[attr-defined]
        for call_id, claim in results:
            if call_id in sessions:
                assert claim is not None and claim.session_id == sessions[call_id]  # type: ignore[attr-defined]
            else:
                assert claim is None
        loads = {m.id: m.load for m in contenders[0].members("node")}
        assert loads == capacities
        # The cluster is full: a new call is refused at once.
        assert contenders[1].claim_inbound("CA-late", "s-late", {}, prefer="n1") is None
    finally:
        for directory in contenders:
            directory.close()


def test_claim_goes_to_the_least_loaded_node_and_the_webhook_node_wins_a_tie(
    directory: RedisDirectory,
) -> None:
    directory.heartbeat(node("a", 4))
    directory.heartbeat(node("b", 4))
    first = directory.claim_inbound("CA1", "s1", {}, prefer="b")
    assert first is not None and first.node_id == "b"  # a tie (0 of 4 each): the asker's
    second = directory.claim_inbound("CA2", "s2", {}, prefer="b")
    assert second is not None and second.node_id == "a"  # a is lighter now
    offers = directory.take_offers("a", 0.1)
    assert [lease.session_id for lease in offers] == ["s2"]
    assert offers[0].call_id == "CA2"
    assert directory.take_offers("a", 0.05) == []  # taken once


def test_draining_node_gets_no_call_and_a_draining_cluster_refuses(
    directory: RedisDirectory,
) -> None:
    directory.heartbeat(node("leaving", 10, draining=True))
    assert directory.claim_inbound("CA1", "s1", {}, prefer="leaving") is None
    directory.heartbeat(node("staying", 1))
    claim = directory.claim_inbound("CA2", "s2", {}, prefer="leaving")
    assert claim is not None and claim.node_id == "staying"
    assert directory.claim_inbound("CA3", "s3", {}, prefer="leaving") is None  # staying is full


def test_release_marks_the_call_ended_for_a_replayed_webhook(directory: RedisDirectory) -> None:
    directory.heartbeat(node("a", 2))
    claim = directory.claim_inbound("CA1", "s1", {"from": "+1"}, prefer="a")
    assert claim is not None and not claim.ended
    assert directory.release("b", "s1") is False  # not b's lease
    assert directory.release("a", "s1") is True
    replay = directory.claim_inbound("CA1", "s-again", {}, prefer="a")
    assert replay is not None and replay.duplicate and replay.ended
    assert replay.session_id == "s1"
    assert directory.members("node")[0].load == 0


def test_expired_lease_is_claimed_by_exactly_one_of_many_with_its_state(
    cluster_config: ConfigFactory,
) -> None:
    config = cluster_config()
    contenders = [RedisDirectory(config) for _ in range(8)]
    try:
        for i, directory in enumerate(contenders):
            directory.heartbeat(node(f"n{i}", 10))
        owner = contenders[0]
        state = bytes(range(256)) * 16  # binary, 4 KB
        meta = {"provider": "twilio", "call_id": "CA9"}
        assert owner.acquire(Lease("s-orphan", "dead", meta=meta, state=b""))
        assert owner.save_state("dead", "s-orphan", state)
        assert contenders[1].claim_orphan("n1", "s-orphan") is None  # not expired yet
        assert eventually(lambda: owner.orphans(10) == ["s-orphan"], config.lease_s + 2)
        for i, directory in enumerate(contenders):  # the wait outlived their registrations
            directory.heartbeat(node(f"n{i}", 10))
        won: list[Lease] = []
        lock = threading.Lock()
        start = threading.Barrier(len(contenders))

        def contend(index: int, directory: RedisDirectory) -> None:
            start.wait(5)
            lease = directory.claim_orphan(f"n{index}", "s-orphan")
            if lease is not None:
                with lock:
                    won.append(lease)

        threads = [threading.Thread(target=contend, args=(i, d)) for i, d in enumerate(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(won) == 1, won
        lease = won[0]
        assert lease.state == state and dict(lease.meta) == meta
        assert lease.epoch == 2 and lease.previous_node == "dead"
        assert owner.orphans(10) == []  # live again, under its new node
        assert owner.renew("dead", ["s-orphan"]).lost == ("s-orphan",)  # the old one is fenced
    finally:
        for directory in contenders:
            directory.close()


def test_orphan_is_not_taken_by_a_full_or_draining_node(directory: RedisDirectory) -> None:
    directory.heartbeat(node("full", 1))
    directory.heartbeat(node("draining", 5, draining=True))
    assert directory.acquire(Lease("s-own", "full"))
    assert directory.acquire(Lease("s-orphan", "dead"))
    assert eventually(lambda: "s-orphan" in directory.orphans(10), 3)
    directory.heartbeat(node("full", 1))  # registered again: the wait outlived the TTL
    directory.heartbeat(node("draining", 5, draining=True))
    assert directory.renew("full", ["s-own"]) == Renewal()  # its one session: still full
    assert directory.claim_orphan("full", "s-orphan") is None
    assert directory.claim_orphan("draining", "s-orphan") is None
    assert directory.claim_orphan("unregistered", "s-orphan") is None
    directory.heartbeat(node("free", 1))
    taken = directory.claim_orphan("free", "s-orphan")
    assert taken is not None and taken.node_id == "free"


def _orphans_of_dead(directory: RedisDirectory, count: int) -> list[str]:
    sids = [f"s-dead-{i}" for i in range(count)]
    for sid in sids:
        assert directory.acquire(Lease(sid, "dead", meta={"call_id": sid}))
    assert eventually(lambda: len(directory.orphans(100)) == count, 3)
    return sids


def test_orphans_are_split_over_the_survivors_by_free_capacity(
    directory: RedisDirectory,
) -> None:
    sids = _orphans_of_dead(directory, 8)
    # Registered after the wait (it outlived the TTL); "dead" too, as if its TTL had not run
    # out yet: owning orphans, it is no candidate. Draining "d" is none either.
    for member in (node("a", 10), node("b", 10), node("dead", 10), node("d", 10, draining=True)):
        directory.heartbeat(member)
    for i in range(4):
        assert directory.acquire(Lease(f"s-b-{i}", "b"))
    # a catches up with b (4), then they alternate: a's share is 6 of the 8, b's is 2.
    first = directory.take_orphans("a", 100)
    assert len(first) == 6 and {lease.node_id for lease in first} == {"a"}
    assert all(lease.previous_node == "dead" and lease.epoch == 2 for lease in first)
    assert directory.take_orphans("a", 100) == []  # the rest is b's share
    second = directory.take_orphans("b", 100)
    assert len(second) == 2
    assert sorted(lease.session_id for lease in first + second) == sorted(sids)  # each once
    assert directory.take_orphans("a", 100) == directory.orphans(100) == []
    assert directory.take_orphans("d", 100) == []  # draining: never
    loads = {m.id: m.load for m in directory.members("node")}
    assert (loads["a"], loads["b"], loads["dead"]) == (6, 6, 0)


def test_a_share_its_candidate_leaves_is_taken_by_whoever_scans_after_the_grace(
    directory: RedisDirectory, cluster_config: ConfigFactory
) -> None:
    grace = 2 * cluster_config().heartbeat_s
    sids = _orphans_of_dead(directory, 4)
    directory.heartbeat(node("a", 10))
    directory.heartbeat(node("silent", 10))  # registered, but it never scans
    beat = time.monotonic()
    assert len(directory.take_orphans("a", 100)) == 2
    assert directory.take_orphans("a", 1) == []
    rest: list[Lease] = []
    assert eventually(lambda: len(rest.extend(directory.take_orphans("a", 100)) or rest) >= 2, 3)
    assert len(rest) == 2 and {lease.session_id for lease in rest} <= set(sids)
    waited = time.monotonic() - beat
    assert "silent" in {m.id for m in directory.members("node")}  # a candidate all along
    assert waited < grace + 0.25, waited  # and not long after the grace


def test_a_limited_take_never_exceeds_its_limit_nor_the_capacity(
    directory: RedisDirectory,
) -> None:
    _orphans_of_dead(directory, 5)
    directory.heartbeat(node("small", 2))
    assert len(directory.take_orphans("small", 1)) == 1
    assert len(directory.take_orphans("small", 100)) == 1  # full now: capacity 2
    assert directory.take_orphans("small", 100) == []
    assert directory.take_orphans("unregistered", 100) == []


def test_a_dead_redis_fails_fast_with_cluster_unavailable(
    redis_server: RedisServer, cluster_config: ConfigFactory
) -> None:
    config = cluster_config()
    directory = RedisDirectory(config)
    try:
        directory.heartbeat(node("a", 1))
        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable) as info:
            directory.claim_inbound("CA1", "s1", {}, prefer="a")
        assert time.monotonic() - started < config.redis_timeout_s + 0.2
        assert info.value.operation == "claim_inbound"
        redis_server.start()  # same port, empty
        directory.heartbeat(node("a", 1))  # the pool reconnects by itself
        assert [m.id for m in directory.members("node")] == ["a"]
    finally:
        directory.close()


def test_a_hung_redis_times_out_within_the_bound(
    redis_server: RedisServer, cluster_config: ConfigFactory
) -> None:
    config = cluster_config()
    directory = RedisDirectory(config)
    try:
        directory.ping()
        redis_server.freeze()
        for call in (directory.pick_gateway, lambda: directory.take_offers("a", 5.0)):
            started = time.monotonic()
            with pytest.raises(ClusterUnavailable):
                call()
            elapsed = time.monotonic() - started
            assert elapsed < config.redis_timeout_s + 0.3, elapsed
        redis_server.thaw()
        directory.ping()
    finally:
        directory.close()
