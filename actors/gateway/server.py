"""The media gateway's server: providers dial in, sessions dial in, and it relays between them.

Two kinds of WebSocket arrive:

- a **provider stream** on ``/{provider}`` (``/twilio``; the paths and how each provider's
  stream names its call are :mod:`actors.gateway.streams`): the gateway reads it only until
  the frame that carries the call's custom parameters (Twilio's ``start``), which name the
  ``session`` and carry its **stream token**; from then on frames are relayed unchanged,
  never parsed. A stream token pairs one provider stream with its session, once (a second
  stream, or the same one replayed after the call ended, is refused), and admits nothing else.
  A call may stream again, for the same session, with a fresh credential (a re-stream after
  a call update: :mod:`actors.gateway.pairing`'s *Re-streams*).
- a **session hop** on ``/sessions/{session_id}``: a connector, authenticated by
  ``Authorization: Bearer <hop token>``. Both tokens are HMACs of the session id under the
  gateway's secret with distinct purpose labels (:mod:`actors.signing`), so the one the TwiML
  shows can never open a session hop. The gateway keeps no registry of sessions.

**Before authentication** (a session hop: its token; a provider stream: a valid ``start``)
everything is bounded (:mod:`actors.gateway.admission`): connections in all
(``max_pending``) and from one address (``max_pending_per_address``), the time to the
handshake (``handshake_timeout_s``) and from it to ``start`` (``start_timeout_s``), and the
bytes received (``pending_max_bytes``, also the largest frame until then).
``max_connections`` caps every connection. What is refused is counted in
:attr:`GatewayStats.rejected` by reason, with at most one WARNING line per connection (and
fewer under a flood); nothing a client sends before it is authenticated outlives its
connection, and nothing it sends disturbs another session.

**Resume.** Frames are numbered per direction, per session, from 0. The gateway keeps the last
``buffer_frames`` frames of the provider stream, sent or not, because it cannot know which of
them a dying connection delivered. A session hop says how many it has received
(``X-Resume-From``) and the gateway sends from there; the gateway's handshake answer says how
many frames of the session it has received (``X-Gateway-Received``), and the connector resends
from there. So a dropped session hop loses nothing and doubles nothing, within the buffers.
The bookkeeping is :mod:`actors.gateway.calls` (sans-I/O); the relaying, the bounded buffers'
use and how a call ends, :mod:`actors.gateway.relay`.

**In a cluster** (:mod:`actors.gateway.pairing`): a hop may name its session's lease epoch
(``X-Session-Epoch``), and a hop of an older epoch than one seen for its call is closed with
4409 (``SESSION_FENCED``), as is the current hop when a newer epoch's arrives; a call
redirected here from a gateway that died is adopted by its first hop; a stream credential may
cover a nonce that names this gateway (``gateway_id``); and :meth:`MediaGateway.drain` stops
new calls while those held go on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import re
import secrets
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from ..codecs import Frame
from ..config import GatewayConfig
from ..signing import (
    nonce_gateway,
    verify_hop_token,
    verify_stream_token,
    verify_twilio_signature,
)
from ..startable import Startable
from ..wire.constants import (
    EPOCH_HEADER,
    RECEIVED_HEADER,
    RESTREAM_HEADER,
    RESUME_FROM_HEADER,
    SENT_HEADER,
    SESSIONS_PATH,
    CloseCode,
)
from ._ws import ConnectionClosed, Request, Response, ServerConnection
from .admission import Admission, GatewayConnection, peer
from .calls import GOING_AWAY, NORMAL, POLICY, Call
from .loopback import ServerThread
from .pairing import ClaimKind, HopRequest, Refusal
from .relay import GatewayStats, Relay
from .streams import EARLY_FRAMES, STREAM_KINDS, StreamKind, route_of

__all__ = [
    "CALL_UNKNOWN",
    "RECEIVED_HEADER",
    "RESUME_FROM_HEADER",
    "SESSION_FENCED",
    "GatewayStats",
    "MediaGateway",
]

logger = logging.getLogger(__name__)

# CALL_UNKNOWN closes a session hop that resumes a call this gateway has no record of (it
# restarted, or forgot the call long ago): the call cannot be resumed, so redialling would not
# help. Re-exported here, where the gateway's users have always found it.
CALL_UNKNOWN: Final = int(CloseCode.CALL_UNKNOWN)
SESSION_FENCED: Final = int(CloseCode.SESSION_FENCED)
_INVALID_DATA: Final = int(CloseCode.INVALID_PAYLOAD)
_INTERNAL_ERROR: Final = int(CloseCode.INTERNAL_ERROR)
_SESSIONS_SEGMENT: Final = SESSIONS_PATH.strip("/")
# What a session id may be: URL-safe, short (the runtime's are 22 characters of base64url).
_SESSION_ID = re.compile(r"[A-Za-z0-9_.~-]{1,128}")

_Connection = GatewayConnection


class MediaGateway(Startable):
    """The gateway server. ``start()`` runs it on a thread of its own (embedded in a
    service, or standalone under ``transport-actors gateway``); ``stop()`` ends it.
    ``gateway_id``: its id in a cluster (a stream nonce naming another gateway is refused)."""

    def __init__(
        self, config: GatewayConfig, *, secret: str | None = None, gateway_id: str | None = None
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        secret = secret or config.secret
        if not secret:
            if not config.embedded:
                raise ValueError("gateway.secret is required when the gateway runs standalone")
            secret = secrets.token_urlsafe(32)  # embedded: the service is the only client
        self._secret = secret
        self._signature_tokens = config.signature_tokens
        self._exotel_auth = config.exotel_basic_auth
        host, _, port = config.listen.rpartition(":")
        self._host = host.strip("[]")
        self._relay = Relay(config)
        self._admission = Admission(config)

        class Connection(GatewayConnection):
            pass

        Connection.admission = self._admission
        Connection.released = self._released
        self._server = ServerThread(
            self._route,
            self._host,
            int(port),
            # Until a connection is authenticated its frames are held to pending_max_bytes
            # (Admission.admit); this is the limit it is raised to then.
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

    def drain(self) -> None:
        """Take no new call from now on (a provider stream for a call not held here is
        refused); the calls held go on to their end. Callable from any thread."""
        self._relay.calls.draining = True
        logger.info("media gateway draining: no new call; %d go on", self.calls_active)

    @property
    def draining(self) -> bool:
        return self._relay.calls.draining

    @property
    def calls_active(self) -> int:
        """The calls held right now (a gateway's load in a cluster)."""
        return len(self._relay.calls)

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
        s = self._relay.stats
        calls = list(self._relay.calls)
        return GatewayStats(
            calls_active=len(calls),
            pairings=s.pairings,
            session_hops=s.session_hops,
            resumes=s.resumes,
            rejected=dict(self._admission.rejected),
            frames_to_session=s.frames_to_session,
            frames_to_provider=s.frames_to_provider,
            buffered_to_session=sum(len(c.ring) for c in calls),
            waiting_for_provider=sum(len(c.outgoing) for c in calls),
            lost_to_session=s.lost_to_session,
            dropped_to_provider=s.dropped_to_provider,
            expired=s.expired,
            connections=self._admission.open,
            pending=self._admission.pending_total,
        )

    def _released(self, connection: _Connection) -> None:
        """The connection is gone: a claim it made and no handler took up is undone."""
        claim, connection.claim = connection.claim, None
        if claim is not None:
            self._relay.undo(claim)

    def _refused(self, connection: _Connection, reason: str, message: str, why: str) -> None:
        self._admission.refused(connection, reason, message, why)

    # -- the handshake -------------------------------------------------------------------------

    def _reject(self, connection: _Connection, status: int, reason: str, why: str) -> Response:
        self._refused(connection, reason, "gateway: refused %s: %s", why)
        return connection.respond(status, why + "\n")

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        assert isinstance(connection, _Connection)
        kind, name = _route_of(request.path)
        if kind == "provider":
            stream = STREAM_KINDS.get(name)
            if stream is None:
                return self._reject(connection, 404, "unknown_path", f"no provider {name!a}")
            if stream.twilio_signature and self._signature_tokens:
                url = self._signed_url(name, request.path)
                signature = request.headers.get("X-Twilio-Signature")
                if not verify_twilio_signature(self._signature_tokens, url, signature):
                    return self._reject(
                        connection, 403, "bad_signature", "invalid or missing X-Twilio-Signature"
                    )
            auth = self._exotel_auth if stream.exotel_basic_auth else None
            if auth is not None and not _basic_auth_ok(request.headers.get("Authorization"), auth):
                return self._reject(
                    connection, 401, "bad_basic_auth", "invalid or missing Basic credentials"
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
            self._admission.authenticate(connection)
            numbers: dict[str, int | None] = {}
            for header in (RESUME_FROM_HEADER, EPOCH_HEADER, SENT_HEADER, RESTREAM_HEADER):
                text = request.headers.get(header)
                numbers[header] = None if text is None else _count(text)
                if text is not None and numbers[header] is None:
                    why = f"{header} must be an integer >= 0"
                    return self._reject(connection, 400, "bad_request", why)
            within_ms = numbers[RESTREAM_HEADER]
            restream_s = (
                None
                if within_ms is None
                else min(within_ms / 1000, self.config.provider_wait_s)  # bounded by ours
            )
            connection.hop_request = HopRequest(
                name,
                numbers[RESUME_FROM_HEADER] or 0,
                numbers[EPOCH_HEADER],
                numbers[SENT_HEADER],
                restream_s,
            )
            return None
        return self._reject(connection, 404, "unknown_path", "no such route")

    def _answer_handshake(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        """The handshake is accepted (101): only now does a session hop claim its call, so
        that a handshake that fails leaves nothing behind and disturbs no other hop. The claim
        is made before the answer is sent, so that the count of session frames it reports is
        exact (an older hop stops counting now)."""
        assert isinstance(connection, _Connection)
        if connection.hop_request is None or response.status_code != 101:
            return
        asked = connection.hop_request
        session_id, resume_from = asked.session_id, asked.resume_from
        claim = self._relay.calls.claim(
            session_id,
            connection,
            resume_from,
            epoch=asked.epoch,
            sent=asked.sent,
            restream_s=asked.restream_s,
        )
        if claim.kind is ClaimKind.UNKNOWN:
            self._admission.count("unknown_call")
            logger.warning("session %s: resumes a call this gateway has no record of", session_id)
        elif claim.kind is ClaimKind.STALE:
            self._admission.count("stale_epoch")
            logger.warning(
                "session %s: refused a hop of lease epoch %s: a newer one holds the call",
                session_id,
                asked.epoch,
            )
        elif claim.call is not None:
            if claim.replaced is not None:
                claim.replaced.connection.ready.set()  # wake its writer so that it notices
            sent = claim.call.sent_to_session
            if resume_from > sent:
                logger.error(
                    "session %s: hop says it received %d frames, only %d were sent; resending all",
                    session_id,
                    resume_from,
                    sent,
                )
        connection.claim = claim
        response.headers[RECEIVED_HEADER] = str(claim.received)

    # -- connections ---------------------------------------------------------------------------

    async def _route(self, connection: ServerConnection) -> None:
        assert isinstance(connection, _Connection)
        try:
            if connection.hop_request is None:
                await self._provider_stream(connection)
            else:
                claim, connection.claim = connection.claim, None
                if claim is None:
                    pass
                elif claim.kind is ClaimKind.UNKNOWN:
                    why = "the gateway has no record of this call (restarted?)"
                    await connection.close(CALL_UNKNOWN, why)
                elif claim.kind is ClaimKind.STALE:
                    await connection.close(SESSION_FENCED, "a newer lease epoch holds the call")
                elif claim.call is None or claim.call.ended:  # it ended before this hop came
                    await connection.close(NORMAL, "call ended")
                else:
                    await self._relay.session_hop(connection, claim.call, claim.hop, claim.resumed)
        except Exception:
            logger.exception("gateway: handler for %s crashed", peer(connection))
            await connection.close(_INTERNAL_ERROR, "gateway error")

    async def _provider_stream(self, ws: _Connection) -> None:
        path = ws.request.path if ws.request else ""
        stream = STREAM_KINDS[_route_of(path)[1]]
        early: list[Frame] = []
        parameters = await self._await_start(ws, stream, early)
        if parameters is None:
            return
        if stream.query_parameters:  # Exotel: the applet's URL carries custom parameters
            parameters = {**dict(parse_qsl(urlsplit(path).query)), **parameters}
        call = await self._pair(ws, parameters)
        if call is None:
            return
        await self._relay.provider_stream(ws, call, early)

    async def _await_start(
        self, ws: _Connection, stream: StreamKind, early: list[Frame]
    ) -> dict[str, str] | None:
        """Read the provider stream up to the frame that names its call (kept in ``early``,
        with those before it); its custom parameters, or ``None`` once it is refused."""
        parameters = None
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                while parameters is None:
                    frame = await ws.recv()
                    early.append(frame)
                    parameters = stream.parameters(frame)  # raises ValueError for garbage
                    if parameters is None and len(early) >= EARLY_FRAMES:
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
            if sent is not None and sent.code not in (NORMAL, GOING_AWAY) and not ws.refused:
                # websockets refused a frame (too big before authentication, not UTF-8...).
                why = f"closed {sent.code} before start: {sent.reason or 'protocol error'}"
                self._refused(ws, "bad_frame", "gateway: closed provider stream %s: %s", why)
            return None
        return dict(parameters)

    async def _pair(self, ws: _Connection, parameters: dict[str, str]) -> Call[_Connection] | None:
        """The call the stream's parameters name, now holding ``ws``; or refuse."""
        route = route_of(parameters)
        session_id, token, nonce = route.session_id, route.token, route.nonce
        if session_id is None or token is None:
            await self._refuse(ws, "unknown_session", "start names no session and token")
            return None
        if not _SESSION_ID.fullmatch(session_id):
            await self._refuse(ws, "bad_session_id", "start names no valid session id")
            return None
        if not verify_stream_token(self._secret, session_id, token, nonce):
            await self._refuse(ws, "bad_token", f"session {session_id}: invalid token")
            return None
        named = nonce_gateway(nonce)
        if named is not None and self.gateway_id is not None and named != self.gateway_id:
            # A credential minted for another gateway (replayed here after a redirect).
            await self._refuse(ws, "wrong_gateway", f"session {session_id}: not for this gateway")
            return None
        call = self._relay.pair(session_id, ws, nonce)
        if isinstance(call, Refusal):
            await self._refuse(ws, call.reason, call.why)
            return None
        self._admission.authenticate(ws)
        logger.info("session %s: provider stream paired (%s)", session_id, peer(ws))
        return call

    async def _refuse(self, ws: _Connection, reason: str, why: str, *, code: int = POLICY) -> None:
        self._refused(ws, reason, "gateway: closed provider stream %s: %s", why)
        await ws.close(code, why[:120])

    def _signed_url(self, provider: str, path: str) -> str:
        """The URL Twilio dialled, which its signature covers: the one the TwiML gave it,
        ``public_url`` (its path included: a prefix a proxy strips) + ``/{provider}``, with
        the query the request carried."""
        query = urlsplit(path).query
        return self.public_url.rstrip("/") + f"/{provider}" + (f"?{query}" if query else "")


def _basic_auth_ok(header: str | None, expected: tuple[str, str]) -> bool:
    """Whether ``header`` is ``Basic`` of exactly ``user:password`` (compared in constant
    time, so a guess learns nothing from how long the refusal took)."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    wanted = f"{expected[0]}:{expected[1]}".encode()
    return hmac.compare_digest(given, wanted)


def _count(text: str) -> int | None:
    """A header's count: decimal digits only (no sign, no spaces), else ``None``."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _route_of(path: str) -> tuple[str, str]:
    """``("provider", name)``, ``("session", id)`` or ``("", "")`` for a request path."""
    segments = [unquote(s) for s in urlsplit(path).path.split("/") if s]
    if len(segments) >= 2 and segments[-2] == _SESSIONS_SEGMENT:
        return "session", segments[-1]
    if segments:
        return "provider", segments[-1]
    return "", ""
