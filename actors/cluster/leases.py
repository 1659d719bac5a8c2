"""What one node leases, as it knows it: :class:`LeaseBook`, thread-safe and without I/O.

The node's own copy of each of its sessions' leases (meta, the last saved state, epoch) is what
it writes to the directory, and what it writes again when the directory has lost it (a Redis
restarted without persistence). The book tracks what is still to be written: new leases,
states saved since the last write, releases. :class:`~actors.cluster.node.ClusterMember`'s
thread takes the writes (:meth:`LeaseBook.writes`), performs them and reports each outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import SessionNotFound
from .directory import Lease, Renewal, frozen_meta

__all__ = ["LeaseBook", "Writes", "lease_for"]


@dataclass(slots=True)
class _Held:
    meta: Mapping[str, str]
    state: bytes
    epoch: int
    call_id: str | None
    in_directory: bool  # False: to be acquired (new, or lost by the directory)
    restore: bool = False  # the directory lost it: the next acquire restores it
    state_version: int = 0  # bumped by each save_state
    written_version: int = 0  # the version the directory has
    meta_changes: dict[str, str] = field(default_factory=dict)  # merged since the last write


@dataclass(frozen=True, slots=True)
class Writes:
    """What is to be written: releases, leases to acquire (with the state version each
    carries) and states saved since their last write."""

    releases: tuple[str, ...] = ()
    acquires: tuple[tuple[Lease, int], ...] = ()
    states: tuple[tuple[str, bytes, int], ...] = ()
    metas: tuple[tuple[str, Mapping[str, str]], ...] = ()  # fields to merge into the meta
    _tokens: dict[str, object] = field(default_factory=dict, repr=False)


class LeaseBook:
    """The leases one node holds (or is about to), and what of them the directory lacks."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._held: dict[str, _Held] = {}
        self._releases: set[str] = set()

    # -- what the service says ------------------------------------------------------------------

    def add(self, lease: Lease, *, in_directory: bool) -> None:
        """Hold ``lease`` (``in_directory``: the directory has it already, e.g. a claim)."""
        held = _Held(lease.meta, lease.state, lease.epoch, lease.call_id, in_directory)
        with self._lock:
            self._releases.discard(lease.session_id)
            self._held[lease.session_id] = held

    def add_if_room(self, lease: Lease, capacity: int) -> str | None:
        """:meth:`add` (not yet in the directory) unless ``capacity`` sessions are held: the
        id of the session that holds ``lease.call_id`` now (``lease.session_id``, or the one
        already held for that call: it is not added twice), or ``None`` (no room)."""
        with self._lock:
            if lease.call_id is not None:
                for sid, held in self._held.items():
                    if held.call_id == lease.call_id:
                        return sid
            if len(self._held) >= capacity:
                return None
            self._held[lease.session_id] = _Held(
                lease.meta, lease.state, lease.epoch, lease.call_id, False
            )
            return lease.session_id

    def save_state(self, session_id: str, data: bytes) -> None:
        with self._lock:
            held = self._held.get(session_id)
            if held is None:
                raise SessionNotFound(session_id)
            held.state = bytes(data)
            held.state_version += 1

    def update_meta(self, session_id: str, fields: Mapping[str, str]) -> bool:
        """Merge ``fields`` into the session's meta (here now, in the directory at the next
        write); ``False`` for a session not held."""
        with self._lock:
            held = self._held.get(session_id)
            if held is None:
                return False
            changed = {k: v for k, v in fields.items() if held.meta.get(k) != v}
            if changed:
                held.meta = frozen_meta({**held.meta, **changed})
                held.meta_changes.update(changed)
            return True

    def meta(self, session_id: str) -> Mapping[str, str] | None:
        with self._lock:
            held = self._held.get(session_id)
            return None if held is None else held.meta

    def release(self, session_id: str) -> bool:
        with self._lock:
            if self._held.pop(session_id, None) is None:
                return False
            self._releases.add(session_id)
            return True

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._held

    # -- what the directory says ----------------------------------------------------------------

    def to_renew(self) -> list[str]:
        with self._lock:
            return [sid for sid, held in self._held.items() if held.in_directory]

    def renewed(self, renewal: Renewal) -> list[str]:
        """Apply a renewal: missing leases are to be acquired again; the lost ones are dropped
        (returned, for ``on_lost``)."""
        lost = []
        with self._lock:
            for sid in renewal.missing:
                if (held := self._held.get(sid)) is not None:
                    held.in_directory = False
                    held.restore = True
            for sid in renewal.lost:
                if self._held.pop(sid, None) is not None:
                    lost.append(sid)
        return lost

    def writes(self) -> Writes:
        with self._lock:
            acquires = []
            tokens: dict[str, object] = {}
            for sid, h in self._held.items():
                if not h.in_directory:
                    lease = Lease(sid, self._node_id, h.epoch, h.meta, h.state, call_id=h.call_id)
                    acquires.append((lease, h.state_version))
                    tokens[sid] = h
            states = tuple(
                (sid, h.state, h.state_version)
                for sid, h in self._held.items()
                if h.in_directory and h.state_version != h.written_version
            )
            metas = []
            for sid, h in self._held.items():
                if h.meta_changes:
                    if h.in_directory:  # an acquire writes the whole meta anyway
                        metas.append((sid, frozen_meta(h.meta_changes)))
                    h.meta_changes = {}
            return Writes(tuple(self._releases), tuple(acquires), states, tuple(metas), tokens)

    def released(self, session_id: str) -> None:
        with self._lock:
            self._releases.discard(session_id)
            self._changed.notify_all()

    def acquired(self, writes: Writes, lease: Lease, version: int, ok: bool) -> str:
        """Apply an acquire's outcome: ``"held"``, ``"restored"``, ``"lost"`` (another node
        has it: dropped) or ``"gone"`` (released meanwhile)."""
        sid = lease.session_id
        with self._lock:
            held = self._held.get(sid)
            if held is None or held is not writes._tokens.get(sid):
                return "gone"
            self._changed.notify_all()
            if not ok:
                del self._held[sid]
                return "lost"
            held.in_directory = True
            held.written_version = max(held.written_version, version)
            restored, held.restore = held.restore, False
            return "restored" if restored else "held"

    def state_written(self, session_id: str, version: int, ok: bool) -> None:
        with self._lock:
            if (held := self._held.get(session_id)) is not None:
                if ok:
                    held.written_version = max(held.written_version, version)
                else:
                    held.in_directory = False  # missing or taken: the acquire tells which
            self._changed.notify_all()

    def wait_written(self, timeout: float) -> bool:
        """Wait until nothing is left to write; ``False`` if that takes over ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._pending_locked():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def _pending_locked(self) -> bool:
        return bool(self._releases) or any(
            not h.in_directory or h.state_version != h.written_version for h in self._held.values()
        )


def lease_for(
    session_id: str, node_id: str, meta: Mapping[str, str] | None, call_id: str | None = None
) -> Lease:
    """A first lease (epoch 1, no state) of ``session_id`` for ``node_id``."""
    return Lease(session_id, node_id, meta=frozen_meta(meta), call_id=call_id)
