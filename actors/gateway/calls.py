"""One call at the gateway, sans-I/O: its two sides, its buffers, where a hop resumes.

A *call* is one session's pairing at the gateway: at most one **provider stream** (the side a
provider dials) and at most one current **session hop** (the side a connector dials, and
redials). :class:`Call` holds what the gateway knows of one call and decides nothing about
sockets, tasks or clocks: :mod:`actors.gateway.relay` reads and writes the connections and
drives it, passing the time in (``now``, from any monotonic clock) wherever a deadline is set.
Which call a new connection belongs to is :mod:`actors.gateway.pairing`.

**States.** Each side of a call has its own state, and the whole table of their legal moves is
:data:`TRANSITIONS` (as in h11's ``_state.py``: one table, one part per role)::

    provider:  NOT_YET --attach--> OPEN --detach--> GONE --attach--> OPEN ...
    hop:       NOT_YET --attach--> OPEN --detach--> ABSENT --attach--> OPEN ...
    both:      any --end--> CLOSED; CLOSED --detach--> CLOSED    (a connection winding down)

A provider stream that ended is followed by another only with a stream credential the call
has not used (a **re-stream**: the call's TwiML was updated, e.g. to play DTMF, and streams
the call again; :mod:`actors.gateway.pairing` checks the credential).

Anything else raises :class:`~actors.errors.IllegalTransition` (a bug in the driver). The
call's :class:`CallState` (new, awaiting hop, awaiting provider, paired, draining, hop absent,
ended) follows from the two.

**Deadlines.** A call waits for at most one thing at a time, and :attr:`Call.deadline` says
until when: a provider stream with no hop yet waits ``pair_timeout_s`` for one; a hop with no
provider stream ``provider_wait_s`` for one (a call re-opened by a hop that expects a
re-stream: :attr:`Call.restream_wait_s`, what the hop asked for); a call whose hop is gone
``resume_window_s`` for it to come back. The driver runs a timer for the current
:class:`Deadline` and calls :meth:`Call.expire` with it when it fires; a deadline replaced
meanwhile is ignored.

**Buffers and resume.** Frames are numbered per direction from 0. :class:`Ring` keeps the last
``buffer_frames`` provider frames, sent or not (a dying hop may not have delivered them); a
hop resumes at the count it says it received (``X-Resume-From``), and what left the ring
before it was sent is counted as lost (:meth:`Call.catch_up`). Session frames the provider
stream cannot take yet wait in :attr:`Call.outgoing`, at most ``buffer_frames``; past that the
oldest is dropped and counted. :attr:`Call.from_session` is what the gateway answers a
resuming hop (``X-Gateway-Received``), so the connector resends from there.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ..codecs import Frame
from ..errors import IllegalTransition
from ..wire.constants import CloseCode

__all__ = [
    "GOING_AWAY",
    "NORMAL",
    "POLICY",
    "TRANSITIONS",
    "Call",
    "CallState",
    "Deadline",
    "Ending",
    "Event",
    "Hop",
    "Ring",
    "Role",
    "Side",
    "Timeouts",
]

# The close codes a call ends with, as the plain ints a close frame carries.
NORMAL: Final = int(CloseCode.NORMAL_CLOSURE)
GOING_AWAY: Final = int(CloseCode.GOING_AWAY)
POLICY: Final = int(CloseCode.POLICY_VIOLATION)

C = TypeVar("C")  # the driver's connection type: this module only holds and compares them


class Role(enum.Enum):
    PROVIDER = "provider"
    HOP = "hop"


class Side(enum.Enum):
    """Where one side of a call is."""

    NOT_YET = "not yet"  # never connected
    OPEN = "open"
    ABSENT = "absent"  # hop only: lost, may come back within the resume window
    GONE = "gone"  # provider only: its stream ended, and a stream never comes back
    CLOSED = "closed"  # the call ended


class Event(enum.Enum):
    ATTACH = "attach"
    DETACH = "detach"
    END = "end"


_P, _H = Role.PROVIDER, Role.HOP
_A, _D, _E = Event.ATTACH, Event.DETACH, Event.END

#: The only legal moves, per role. Everything not listed here is a bug.
TRANSITIONS: Final[dict[Role, dict[Side, dict[Event, Side]]]] = {
    _P: {
        Side.NOT_YET: {_A: Side.OPEN, _E: Side.CLOSED},
        Side.OPEN: {_D: Side.GONE, _E: Side.CLOSED},
        Side.GONE: {_A: Side.OPEN, _E: Side.CLOSED},  # attach: a re-stream
        Side.CLOSED: {_D: Side.CLOSED},
    },
    _H: {
        Side.NOT_YET: {_A: Side.OPEN, _E: Side.CLOSED},
        Side.OPEN: {_A: Side.OPEN, _D: Side.ABSENT, _E: Side.CLOSED},  # attach: a newer hop
        Side.ABSENT: {_A: Side.OPEN, _E: Side.CLOSED},
        Side.CLOSED: {_D: Side.CLOSED},
    },
}


class CallState(enum.Enum):
    """The whole call, as the two sides make it."""

    NEW = "new"  # made by a hop's handshake; neither side attached yet
    AWAITING_HOP = "awaiting hop"  # provider stream paired, no hop yet
    AWAITING_PROVIDER = "awaiting provider"  # a hop, no provider stream yet
    PAIRED = "paired"
    DRAINING = "draining"  # the provider stream ended; the hop gets the rest
    HOP_ABSENT = "hop absent"  # the resume window runs
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Deadline:
    """``why`` ends the call at ``at`` (``now + delay`` when it was set) unless it is replaced."""

    at: float
    delay: float
    why: str


@dataclass(frozen=True, slots=True)
class Ending:
    """How to end a call: close what is still open with ``code``/``reason``; ``why`` is
    remembered for the call; ``expired``: its hop stayed away past its window."""

    code: int
    reason: str
    why: str
    expired: bool = False


class Ring:
    """The last ``capacity`` provider frames, numbered from :attr:`first`; :attr:`received`
    counts every frame ever appended (the next frame's number)."""

    __slots__ = ("_frames", "capacity", "received")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.received = 0
        self._frames: deque[Frame] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def first(self) -> int:
        """The number of the oldest frame kept (== :attr:`received` when empty)."""
        return self.received - len(self._frames)

    def append(self, frame: Frame) -> None:
        """Keep ``frame`` as number :attr:`received`; the oldest leaves past the capacity."""
        frames = self._frames
        frames.append(frame)
        self.received += 1
        if len(frames) > self.capacity:
            frames.popleft()

    def since(self, number: int) -> Iterator[Frame]:
        """The frames from ``number`` (>= :attr:`first`) on, in order. Do not append while
        iterating."""
        return itertools.islice(self._frames, number - self.first, None)

    def clear(self) -> None:
        self._frames.clear()


class Hop(Generic[C]):
    """One session-side connection, and where it is in the provider stream."""

    __slots__ = ("connection", "cursor", "fenced", "stream_closed", "superseded")

    def __init__(self, connection: C, cursor: int) -> None:
        self.connection = connection
        self.cursor = cursor  # the number of the next provider frame to send it
        self.superseded = False  # a newer hop claimed the call: stop reading and writing
        self.fenced = False  # ... and that hop named a newer lease epoch (close it 4409)
        # The gateway closed it ("call ended") because the provider stream had ended and it
        # had every frame: its 1000 echoed back is not the session ending the call.
        self.stream_closed = False


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a call waits for each thing (see the module's *Deadlines*)."""

    pair_timeout_s: float
    provider_wait_s: float
    resume_window_s: float


class Call(Generic[C]):
    """One session's pairing: its two sides, both directions' buffers, its deadline."""

    __slots__ = (
        "_sides",
        "base",
        "deadline",
        "epoch",
        "from_session",
        "had_hop",
        "hop",
        "nonces",
        "outgoing",
        "provider",
        "reopened",
        "restream_wait_s",
        "ring",
        "session_id",
        "stream_ended",
        "timeouts",
    )

    def __init__(self, session_id: str, buffer_frames: int, timeouts: Timeouts) -> None:
        self.session_id = session_id
        self.timeouts = timeouts
        self._sides = {Role.PROVIDER: Side.NOT_YET, Role.HOP: Side.NOT_YET}
        self.provider: C | None = None
        self.stream_ended = False  # the provider stream ended (before the call did, or after)
        self.hop: Hop[C] | None = None
        self.had_hop = False
        self.ring = Ring(buffer_frames)  # provider -> session, kept for resume
        self.from_session = 0  # session frames received, over every hop
        self.outgoing: deque[Frame] = deque()  # session -> provider, not yet sent
        self.deadline: Deadline | None = None
        # Adopted from another gateway (see pairing's *Failover*): what the session calls
        # provider frame n is our ring's n - base.
        self.base = 0
        self.epoch = 0  # the highest lease epoch a hop of this call has named (fencing)
        self.nonces: set[str] = set()  # the stream credentials' nonces used (pairing's)
        self.reopened = False  # an ended call streamed again (pairing's *Re-streams*)
        self.restream_wait_s: float | None = None  # how long a re-opening hop waits

    # -- state ---------------------------------------------------------------------------------

    def side(self, role: Role) -> Side:
        return self._sides[role]

    @property
    def ended(self) -> bool:
        return self._sides[Role.HOP] is Side.CLOSED

    @property
    def state(self) -> CallState:
        provider, hop = self._sides[Role.PROVIDER], self._sides[Role.HOP]
        if hop is Side.CLOSED:
            return CallState.ENDED
        if hop is Side.OPEN:
            if provider is Side.OPEN:
                return CallState.PAIRED
            return CallState.DRAINING if provider is Side.GONE else CallState.AWAITING_PROVIDER
        if hop is Side.ABSENT or provider is Side.GONE:
            return CallState.HOP_ABSENT
        return CallState.AWAITING_HOP if provider is Side.OPEN else CallState.NEW

    def _move(self, role: Role, event: Event) -> None:
        current = self._sides[role]
        new = TRANSITIONS[role][current].get(event)
        if new is None:
            raise IllegalTransition(self.session_id, f"{role.value} {current.value}", event.value)
        self._sides[role] = new

    def _arm(self, now: float, delay: float, why: str) -> None:
        self.deadline = Deadline(now + delay, delay, why)

    def arm_resume(self, now: float) -> None:
        """Wait ``resume_window_s`` for a hop to come back."""
        self._arm(now, self.timeouts.resume_window_s, "session did not return")

    # -- the provider side ---------------------------------------------------------------------

    def pair(self, stream: C, now: float) -> None:
        """``stream`` is the call's provider stream (the first, or a re-stream after the
        last one ended: the caller has checked its credential)."""
        self._move(Role.PROVIDER, Event.ATTACH)
        self.provider, self.stream_ended = stream, False
        if self.hop is not None:
            self.deadline = None  # the pairing wait is over
        elif self.deadline is None:
            self._arm(now, self.timeouts.pair_timeout_s, "no session connected")

    def provider_frame(self, frame: Frame) -> Hop[C] | None:
        """Number and keep one provider frame. Returns the hop it is the very next frame of
        (send it there now, then advance the hop's cursor), else ``None``."""
        ring = self.ring
        ring.append(frame)
        hop = self.hop
        if hop is not None and hop.cursor == ring.received - 1:
            return hop
        return None

    def provider_ended(self, now: float) -> int:
        """The provider stream ended. Returns the session frames waiting for it, now dropped
        (no stream will ever take them); a call with no hop waits for one to come back."""
        self._move(Role.PROVIDER, Event.DETACH)
        self.provider, self.stream_ended = None, True
        dropped = self.drop_outgoing()
        if self.hop is None and not self.ended:
            self.arm_resume(now)  # keep the buffered frames for a hop that may come back
        return dropped

    # -- the session side ----------------------------------------------------------------------

    def session_frame(self) -> C | None:
        """Count one frame from the session hop. Returns the provider stream to send it to
        straight away (nothing waits before it), else ``None``: then :meth:`queue`."""
        self.from_session += 1
        return self.provider if not self.outgoing else None

    def queue(self, frame: Frame) -> int:
        """Keep a session frame for the provider stream; returns how many frames that
        dropped: this one if no stream will ever take it, else the oldest past the bound."""
        if self.stream_ended:
            return 1
        outgoing = self.outgoing
        dropped = 0
        if len(outgoing) >= self.ring.capacity:
            outgoing.popleft()
            dropped = 1
        outgoing.append(frame)
        return dropped

    def drop_outgoing(self) -> int:
        dropped = len(self.outgoing)
        self.outgoing.clear()
        return dropped

    def attach(self, hop: Hop[C], now: float) -> Hop[C] | None:
        """A claimed hop's handler runs: it is the call's hop now. Returns the hop it
        replaced (close that one), if any."""
        self._move(Role.HOP, Event.ATTACH)
        old, self.hop, self.had_hop = self.hop, hop, True
        self.deadline = None
        if self._sides[Role.PROVIDER] is Side.NOT_YET:
            if self.restream_wait_s is not None:
                self._arm(now, self.restream_wait_s, "no provider stream again (re-stream)")
            else:
                self._arm(now, self.timeouts.provider_wait_s, "no provider stream")
        return old

    def hop_lost(self, hop: Hop[C], now: float, *, closed_normally: bool) -> Ending | None:
        """``hop``'s connection ended (``closed_normally``: the session closed it with 1000).
        Returns how to end the call, or ``None`` (a newer hop took over, or the resume window
        now runs: see :attr:`deadline`)."""
        if self.hop is not hop:
            return None
        self._move(Role.HOP, Event.DETACH)
        self.hop = None
        if closed_normally and not hop.stream_closed:
            return Ending(NORMAL, "session ended", "ended by the session")
        provider = self._sides[Role.PROVIDER]
        if hop.stream_closed and provider is Side.OPEN:
            # A re-stream paired while we closed the hop: its session redials (it expects
            # the re-stream), and resumes where it left off.
            self.arm_resume(now)
            return None
        provider_gone = provider is Side.GONE
        if provider_gone and hop.cursor >= self.ring.received:
            return Ending(NORMAL, "call ended", "call ended")  # it had every frame
        if not self.ended:
            self.arm_resume(now)
        return None

    @property
    def sent_to_session(self) -> int:
        """Provider frames of the call so far, numbered as the session counts them."""
        return self.ring.received + self.base

    def resume_point(self, resume_from: int) -> int:
        """Where (in the ring) a hop that has received ``resume_from`` provider frames
        resumes: there, or at the oldest frame kept if it claims more than were ever sent."""
        at = resume_from - self.base
        return at if 0 <= at <= self.ring.received else self.ring.first

    @staticmethod
    def catch_up(hop: Hop[C], first: int) -> int:
        """Move a hop behind the ring's ``first`` frame up to it; returns the frames it lost."""
        lost = first - hop.cursor
        if lost <= 0:
            return 0
        hop.cursor = first
        return lost

    # -- deadlines -----------------------------------------------------------------------------

    def expire(self, deadline: Deadline) -> Ending | None:
        """The driver's timer for ``deadline`` fired. Returns how to end the call, or
        ``None`` (the deadline was replaced or cleared since, or nothing is waited for)."""
        if deadline is not self.deadline:
            return None
        self.deadline = None
        if self.ended:
            return None
        hop, provider = self._sides[Role.HOP], self._sides[Role.PROVIDER]
        if hop is Side.OPEN and provider is Side.NOT_YET:
            # A session waited for a provider stream that never came.
            why = f"{deadline.why} within {deadline.delay:g} s"
            return Ending(POLICY, why, "pair timeout")
        if self.hop is None:
            reason = f"{deadline.why} within {deadline.delay:g} s"
            return Ending(GOING_AWAY, reason, deadline.why, expired=True)
        return None

    def end(self) -> int:
        """The call ends (its record: :meth:`~actors.gateway.pairing.Calls.end`). Returns the
        session frames still waiting for the provider stream, now dropped."""
        self._move(Role.PROVIDER, Event.END)
        self._move(Role.HOP, Event.END)
        self.deadline = None
        self.ring.clear()
        return self.drop_outgoing()
