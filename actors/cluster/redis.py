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

**Key layout** (``P`` is ``cluster.key_prefix``, by default ``ta:{default}``: the braces are a
Redis Cluster hash tag, which keeps every key in one slot as multi-key scripts need)::

    P:m:<kind>:<id>  hash  a member: urls (JSON), load, capacity, draining, beat; PEXPIRE ttl
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
from .directory import Claim, Kind, Lease, Member, Renewal, frozen_meta, least_loaded

__all__ = ["KEEP_S", "RedisDirectory"]

#: How long leases, load sets, call records and offers outlive their last write.
KEEP_S = 600.0
_OFFERS_BATCH = 100
_RENEW_BATCH = 500
T = TypeVar("T")

# Every script: ARGV[1] is the key prefix; `now` is the server's clock in milliseconds.
_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# ARGV: P, kind, id, ttl_ms, urls, load, capacity, draining
_HEARTBEAT = """
local k = P .. ':m:' .. ARGV[2] .. ':' .. ARGV[3]
redis.call('HSET', k, 'urls', ARGV[5], 'load', ARGV[6], 'capacity', ARGV[7],
           'draining', ARGV[8], 'beat', now)
redis.call('PEXPIRE', k, ARGV[4])
redis.call('ZADD', P .. ':mz:' .. ARGV[2], now + tonumber(ARGV[4]), ARGV[3])
return now
"""

# ARGV: P, kind, id
_DEREGISTER = """
redis.call('DEL', P .. ':m:' .. ARGV[2] .. ':' .. ARGV[3])
redis.call('ZREM', P .. ':mz:' .. ARGV[2], ARGV[3])
return 1
"""

# ARGV: P, kind -> {{id, urls, load, capacity, draining, expires_in_ms}...}
_MEMBERS = """
local z = P .. ':mz:' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
local ids = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #ids, 2 do
  local id = ids[i]
  local h = redis.call('HMGET', P .. ':m:' .. ARGV[2] .. ':' .. id,
                       'urls', 'load', 'capacity', 'draining')
  if h[3] then
    local load = h[2]
    if ARGV[2] == 'node' then load = redis.call('SCARD', P .. ':nl:' .. id) end
    out[#out + 1] = {id, h[1], tostring(load), h[3], h[4], tostring(tonumber(ids[i + 1]) - now)}
  end
end
return out
"""

# ARGV: P, call_id, sid, prefer, lease_ms, keep_ms, meta
_CLAIM_INBOUND = """
local ck = P .. ':c:' .. ARGV[2]
local prior = redis.call('HMGET', ck, 'sid', 'node', 'ended')
if prior[1] then
  local meta = redis.call('HGET', P .. ':l:' .. prior[1], 'meta') or '{}'
  return {'dup', prior[1], prior[2], meta, prior[3] and '1' or '0'}
end
local z = P .. ':mz:node'
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
local best, bshare, bpref = nil, nil, nil
for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do
  local h = redis.call('HMGET', P .. ':m:node:' .. id, 'capacity', 'draining')
  local cap = tonumber(h[1])
  if cap and cap > 0 and h[2] ~= '1' then
    local load = redis.call('SCARD', P .. ':nl:' .. id)
    if load < cap then
      local share, pref = load / cap, (id == ARGV[4]) and 0 or 1
      if best == nil or share < bshare or (share == bshare and (pref < bpref
          or (pref == bpref and id < best))) then
        best, bshare, bpref = id, share, pref
      end
    end
  end
end
if best == nil then return {'full'} end
local lk, keep = P .. ':l:' .. ARGV[3], ARGV[6]
local deadline = now + tonumber(ARGV[5])
redis.call('HSET', lk, 'node', best, 'epoch', 1, 'deadline', deadline, 'meta', ARGV[7],
           'state', '', 'call', ARGV[2])
redis.call('PEXPIRE', lk, keep)
redis.call('ZADD', P .. ':lz', deadline, ARGV[3])
redis.call('SADD', P .. ':nl:' .. best, ARGV[3])
redis.call('PEXPIRE', P .. ':nl:' .. best, keep)
redis.call('HSET', ck, 'sid', ARGV[3], 'node', best)
redis.call('PEXPIRE', ck, keep)
redis.call('RPUSH', P .. ':in:' .. best, ARGV[3])
redis.call('PEXPIRE', P .. ':in:' .. best, keep)
return {'ok', ARGV[3], best, ARGV[7], '0'}
"""

# ARGV: P, node, first_sid, max -> {{sid, epoch, meta, state, call}...}
_ADOPT = """
local sids = {ARGV[3]}
local more = redis.call('LPOP', P .. ':in:' .. ARGV[2], ARGV[4])
if more then for _, s in ipairs(more) do sids[#sids + 1] = s end end
local out = {}
for _, sid in ipairs(sids) do
  local h = redis.call('HMGET', P .. ':l:' .. sid, 'node', 'epoch', 'meta', 'state', 'call')
  if h[1] == ARGV[2] then out[#out + 1] = {sid, h[2], h[3], h[4] or '', h[5] or ''} end
end
return out
"""

# ARGV: P, sid, node, lease_ms, keep_ms, epoch, meta, state, call -> 1 | 0 (another's)
_ACQUIRE = """
local lk, keep = P .. ':l:' .. ARGV[2], ARGV[5]
local owner = redis.call('HGET', lk, 'node')
if owner and owner ~= ARGV[3] then return 0 end
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', lk, 'node', ARGV[3], 'epoch', ARGV[6], 'deadline', deadline,
           'meta', ARGV[7], 'state', ARGV[8], 'call', ARGV[9])
redis.call('PEXPIRE', lk, keep)
redis.call('ZADD', P .. ':lz', deadline, ARGV[2])
redis.call('SADD', P .. ':nl:' .. ARGV[3], ARGV[2])
redis.call('PEXPIRE', P .. ':nl:' .. ARGV[3], keep)
return 1
"""

# ARGV: P, node, lease_ms, keep_ms, sid... -> {missing, lost}
_RENEW = """
local missing, lost = {}, {}
local deadline, keep = now + tonumber(ARGV[3]), ARGV[4]
for i = 5, #ARGV do
  local sid = ARGV[i]
  local lk = P .. ':l:' .. sid
  local owner = redis.call('HGET', lk, 'node')
  if not owner then missing[#missing + 1] = sid
  elseif owner ~= ARGV[2] then lost[#lost + 1] = sid
  else
    redis.call('HSET', lk, 'deadline', deadline)
    redis.call('PEXPIRE', lk, keep)
    redis.call('ZADD', P .. ':lz', deadline, sid)
  end
end
redis.call('PEXPIRE', P .. ':nl:' .. ARGV[2], keep)
return {missing, lost}
"""

# ARGV: P, sid, node, data -> 1 | 0
_SAVE_STATE = """
local lk = P .. ':l:' .. ARGV[2]
if redis.call('HGET', lk, 'node') ~= ARGV[3] then return 0 end
redis.call('HSET', lk, 'state', ARGV[4])
return 1
"""

# ARGV: P, sid, node -> 1 | 0
_RELEASE = """
local lk = P .. ':l:' .. ARGV[2]
local h = redis.call('HMGET', lk, 'node', 'call')
if h[1] ~= ARGV[3] then return 0 end
redis.call('DEL', lk)
redis.call('ZREM', P .. ':lz', ARGV[2])
redis.call('SREM', P .. ':nl:' .. ARGV[3], ARGV[2])
local ck = P .. ':c:' .. (h[2] or '')
if h[2] and h[2] ~= '' and redis.call('EXISTS', ck) == 1 then
  redis.call('HSET', ck, 'ended', now)
end
return 1
"""

# ARGV: P, limit -> {sid...}
_ORPHANS = """
local out = {}
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':lz', '-inf', now, 'LIMIT', 0, ARGV[2])) do
  if redis.call('EXISTS', P .. ':l:' .. sid) == 1 then out[#out + 1] = sid
  else redis.call('ZREM', P .. ':lz', sid) end
end
return out
"""

# ARGV: P, sid, node, lease_ms, keep_ms -> {'ok', old node, epoch, meta, state, call} | {why}
_CLAIM_ORPHAN = """
local me = redis.call('HMGET', P .. ':m:node:' .. ARGV[3], 'capacity', 'draining')
local cap = tonumber(me[1])
if not cap then return {'unregistered'} end
if me[2] == '1' then return {'draining'} end
if redis.call('SCARD', P .. ':nl:' .. ARGV[3]) >= cap then return {'full'} end
local lk, keep = P .. ':l:' .. ARGV[2], ARGV[5]
local h = redis.call('HMGET', lk, 'node', 'epoch', 'deadline', 'meta', 'state', 'call')
if not h[1] then
  redis.call('ZREM', P .. ':lz', ARGV[2])
  return {'gone'}
end
if h[1] == ARGV[3] or tonumber(h[3]) > now then return {'live'} end
local epoch = tonumber(h[2]) + 1
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', lk, 'node', ARGV[3], 'epoch', epoch, 'deadline', deadline)
redis.call('PEXPIRE', lk, keep)
redis.call('ZADD', P .. ':lz', deadline, ARGV[2])
redis.call('SREM', P .. ':nl:' .. h[1], ARGV[2])
redis.call('SADD', P .. ':nl:' .. ARGV[3], ARGV[2])
redis.call('PEXPIRE', P .. ':nl:' .. ARGV[3], keep)
return {'ok', h[1], tostring(epoch), h[4] or '{}', h[5] or '', h[6] or ''}
"""


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
        self._heartbeat = register(_PRELUDE + _HEARTBEAT)
        self._deregister = register(_PRELUDE + _DEREGISTER)
        self._members = register(_PRELUDE + _MEMBERS)
        self._claim_inbound = register(_PRELUDE + _CLAIM_INBOUND)
        self._adopt = register(_PRELUDE + _ADOPT)
        self._acquire = register(_PRELUDE + _ACQUIRE)
        self._renew = register(_PRELUDE + _RENEW)
        self._save_state = register(_PRELUDE + _SAVE_STATE)
        self._release = register(_PRELUDE + _RELEASE)
        self._orphans = register(_PRELUDE + _ORPHANS)
        self._claim_orphan = register(_PRELUDE + _CLAIM_ORPHAN)

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

    def heartbeat(self, member: Member) -> None:
        urls = json.dumps(dict(member.urls), sort_keys=True)
        self._run(
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

    def deregister(self, kind: Kind, member_id: str) -> None:
        self._run("deregister", self._deregister, kind, member_id)

    def members(self, kind: Kind) -> list[Member]:
        rows = self._run("members", self._members, kind)
        result = []
        for member_id, urls, load, capacity, draining, expires_ms in rows:
            result.append(
                Member(
                    id=_text(member_id),
                    kind=kind,
                    urls=_meta(urls),
                    load=int(load),
                    capacity=int(capacity),
                    draining=_text(draining) == "1",
                    expires_in_s=int(expires_ms) / 1000,
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

    def release(self, node_id: str, session_id: str) -> bool:
        return int(self._run("release", self._release, session_id, node_id)) == 1

    def orphans(self, limit: int) -> list[str]:
        return [_text(s) for s in self._run("orphans", self._orphans, str(limit))]

    def claim_orphan(self, node_id: str, session_id: str) -> Lease | None:
        args = (session_id, node_id, self._lease_ms, self._keep_ms)
        reply = self._run("claim_orphan", self._claim_orphan, *args)
        if _text(reply[0]) != "ok":
            return None
        _, previous, epoch, meta, state, call = reply
        return Lease(
            session_id=session_id,
            node_id=node_id,
            epoch=int(epoch),
            meta=_meta(meta),
            state=_bytes(state),
            previous_node=_text(previous),
            call_id=_text(call) or None,
        )

    def close(self) -> None:
        # Close every pooled socket now: the client's own close leaves idle ones to the GC.
        self._client.close()
        self._client.connection_pool.disconnect()
