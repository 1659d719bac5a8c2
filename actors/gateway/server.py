"""The media gateway: providers dial in, sessions dial in, and it relays between them.

Two kinds of WebSocket arrive (DESIGN section 6):

- a **provider stream** on ``/twilio``: Twilio's Media Streams, JSON text frames. The gateway
  reads it only until the ``start`` event, whose ``customParameters`` name the ``session`` and
  carry its **stream token**; from then on frames are relayed unchanged, never parsed. A stream
  token pairs one provider stream with its session, once (a second stream, or the same one
  replayed after the call ended, is refused), and it admits nothing else.
- a **session hop** on ``/sessions/{session_id}``: a connector, authenticated by
  ``Authorization: Bearer <hop token>``. Both tokens are HMACs of the session id under the
  gateway's secret with distinct purpose labels (:mod:`actors.signing`), so the one the TwiML
  shows can never open a session hop. The gateway keeps no registry of sessions.

**Before authentication** (a session hop: its token; a provider stream: a valid ``start``)
everything is bounded: connections in all (``max_pending``) and from one address
(``max_pending_per_address``), the time to the handshake (``handshake_timeout_s``) and
from it to ``start`` (``start_timeout_s``), and the bytes received (``pending_max_bytes``, also
the largest frame until then). ``max_connections`` caps every connection. What is refused is
counted in :attr:`GatewayStats.rejected` by reason, with at most one WARNING line per
connection (and fewer under a flood); nothing a client sends before it is authenticated
outlives its connection, and nothing it sends disturbs another session.

**Resume.** Frames are numbered per direction, per session, from 0. The gateway keeps the last
``buffer_frames`` frames of the provider stream, sent or not, because it cannot know which of
them a dying connection delivered. A session hop says how many it has received
(``X-Resume-From``) and the gateway sends from there; the gateway's handshake answer says how
many frames of the session it has received (``X-Gateway-Received``), and the connector resends
from there. So a dropped session hop loses nothing and doubles nothing, within the buffers.

**Bounded buffers.** The gateway never waits on a slow reader while it reads the other side: a
frame goes into the peer's write buffer only while that buffer is below its high-water mark,
else it waits in the call's buffer, which holds at most ``buffer_frames`` frames per direction.
What does not fit is dropped oldest-first and counted (``dropped_to_provider``,
``lost_to_session``), as is whatever is still waiting when the call ends.

**Ends.** A session hop that closes with 1000 ends the call: the gateway closes the provider
stream. Any other end of a session hop (a crash, a reset, a silent peer) starts the resume
window; a hop that does not come back within ``resume_window_s`` ends the provider stream with
1001. A provider stream that ends is relayed to the session to its last frame, then the hop is
closed with 1000. A session hop that waits :attr:`~actors.config.GatewayConfig.provider_wait_s`
for its provider (longer than a call may ring) is closed with 1008.

Everything runs on one asyncio event loop, so a call's state needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from ..codecs import Frame
from ..config import GatewayConfig
from ..signing import verify_hop_token, verify_stream_token, verify_twilio_signature
from ._ws import ConnectionClosed, MeteredConnection, Request, Response, ServerConnection
from .loopback import ServerThread

__all__ = [
    "CALL_UNKNOWN",
    "RECEIVED_HEADER",
    "RESUME_FROM_HEADER",
    "GatewayStats",
    "MediaGateway",
]

logger = logging.getLogger(__name__)

RESUME_FROM_HEADER = "X-Resume-From"
RECEIVED_HEADER = "X-Gateway-Received"
_PROVIDERS = frozenset({"twilio"})
_ENDED_KEPT = 10_000
_EARLY_FRAMES = 8  # frames a provider may send before `start`
_POLICY = 1008
_INVALID_DATA = 1007
_GOING_AWAY = 1001
_NORMAL = 1000
#: Close code for a session that resumes a call this gateway has no record of (it restarted,
#: or forgot the call long ago): the call cannot be resumed, so redialling would not help.
CALL_UNKNOWN = 4404
# What a session id may be: URL-safe, short (the runtime's are 22 characters of base64url).
_SESSION_ID = re.compile(r"[A-Za-z0-9_.~-]{1,128}")
# Warnings of one kind logged per window; past that they are counted and summed up once.
_WARNINGS_PER_WINDOW = 20
_WARNING_WINDOW_S = 10.0


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


class _Hop:
    """One session-side connection: where it is in the provider stream."""

    __slots__ = ("connection", "cursor", "superseded")

    def __init__(self, connection: _Connection, cursor: int) -> None:
        self.connection = connection
        self.cursor = cursor  # index of the next provider frame to send it
        self.superseded = False  # a newer hop took over: stop reading and writing


class _Call:
    """One session's pairing: both hops, both directions' buffers and counters."""

    def __init__(self, session_id: str, buffer_frames: int) -> None:
        self.session_id = session_id
        self.buffer_frames = buffer_frames
        self.provider: _Connection | None = None
        self.provider_ended = False
        self.hop: _Hop | None = None
        self.had_hop = False
        # Provider -> session: the last `buffer_frames` frames, numbered from `first`.
        self.ring: deque[Frame] = deque()
        self.from_provider = 0  # provider frames received (the next frame's number)
        self.to_session_ready = asyncio.Event()
        # Session -> provider: frames not yet sent to the provider stream (at most
        # `buffer_frames`).
        self.from_session = 0  # session frames received, over every hop
        self.outgoing: deque[Frame] = deque()
        self.to_provider_ready = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None
        self.ended = False

    @property
    def first(self) -> int:
        return self.from_provider - len(self.ring)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(slots=True)
class _Claim:
    """A session hop's claim on its call, made as its handshake is answered (so that the
    frame count in that answer is exact) and taken up by its handler, or undone when the
    connection ends before one runs."""

    call: _Call
    hop: _Hop
    resumed: bool
    created: bool  # the claim created the call record
    replaced: _Hop | None  # the hop it superseded


class _Connection(MeteredConnection):
    """A connection to the gateway, metered from its first byte to its end."""

    gateway: MediaGateway
    address: str = ""
    admitted = False  # counted in the caps (else it is being refused)
    authenticated = False
    refused = False  # a refusal was counted and logged: say nothing more of it
    received = 0  # bytes received before authentication
    hop_request: tuple[str, int] | None = None  # a session hop: (session id, resume from)
    claim: _Claim | None = None

    def on_made(self) -> None:
        self.gateway._admit(self)

    def on_data(self, size: int) -> bool:
        return self.authenticated or self.gateway._metered(self, size)

    def on_lost(self) -> None:
        self.gateway._release(self)


class _Warnings:
    """At most ``_WARNINGS_PER_WINDOW`` WARNING lines per kind per window, then a count."""

    def __init__(self) -> None:
        self._window: dict[str, tuple[float, int]] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        started, logged = self._window.get(kind, (now, 0))
        if now - started >= _WARNING_WINDOW_S:
            if logged > _WARNINGS_PER_WINDOW:
                suppressed = logged - _WARNINGS_PER_WINDOW
                logger.warning("gateway: %d more %s refusals not logged", suppressed, kind)
            started, logged = now, 0
        self._window[kind] = (started, logged + 1)
        if logged < _WARNINGS_PER_WINDOW:
            logger.warning(message, *args)


class MediaGateway:
    """The gateway server. ``start()`` runs it on a thread of its own (embedded in a
    service, or standalone under ``transport-actors gateway``); ``stop()`` ends it."""

    def __init__(self, config: GatewayConfig, *, secret: str | None = None) -> None:
        self.config = config
        secret = secret or config.secret
        if not secret:
            if not config.embedded:
                raise ValueError("gateway.secret is required when the gateway runs standalone")
            secret = secrets.token_urlsafe(32)  # embedded: the service is the only client
        self._secret = secret
        self._signature_tokens = config.signature_tokens
        host, _, port = config.listen.rpartition(":")
        self._host = host.strip("[]")
        self._calls: dict[str, _Call] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # session id -> how it ended
        self._stats = GatewayStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = 0
        self._pending_total = 0  # connections not yet authenticated
        self._pending: Counter[str] = Counter()  # the same, by peer address
        self._warnings = _Warnings()
        gateway = self

        class Connection(_Connection):
            pass

        Connection.gateway = gateway
        self._server = ServerThread(
            self._route,
            self._host,
            int(port),
            # Until a connection is authenticated its frames are held to pending_max_bytes
            # (_admit); this is the limit it is raised to then.
            max_size=config.max_message_bytes,
            name="media-gateway",
            process_request=self._check_request,
            process_response=self._answer_handshake,
            server_header=None,
            open_timeout=config.handshake_timeout_s,
            create_connection=Connection,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> MediaGateway:
        self._server.start(timeout)
        logger.info("media gateway listening on %s (providers dial %s)", self.url, self.public_url)
        for warning in self.config.security_warnings():
            logger.warning("%s", warning)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.stop(timeout)

    def __enter__(self) -> MediaGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def secret(self) -> str:
        return self._secret

    @property
    def url(self) -> str:
        """Where sessions dial: the configured ``url``, else the bound address."""
        return self.config.url or self._server.url

    @property
    def public_url(self) -> str:
        """Where providers dial: the configured ``public_url``, else :attr:`url`."""
        return self.config.public_url or self.url

    def stats(self) -> GatewayStats:
        s = self._stats
        calls = list(self._calls.values())
        return GatewayStats(
            calls_active=len(calls),
            pairings=s.pairings,
            session_hops=s.session_hops,
            resumes=s.resumes,
            rejected=dict(s.rejected),
            frames_to_session=s.frames_to_session,
            frames_to_provider=s.frames_to_provider,
            buffered_to_session=sum(len(c.ring) for c in calls),
            waiting_for_provider=sum(len(c.outgoing) for c in calls),
            lost_to_session=s.lost_to_session,
            dropped_to_provider=s.dropped_to_provider,
            expired=s.expired,
            connections=self._open,
            pending=self._pending_total,
        )

    # -- admission: everything before authentication is bounded -------------------------------

    def _admit(self, connection: _Connection) -> None:
        """A TCP connection was accepted: count it in the caps, or drop it at once."""
        peer = connection.transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        connection.address = address
        connection.limit_messages(self.config.pending_max_bytes)
        c = self.config
        if self._open >= c.max_connections:
            reason, why = "connection_cap", f"{c.max_connections} connections open"
        elif self._pending_total >= c.max_pending:
            reason, why = "pending_cap", f"{c.max_pending} not authenticated"
        elif self._pending[address] >= c.max_pending_per_address:
            reason = "address_cap"
            why = f"{c.max_pending_per_address} not authenticated from {address}"
        else:
            connection.admitted = True
            self._open += 1
            self._pending[address] += 1
            self._pending_total += 1
            return
        self._refused(connection, reason, "gateway: dropped a connection from %s: %s", why)
        connection.abort()

    def _metered(self, connection: _Connection, size: int) -> bool:
        """``size`` more bytes from a connection not yet authenticated: within the budget?"""
        connection.received += size
        if connection.received <= self.config.pending_max_bytes:
            return True
        if not connection.refused:
            why = f"sent over {self.config.pending_max_bytes} bytes before authenticating"
            self._refused(connection, "pending_bytes", "gateway: dropped %s: %s", why)
        connection.abort()
        return False

    def _authenticate(self, connection: _Connection) -> None:
        """The connection proved itself: out of the pre-auth caps, frames up to full size."""
        if connection.authenticated:
            return
        connection.authenticated = True
        if connection.admitted:
            self._unpend(connection.address)
        connection.limit_messages(self.config.max_message_bytes)

    def _unpend(self, address: str) -> None:
        self._pending_total -= 1
        self._pending[address] -= 1
        if self._pending[address] <= 0:
            del self._pending[address]

    def _release(self, connection: _Connection) -> None:
        """The connection is gone: out of the counts, and its claim (if any) undone."""
        if connection.admitted:
            connection.admitted = False
            self._open -= 1
            if not connection.authenticated:
                self._unpend(connection.address)
        if not connection.authenticated and not connection.refused:
            # It went without a word from us: a handshake that never came or was refused
            # by websockets itself, or a stream that ended before its `start`.
            response = connection.response
            if response is None:
                reason = "no_handshake"
            elif response.status_code != 101:
                reason = "bad_handshake"
            else:
                reason = "no_start"
            self._count_rejection(reason)
            self._warnings.warn(
                reason, "gateway: %s closed before authenticating (%s)", _peer(connection), reason
            )
        claim, connection.claim = connection.claim, None
        if claim is not None:
            self._undo_claim(claim)

    def _refused(self, connection: _Connection, reason: str, message: str, why: str) -> None:
        connection.refused = True
        self._count_rejection(reason)
        self._warnings.warn(reason, message, _peer(connection), why)

    # -- the handshake -------------------------------------------------------------------------

    def _reject(self, connection: _Connection, status: int, reason: str, why: str) -> Response:
        self._refused(connection, reason, "gateway: refused %s: %s", why)
        return connection.respond(status, why + "\n")

    def _count_rejection(self, reason: str) -> None:
        self._stats.rejected[reason] = self._stats.rejected.get(reason, 0) + 1

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        assert isinstance(connection, _Connection)
        kind, name = _route_of(request.path)
        if kind == "provider":
            if name not in _PROVIDERS:
                return self._reject(connection, 404, "unknown_path", f"no provider {name!a}")
            if self._signature_tokens:
                url = self._signed_url(name, request.path)
                signature = request.headers.get("X-Twilio-Signature")
                if not verify_twilio_signature(self._signature_tokens, url, signature):
                    return self._reject(
                        connection, 403, "bad_signature", "invalid or missing X-Twilio-Signature"
                    )
            return None
        if kind == "session":
            if not _SESSION_ID.fullmatch(name):
                return self._reject(connection, 400, "bad_session_id", "not a session id")
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not verify_hop_token(self._secret, name, token):
                return self._reject(
                    connection, 403, "bad_token", f"session {name}: invalid or missing token"
                )
            self._authenticate(connection)
            try:
                resume_from = int(request.headers.get(RESUME_FROM_HEADER, "0"))
                if resume_from < 0:
                    raise ValueError
            except ValueError:
                return self._reject(
                    connection, 400, "bad_request", f"{RESUME_FROM_HEADER} must be an integer >= 0"
                )
            connection.hop_request = (name, resume_from)
            return None
        return self._reject(connection, 404, "unknown_path", "no such route")

    def _answer_handshake(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        """The handshake is accepted (101): only now does a session hop claim its call, so
        that a handshake that fails leaves nothing behind and disturbs no other hop."""
        assert isinstance(connection, _Connection)
        if connection.hop_request is None or response.status_code != 101:
            return
        session_id, resume_from = connection.hop_request
        claim = self._claim(connection, session_id, resume_from)
        connection.claim = claim
        response.headers[RECEIVED_HEADER] = str(claim.call.from_session)

    def _claim(self, connection: _Connection, session_id: str, resume_from: int) -> _Claim:
        """Claim the session for this new hop before the handshake answer is sent, so that
        the count of session frames it reports is exact (an older hop stops counting now)."""
        ended = self._ended.get(session_id)
        call = self._calls.get(session_id)
        if call is None and ended is None:
            if resume_from > 0:
                # The session saw frames of this call, through a gateway that is gone.
                self._count_rejection("unknown_call")
                logger.warning(
                    "session %s: resumes a call this gateway has no record of", session_id
                )
                return _Claim(_Call(session_id, 0), _Hop(connection, -1), True, False, None)
            call = self._calls[session_id] = _Call(session_id, self.config.buffer_frames)
            created = True
        elif call is None:
            return _Claim(_Call(session_id, 0), _Hop(connection, 0), True, False, None)
        else:
            created = False
        resumed = call.had_hop
        old = call.hop
        if old is not None:
            old.superseded = True
            call.to_session_ready.set()  # wake its writer so that it notices
        if resume_from > call.from_provider:
            logger.error(
                "session %s: hop says it received %d frames, only %d were sent; resending all",
                session_id,
                resume_from,
                call.from_provider,
            )
            resume_from = call.first
        return _Claim(call, _Hop(connection, resume_from), resumed, created, old)

    def _undo_claim(self, claim: _Claim) -> None:
        """A claimed handshake whose connection ended before its handler ran."""
        call = claim.call
        if call.ended or call.hop is not claim.replaced:
            return
        old = claim.replaced
        if old is not None:
            old.superseded = False  # the hop it would have replaced goes on
            return
        if claim.created and call.provider is None and not call.provider_ended:
            del self._calls[call.session_id]  # nothing of this call ever existed
        elif call.timer is None:
            self._arm(call, self.config.resume_window_s, "session did not return")

    # -- connections ---------------------------------------------------------------------------

    async def _route(self, connection: ServerConnection) -> None:
        assert isinstance(connection, _Connection)
        try:
            if connection.hop_request is None:
                await self._provider_stream(connection)
            else:
                claim, connection.claim = connection.claim, None
                if claim is not None:
                    await self._session_hop(connection, claim.call, claim.hop, claim.resumed)
        except Exception:
            logger.exception("gateway: handler for %s crashed", _peer(connection))
            await connection.close(1011, "gateway error")

    async def _provider_stream(self, ws: _Connection) -> None:
        early: list[Frame] = []
        start = await self._await_start(ws, early)
        if start is None:
            return
        call = await self._pair(ws, start)
        if call is None:
            return
        for frame in early:
            self._from_provider(call, frame)
        call.to_session_ready.set()
        feeder = asyncio.create_task(self._feed_provider(call, ws))
        try:
            async for frame in ws:
                self._from_provider(call, frame)
                hop = call.hop
                if (
                    hop is not None
                    and hop.cursor == call.from_provider - 1
                    and hop.connection.write_nowait(frame)
                ):
                    # Caught up: sent from here, sparing the hop's sender a wake-up.
                    hop.cursor += 1
                    self._stats.frames_to_session += 1
                else:
                    call.to_session_ready.set()
        except ConnectionClosed:
            pass
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            call.provider = None
            call.provider_ended = True
            self._drop_outgoing(call)  # no stream will ever take them now
            call.to_session_ready.set()  # the hop's writer closes the hop once it has all
            logger.info("session %s: provider stream ended (%s)", call.session_id, _close_of(ws))
            if call.hop is None and not call.ended:
                # Keep the buffered frames for a hop that may still come back.
                self._arm(call, self.config.resume_window_s, "session did not return")

    async def _await_start(self, ws: _Connection, early: list[Frame]) -> dict[str, Any] | None:
        """Read the provider stream up to its ``start`` event (kept in ``early``)."""
        start: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                while start is None:
                    frame = await ws.recv()
                    early.append(frame)
                    start = _start_event(frame)  # raises ValueError for garbage
                    if start is None and len(early) >= _EARLY_FRAMES:
                        await self._refuse(ws, "no_start", "no start event in the first frames")
                        return None
        except TimeoutError:
            why = f"no start event within {self.config.start_timeout_s:g} s"
            await self._refuse(ws, "no_start", why)
            return None
        except ValueError as exc:
            await self._refuse(ws, "bad_frame", str(exc), code=_INVALID_DATA)
            return None
        except ConnectionClosed:
            sent = ws.protocol.close_sent
            if sent is not None and sent.code not in (_NORMAL, _GOING_AWAY) and not ws.refused:
                # websockets refused a frame (too big before authentication, not UTF-8...).
                why = f"closed {sent.code} before start: {sent.reason or 'protocol error'}"
                self._refused(ws, "bad_frame", "gateway: closed provider stream %s: %s", why)
            return None
        return start

    async def _pair(self, ws: _Connection, start: dict[str, Any]) -> _Call | None:
        """The call named by ``start``'s custom parameters, now holding ``ws``; or refuse."""
        params = start.get("customParameters") or {}
        session_id = params.get("session") if isinstance(params, dict) else None
        token = params.get("token") if isinstance(params, dict) else None
        if not isinstance(session_id, str) or not isinstance(token, str):
            await self._refuse(ws, "unknown_session", "start names no session and token")
            return None
        if not _SESSION_ID.fullmatch(session_id):
            await self._refuse(ws, "bad_session_id", "start names no valid session id")
            return None
        if not verify_stream_token(self._secret, session_id, token):
            await self._refuse(ws, "bad_token", f"session {session_id}: invalid token")
            return None
        if session_id in self._ended:
            await self._refuse(ws, "ended", f"session {session_id} has ended")
            return None
        call = self._calls.get(session_id)
        if call is None:
            call = self._calls[session_id] = _Call(session_id, self.config.buffer_frames)
        if call.provider is not None or call.provider_ended:
            why = f"session {session_id} already has a provider stream"
            await self._refuse(ws, "duplicate_stream", why)
            return None
        self._authenticate(ws)
        call.provider = ws
        if call.hop is not None:
            call.cancel_timer()  # the pairing wait is over
        elif call.timer is None:
            self._arm(call, self.config.pair_timeout_s, "no session connected")
        self._stats.pairings += 1
        logger.info("session %s: provider stream paired (%s)", session_id, _peer(ws))
        return call

    async def _session_hop(self, ws: _Connection, call: _Call, hop: _Hop, resumed: bool) -> None:
        if hop.cursor < 0:
            await ws.close(CALL_UNKNOWN, "the gateway has no record of this call (restarted?)")
            return
        if call.ended or not call.buffer_frames:  # the call ended before this hop came
            await ws.close(_NORMAL, "call ended")
            return
        old = call.hop
        call.hop, call.had_hop = hop, True
        call.cancel_timer()
        self._stats.session_hops += 1
        if resumed:
            self._stats.resumes += 1
        logger.info(
            "session %s: hop %s (%s), resuming at frame %d of %d",
            call.session_id,
            "resumed" if resumed else "connected",
            _peer(ws),
            hop.cursor,
            call.from_provider,
        )
        if old is not None:
            # Its connector is gone (it redialled); make sure its socket is too.
            self._spawn(old.connection.close(_POLICY, "replaced by a newer connection"))
        if call.provider is None and not call.provider_ended:
            self._arm(call, self.config.provider_wait_s, "no provider stream")
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
        call.hop = None
        received = ws.protocol.close_rcvd
        if received is not None and received.code == _NORMAL:
            self._end(call, _NORMAL, "session ended", "ended by the session")
        elif call.provider is None and call.provider_ended and hop.cursor >= call.from_provider:
            self._end(call, _NORMAL, "call ended", "call ended")
        elif not call.ended:
            logger.info(
                "session %s: hop lost (%s); holding the call for %g s",
                call.session_id,
                _close_of(ws),
                self.config.resume_window_s,
            )
            self._arm(call, self.config.resume_window_s, "session did not return")

    # -- relaying ------------------------------------------------------------------------------
    #
    # No relay ever waits on the peer it writes to while it reads the other side: a frame goes
    # into a write buffer only while that is below its high-water mark (write_nowait), else
    # it waits in the call's bounded buffer for the direction's sender, which is the one
    # that waits for the buffer to drain.

    async def _relay_from_session(self, ws: _Connection, call: _Call, hop: _Hop) -> None:
        """Count and pass on every frame of the session hop, until it ends or is replaced."""
        async for frame in ws:
            if hop.superseded:
                # Returning would close it with 1000, which reads as "session ended".
                await ws.close(_POLICY, "replaced by a newer connection")
                return
            call.from_session += 1
            provider = call.provider
            if provider is None and call.provider_ended:
                self._stats.dropped_to_provider += 1  # the stream is over: nothing takes it
                continue
            if provider is not None and not call.outgoing and provider.write_nowait(frame):
                self._stats.frames_to_provider += 1  # sent from here: no feeder wake-up
                continue
            if len(call.outgoing) >= call.buffer_frames:
                call.outgoing.popleft()
                self._stats.dropped_to_provider += 1
            call.outgoing.append(frame)
            call.to_provider_ready.set()

    def _from_provider(self, call: _Call, frame: Frame) -> None:
        ring = call.ring
        ring.append(frame)
        call.from_provider += 1
        if len(ring) > call.buffer_frames:
            ring.popleft()

    async def _feed_session(self, call: _Call, hop: _Hop) -> None:
        """Send the hop every provider frame from its cursor on, in order, then wait for more."""
        ws = hop.connection
        ready = call.to_session_ready
        with contextlib.suppress(ConnectionClosed):
            while not hop.superseded:
                first = call.first
                if hop.cursor < first:
                    lost = first - hop.cursor
                    self._stats.lost_to_session += lost
                    logger.warning(
                        "session %s: %d frames left the resume buffer before the session "
                        "took them (raise gateway.buffer_frames)",
                        call.session_id,
                        lost,
                    )
                    hop.cursor = first
                if hop.cursor < call.from_provider:
                    # No await in this loop: the ring and the cursor hold still meanwhile.
                    for frame in itertools.islice(call.ring, hop.cursor - first, None):
                        if not ws.write_nowait(frame):
                            break
                        hop.cursor += 1
                        self._stats.frames_to_session += 1
                    else:
                        continue
                    if not ws.write_paused:
                        return  # the hop is gone: its frames wait in the ring for the next
                    await ws.writable()
                    continue
                if call.provider_ended:
                    await ws.close(_NORMAL, "call ended")
                    return
                ready.clear()
                await ready.wait()

    async def _feed_provider(self, call: _Call, ws: _Connection) -> None:
        outgoing, ready = call.outgoing, call.to_provider_ready
        while True:
            while outgoing:
                if ws.write_nowait(outgoing[0]):
                    outgoing.popleft()
                    self._stats.frames_to_provider += 1
                elif ws.write_paused:
                    await ws.writable()
                else:
                    return  # the stream is ending: what waits is counted when it has
            ready.clear()
            await ready.wait()

    def _drop_outgoing(self, call: _Call) -> None:
        self._stats.dropped_to_provider += len(call.outgoing)
        call.outgoing.clear()

    # -- ending --------------------------------------------------------------------------------

    def _arm(self, call: _Call, delay: float, why: str) -> None:
        call.cancel_timer()
        loop = asyncio.get_running_loop()
        call.timer = loop.call_later(delay, self._expire, call, delay, why)

    def _expire(self, call: _Call, delay: float, why: str) -> None:
        call.timer = None
        if call.ended:
            return
        if call.hop is not None and call.provider is None and not call.provider_ended:
            # A session waited for a provider stream that never came.
            self._end(call, _POLICY, f"no provider stream within {delay:g} s", "pair timeout")
            return
        if call.hop is None:
            self._stats.expired += 1
            self._end(call, _GOING_AWAY, f"{why} within {delay:g} s", why)

    def _end(self, call: _Call, code: int, reason: str, why: str) -> None:
        """Forget the call; close whatever hop is still there with ``code``."""
        if call.ended:
            return
        call.ended = True
        call.cancel_timer()
        self._calls.pop(call.session_id, None)
        self._ended[call.session_id] = why
        while len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)
        logger.info("session %s: call ended at the gateway: %s", call.session_id, reason)
        for ws in (call.provider, call.hop.connection if call.hop else None):
            if ws is not None:
                self._spawn(ws.close(code, reason))
        call.ring.clear()
        self._drop_outgoing(call)
        call.to_provider_ready.set()
        call.to_session_ready.set()

    async def _refuse(self, ws: _Connection, reason: str, why: str, *, code: int = _POLICY) -> None:
        self._refused(ws, reason, "gateway: closed provider stream %s: %s", why)
        await ws.close(code, why[:120])

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks: hold them until they are done.
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _signed_url(self, provider: str, path: str) -> str:
        """The URL Twilio dialled, which its signature covers: the one the TwiML gave it,
        ``public_url`` (its path included: a prefix a proxy strips) + ``/{provider}``, with
        the query the request carried."""
        query = urlsplit(path).query
        return self.public_url.rstrip("/") + f"/{provider}" + (f"?{query}" if query else "")


def _route_of(path: str) -> tuple[str, str]:
    """``("provider", name)``, ``("session", id)`` or ``("", "")`` for a request path."""
    segments = [unquote(s) for s in urlsplit(path).path.split("/") if s]
    if len(segments) >= 2 and segments[-2] == "sessions":
        return "session", segments[-1]
    if segments:
        return "provider", segments[-1]
    return "", ""


def _start_event(frame: Frame) -> dict[str, Any] | None:
    """The ``start`` object of a Media Streams frame, ``None`` for another event."""
    if not isinstance(frame, str):
        raise ValueError("expected Media Streams JSON text frames, got a binary frame")
    try:
        event = json.loads(frame)
    except RecursionError:  # "[[[[..." nested past the parser's depth
        raise ValueError(
            "expected Media Streams JSON text frames, got one nested too deep"
        ) from None
    except ValueError:
        raise ValueError("expected Media Streams JSON text frames, got a non-JSON frame") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ValueError("expected a Media Streams event object")
    if event["event"] != "start":
        return None
    start = event.get("start")
    if not isinstance(start, dict):
        raise ValueError("a start event without its start object")
    return start


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if address else "peer"


def _close_of(ws: ServerConnection) -> str:
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        return "no close frame"
    return f"close {rcvd.code}" + (f" {rcvd.reason}" if rcvd.reason else "")
