"""The Redis engine of the cluster: :class:`RedisDirectory`, the one module that imports redis.

**Threads.** redis-py's sync client blocks its caller for up to ``redis_timeout_s`` per command
(connect, read and write are all bounded by it; redis-py's own retries are off, so one command
is one attempt). Only :class:`~actors.cluster.node.ClusterMember`'s threads, webhook threads and
application threads call in here; never an actor's thread or the gateway's event loop, so a
hung Redis delays a new call's placement, never a live call's media.

**Atomicity: Lua scripts, not MULTI/WATCH.** Every decision between members reads and writes
several keys (a claim reads every node's capacity, draining flag and load, then writes a lease,
the node's load set, the call's record and the node's offers), so it is one script, run with
EVALSHA (redis-py's ``register_script`` loads it again after a Redis restart). A script is
atomic on the server and costs one round trip whatever happens; WATCH/MULTI would cost three or
more and, under contention (fifty webhooks at once all reading the same loads), would abort and
retry most of its transactions. Time inside a script is the server's (``TIME``): no two nodes'
clocks are ever compared.

**Inbound claims: capacity counters and a claim script, not Streams consumer groups.** A
consumer group hands each entry to one consumer, and a node would read only while it has
room; that is exactly-once delivery, but not what a voice webhook needs:

- *The answer is due now.* Twilio waits at most 15 s for the webhook, and the issue wants a
  busy answer when the cluster is full. With a stream nobody can say "full" (an unread entry
  just waits) before a timeout runs out, and the entry must then be withdrawn with a race
  against a late reader. The claim script answers in one round trip: this node, or nobody.
- *Capacity is enforced where it is counted.* A node's load is the size of its lease set, and
  the script checks it and adds the call in the same atomic step: a node at capacity never
  gets a call. With a stream each node judges its own room from a local count, and a call
  that it reads while a takeover adds sessions overshoots.
- *Placement is by load.* The script picks the least-loaded share of capacity (the webhook's
  node wins a tie); a consumer group gives an entry to whoever reads first.
- *One recovery path.* A node that dies after its claim and before it accepts leaves a lease
  that expires like any other, and another node takes the call over. A stream would need its
  pending-entries list and XAUTOCLAIM for the same, beside the leases.

The cost of pushing is that the chosen node must learn of the call: the script appends the
session id to that node's offers list, on which the node waits in BLPOP (a blocking pop, so an
idle node learns within a round trip). A list, not pub/sub: an offer made while the node is
reconnecting waits for it instead of being lost.

**Takeovers: each survivor takes its share.** Every node scans for expired leases each
heartbeat; the first to scan after a node died used to take all its calls (up to its room).
The takeover script splits the orphans over the candidates (healthy, with room, not draining,
owning no orphan) as the claim script places an inbound call, each to the smallest share of
capacity, and the scanning node takes only what falls to it; each other survivor's scan, within
a heartbeat, takes its own share of what is left. The cost is up to one heartbeat more for the
calls that wait for a later scan; an orphan its candidate leaves for two heartbeats (a node
frozen but not yet out of the registry) goes to whichever node scans next.

**Key layout** (``P`` is ``cluster.key_prefix``, by default ``ta:{default}``: the braces are a
Redis Cluster hash tag, which keeps every key in one slot as multi-key scripts need)::

    P:m:<kind>:<id>  hash  a member: urls (JSON), load, capacity, draining, beat, and drain
                           (a drain asked from outside); PEXPIRE ttl
    P:mz:<kind>      zset  member id -> its deadline (ms, server clock); a member is healthy
                           while deadline > now, pruned as read
    P:l:<sid>        hash  a lease: node, epoch, deadline, meta (JSON), state (bytes), call
    P:lz             zset  session id -> lease deadline: the orphans are the expired ones
    P:nl:<node>      set   the sessions a node leases: its load, counted by the server
    P:c:<call_id>    hash  an inbound call's claim: sid, node, ended; for idempotency
    P:in:<node>      list  session ids of calls claimed for that node, not yet taken

A lease's hash carries no TTL while it is renewed: an expired lease must stay readable (its
meta and state) for the node that takes it over. It, the load sets, call records and offers
lists get a PEXPIRE of ``KEEP`` past their last write, so that nothing is left behind forever
when a whole cluster goes away. Needs Redis 6.2 or later (LPOP with a count, float BLPOP
timeouts). Scripts build key names from ``P``: one Redis server (or a Sentinel-managed
primary), or one slot of a Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..config.cluster import ClusterConfig
from ..errors import ClusterUnavailable
from ..redaction import redact_text
from . import _lua
from .directory import Claim, Kind, Lease, Member, Renewal, frozen_meta, least_loaded

__all__ = ["KEEP_S", "RedisDirectory"]

#: How long leases, load sets, call records and offers outlive their last write.
KEEP_S = 600.0
_OFFERS_BATCH = 100
_RENEW_BATCH = 500
_ORPHAN_SCAN = 1000  # the orphans a takeover splits at once (the oldest first)
T = TypeVar("T")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


def _meta(raw: Any) -> Mapping[str, str]:
    try:
        data = json.loads(_text(raw) or "{}")
    except ValueError:
        return frozen_meta(None)
    return frozen_meta(data if isinstance(data, dict) else None)


def _taken(node_id: str, session_id: str, row: Sequence[Any]) -> Lease:
    """A lease taken over, from a script's row: old node, epoch, meta, state, call."""
    previous, epoch, meta, state, call = row
    return Lease(
        session_id=session_id,
        node_id=node_id,
        epoch=int(epoch),
        meta=_meta(meta),
        state=_bytes(state),
        previous_node=_text(previous),
        call_id=_text(call) or None,
    )


class RedisDirectory:
    """:class:`~actors.cluster.directory.Directory` on one Redis server (see the module
    docstring for the scripts, the key layout and why). Thread-safe: redis-py's connection
    pool gives each concurrent caller its own connection."""

    def __init__(self, config: ClusterConfig) -> None:
        self._config = config
        self._prefix = config.key_prefix
        self._ttl_ms = str(max(1, round(config.ttl_s * 1000)))
        self._lease_ms = str(max(1, round(config.lease_s * 1000)))
        self._keep_ms = str(round(max(KEEP_S, 10 * config.lease_s) * 1000))
        # Every node scans for orphans each heartbeat: one not taken by its candidate within
        # two is taken by whoever scans next.
        self._grace_ms = str(max(1, round(2 * config.heartbeat_s * 1000)))
        timeout = config.redis_timeout_s
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                config.redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # one attempt: a claim must not run twice
                health_check_interval=0,
                decode_responses=False,
                max_connections=16,
                client_name=f"transport-actors:{config.member_id}",
            )
        except (ValueError, redis.RedisError) as exc:
            raise ClusterUnavailable("connect", self._reason(exc)) from None
        register: Callable[[str], Any] = self._client.register_script
        self._heartbeat = register(_lua.PRELUDE + _lua.HEARTBEAT)
        self._deregister = register(_lua.PRELUDE + _lua.DEREGISTER)
        self._set_draining = register(_lua.PRELUDE + _lua.SET_DRAINING)
        self._members = register(_lua.PRELUDE + _lua.MEMBERS)
        self._claim_inbound = register(_lua.PRELUDE + _lua.CLAIM_INBOUND)
        self._adopt = register(_lua.PRELUDE + _lua.ADOPT)
        self._acquire = register(_lua.PRELUDE + _lua.ACQUIRE)
        self._renew = register(_lua.PRELUDE + _lua.RENEW)
        self._save_state = register(_lua.PRELUDE + _lua.SAVE_STATE)
        self._release = register(_lua.PRELUDE + _lua.RELEASE)
        self._merge_meta = register(_lua.PRELUDE + _lua.MERGE_META)
        self._orphans = register(_lua.PRELUDE + _lua.ORPHANS)
        self._claim_orphan = register(_lua.PRELUDE + _lua.CLAIM_ORPHAN)
        self._take_orphans = register(_lua.PRELUDE + _lua.TAKE_ORPHANS)

    # -- the edge: every redis error becomes ClusterUnavailable --------------------------------

    def _reason(self, exc: BaseException) -> str:
        # redis-py's messages may quote the URL (with its password): mask what looks secret.
        text = redact_text(str(exc)) or type(exc).__name__
        return f"{type(exc).__name__}: {text}"[:300]

    def _call(self, operation: str, do: Callable[[], T]) -> T:
        try:
            return do()
        except (redis.RedisError, OSError) as exc:
            raise ClusterUnavailable(operation, self._reason(exc)) from None

    def _run(self, operation: str, script: Any, *args: str | bytes) -> Any:
        return self._call(operation, lambda: script(keys=[], args=[self._prefix, *args]))

    # -- members --------------------------------------------------------------------------------

    def ping(self) -> None:
        self._call("ping", self._client.ping)

    def heartbeat(self, member: Member) -> bool:
        urls = json.dumps(dict(member.urls), sort_keys=True)
        draining = self._run(
            "heartbeat",
            self._heartbeat,
            member.kind,
            member.id,
            self._ttl_ms,
            urls,
            str(member.load),
            str(member.capacity),
            "1" if member.draining else "0",
        )
        return int(draining) == 1

    def deregister(self, kind: Kind, member_id: str) -> None:
        self._run("deregister", self._deregister, kind, member_id)

    def set_draining(self, kind: Kind, member_id: str) -> bool:
        return int(self._run("set_draining", self._set_draining, kind, member_id)) == 1

    def members(self, kind: Kind) -> list[Member]:
        rows = self._run("members", self._members, kind)
        result = []
        for member_id, urls, load, capacity, draining, expires_ms, age_ms in rows:
            result.append(
                Member(
                    id=_text(member_id),
                    kind=kind,
                    urls=_meta(urls),
                    load=int(load),
                    capacity=int(capacity),
                    draining=_text(draining) == "1",
                    expires_in_s=int(expires_ms) / 1000,
                    beat_age_s=max(0, int(age_ms)) / 1000,
                )
            )
        return result

    def pick_gateway(self) -> Member | None:
        return least_loaded(self.members("gateway"))

    # -- inbound calls --------------------------------------------------------------------------

    def claim_inbound(
        self, call_id: str, session_id: str, meta: Mapping[str, str], *, prefer: str | None
    ) -> Claim | None:
        args = (call_id, session_id, prefer or "", self._lease_ms, self._keep_ms)
        reply = self._run(
            "claim_inbound", self._claim_inbound, *args, json.dumps(dict(meta), sort_keys=True)
        )
        if _text(reply[0]) == "full":
            return None
        return Claim(
            call_id=call_id,
            session_id=_text(reply[1]),
            node_id=_text(reply[2]),
            meta=_meta(reply[3]),
            duplicate=_text(reply[0]) == "dup",
            ended=_text(reply[4]) == "1",
        )

    def take_offers(self, node_id: str, timeout_s: float) -> list[Lease]:
        # BLPOP's wait must end before the socket's read timeout does.
        wait = max(0.01, min(timeout_s, self._config.redis_timeout_s / 2))
        key = f"{self._prefix}:in:{node_id}"
        popped = self._call("take_offers", lambda: self._client.blpop([key], timeout=wait))
        if not popped:
            return []
        first = _text(popped[1])
        rows = self._run("take_offers", self._adopt, node_id, first, str(_OFFERS_BATCH))
        return [
            Lease(
                session_id=_text(sid),
                node_id=node_id,
                epoch=int(epoch),
                meta=_meta(meta),
                state=_bytes(state),
                call_id=_text(call) or None,
            )
            for sid, epoch, meta, state, call in rows
        ]

    # -- leases ---------------------------------------------------------------------------------

    def acquire(self, lease: Lease) -> bool:
        meta = json.dumps(dict(lease.meta), sort_keys=True)
        args = (lease.session_id, lease.node_id, self._lease_ms, self._keep_ms, str(lease.epoch))
        reply = self._run("acquire", self._acquire, *args, meta, lease.state, lease.call_id or "")
        return int(reply) == 1

    def lease(self, session_id: str) -> Lease | None:
        key = f"{self._prefix}:l:{session_id}"
        fields = ("node", "epoch", "meta", "state", "call")
        node, epoch, meta, state, call = self._call(
            "lease", lambda: self._client.hmget(key, fields)
        )
        if node is None:
            return None
        return Lease(
            session_id=session_id,
            node_id=_text(node),
            epoch=int(epoch or 1),
            meta=_meta(meta),
            state=_bytes(state),
            call_id=_text(call or b"") or None,
        )

    def renew(self, node_id: str, session_ids: Sequence[str]) -> Renewal:
        missing: list[str] = []
        lost: list[str] = []
        ids = list(session_ids)
        for start in range(0, max(1, len(ids)), _RENEW_BATCH):
            batch = ids[start : start + _RENEW_BATCH]
            got_missing, got_lost = self._run(
                "renew", self._renew, node_id, self._lease_ms, self._keep_ms, *batch
            )
            missing.extend(_text(s) for s in got_missing)
            lost.extend(_text(s) for s in got_lost)
        return Renewal(missing=tuple(missing), lost=tuple(lost))

    def save_state(self, node_id: str, session_id: str, data: bytes) -> bool:
        return int(self._run("save_state", self._save_state, session_id, node_id, data)) == 1

    def merge_meta(
        self, owner: str | None, updates: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[bool]:
        results: list[bool] = []
        items = list(updates)
        for start in range(0, len(items), _RENEW_BATCH):
            args: list[str] = []
            for sid, fields in items[start : start + _RENEW_BATCH]:
                args += [sid, json.dumps(dict(fields), sort_keys=True)]
            got = self._run("merge_meta", self._merge_meta, owner or "", *args)
            results.extend(int(r) == 1 for r in got)
        return results

    def release(self, node_id: str, session_id: str) -> bool:
        return int(self._run("release", self._release, session_id, node_id)) == 1

    def orphans(self, limit: int) -> list[str]:
        return [_text(s) for s in self._run("orphans", self._orphans, str(limit))]

    def take_orphans(self, node_id: str, limit: int) -> list[Lease]:
        if limit <= 0:
            return []
        args = (str(limit), str(_ORPHAN_SCAN), self._lease_ms, self._keep_ms, self._grace_ms)
        rows = self._run("take_orphans", self._take_orphans, node_id, *args)
        return [_taken(node_id, _text(row[0]), row[1:]) for row in rows]

    def claim_orphan(self, node_id: str, session_id: str) -> Lease | None:
        args = (session_id, node_id, self._lease_ms, self._keep_ms)
        reply = self._run("claim_orphan", self._claim_orphan, *args)
        if _text(reply[0]) != "ok":
            return None
        return _taken(node_id, session_id, reply[1:])

    def close(self) -> None:
        # Close every pooled socket now: the client's own close leaves idle ones to the GC.
        self._client.close()
        self._client.connection_pool.disconnect()
