"""The webhook HTTP server: Twilio's voice URL and status callback, on a thread of its own.

``POST /twilio/voice``: a call comes in. The request is checked by
:mod:`actors.webhooks.twilio` (length and signature header before the body is read; then the
account, the signature, the fields), offered to the :class:`~actors.webhooks.inbound.InboundQueue`
and answered with what the accepting thread made of it (``<Connect><Stream>``) or the
configured refusal (by default ``<Reject reason="busy"/>``). A request that is our own
``<Redirect>`` after a stream ended (``?reattach=<session>``) goes to ``on_reattach`` instead,
which may answer TwiML to stream the call again; without one, the call is hung up.

``POST /twilio/stream``: a ``<Stream statusCallback>`` (``stream-started``,
``stream-stopped``, ``stream-error``), checked like the others and handed to ``on_stream``;
answered ``200`` whether or not the call is known.

``POST /twilio/status``: a status callback. A final status (``completed``, ``busy``,
``no-answer``, ``failed``, ``canceled``) tells the queue the call is over; every event goes to
``on_status``, which says whether it knows the call. A callback for a call that neither knows
is still answered ``200`` (with an empty ``<Response/>``): it is routine (a callback racing a
session that just ended) and a 4xx would only fill the account's debugger with errors. It is
counted (``status_unknown``) and logged once per call id.

Bounded everywhere: ``max_connections`` requests in progress at once, each with a socket
timeout (``request_timeout_s``) and a body of at most ``max_body`` bytes. A connection past
the cap is answered ``503`` by the accepting thread itself, without a thread of its own and
without reading its request (Twilio then tries the number's fallback URL, if it has one).
Every refused request is one WARNING line: the peer, the status, why; never a token or a
signature.

The signed URL is ``public_url`` (what Twilio is configured to call, e.g.
``https://voice.example.com``, with any path prefix a proxy strips) followed by the request's
path and query as received.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, Self

from ..startable import Startable
from .calls import ProviderKeys
from .inbound import Answer, InboundQueue
from .routes import PATHS as ROUTE_PATHS
from .routes import ProviderRoutes
from .twilio import (
    MAX_BODY,
    InboundCall,
    Refusal,
    StatusEvent,
    StreamEvent,
    decide_amd,
    decide_status,
    decide_stream,
    decide_voice,
    hangup_twiml,
    precheck,
    reject_twiml,
)

__all__ = [
    "AMD_PATH",
    "FINAL_STATUSES",
    "STATUS_PATH",
    "STREAM_PATH",
    "VOICE_PATH",
    "WebhookConfig",
    "WebhookServer",
]

logger = logging.getLogger(__name__)

VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
AMD_PATH = "/twilio/amd"  # AsyncAmdStatusCallback: machine detection's verdict, later
STREAM_PATH = "/twilio/stream"  # <Stream statusCallback>: the stream's own events
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
_EMPTY_TWIML = "<Response />"
_OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n"
)
_LINGER_S = 1.0  # an overflowed socket stays half-open this long, so its 503 is read, not reset
_LINGER_MAX = 256
_UNKNOWN_LOGGED = 1024  # call ids whose unknown status callbacks were logged already


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where the webhook listens and what it answers for.

    ``accounts`` maps each Twilio AccountSid to its auth token (never logged, never in a
    repr). ``public_url`` is the URL Twilio calls, up to the path (``None``: the local
    ``http://host:port``, for the emulator and tests).
    """

    accounts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    host: str = "127.0.0.1"
    port: int = 0
    public_url: str | None = None
    max_body: int = MAX_BODY
    max_connections: int = 64
    request_timeout_s: float = 5.0
    refusal_twiml: str = field(default_factory=reject_twiml)
    # What authenticates Telnyx's, Plivo's, Vonage's and Exotel's webhooks (routes.py).
    keys: ProviderKeys = field(default_factory=ProviderKeys, repr=False)


class _Server(ThreadingHTTPServer):
    """One thread per request, at most ``max_connections``; tracked, so stop() can join them."""

    daemon_threads = True
    request_queue_size = 128  # a burst of webhooks must not be dropped by the kernel

    def __init__(self, app: WebhookServer) -> None:
        self.app = app
        config = app.config
        self.address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._lock = threading.Lock()
        self._requests: dict[threading.Thread, socket.socket] = {}
        self._lingering: deque[tuple[float, socket.socket]] = deque()
        super().__init__((config.host, config.port), _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        assert isinstance(request, socket.socket)
        if not self._slots.acquire(blocking=False):
            self._overloaded(request, client_address)
            return
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), name="webhook-request", daemon=True
        )
        with self._lock:
            self._requests[thread] = request
        thread.start()

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            logger.debug("webhook: connection from %s failed", client_address[0], exc_info=True)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._requests.pop(threading.current_thread(), None)
            self._slots.release()

    def _overloaded(self, request: socket.socket, client_address: Any) -> None:
        self.app.counters.add("overloaded")
        logger.warning(
            "webhook from %s refused: 503, %s requests in progress",
            client_address[0],
            self.app.config.max_connections,
        )
        try:
            request.setblocking(False)
            _drain(request)
            request.send(_OVERLOADED)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        # Closed later (service_actions), so that a request still arriving does not turn
        # into a reset that destroys the 503 before the client reads it.
        self._lingering.append((time.monotonic() + _LINGER_S, request))
        while len(self._lingering) > _LINGER_MAX:
            self._lingering.popleft()[1].close()

    def service_actions(self) -> None:
        now = time.monotonic()
        while self._lingering and self._lingering[0][0] <= now:
            sock = self._lingering.popleft()[1]
            _drain(sock)
            sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("webhook: connection from %s failed", client_address, exc_info=True)

    def close_all(self, deadline: float) -> list[threading.Thread]:
        """Close lingering sockets, shut every connection down, join the threads."""
        while self._lingering:
            self._lingering.popleft()[1].close()
        with self._lock:
            tracked = list(self._requests.items())
        for _, sock in tracked:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread, _ in tracked:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread, _ in tracked if thread.is_alive()]


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:  # nothing more for now (BlockingIOError), or gone
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # and "Connection: close" on every answer: one request each
    server_version = "transport-actors-webhook"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.app.config.request_timeout_s)  # every read

    def do_POST(self) -> None:
        self.server.app._handle(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("webhook %s: %s", self.address_string(), format % args)

    def reply(
        self, status: int, body: str = "", *, xml: bool = False, content_type: str | None = None
    ) -> None:
        data = body.encode()
        self.send_response(status)
        if xml:
            content_type = "text/xml; charset=utf-8"
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()


class WebhookServer(Startable):
    """Serves ``/twilio/voice`` and ``/twilio/status`` on ``config.host:config.port``.

    ``on_status(event) -> bool`` receives every verified status callback and says whether the
    call is known; ``on_reattach(call) -> document | None`` answers a call of ours that came
    back after its stream ended (Twilio's and TeXML's ``<Redirect>``, Plivo's, Vonage's
    synchronous ``eventUrl``: ``call.provider`` says whose; ``None``: end it);
    ``on_stream_lost(provider, call_id, session_id)`` hears of a Telnyx Call Control call whose
    stream ended. They run on the request's thread: keep them quick.
    ``stop()`` closes ``queue`` (calls still waiting are refused) and joins every thread.
    """

    def __init__(
        self,
        config: WebhookConfig,
        queue: InboundQueue,
        *,
        on_status: Callable[[StatusEvent], bool] | None = None,
        on_reattach: Callable[[InboundCall], str | None] | None = None,
        provider: str = "twilio",
        providers: Mapping[str, str] | None = None,
        on_amd: Callable[[StatusEvent], bool] | None = None,
        on_voice: Callable[..., Answer] | None = None,
        on_stream: Callable[[StreamEvent], bool] | None = None,
        on_stream_lost: Callable[[str, str, str], bool] | None = None,
    ) -> None:
        self.config = config
        # A new call's answer: on_voice(call, local, provider=, refusal=) decides (a cluster
        # claims the call for one of its nodes), calling local() for the queue's answer on
        # this node; provider is the entry's name, refusal the provider's own refusal.
        self._on_voice = on_voice
        self.queue = queue
        self.counters = queue.counters
        self.provider = provider
        self._providers = dict(providers or {})  # AccountSid -> provider name (else provider)
        self._on_status = on_status
        self._on_amd = on_amd
        self._on_stream = on_stream
        self._on_reattach = on_reattach
        # (provider, call id, session id): a call we placed lost its stream, no document runs
        # after it (Telnyx Call Control); a cluster streams it again over REST.
        self._on_stream_lost = on_stream_lost
        self.routes = ProviderRoutes(config.keys)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._unknown_logged: OrderedDict[str, None] = OrderedDict()
        self._unknown_lock = threading.Lock()
        self.port = 0

    @property
    def url(self) -> str:
        """Where the server listens, e.g. ``http://127.0.0.1:PORT``."""
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def public_url(self) -> str:
        """What Twilio calls (and signs), up to the path."""
        return (self.config.public_url or self.url).rstrip("/")

    @property
    def voice_url(self) -> str:
        return self.public_url + VOICE_PATH

    @property
    def status_url(self) -> str:
        return self.public_url + STATUS_PATH

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("the webhook server was already started")
        self._httpd = _Server(self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._serve, name="webhook-server", daemon=True)
        self._thread.start()
        logger.info("webhook listening on %s (public %s)", self.url, self.public_url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        self.queue.close()  # wakes every request thread waiting in offer()
        if thread.is_alive():
            httpd.shutdown()
        httpd.server_close()
        stuck = httpd.close_all(deadline)
        thread.join(max(0.0, deadline - time.monotonic()))
        if stuck or thread.is_alive():
            logger.warning("webhook threads still running after %.1f s", timeout)

    def _serve(self) -> None:
        assert self._httpd is not None
        self._httpd.serve_forever(poll_interval=0.05)

    # -- requests ----------------------------------------------------------------------------

    def _handle(self, request: _Handler) -> None:
        arrived = time.monotonic()
        route = request.path.split("?", 1)[0]
        headers = dict(request.headers.items())
        if route in ROUTE_PATHS:
            return self.routes.handle(self, request, route, arrived)
        if route not in (VOICE_PATH, STATUS_PATH, AMD_PATH, STREAM_PATH):
            return self._refuse(request, Refusal(404, "not_found", f"path {route[:60]!r}"))
        early = precheck(request.command, headers, max_body=self.config.max_body)
        if early is not None:
            return self._refuse(request, early)
        length = int(request.headers.get("Content-Length") or 0)  # precheck: a valid one
        body = request.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away (or stalled past the socket timeout)
            self.counters.add("bad_request")
            request.close_connection = True
            return None
        url = self.public_url + request.path
        if route == VOICE_PATH:
            call = decide_voice(url, headers, body, self.config.accounts)
            if isinstance(call, Refusal):
                return self._refuse(request, call)
            return self._voice(request, call, arrived)
        if route == STREAM_PATH:
            told = decide_stream(url, headers, body, self.config.accounts)
            if isinstance(told, Refusal):
                return self._refuse(request, told)
            return self._stream(request, told)
        if route == AMD_PATH:
            verdict = decide_amd(url, headers, body, self.config.accounts)
            if isinstance(verdict, Refusal):
                return self._refuse(request, verdict)
            return self._amd(request, verdict)
        event = decide_status(url, headers, body, self.config.accounts)
        if isinstance(event, Refusal):
            return self._refuse(request, event)
        return self._status(request, event)

    def _amd(self, request: _Handler, event: StatusEvent) -> None:
        self.counters.add("status")
        known = False
        if self._on_amd is not None:
            try:
                known = self._on_amd(event)
            except Exception:
                logger.exception("call %s: the machine detection hook failed", event.call_id)
        if not known:
            self.counters.add("status_unknown")
            logger.debug("machine detection callback for unknown call %s", event.call_id)
        request.reply(200, _EMPTY_TWIML, xml=True)

    def _stream(self, request: _Handler, event: StreamEvent) -> None:
        self.counters.add("stream")
        known = False
        if self._on_stream is not None:
            try:
                known = self._on_stream(event)
            except Exception:
                logger.exception("call %s: the stream status hook failed", event.call_id)
        if not known:
            self.counters.add("stream_unknown")
            logger.debug("stream callback %s for unknown call %s", event.event, event.call_id)
        request.reply(200, _EMPTY_TWIML, xml=True)

    def claim(
        self, call: InboundCall, local: Callable[[], Answer], provider: str, refusal: str
    ) -> Answer:
        """A new call's answer (any provider's): ``on_voice``'s (a cluster claims the call
        for one of its nodes), else ``local()`` (this node's queue)."""
        if self._on_voice is None:
            return local()
        return self._on_voice(call, local, provider=provider, refusal=refusal)

    def reattached(self, call: InboundCall) -> str | None:
        """A call that came back after its stream ended (``call.reattach``, any provider's):
        the document that streams it again, or ``None`` (end it)."""
        self.counters.add("reattach")
        document = self._on_reattach(call) if self._on_reattach is not None else None
        logger.info(
            "%s call %s: stream of session %s ended; %s",
            call.provider,
            call.call_id,
            call.reattach,
            "streamed again" if document else "not streamed again",
        )
        return document

    def stream_lost(self, provider: str, call_id: str, session_id: str) -> bool:
        """A call we placed lost its stream and no document runs after it (Telnyx Call
        Control): whether it was streamed again (a cluster's, over REST)."""
        if self._on_stream_lost is None:
            return False
        self.counters.add("reattach")
        try:
            return self._on_stream_lost(provider, call_id, session_id)
        except Exception:
            logger.exception("call %s: restarting its stream failed", call_id)
            return False

    def _voice(self, request: _Handler, call: InboundCall, arrived: float) -> None:
        if call.reattach is not None:
            twiml = self.reattached(call)
            return request.reply(200, twiml or hangup_twiml(), xml=True)
        provider = self._providers.get(call.account_sid, self.provider)

        def local() -> Answer:
            return self.queue.offer(
                call, self.config.refusal_twiml, provider=provider, arrived_at=arrived
            )

        answer = self.claim(call, local, provider, self.config.refusal_twiml)
        if answer.outcome == "accepted":
            logger.info(
                "call %s from %s answered: session %s (%.0f ms)",
                call.call_id,
                call.from_,
                answer.session_id,
                (time.monotonic() - arrived) * 1000,
            )
        elif answer.outcome == "duplicate" or answer.session_id is not None:
            logger.info("call %s: repeated webhook answered as before", call.call_id)
        else:
            logger.warning(
                "call %s from %s refused: %s",
                call.call_id,
                request.address_string(),
                answer.outcome,
            )
        request.reply(answer.status, answer.body, xml=True)

    def _status(self, request: _Handler, event: StatusEvent) -> None:
        self.deliver(event)
        request.reply(200, _EMPTY_TWIML, xml=True)

    def deliver(self, event: StatusEvent) -> bool:
        """A verified status event (any provider's): a final one tells the queue the call is
        over; ``on_status`` gets every one. Whether the call is known."""
        self.counters.add("status")
        known = event.status in FINAL_STATUSES and self.queue.ended(event.call_id)
        if self.queue.session_of(event.call_id) is not None:
            known = True
        if self._on_status is not None:
            try:
                known = self._on_status(event) or known
            except Exception:  # the hook's bug must not turn into Twilio retrying the callback
                logger.exception("call %s: the status hook failed", event.call_id)
        if not known:
            self.counters.add("status_unknown")
            with self._unknown_lock:
                first = event.call_id not in self._unknown_logged
                self._unknown_logged[event.call_id] = None
                while len(self._unknown_logged) > _UNKNOWN_LOGGED:
                    self._unknown_logged.popitem(last=False)
            log = logger.warning if first else logger.debug
            log("status callback %r for unknown call %s", event.status, event.call_id)
        return known

    def _refuse(self, request: _Handler, refusal: Refusal) -> None:
        self.counters.add(refusal.reason)
        logger.warning(
            "webhook %r from %s refused: %d, %s",
            request.path.split("?", 1)[0][:60],
            request.address_string(),
            refusal.status,
            refusal.detail,
        )
        request.close_connection = True
        request.reply(refusal.status)
