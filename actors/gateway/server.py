"""The media gateway: providers dial in, sessions dial in, and it relays between them.

Two kinds of WebSocket arrive (DESIGN section 6):

- a **provider stream** on ``/twilio``: Twilio's Media Streams, JSON text frames. The gateway
  reads it only until the ``start`` event, whose ``customParameters`` name the ``session`` and
  carry its ``token``; from then on frames are relayed unchanged, never parsed.
- a **session hop** on ``/sessions/{session_id}``: a connector, authenticated by
  ``Authorization: Bearer <token>`` where the token is an HMAC-SHA256 of the session id under
  the gateway's secret (:mod:`actors.signing`). The gateway keeps no registry of sessions.

**Resume.** Frames are numbered per direction, per session, from 0. The gateway keeps the last
``buffer_frames`` frames of the provider stream, sent or not, because it cannot know which of
them a dying connection delivered. A session hop says how many it has received
(``X-Resume-From``) and the gateway sends from there; the gateway's handshake answer says how
many frames of the session it has received (``X-Gateway-Received``), and the connector resends
from there. So a dropped session hop loses nothing and doubles nothing, within the buffers.

**Ends.** A session hop that closes with 1000 ends the call: the gateway closes the provider
stream. Any other end of a session hop (a crash, a reset, a silent peer) starts the resume
window; a hop that does not come back within ``resume_window_s`` ends the provider stream with
1001. A provider stream that ends is relayed to the session to its last frame, then the hop is
closed with 1000. A session hop that waits ``pair_timeout_s`` for its provider is closed with
1008.

Everything runs on one asyncio event loop, so a call's state needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from ..codecs import Frame
from ..config import GatewayConfig
from ..signing import verify_session_token, verify_twilio_signature
from ._ws import ConnectionClosed, Request, Response, ServerConnection
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
    dropped_to_provider: int = 0  # session frames dropped while no provider stream was there
    expired: int = 0  # calls ended because the session hop stayed away


class _Hop:
    """One session-side connection: where it is in the provider stream."""

    __slots__ = ("connection", "cursor", "sending", "superseded")

    def __init__(self, connection: ServerConnection, cursor: int) -> None:
        self.connection = connection
        self.cursor = cursor  # index of the next provider frame to send it
        self.superseded = False  # a newer hop took over: stop reading and writing
        self.sending = False  # a send to it is in progress (the order is kept by one sender)

    def replaced(self) -> bool:
        return self.superseded


class _Call:
    """One session's pairing: both hops, both directions' buffers and counters."""

    def __init__(self, session_id: str, buffer_frames: int) -> None:
        self.session_id = session_id
        self.buffer_frames = buffer_frames
        self.provider: ServerConnection | None = None
        self.provider_ended = False
        self.hop: _Hop | None = None
        self.had_hop = False
        # Provider -> session: the last `buffer_frames` frames, numbered from `first`.
        self.ring: deque[Frame] = deque()
        self.from_provider = 0  # provider frames received (the next frame's number)
        self.to_session_ready = asyncio.Event()
        # Session -> provider: frames not yet sent to the provider stream.
        self.from_session = 0  # session frames received, over every hop
        self.outgoing: deque[Frame] = deque()
        self.to_provider_ready = asyncio.Event()
        self.provider_sending = False
        self.timer: asyncio.TimerHandle | None = None
        self.ended = False

    @property
    def first(self) -> int:
        return self.from_provider - len(self.ring)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


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
        host, _, port = config.listen.rpartition(":")
        self._host = host.strip("[]")
        self._calls: dict[str, _Call] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # session id -> how it ended
        self._pending: dict[int, tuple[_Call, _Hop, bool]] = {}  # connection id -> new hop
        self._stats = GatewayStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server = ServerThread(
            self._route,
            self._host,
            int(port),
            max_size=config.max_message_bytes,
            name="media-gateway",
            process_request=self._check_request,
            process_response=self._answer_handshake,
            server_header=None,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> MediaGateway:
        self._server.start(timeout)
        logger.info("media gateway listening on %s (providers dial %s)", self.url, self.public_url)
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
        )

    # -- the handshake -------------------------------------------------------------------------

    def _reject(self, connection: ServerConnection, status: int, reason: str, why: str) -> Response:
        self._count_rejection(reason)
        logger.warning("gateway: refused %s: %s", _peer(connection), why)
        return connection.respond(status, why + "\n")

    def _count_rejection(self, reason: str) -> None:
        self._stats.rejected[reason] = self._stats.rejected.get(reason, 0) + 1

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        kind, name = _route_of(request.path)
        if kind == "provider":
            if name not in _PROVIDERS:
                return self._reject(connection, 404, "unknown_path", f"no provider {name!r}")
            token = self.config.twilio_auth_token
            if token is not None:
                url = self._public_base() + request.path
                signature = request.headers.get("X-Twilio-Signature")
                if not verify_twilio_signature(token, url, signature):
                    return self._reject(
                        connection, 403, "bad_signature", "invalid or missing X-Twilio-Signature"
                    )
            return None
        if kind == "session":
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not verify_session_token(self._secret, name, token):
                return self._reject(
                    connection, 403, "bad_token", f"session {name}: invalid or missing token"
                )
            try:
                resume_from = int(request.headers.get(RESUME_FROM_HEADER, "0"))
                if resume_from < 0:
                    raise ValueError
            except ValueError:
                return self._reject(
                    connection, 400, "bad_request", f"{RESUME_FROM_HEADER} must be an integer >= 0"
                )
            return self._admit_session(connection, name, resume_from)
        return self._reject(connection, 404, "unknown_path", f"no route for {request.path!r}")

    def _admit_session(
        self, connection: ServerConnection, session_id: str, resume_from: int
    ) -> Response | None:
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
                self._pending[id(connection)] = (_Call(session_id, 0), _Hop(connection, -1), True)
                return None
            call = self._calls[session_id] = _Call(session_id, self.config.buffer_frames)
        if call is None:
            self._pending[id(connection)] = (_Call(session_id, 0), _Hop(connection, 0), True)
            return None
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
        self._pending[id(connection)] = (call, _Hop(connection, resume_from), resumed)
        return None

    def _answer_handshake(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        pending = self._pending.get(id(connection))
        if pending is not None and response.status_code == 101:
            response.headers[RECEIVED_HEADER] = str(pending[0].from_session)

    # -- connections ---------------------------------------------------------------------------

    async def _route(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        try:
            kind, _ = _route_of(request.path)
            if kind == "provider":
                await self._provider_stream(connection)
            else:
                pending = self._pending.pop(id(connection), None)
                if pending is not None:
                    await self._session_hop(connection, *pending)
        except Exception:
            logger.exception("gateway: handler for %s crashed", _peer(connection))
            await connection.close(1011, "gateway error")
        finally:
            self._pending.pop(id(connection), None)

    async def _provider_stream(self, ws: ServerConnection) -> None:
        early: list[Frame] = []
        start = await self._await_start(ws, early)
        if start is None:
            return
        call = await self._pair(ws, start)
        if call is None:
            return
        for frame in early:
            self._from_provider(call, frame)
        feeder = asyncio.create_task(self._feed_provider(call, ws))
        try:
            async for frame in ws:
                self._from_provider(call, frame, wake=False)
                hop = call.hop
                if hop is not None and not hop.sending and hop.cursor == call.from_provider - 1:
                    # Caught up: send it from here, and spare the hop's sender a wake-up.
                    hop.sending = True
                    try:
                        # If the hop is gone, the frame waits in the ring for its return.
                        with contextlib.suppress(ConnectionClosed):
                            await hop.connection.send(frame)
                            hop.cursor += 1
                            self._stats.frames_to_session += 1
                    finally:
                        hop.sending = False
                        if hop.cursor < call.from_provider:
                            call.to_session_ready.set()
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
            call.to_session_ready.set()  # the hop's writer closes the hop once it has all
            logger.info("session %s: provider stream ended (%s)", call.session_id, _close_of(ws))
            if call.hop is None and not call.ended:
                # Keep the buffered frames for a hop that may still come back.
                self._arm(call, self.config.resume_window_s, "session did not return")

    async def _await_start(self, ws: ServerConnection, early: list[Frame]) -> dict[str, Any] | None:
        """Read the provider stream up to its ``start`` event (kept in ``early``)."""
        start: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(self.config.pair_timeout_s):
                while start is None:
                    frame = await ws.recv()
                    early.append(frame)
                    start = _start_event(frame)  # raises ValueError for garbage
                    if start is None and len(early) >= _EARLY_FRAMES:
                        await self._refuse(ws, "no_start", "no start event in the first frames")
                        return None
        except TimeoutError:
            why = f"no start event within {self.config.pair_timeout_s:g} s"
            await self._refuse(ws, "no_start", why)
            return None
        except ValueError as exc:
            await self._refuse(ws, "bad_frame", str(exc), code=_INVALID_DATA)
            return None
        except ConnectionClosed:
            return None
        return start

    async def _pair(self, ws: ServerConnection, start: dict[str, Any]) -> _Call | None:
        """The call named by ``start``'s custom parameters, now holding ``ws``; or refuse."""
        params = start.get("customParameters") or {}
        session_id = params.get("session") if isinstance(params, dict) else None
        token = params.get("token") if isinstance(params, dict) else None
        if not isinstance(session_id, str) or not isinstance(token, str):
            await self._refuse(ws, "unknown_session", "start names no session and token")
            return None
        if not verify_session_token(self._secret, session_id, token):
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
        call.provider = ws
        if call.hop is not None:
            call.cancel_timer()  # the pairing wait is over
        elif call.timer is None:
            self._arm(call, self.config.pair_timeout_s, "no session connected")
        self._stats.pairings += 1
        logger.info("session %s: provider stream paired (%s)", session_id, _peer(ws))
        return call

    async def _session_hop(
        self, ws: ServerConnection, call: _Call, hop: _Hop, resumed: bool
    ) -> None:
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
            self._arm(call, self.config.pair_timeout_s, "no provider stream")
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

    async def _relay_from_session(self, ws: ServerConnection, call: _Call, hop: _Hop) -> None:
        """Count and pass on every frame of the session hop, until it ends or is replaced."""
        async for frame in ws:
            if hop.superseded:
                # Returning would close it with 1000, which reads as "session ended".
                await ws.close(_POLICY, "replaced by a newer connection")
                return
            call.from_session += 1
            provider = call.provider
            if provider is not None and not call.outgoing and not call.provider_sending:
                # Nothing waiting: send it from here, and spare the feeder a wake-up.
                call.provider_sending = True
                try:
                    # A provider stream that is ending is its own hop: its own loss.
                    with contextlib.suppress(ConnectionClosed):
                        await provider.send(frame)
                        self._stats.frames_to_provider += 1
                finally:
                    call.provider_sending = False
                continue
            if provider is None and len(call.outgoing) >= call.buffer_frames:
                call.outgoing.popleft()
                self._stats.dropped_to_provider += 1
            call.outgoing.append(frame)
            call.to_provider_ready.set()

    def _from_provider(self, call: _Call, frame: Frame, *, wake: bool = True) -> None:
        ring = call.ring
        ring.append(frame)
        call.from_provider += 1
        if len(ring) > call.buffer_frames:
            ring.popleft()
        if wake:
            call.to_session_ready.set()

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
                end = call.from_provider
                if hop.cursor < end and not hop.sending:
                    batch = list(itertools.islice(call.ring, hop.cursor - first, None))
                    hop.sending = True
                    try:
                        for frame in batch:
                            await ws.send(frame)
                            if hop.replaced():  # it may have changed while we were sending
                                return
                            hop.cursor += 1
                            self._stats.frames_to_session += 1
                    finally:
                        hop.sending = False
                    continue
                if call.provider_ended:
                    await ws.close(_NORMAL, "call ended")
                    return
                ready.clear()
                await ready.wait()

    async def _feed_provider(self, call: _Call, ws: ServerConnection) -> None:
        outgoing, ready = call.outgoing, call.to_provider_ready
        with contextlib.suppress(ConnectionClosed):
            while True:
                if not call.provider_sending:
                    call.provider_sending = True
                    try:
                        while outgoing:
                            frame = outgoing.popleft()
                            await ws.send(frame)
                            self._stats.frames_to_provider += 1
                    finally:
                        call.provider_sending = False
                ready.clear()
                await ready.wait()

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
        call.outgoing.clear()
        call.to_provider_ready.set()
        call.to_session_ready.set()

    async def _refuse(
        self, ws: ServerConnection, reason: str, why: str, *, code: int = _POLICY
    ) -> None:
        self._count_rejection(reason)
        logger.warning("gateway: closed provider stream %s: %s", _peer(ws), why)
        await ws.close(code, why[:120])

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks: hold them until they are done.
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _public_base(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"


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
