"""One process's membership of the cluster: :class:`ClusterMember`, its threads and its API.

A member (a runtime node, or a gateway) keeps its registration alive, and a node its leases,
from threads of its own, so that no caller ever waits on Redis for that:

- ``cluster-<id>``: heartbeats every ``heartbeat_s``, renews every lease it holds every
  ``renew_s``, writes the sessions, states and releases queued by the API, and every
  ``heartbeat_s`` takes over its share of the orphans (a node with free room and
  ``on_orphan``: :meth:`~actors.cluster.directory.Directory.take_orphans`), so that a dead
  node's calls spread over the survivors by free capacity.
  When Redis cannot be reached it retries with a backoff (50 ms doubling, at most
  ``2 * heartbeat_s``); once Redis answers again it re-registers and renews every lease,
  restoring those Redis lost (a restart without persistence) from its own copy (meta, last
  state, epoch), and drops those another node took meanwhile (``on_lost``).
- ``cluster-offers-<id>`` (a node with ``on_offer``): waits on the node's offers (BLPOP) and
  hands each inbound call claimed for this node to ``on_offer``.

The API for the service: :meth:`register_session`, :meth:`save_state` and :meth:`release` only
queue what is to be written and wake the thread (they never wait on Redis, so an actor or the
media path may call them); :meth:`pick_gateway`, :meth:`claim_inbound` and :meth:`members` ask
Redis at once and may wait up to ``redis_timeout_s`` (call them from a webhook or application
thread). While Redis is known to be down they answer at once: ``ClusterUnavailable`` with
``on_redis_down: fail``; with ``local``, no gateway (use the configured one) and the call for
this node if it has room (a call it holds already, its webhook delivered again, is a
``duplicate`` claim of the same session). Callbacks run on the member's threads and must
return quickly (hand the lease to a queue); an exception in one is logged and ignored.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ..config.cluster import ClusterConfig
from ..errors import ClusterUnavailable, StateTooLarge
from .directory import Claim, Directory, Kind, Lease, Member, frozen_meta
from .leases import LeaseBook, lease_for

__all__ = ["ClusterMember"]

logger = logging.getLogger(__name__)

_BACKOFF_INITIAL_S = 0.05
_LATENCY_SAMPLES = 1024
_COUNTERS = (
    "claims",  # inbound calls this member placed (claim_inbound, first time)
    "refused",  # inbound calls refused: every node full or draining
    "offers",  # inbound calls this node took (on_offer)
    "takeovers",  # orphaned sessions this node took over (on_orphan)
    "lost",  # leases another node took while this one could not renew (on_lost)
    "restored",  # leases written again after Redis lost them
    "redis_errors",
    "reconnects",
)
T = TypeVar("T")


class ClusterMember:
    """This process in the cluster (see the module docstring). ``start`` it, ``stop`` it.

    ``directory`` defaults to a :class:`~actors.cluster.redis.RedisDirectory` on
    ``config.redis_url``. ``load`` (a gateway) says how many calls it carries; a node's load
    is its sessions. ``on_offer(lease)``: an inbound call claimed for this node;
    ``on_orphan(lease)``: a session taken over from a dead node (``lease.previous_node``,
    ``lease.state``, ``lease.epoch``); ``on_lost(session_id)``: a session another node took;
    ``on_drain(member_id)``: a drain was asked from outside (``transport-actors drain``), read back
    at a heartbeat: the member drains from then on, as after :meth:`drain`.
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        kind: Kind = "node",
        urls: Mapping[str, str] | None = None,
        directory: Directory | None = None,
        load: Callable[[], int] | None = None,
        on_offer: Callable[[Lease], None] | None = None,
        on_orphan: Callable[[Lease], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_drain: Callable[[str], None] | None = None,
    ) -> None:
        if directory is None:
            from .redis import RedisDirectory  # noqa: PLC0415 (redis is needed only here)

            directory = RedisDirectory(config)
        self.config = config
        self.node_id = config.member_id
        self.kind: Kind = kind
        self._urls = frozen_meta(urls)
        self._directory = directory
        self._load = load
        self._on_offer = on_offer
        self._on_orphan = on_orphan
        self._on_lost = on_lost
        self._on_drain = on_drain
        self._book = LeaseBook(self.node_id)
        self._lock = threading.Lock()  # the fields below
        self._draining = False
        self._beat_now = False
        self._connected = False
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._latency: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._last_error = "not connected yet"
        self._up = threading.Event()  # set while Redis answers
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ClusterMember:
        """Register (one bounded attempt: with Redis down the member starts anyway and keeps
        trying) and start the threads."""
        try:
            self._beat()
            self._set_connected(True, first=True)
        except ClusterUnavailable as exc:
            self._note_error(exc)
        self._threads = [threading.Thread(target=self._tick_loop, name=f"cluster-{self.node_id}")]
        if self.kind == "node" and self._on_offer is not None:
            name = f"cluster-offers-{self.node_id}"
            self._threads.append(threading.Thread(target=self._offer_loop, name=name))
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the threads, write what is queued and deregister (each bounded by the Redis
        timeout; skipped when Redis is down), close the connections. Leases still held are
        left to expire: other nodes take those sessions over."""
        self._stopping.set()
        self._wake.set()
        self._up.set()
        for thread in self._threads:
            thread.join(self.config.redis_timeout_s * 3 + 1)
        self._threads = []
        if self._connected:
            try:
                self._flush_writes()
                self._directory.deregister(self.kind, self.node_id)
            except ClusterUnavailable as exc:
                self._note_error(exc)
        self._directory.close()

    def __enter__(self) -> ClusterMember:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the API for the service: queued, never waits on Redis -----------------------------------

    def register_session(
        self, session_id: str, meta: Mapping[str, str], *, call_id: str | None = None
    ) -> None:
        """Lease a new session of this node (queued: written within a moment)."""
        self._book.add(lease_for(session_id, self.node_id, meta, call_id), in_directory=False)
        self._wake.set()

    def save_state(self, session_id: str, data: bytes) -> None:
        """Keep ``data`` with the session's lease, for the node that would take it over
        (queued: written within a moment; a later save replaces an unwritten one).
        :class:`~actors.errors.StateTooLarge` past ``max_state_bytes``,
        :class:`~actors.errors.SessionNotFound` for a session this node does not lease."""
        if len(data) > self.config.max_state_bytes:
            raise StateTooLarge(session_id, len(data), self.config.max_state_bytes)
        self._book.save_state(session_id, data)
        self._wake.set()

    def update_meta(self, session_id: str, fields: Mapping[str, str]) -> bool:
        """Merge ``fields`` into the meta of a session this node leases (queued, like
        :meth:`save_state`: a session's progress, for the node that would take it over);
        ``False`` for a session it does not lease."""
        if not self._book.update_meta(session_id, fields):
            return False
        self._wake.set()
        return True

    def meta(self, session_id: str) -> Mapping[str, str] | None:
        """This node's copy of a session's meta (``None``: not leased here)."""
        return self._book.meta(session_id)

    def release(self, session_id: str) -> None:
        """The session ended: give up its lease (queued)."""
        if self._book.release(session_id):
            self._wake.set()

    def sessions(self) -> list[str]:
        """The sessions this node leases (or is about to)."""
        return self._book.ids()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued write is in Redis; ``False`` if not within ``timeout``."""
        self._wake.set()
        return self._book.wait_written(timeout)

    def drain(self) -> None:
        """Take no new call (inbound claims and takeovers skip this node); live ones go on."""
        with self._lock:
            self._draining = True
            self._beat_now = True
        self._wake.set()

    # -- the API for the service: asks Redis, up to redis_timeout_s ------------------------------

    def pick_gateway(self) -> Member | None:
        """The least-loaded healthy gateway with room (``None``: none; with Redis down and
        ``on_redis_down: local``, ``None`` too: use the configured gateway)."""
        return self._ask("pick_gateway", self._directory.pick_gateway, lambda: None)

    def claim_inbound(
        self, call_id: str, meta: Mapping[str, str], *, session_id: str | None = None
    ) -> Claim | None:
        """Give the inbound call to one node with free capacity (this one wins a tie), which
        gets it through its ``on_offer``. ``None``: the cluster is full (answer busy)."""
        sid = session_id or uuid.uuid4().hex

        def claim() -> Claim | None:
            return self._directory.claim_inbound(call_id, sid, meta, prefer=self.node_id)

        claimed = self._ask("claim_inbound", claim, lambda: self._claim_locally(call_id, sid, meta))
        with self._lock:
            if claimed is None:
                self._counts["refused"] += 1
            elif not claimed.duplicate:
                self._counts["claims"] += 1
        return claimed

    def lease(self, session_id: str) -> Lease | None:
        """The session's lease as the directory holds it (``ClusterUnavailable`` when Redis is
        down)."""
        return self._ask("lease", lambda: self._directory.lease(session_id), None)

    def merge_meta(self, session_id: str, fields: Mapping[str, str]) -> bool:
        """Merge ``fields`` into any node's lease of ``session_id`` now (a call's new gateway,
        by the node that answered its redirect); ``False``: no such lease."""
        update = [(session_id, frozen_meta(fields))]
        return self._ask("merge_meta", lambda: self._directory.merge_meta(None, update), None)[0]

    def members(self, kind: Kind) -> list[Member]:
        """The healthy members of that kind (``ClusterUnavailable`` when Redis is down)."""
        return self._ask("members", lambda: self._directory.members(kind), None)

    def status(self) -> dict[str, Any]:
        """What the member knows of itself: connection, sessions, counters, renew latency."""
        with self._lock:
            samples = sorted(self._latency)
            counts = dict(self._counts)
            connected, draining, error = self._connected, self._draining, self._last_error

        def ms(q: float) -> float | None:  # the q-quantile of the recent renewals
            at = min(len(samples) - 1, int(q * len(samples)))
            return round(samples[at] * 1e3, 3) if samples else None

        return {
            "node_id": self.node_id,
            "kind": self.kind,
            "connected": connected,
            "draining": draining,
            "sessions": len(self._book),
            "capacity": self.config.capacity,
            "counters": counts,
            "renew_ms": {"count": len(samples), "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0)},
            "last_error": "" if connected else error,
        }

    def _ask(self, operation: str, do: Callable[[], T], local: Callable[[], T] | None) -> T:
        """``do()`` against Redis; while Redis is known down (or when this call finds it so),
        ``local()`` with ``on_redis_down: local``, else ``ClusterUnavailable`` at once."""
        fallback = local if self.config.on_redis_down == "local" else None
        if not self._connected:
            if fallback is not None:
                return fallback()
            raise ClusterUnavailable(operation, f"Redis is not reachable ({self._last_error})")
        try:
            return do()
        except ClusterUnavailable as exc:
            self._note_error(exc)
            self._set_connected(False)
            if fallback is not None:
                return fallback()
            raise

    def _claim_locally(self, call_id: str, sid: str, meta: Mapping[str, str]) -> Claim | None:
        lease = lease_for(sid, self.node_id, meta, call_id)
        with self._lock:
            draining = self._draining
        if draining:
            return None
        held = self._book.add_if_room(lease, self.config.capacity)
        if held is None:
            return None
        if held != sid:  # the webhook came twice (Redis, which would say so, is down)
            return Claim(call_id, held, self.node_id, self._book.meta(held) or lease.meta, True)
        self._wake.set()
        self._callback(self._on_offer, lease)
        return Claim(call_id, sid, self.node_id, lease.meta)

    # -- the threads ----------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        config = self.config
        backoff = _BACKOFF_INITIAL_S
        resync = not self._connected  # connected in start(): registered, nothing to restore
        next_beat = next_renew = next_scan = time.monotonic()
        while not self._stopping.is_set():
            try:
                if not self._connected:
                    self._directory.ping()
                    resync = True  # registers again and restores the leases, below
                now = time.monotonic()
                with self._lock:
                    beat = self._beat_now or resync or now >= next_beat
                    self._beat_now = False
                if beat:
                    self._beat()
                    next_beat = now + config.heartbeat_s
                    if resync:
                        self._set_connected(True)
                if resync or now >= next_renew:
                    self._renew()
                    next_renew = now + config.renew_s
                self._flush_writes()
                if self._on_orphan is not None and now >= next_scan:
                    self._take_orphans()
                    next_scan = now + config.heartbeat_s
                resync = False
                backoff = _BACKOFF_INITIAL_S
                due = [next_beat, next_renew] + ([next_scan] if self._on_orphan else [])
                self._wake.wait(max(0.0, min(due) - time.monotonic()))
                self._wake.clear()
            except ClusterUnavailable as exc:
                self._note_error(exc)
                self._set_connected(False)
                # Back off without being woken early: the API's writes wait for Redis anyway.
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, max(_BACKOFF_INITIAL_S, 2 * config.heartbeat_s))
            except Exception:  # a bug of ours: log it, keep the member alive
                logger.exception("cluster member %s: unexpected error", self.node_id)
                self._stopping.wait(config.heartbeat_s)

    def _offer_loop(self) -> None:
        wait = self.config.redis_timeout_s / 2
        while not self._stopping.is_set():
            if not self._up.wait(wait) or self._stopping.is_set():
                continue
            try:
                leases = self._directory.take_offers(self.node_id, wait)
            except ClusterUnavailable as exc:
                self._note_error(exc)
                self._set_connected(False)
                continue
            for lease in leases:
                self._book.add(lease, in_directory=True)
                self._count("offers")
                self._callback(self._on_offer, lease)

    def _member(self) -> Member:
        load = len(self._book) if self._load is None else self._load()
        with self._lock:
            draining = self._draining
        capacity = self.config.capacity
        return Member(self.node_id, self.kind, self._urls, load, capacity, draining)

    def _beat(self) -> None:
        """Heartbeat; honour a drain asked from outside (read back by the heartbeat)."""
        if not self._directory.heartbeat(self._member()):
            return
        with self._lock:
            was, self._draining = self._draining, True
        if not was:
            logger.info("cluster member %s: draining (asked from outside)", self.node_id)
            self._callback(self._on_drain, self.node_id)

    def _renew(self) -> None:
        if self.kind != "node":
            return
        started = time.monotonic()
        renewal = self._directory.renew(self.node_id, self._book.to_renew())
        with self._lock:
            self._latency.append(time.monotonic() - started)
        for sid in self._book.renewed(renewal):
            self._lost(sid)

    def _flush_writes(self) -> None:
        writes = self._book.writes()
        for sid in writes.releases:
            self._directory.release(self.node_id, sid)
            self._book.released(sid)
        for lease, version in writes.acquires:
            outcome = self._book.acquired(writes, lease, version, self._directory.acquire(lease))
            if outcome == "lost":
                self._lost(lease.session_id)
            elif outcome == "restored":
                self._count("restored")
        for sid, data, version in writes.states:
            ok = self._directory.save_state(self.node_id, sid, data)
            self._book.state_written(sid, version, ok)
        if writes.metas:  # progress: lost if Redis fails now; the next change writes again
            self._directory.merge_meta(self.node_id, writes.metas)

    def _take_orphans(self) -> None:
        with self._lock:
            draining = self._draining
        room = self.config.capacity - len(self._book)
        if draining or room <= 0:
            return
        # Only this node's share: the other survivors take theirs at their own scans.
        for lease in self._directory.take_orphans(self.node_id, room):
            self._book.add(lease, in_directory=True)
            self._count("takeovers")
            logger.info(
                "session %s: taken over from node %s (epoch %d)",
                lease.session_id,
                lease.previous_node,
                lease.epoch,
            )
            self._callback(self._on_orphan, lease)

    # -- small helpers --------------------------------------------------------------------------

    def _lost(self, session_id: str) -> None:
        self._count("lost")
        logger.warning("session %s: its lease passed to another node", session_id)
        self._callback(self._on_lost, session_id)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _set_connected(self, up: bool, *, first: bool = False) -> None:
        with self._lock:
            was, self._connected = self._connected, up
            if up and not was and not first:
                self._counts["reconnects"] += 1
            error = self._last_error
        if up:
            self._up.set()
            if not was and not first:
                logger.info("cluster member %s: Redis is back; registered again", self.node_id)
        else:
            self._up.clear()
            self._wake.set()  # the ticker starts probing now, not at its next beat
            if was:
                logger.warning("cluster member %s: Redis unreachable: %s", self.node_id, error)

    def _note_error(self, exc: ClusterUnavailable) -> None:
        with self._lock:
            self._counts["redis_errors"] += 1
            self._last_error = exc.reason

    def _callback(self, hook: Callable[[T], None] | None, arg: T) -> None:
        if hook is None:
            return
        try:
            hook(arg)
        except Exception:
            logger.exception("cluster member %s: a callback failed", self.node_id)
