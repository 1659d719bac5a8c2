"""The seam between the cluster's logic and its engine: :class:`Directory`.

A directory holds what the members of a cluster must agree on, and nothing that a call's media
needs: who is alive (runtime nodes and gateways, by heartbeat and TTL), which node leases each
live session (with the state its application last saved), and which node takes each inbound
call. Every operation that decides something between members (claim an inbound call, take
over an orphan) is atomic in the engine: two members asking at once get two different answers,
exactly one of them "yours".

:class:`~actors.cluster.redis.RedisDirectory` is the engine today. The operations are chosen so
that NATS JetStream could implement them too: members and leases as key-value entries with a
TTL and compare-and-set on their revision (a claim is a CAS from the revision read as
expired), the per-node offers as a work-queue stream with one subject per node; a node's share
of the orphans (:meth:`Directory.take_orphans`) is the same split computed from the entries
read, each of its own then taken by CAS. Nothing here names Redis.

Every method is synchronous and may wait up to the engine's timeout (a second by default):
the caller runs it on a thread of its own (:class:`~actors.cluster.node.ClusterMember`), or on
a webhook or application thread that may wait that long; never on an actor's thread or the
gateway's event loop. Every failure to reach the engine raises
:class:`~actors.errors.ClusterUnavailable`; an outcome that is not a failure (the cluster is
full, the orphan was taken by another) is a return value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol

__all__ = [
    "Claim",
    "Directory",
    "Kind",
    "Lease",
    "Member",
    "Renewal",
    "frozen_meta",
    "least_loaded",
]

#: A member is a runtime node (it holds sessions) or a media gateway (it relays calls).
Kind = Literal["node", "gateway"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class Member:
    """One runtime node or gateway as it registered itself.

    ``urls``: a gateway's ``public`` (the ws(s):// URL providers dial) and ``session`` (the one
    sessions dial); a node's ``webhook`` if it serves one. ``load``: a node's leased sessions
    (counted by the directory, whatever the node says), a gateway's calls (as it says).
    ``expires_in_s``: how long it stays a member without another heartbeat, as read;
    ``beat_age_s``: how long ago its last heartbeat was, as read (both on the engine's clock).
    """

    id: str
    kind: Kind
    urls: Mapping[str, str] = field(default_factory=_empty)
    load: int = 0
    capacity: int = 1
    draining: bool = False
    expires_in_s: float = 0.0
    beat_age_s: float = 0.0

    @property
    def free(self) -> int:
        """Sessions (or calls) it can still take: 0 when full or draining."""
        return 0 if self.draining else max(0, self.capacity - self.load)


@dataclass(frozen=True, slots=True)
class Lease:
    """A session as the directory holds it: which node has it, and what to resume it with.

    ``epoch`` grows by one at each takeover: a fencing token (whoever holds a smaller one has
    lost the session). ``meta`` is what the session was created with (provider, call id,
    gateway...), ``state`` the bytes its application last saved. ``previous_node`` is set on a
    lease taken over from a dead node; ``call_id`` on an inbound call's lease.
    """

    session_id: str
    node_id: str
    epoch: int = 1
    meta: Mapping[str, str] = field(default_factory=_empty)
    state: bytes = b""
    previous_node: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """Where an inbound call went: ``node_id`` leases ``session_id`` for it.

    ``duplicate``: the call had been claimed before (a webhook delivered twice): the same
    session and node as the first time, and ``ended`` when that session has already ended.
    """

    call_id: str
    session_id: str
    node_id: str
    meta: Mapping[str, str] = field(default_factory=_empty)
    duplicate: bool = False
    ended: bool = False


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a renewal found: ``missing`` leases are not in the directory any more (it lost its
    data, e.g. a Redis restarted empty: restore them), ``lost`` ones are held by another node
    (taken over while this one could not renew: stop serving them)."""

    missing: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()


class Directory(Protocol):
    """The cluster's shared state (see the module docstring): members, leases, inbound claims.

    Node ids and session ids are short strings without whitespace; ``meta`` maps strings to
    strings. Every method raises :class:`~actors.errors.ClusterUnavailable` when the engine
    cannot be reached or does not answer in time; after such an error the outcome of a write
    is unknown (the engine may or may not have applied it), and every write here may be
    repeated safely.
    """

    def ping(self) -> None:
        """Reach the engine once (a cheap round trip)."""
        ...

    def heartbeat(self, member: Member) -> bool:
        """Register ``member`` or refresh it: it stays a member for the TTL from now.
        Returns whether it is draining as the directory holds it: ``member.draining``, or a
        drain asked from outside (:meth:`set_draining`), which the member must honour."""
        ...

    def deregister(self, kind: Kind, member_id: str) -> None:
        """Take a member out now (a clean shutdown), rather than after its TTL."""
        ...

    def set_draining(self, kind: Kind, member_id: str) -> bool:
        """Mark a healthy member draining from outside (``transport-actors drain``): it takes
        no new call at once (claims skip it) and learns it at its next heartbeat. ``False``:
        no such healthy member. The mark lasts as long as its registration."""
        ...

    def members(self, kind: Kind) -> list[Member]:
        """The healthy members of that kind (heart-beaten within the TTL), draining or not."""
        ...

    def pick_gateway(self) -> Member | None:
        """The least-loaded healthy gateway that is not draining and not full, or ``None``."""
        ...

    def claim_inbound(
        self, call_id: str, session_id: str, meta: Mapping[str, str], *, prefer: str | None
    ) -> Claim | None:
        """Give the inbound call ``call_id`` to the least-loaded node with free capacity that
        is not draining (``prefer`` wins a tie): that node now leases ``session_id`` with
        ``meta``, and the call is offered to it (:meth:`take_offers`). ``None``: every node is
        full or draining. Idempotent per ``call_id``: a repeat returns the first claim, marked
        ``duplicate``."""
        ...

    def take_offers(self, node_id: str, timeout_s: float) -> list[Lease]:
        """The inbound calls claimed for ``node_id`` since the last call, waiting up to
        ``timeout_s`` (the engine may wait less) for the first. Each is returned to one taker
        once; one whose lease has meanwhile passed to another node is dropped. An offer lost
        in transit (the engine failed mid-take) is not lost for the caller: its lease, never
        renewed, expires and the call is taken over like any orphan."""
        ...

    def acquire(self, lease: Lease) -> bool:
        """Lease ``lease.session_id`` to ``lease.node_id`` with its meta, state and epoch:
        create it, or restore it after the engine lost it. ``False``: another node holds it."""
        ...

    def lease(self, session_id: str) -> Lease | None:
        """The lease of ``session_id`` as stored (expired or not), or ``None``."""
        ...

    def renew(self, node_id: str, session_ids: Sequence[str]) -> Renewal:
        """Extend the leases of ``node_id`` on these sessions by the lease period. A lease
        that expired but that no other node took is still this node's, and is renewed."""
        ...

    def save_state(self, node_id: str, session_id: str, data: bytes) -> bool:
        """Store ``data`` with the lease (size bounded by the caller). ``False``: the lease
        is not ``node_id``'s (any more)."""
        ...

    def merge_meta(
        self, owner: str | None, updates: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[bool]:
        """Merge fields into the meta of leases (one result per update): a node's progress
        on its own sessions (``owner``: only if still its), or a session's new gateway, written
        by whichever node answered the call (``owner=None``). ``False``: no such lease, or
        not ``owner``'s."""
        ...

    def release(self, node_id: str, session_id: str) -> bool:
        """End the lease (the session ended). ``False``: it was not ``node_id``'s."""
        ...

    def orphans(self, limit: int) -> list[str]:
        """Up to ``limit`` sessions whose lease has expired (their node stopped renewing)."""
        ...

    def take_orphans(self, node_id: str, limit: int) -> list[Lease]:
        """Take over, for ``node_id``, at most ``limit`` expired leases: its share of them.

        The orphans are split (on paper) over the healthy nodes with room that are not
        draining and own no orphan, each to the one with the smallest share of its capacity
        once it has it (``node_id`` on a tie); ``node_id`` takes the ones that fall to it and
        leaves the others to their nodes' own scans, which split what is left the same way.
        An orphan expired longer than a grace period (two heartbeats) is taken by whichever
        node asks: its candidate did not scan. The leases as :meth:`claim_orphan` returns
        them; nothing if ``node_id`` is unregistered, draining or full."""
        ...

    def claim_orphan(self, node_id: str, session_id: str) -> Lease | None:
        """Take over an expired lease for ``node_id``, if it still is expired and ``node_id``
        is registered, not draining and has free capacity: the new lease (epoch + 1, the
        last saved state, ``previous_node``). Of any number of nodes asking, one gets it."""
        ...

    def close(self) -> None:
        """Release the engine's connections; no method may be called afterwards."""
        ...


def least_loaded(members: Iterable[Member]) -> Member | None:
    """The member with the smallest share of its capacity in use, among those with room and
    not draining (ties: fewer in use, then the smallest id, so that every caller agrees)."""
    best: tuple[float, int, str] | None = None
    chosen: Member | None = None
    for member in members:
        if member.free <= 0:
            continue
        rank = (member.load / member.capacity, member.load, member.id)
        if best is None or rank < best:
            best, chosen = rank, member
    return chosen


def frozen_meta(meta: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of ``meta`` (every key and value a string)."""
    if not meta:
        return _EMPTY
    return MappingProxyType({str(k): str(v) for k, v in meta.items()})
