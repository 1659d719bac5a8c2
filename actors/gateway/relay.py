"""The relay: each call's frames, both ways, between its provider stream and its session hop.

The gateway's server (:mod:`actors.gateway.server`) accepts and authenticates connections and
hands each one here: a provider stream once its call is paired, a session hop once its claim
is taken up. :class:`Relay` drives the call's sans-I/O record (:mod:`actors.gateway.calls`)
with the connections, the tasks and the timers of the gateway's event loop.

**Bounded buffers.** No relay ever waits on the peer it writes to while it reads the other
side: a frame goes into a write buffer only while that is below its high-water mark
(``write_nowait``), else it waits in the call's bounded buffer for the direction's sender,
which is the one that waits for the buffer to drain. What does not fit is dropped
oldest-first and counted (``dropped_to_provider``, ``lost_to_session``), as is whatever is
still waiting when the call ends.

**Ends.** A session hop that closes with 1000 ends the call: the provider stream is closed. Any
other end of a session hop (a crash, a reset, a silent peer) starts the resume window; a hop
that does not come back within ``resume_window_s`` ends the provider stream with 1001. A
provider stream that ends is relayed to the session to its last frame, then the hop is closed
with 1000 ``call ended``, unless a re-stream of the call pairs first (then the hop goes on
with the new stream's frames; see :mod:`actors.gateway.pairing`'s *Re-streams*).
A session hop that waits :attr:`~actors.config.GatewayConfig.provider_wait_s` for
its provider (longer than a call may ring) is closed with 1008.

Everything runs on one asyncio event loop, so a call's state needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..codecs import Frame
from ..config import GatewayConfig
from ..wire.constants import STREAM_ENDED, CloseCode
from ._ws import ConnectionClosed, ServerConnection
from .admission import GatewayConnection, peer
from .calls import NORMAL, POLICY, Call, Deadline, Ending, Hop
from .pairing import Calls, Claim, Refusal

__all__ = ["GatewayStats", "Relay"]

logger = logging.getLogger("actors.gateway.server")  # one logger for the whole gateway

_Connection = GatewayConnection
_Call = Call[GatewayConnection]
_Hop = Hop[GatewayConnection]


@dataclass(slots=True)
class GatewayStats:
    """Counters since the gateway started (a snapshot; see :meth:`MediaGateway.stats`)."""

    calls_active: int = 0
    pairings: int = 0  # provider streams paired with a session
    session_hops: int = 0  # session hops accepted
    resumes: int = 0  # session hops that took over from an earlier one
    rejected: dict[str, int] = field(default_factory=dict)  # by reason
    frames_to_session: int = 0
    frames_to_provider: int = 0
    buffered_to_session: int = 0  # provider frames kept for resume right now
    waiting_for_provider: int = 0  # session frames waiting for the provider stream
    lost_to_session: int = 0  # evicted from the resume buffer before a hop could take them
    # Session frames the provider stream never got: its buffer was full, it was not there,
    # or the call ended with them still waiting.
    dropped_to_provider: int = 0
    expired: int = 0  # calls ended because the session hop stayed away
    connections: int = 0  # open right now, both sides
    pending: int = 0  # open right now and not yet authenticated


class Relay:
    """Every call's relaying, its timers and its end (on the gateway's event loop)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.calls: Calls[_Connection] = Calls(
            buffer_frames=config.buffer_frames,
            pair_timeout_s=config.pair_timeout_s,
            provider_wait_s=config.provider_wait_s,
            resume_window_s=config.resume_window_s,
        )
        self.stats = GatewayStats()  # its counters; the server adds the connections' own
        self._timers: dict[_Call, tuple[Deadline, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def pair(self, session_id: str, ws: _Connection, nonce: str = "") -> _Call | Refusal:
        """A provider stream with a valid token (for ``nonce``): its call, now holding it;
        or a refusal."""
        call = self.calls.pair(session_id, ws, self._now(), nonce)
        if not isinstance(call, Refusal):
            self._sync_timer(call)
            self.stats.pairings += 1
        return call

    def undo(self, claim: Claim[_Connection]) -> None:
        """A claim whose connection ended before its handler took it up."""
        if claim.call is not None:
            self.calls.undo(claim, self._now())
            self._sync_timer(claim.call)

    async def provider_stream(self, ws: _Connection, call: _Call, early: list[Frame]) -> None:
        """Relay a paired provider stream, whose first frames were ``early``, to its end."""
        for frame in early:
            call.provider_frame(frame)
        self._wake(call.hop)
        feeder = asyncio.create_task(self._feed_provider(call, ws))
        stats = self.stats

        def relay(frame: Frame) -> None:
            hop = call.provider_frame(frame)
            if hop is not None and hop.connection.write_nowait(frame):
                # Caught up: sent from here, sparing the hop's sender a wake-up.
                hop.cursor += 1
                stats.frames_to_session += 1
            else:
                self._wake(call.hop)

        ws.relay_messages(relay)  # most frames: as they arrive, no recv() per frame
        try:
            async for frame in ws:  # the others, in order with them; and the end
                relay(frame)
        except ConnectionClosed:
            pass
        finally:
            ws.relay_messages(None)
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            # What waits for it is dropped: no stream will ever take it now.
            self.stats.dropped_to_provider += call.provider_ended(self._now())
            self._sync_timer(call)
            self._wake(call.hop)  # the hop's writer closes the hop once it has all
            logger.info("session %s: provider stream ended (%s)", call.session_id, _close_of(ws))

    async def session_hop(self, ws: _Connection, call: _Call, hop: _Hop, resumed: bool) -> None:
        """Relay a session hop whose claim on ``call`` is taken up, to its end."""
        old = call.attach(hop, self._now())
        self._sync_timer(call)
        self.stats.session_hops += 1
        if resumed:
            self.stats.resumes += 1
        logger.info(
            "session %s: hop %s (%s), resuming at frame %d of %d",
            call.session_id,
            "resumed" if resumed else "connected",
            peer(ws),
            hop.cursor,
            call.ring.received,
        )
        if old is not None:
            # Its connector is gone (it redialled), or lost the session (fenced): make sure
            # its socket is gone too.
            self._spawn(old.connection.close(*_replaced(old)))
        writer = asyncio.create_task(self._feed_session(call, hop))
        try:
            await self._relay_from_session(ws, call, hop)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if call.hop is not hop:
            return  # a newer hop took over
        received = ws.protocol.close_rcvd
        normal = received is not None and received.code == NORMAL
        ending = call.hop_lost(hop, self._now(), closed_normally=normal)
        if ending is not None:
            self._end(call, ending)
        elif not call.ended:
            logger.info(
                "session %s: hop lost (%s); holding the call for %g s",
                call.session_id,
                _close_of(ws),
                self.config.resume_window_s,
            )
            self._sync_timer(call)

    async def _relay_from_session(self, ws: _Connection, call: _Call, hop: _Hop) -> None:
        """Count and pass on every frame of the session hop, until it ends or is replaced."""
        stats = self.stats
        replaced = False

        def relay(frame: Frame) -> None:
            nonlocal replaced
            if replaced:
                return
            if hop.superseded:
                # Ending the hop's handler would close it with 1000, which reads as
                # "session ended": close it as replaced; the loop below ends with it.
                replaced = True
                ws.relay_messages(None)
                self._spawn(ws.close(*_replaced(hop)))
                return
            provider = call.session_frame()
            if provider is not None and provider.write_nowait(frame):
                stats.frames_to_provider += 1  # sent from here: no feeder wake-up
                return
            stats.dropped_to_provider += call.queue(frame)
            if call.provider is not None:
                call.provider.ready.set()

        ws.relay_messages(relay)  # most frames: as they arrive, no recv() per frame
        try:
            async for frame in ws:  # the others, in order with them; and the end
                relay(frame)
        finally:
            ws.relay_messages(None)

    async def _feed_session(self, call: _Call, hop: _Hop) -> None:
        """Send the hop every provider frame from its cursor on, in order, then wait for more."""
        ws = hop.connection
        ready, ring = ws.ready, call.ring
        with contextlib.suppress(ConnectionClosed):
            while not hop.superseded:
                lost = call.catch_up(hop, ring.first)
                if lost:
                    self.stats.lost_to_session += lost
                    logger.warning(
                        "session %s: %d frames left the resume buffer before the session "
                        "took them (raise gateway.buffer_frames)",
                        call.session_id,
                        lost,
                    )
                if hop.cursor < ring.received:
                    # No await in this loop: the ring and the cursor hold still meanwhile.
                    for frame in ring.since(hop.cursor):
                        if not ws.write_nowait(frame):
                            break
                        hop.cursor += 1
                        self.stats.frames_to_session += 1
                    else:
                        continue
                    if not ws.write_paused:
                        return  # the hop is gone: its frames wait in the ring for the next
                    await ws.writable()
                    continue
                if call.stream_ended:
                    hop.stream_closed = True
                    await ws.close(NORMAL, STREAM_ENDED)
                    return
                ready.clear()
                await ready.wait()

    async def _feed_provider(self, call: _Call, ws: _Connection) -> None:
        outgoing, ready = call.outgoing, ws.ready
        while True:
            while outgoing:
                if ws.write_nowait(outgoing[0]):
                    outgoing.popleft()
                    self.stats.frames_to_provider += 1
                elif ws.write_paused:
                    await ws.writable()
                else:
                    return  # the stream is ending: what waits is counted when it has
            ready.clear()
            await ready.wait()

    # -- timers and ending ---------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _sync_timer(self, call: _Call) -> None:
        """Run a timer for the call's current deadline (and none for one it no longer has)."""
        wanted = call.deadline
        armed = self._timers.get(call)
        if armed is not None:
            if armed[0] is wanted:
                return
            armed[1].cancel()
            del self._timers[call]
        if wanted is not None:
            loop = asyncio.get_running_loop()
            self._timers[call] = (wanted, loop.call_at(wanted.at, self._expire, call, wanted))

    def _expire(self, call: _Call, deadline: Deadline) -> None:
        if self._timers.get(call, (None,))[0] is deadline:
            del self._timers[call]
        ending = call.expire(deadline)
        if ending is not None:
            if ending.expired:
                self.stats.expired += 1
            self._end(call, ending)

    def _end(self, call: _Call, ending: Ending) -> None:
        """Forget the call; close whatever side is still there with the ending's code."""
        if call.ended:
            return
        self.stats.dropped_to_provider += self.calls.end(call, ending.why)
        self._sync_timer(call)
        logger.info("session %s: call ended at the gateway: %s", call.session_id, ending.reason)
        hop = call.hop.connection if call.hop else None
        for ws in (call.provider, hop):
            if ws is not None:
                self._spawn(ws.close(ending.code, ending.reason))
                ws.ready.set()

    def _wake(self, hop: _Hop | None) -> None:
        if hop is not None:
            hop.connection.ready.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks: hold them until they are done.
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _replaced(hop: _Hop) -> tuple[int, str]:
    """How a superseded hop is closed: fenced (a newer lease epoch took the call), or
    replaced by its own session's newer connection."""
    if hop.fenced:
        return int(CloseCode.SESSION_FENCED), "a newer lease epoch holds the call"
    return POLICY, "replaced by a newer connection"


def _close_of(ws: ServerConnection) -> str:
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        return "no close frame"
    return f"close {rcvd.code}" + (f" {rcvd.reason}" if rcvd.reason else "")
