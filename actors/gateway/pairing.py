"""Which call a new connection belongs to, sans-I/O: every call by session id, and the ended.

A provider stream whose token is valid (checked by the caller, :mod:`actors.signing`) is paired
with its call by :meth:`Calls.pair`; a session hop whose handshake is being accepted claims its
call with :meth:`Calls.claim`. **Single use**: a stream token pairs one provider stream, once.
``pair`` refuses a second stream for a call, and a stream for a call that ended: the ended
calls are remembered (the last :data:`ENDED_KEPT` of them), so a stream replayed after its
call ended is refused, and a hop for an ended call is told so.

A claim is made as the hop's handshake is answered, so that the count of session frames it
reports (``X-Gateway-Received``) is exact: from then on the older hop, if any, is superseded
(stops reading and writing). The hop's handler takes the claim up (:meth:`Call.attach`);
a connection that ends before that has its claim undone (:meth:`Calls.undo`), leaving nothing
behind and the older hop going on.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Generic

from .calls import C, Call, Hop, Role, Side, Timeouts

__all__ = ["ENDED_KEPT", "Calls", "Claim", "ClaimKind", "Refusal"]

#: How many ended calls are remembered (to refuse a stream replayed after its call ended).
ENDED_KEPT: Final = 10_000


class ClaimKind(enum.Enum):
    ATTACH = "attach"  # the hop takes the call over
    UNKNOWN = "unknown"  # resumes a call never seen here (the gateway restarted): close 4404
    ENDED = "ended"  # the call has ended: close 1000


@dataclass(frozen=True, slots=True)
class Claim(Generic[C]):
    """A session hop's claim on its call, made as its handshake is answered (so that
    :attr:`received`, sent in that answer, is exact) and taken up by its handler
    (:meth:`Call.attach`), or undone (:meth:`Calls.undo`) if its connection ends first."""

    kind: ClaimKind
    session_id: str
    hop: Hop[C]
    call: Call[C] | None = None  # for ATTACH
    resumed: bool = False  # the call had a hop before
    created: bool = False  # the claim created the call record
    replaced: Hop[C] | None = None  # the hop it supersedes
    asked: int = 0  # the X-Resume-From it asked for (hop.cursor: where it really resumes)

    @property
    def received(self) -> int:
        """Session frames the gateway has received in this call (``X-Gateway-Received``)."""
        return self.call.from_session if self.call is not None else 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A provider stream refused: ``reason`` is the counted kind, ``why`` the close reason."""

    reason: str
    why: str


class Calls(Generic[C]):
    """Every call the gateway holds, by session id, and the memory of those that ended."""

    def __init__(
        self,
        *,
        buffer_frames: int,
        pair_timeout_s: float,
        provider_wait_s: float,
        resume_window_s: float,
        ended_kept: int = ENDED_KEPT,
    ) -> None:
        if buffer_frames < 1:
            raise ValueError(f"buffer_frames must be >= 1, not {buffer_frames}")
        self.buffer_frames = buffer_frames
        self._timeouts = Timeouts(pair_timeout_s, provider_wait_s, resume_window_s)
        self._ended_kept = ended_kept
        self._calls: dict[str, Call[C]] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # session id -> how it ended

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call[C]]:
        return iter(list(self._calls.values()))

    def get(self, session_id: str) -> Call[C] | None:
        return self._calls.get(session_id)

    def how_ended(self, session_id: str) -> str | None:
        """Why the call of ``session_id`` ended, if it did (and is still remembered)."""
        return self._ended.get(session_id)

    def _new(self, session_id: str) -> Call[C]:
        call = self._calls[session_id] = Call(session_id, self.buffer_frames, self._timeouts)
        return call

    def pair(self, session_id: str, stream: C, now: float) -> Call[C] | Refusal:
        """A provider stream with a valid token for ``session_id``: its call, now holding
        ``stream``; or why it is refused (its call ended, or already has its stream)."""
        if session_id in self._ended:
            return Refusal("ended", f"session {session_id} has ended")
        call = self._calls.get(session_id) or self._new(session_id)
        if call.side(Role.PROVIDER) is not Side.NOT_YET:
            why = f"session {session_id} already has a provider stream"
            return Refusal("duplicate_stream", why)
        call.pair(stream, now)
        return call

    def claim(self, session_id: str, connection: C, resume_from: int) -> Claim[C]:
        """A session hop's handshake is being accepted: claim its call. A hop that resumes
        (``resume_from`` > 0) a call never seen here is :attr:`ClaimKind.UNKNOWN`; one for an
        ended call :attr:`ClaimKind.ENDED`. Otherwise the current hop (if any) is marked
        superseded from now on, and the new one resumes at ``resume_from`` (or, if it claims
        more than was ever sent, at the oldest frame kept)."""
        call = self._calls.get(session_id)
        if call is None:
            if session_id in self._ended:
                return Claim(ClaimKind.ENDED, session_id, Hop(connection, 0))
            if resume_from > 0:  # it saw frames of this call, through a gateway that is gone
                return Claim(ClaimKind.UNKNOWN, session_id, Hop(connection, -1), asked=resume_from)
            call, created = self._new(session_id), True
        else:
            created = False
        old = call.hop
        if old is not None:
            old.superseded = True
        hop = Hop(connection, call.resume_point(resume_from))
        resumed = call.had_hop
        return Claim(ClaimKind.ATTACH, session_id, hop, call, resumed, created, old, resume_from)

    def undo(self, claim: Claim[C], now: float) -> None:
        """A claimed hop's connection ended before its handler took the claim up."""
        call = claim.call
        if call is None or call.ended or call.hop is not claim.replaced:
            return
        old = claim.replaced
        if old is not None:
            old.superseded = False  # the hop it would have replaced goes on
            return
        if claim.created and call.side(Role.PROVIDER) is Side.NOT_YET:
            del self._calls[call.session_id]  # nothing of this call ever existed
        elif call.deadline is None:
            call.arm_resume(now)

    def end(self, call: Call[C], why: str) -> int:
        """Forget ``call`` (remembering that it ended, and ``why``); returns the session
        frames still waiting for the provider stream, now dropped. Ending twice does nothing."""
        if call.ended:
            return 0
        dropped = call.end()
        self._calls.pop(call.session_id, None)
        self._ended[call.session_id] = why
        while len(self._ended) > self._ended_kept:
            self._ended.popitem(last=False)
        return dropped
