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

**Fencing.** A hop may name its session's lease epoch (``X-Session-Epoch``: it grows by one at
each takeover of the session by another runtime node). A call remembers the highest epoch a
hop named; a hop naming a lower one (or none, once one was named) is
:attr:`ClaimKind.STALE`: the node it comes from has lost the session. A hop naming a higher
one supersedes the current hop, which is closed as *fenced*.

**Failover.** A call redirected here from a gateway that died comes with a fresh provider
stream (a stream credential of its own, :mod:`actors.signing`) and a hop that resumes
(``X-Resume-From`` n > 0) a call this gateway never relayed. The first hop of such a call
*adopts* it: it resumes from the oldest provider frame kept here (whatever it says), and from
then on the session's numbering is kept (our frame k is its n + k), so that a later resume
here is exact. If the hop says how many frames it has sent (``X-Session-Sent``), the gateway
counts those as received (``X-Gateway-Received``): what the dead gateway did not pass on died
with it, and what it did pass on is not played to the caller twice. A hop that resumes a call
never seen here and names no epoch is :attr:`ClaimKind.UNKNOWN` (the gateway restarted: no
stream is coming back); one that names an epoch (a cluster's session, whose call may be
redirected here) creates the call, to wait for its stream like a new one.

**Re-streams.** A call whose TwiML is updated (``send_dtmf``: ``<Play digits>`` then
``<Connect><Stream>`` again) loses its provider stream, and the call then streams again for
the same session with a stream credential of its own (a fresh nonce). Every call remembers the
nonces of the credentials that paired its streams (kept with the ended calls, at most
:data:`MAX_STREAMS` per call), and :meth:`Calls.pair` pairs a stream only with a nonce the
call has not used: an old credential replayed is refused, as before. Such a stream re-opens
the call if it has ended meanwhile after its stream did (its hop was closed with "call
ended"; never a call the session ended while it streamed, nor one whose hop stayed away),
and so does a hop that says it expects a re-stream (``X-Restream-Within``: how long to wait
for it); the
re-opened call numbers on from where the ended one stopped, both ways, so the session's hop
resumes exactly. A hop that does not say so is told the call has ended, as before.

**Draining.** While :attr:`Calls.draining`, a provider stream for a call not held here is
refused: the calls held go on, no new one starts (a re-stream of a call held here moments ago
is one of those that go on).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Generic

from .calls import C, Call, Hop, Role, Side, Timeouts

__all__ = ["ENDED_KEPT", "MAX_STREAMS", "Calls", "Claim", "ClaimKind", "HopRequest", "Refusal"]

#: How many ended calls are remembered (to refuse a stream replayed after its call ended).
ENDED_KEPT: Final = 10_000
#: Provider streams one call may pair in all (each re-stream spends one credential): past
#: this, a re-stream is refused rather than an old nonce forgotten.
MAX_STREAMS: Final = 256


@dataclass(frozen=True, slots=True)
class _Ended:
    """What is remembered of an ended call: why, the nonces it used, where it stopped."""

    why: str
    nonces: frozenset[str]
    sent: int  # provider frames, numbered as the session counts them
    received: int  # session frames received
    epoch: int
    restreamable: bool  # its provider stream had ended: the call itself may go on


class ClaimKind(enum.Enum):
    ATTACH = "attach"  # the hop takes the call over
    UNKNOWN = "unknown"  # resumes a call never seen here (the gateway restarted): close 4404
    ENDED = "ended"  # the call has ended: close 1000
    STALE = "stale"  # names an older lease epoch than a hop before it: close 4409


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
class HopRequest:
    """What a session hop's handshake asks for (its headers, checked): the arguments of
    :meth:`Calls.claim`."""

    session_id: str
    resume_from: int = 0
    epoch: int | None = None
    sent: int | None = None
    restream_s: float | None = None  # X-Restream-Within: the hop expects a re-stream


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
        self._ended: OrderedDict[str, _Ended] = OrderedDict()  # by session id
        self.draining = False  # refuse provider streams for calls not held here

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call[C]]:
        return iter(list(self._calls.values()))

    def get(self, session_id: str) -> Call[C] | None:
        return self._calls.get(session_id)

    def how_ended(self, session_id: str) -> str | None:
        """Why the call of ``session_id`` ended, if it did (and is still remembered)."""
        ended = self._ended.get(session_id)
        return None if ended is None else ended.why

    def _new(self, session_id: str) -> Call[C]:
        call = self._calls[session_id] = Call(session_id, self.buffer_frames, self._timeouts)
        return call

    def _reopen(self, session_id: str, ended: _Ended, wait_s: float | None) -> Call[C]:
        """An ended call streams again (see *Re-streams*): numbered on from where it
        stopped, with the nonces it used."""
        del self._ended[session_id]
        call = self._new(session_id)
        call.base, call.from_session, call.epoch = ended.sent, ended.received, ended.epoch
        call.had_hop = call.reopened = True
        call.nonces = set(ended.nonces)
        call.restream_wait_s = wait_s
        return call

    def pair(self, session_id: str, stream: C, now: float, nonce: str = "") -> Call[C] | Refusal:
        """A provider stream with a valid token (covering ``nonce``) for ``session_id``: its
        call, now holding ``stream``; or why it is refused (its credential was used already,
        its call holds a stream now, or a new call while draining). See *Re-streams*."""
        ended = self._ended.get(session_id)
        call = self._calls.get(session_id)
        if call is not None and call.side(Role.PROVIDER) is Side.OPEN:
            why = f"session {session_id} already has a provider stream"
            return Refusal("duplicate_stream", why)
        used = ended.nonces if ended is not None else call.nonces if call is not None else ()
        if nonce in used or (ended is not None and not ended.restreamable):
            if ended is not None:
                return Refusal("ended", f"session {session_id} has ended")
            why = f"session {session_id}: that stream credential was used already"
            return Refusal("duplicate_stream", why)
        if len(used) >= MAX_STREAMS:
            why = f"session {session_id}: {MAX_STREAMS} streams already"
            return Refusal("too_many_streams", why)
        if ended is not None:
            call = self._reopen(session_id, ended, None)
        elif call is None:
            if self.draining:
                return Refusal("draining", "the gateway is draining: it takes no new call")
            call = self._new(session_id)
        call.nonces.add(nonce)
        call.pair(stream, now)
        return call

    def claim(
        self,
        session_id: str,
        connection: C,
        resume_from: int,
        *,
        epoch: int | None = None,
        sent: int | None = None,
        restream_s: float | None = None,
    ) -> Claim[C]:
        """A session hop's handshake is being accepted: claim its call. ``epoch``: the lease
        epoch the hop named, if any; ``sent``: how many frames it says it has sent, if it
        does; ``restream_s``: it expects a re-stream, for that long. A hop that resumes
        (``resume_from`` > 0) a call never seen here, naming no epoch, is
        :attr:`ClaimKind.UNKNOWN`; one for an ended call :attr:`ClaimKind.ENDED` (unless it
        expects a re-stream: it re-opens the call, see *Re-streams*);
        one naming an older epoch than an earlier hop :attr:`ClaimKind.STALE` (see the
        module's *Fencing*). Otherwise the current hop (if any) is marked superseded from
        now on, and the new one resumes at ``resume_from`` (or, if it claims more than was
        ever sent, at the oldest frame kept; the first hop of a call redirected here adopts
        it: see *Failover*)."""
        call = self._calls.get(session_id)
        if call is None:
            ended = self._ended.get(session_id)
            if ended is not None and (restream_s is None or not ended.restreamable):
                return Claim(ClaimKind.ENDED, session_id, Hop(connection, 0))
            if ended is not None:
                call, created = self._reopen(session_id, ended, restream_s), True
            elif resume_from > 0 and epoch is None:  # through a gateway that is gone
                return Claim(ClaimKind.UNKNOWN, session_id, Hop(connection, -1), asked=resume_from)
            else:
                call, created = self._new(session_id), True
        else:
            created = False
        named = 0 if epoch is None else epoch
        if named < call.epoch:
            return Claim(ClaimKind.STALE, session_id, Hop(connection, -1), asked=resume_from)
        newer, call.epoch = named > call.epoch, named
        if not call.had_hop and call.hop is None and (resume_from > 0 or (sent or 0) > 0):
            call.base = resume_from - call.ring.first  # adopt: send it all that is kept
            call.from_session = max(call.from_session, sent or 0)
        old = call.hop
        if old is not None:
            old.superseded = True
            old.fenced = newer
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
            old.superseded = old.fenced = False  # the hop it would have replaced goes on
            return
        if claim.created and call.side(Role.PROVIDER) is Side.NOT_YET:
            if call.reopened:  # as it was: ended
                self.end(call, "ended")
            else:
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
        self._ended[call.session_id] = _Ended(
            why,
            frozenset(call.nonces),
            call.sent_to_session,
            call.from_session,
            call.epoch,
            restreamable=call.stream_ended,
        )
        while len(self._ended) > self._ended_kept:
            self._ended.popitem(last=False)
        return dropped
