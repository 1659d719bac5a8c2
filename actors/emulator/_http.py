"""What the emulators' REST APIs share: the server, the request handler, faults and replies.

:class:`TrackingHTTPServer` is a :class:`~http.server.ThreadingHTTPServer` (one daemon thread
per connection) that remembers each connection's socket and thread, so that stopping the
server can shut them down and join them instead of leaving them to the interpreter's exit.
:class:`HTTPApiServer` is the emulated API built on it: ``start()`` binds and serves from a
thread of its own, ``stop(timeout)`` ends everything within ``timeout``, ``url`` says where it
is; it records every request it answered (:attr:`~HTTPApiServer.requests`) and keeps the
queues of injected faults (:class:`Fault`). :class:`ApiRequestHandler` reads a request
(bounded body, ``Content-Length`` only), hands it to the API's ``_handle`` and writes the
:class:`Reply` as JSON.

What is the provider's own is left to a subclass of each: the routes and the operations
(``HTTPApiServer._handle``), the error bodies and extra headers of the handler (its
``_length_required`` / ``_bad_length`` / ``_too_large`` / ``_internal_error`` /
``_extra_headers`` hooks), and which methods it answers at all (``do_HEAD``, ``do_OPTIONS``).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, NamedTuple, Self, TypeVar
from urllib.parse import urlsplit

from ..startable import Startable

__all__ = [
    "ApiRequestHandler",
    "Fault",
    "HTTPApiServer",
    "RecordedRequest",
    "Reply",
    "TrackingHTTPServer",
    "status_phrase",
]

ApiT = TypeVar("ApiT", bound="HTTPApiServer")


class RecordedRequest(NamedTuple):
    """One request the server answered: what it was and the status it got."""

    method: str
    path: str
    status: int
    operation: str | None  # the API's name for it ("create", "create_room"...), else None


@dataclass
class Reply:
    """What the API answers: a status, a JSON body, extra headers, and what to run after."""

    status: int
    payload: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)
    after: Callable[[], None] | None = None  # run once the response is on the wire


@dataclass
class Fault:
    """An injected failure: the next ``remaining`` requests of an operation get ``status`` and
    the provider's error body ``payload``, instead of the operation (or, ``performed``, after
    it, as when the provider acted but its answer was lost)."""

    status: int
    payload: dict[str, Any]
    retry_after: float | None
    remaining: int
    performed: bool = False

    def reply(self) -> Reply:
        """The answer this fault gives (a fresh one each time: the headers are the reply's)."""
        reply = Reply(self.status, dict(self.payload))
        if self.retry_after is not None:
            reply.headers.append(("Retry-After", f"{self.retry_after:g}"))
        return reply


def status_phrase(status: int) -> str:
    """HTTP's reason phrase for ``status`` (``"Error"`` for one Python has no name for)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # e.g. 599
        return "Error"


class TrackingHTTPServer(ThreadingHTTPServer, Generic[ApiT]):
    """ThreadingHTTPServer that keeps track of its connections, so stop() can end them.

    ``api`` is the emulated API the handler answers for (``self.server.api`` in a handler); its
    ``name`` names the connection threads, and its ``_logger`` and ``_label`` report failures.
    """

    daemon_threads = True
    # socketserver's default of 5 stalls or drops connections when many calls are placed at
    # once (a load test, the demo): the kernel's queue must hold a burst of new connections.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        api: ApiT,
    ) -> None:
        self.api = api
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._tracked_lock = threading.Lock()
        self._tracked: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        assert isinstance(request, socket.socket)  # a TCP server only ever has sockets
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"{self.api.name}-conn",
            daemon=True,
        )
        with self._tracked_lock:
            self._tracked[thread] = request
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._tracked_lock:
                self._tracked.pop(threading.current_thread(), None)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # A client that goes away mid-request is routine; anything else is worth a trace.
        self.api._logger.debug(
            "%s: connection from %s failed", self.api._label, client_address, exc_info=True
        )

    def close_connections(self, deadline: float) -> list[threading.Thread]:
        """Shut every open connection down and join its thread; return the ones still alive."""
        with self._tracked_lock:
            tracked = list(self._tracked.items())
        for _, sock in tracked:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading the socket
            except OSError:
                pass
        for thread, _ in tracked:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread, _ in tracked if thread.is_alive()]


class HTTPApiServer(Startable):
    """An emulated API served over HTTP on ``host:port`` (port 0: any free port).

    A subclass sets ``_label`` (how its log lines name it, e.g. ``"twilio emulator"``) and
    ``_logger`` (its module's, so that its lines keep their logger), passes its request
    handler class, the operations that take injected faults and how many requests to
    remember (``None``: all) to ``__init__``, and answers requests in ``_handle``. ``_lock``
    guards the requests, the faults and whatever state the subclass keeps. ``start()``
    returns once the socket listens; ``stop()`` closes it and every connection, and joins
    every thread, within ``timeout``.
    """

    _label: ClassVar[str]
    _logger: ClassVar[logging.Logger]

    def __init__(
        self,
        *,
        host: str,
        port: int,
        name: str,
        handler: type[BaseHTTPRequestHandler],
        max_body: int,
        fault_operations: Iterable[str],
        requests_kept: int | None,
    ) -> None:
        self._host = host
        self._port = port
        self._handler = handler
        self.name = name
        self.port = 0
        self.max_body = max_body
        self._httpd: TrackingHTTPServer[Self] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: deque[RecordedRequest] = deque(maxlen=requests_kept)
        self._faults: dict[str, deque[Fault]] = {op: deque() for op in fault_operations}

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:PORT`` (an IPv6 host in brackets)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind, listen and serve from a new thread; return once the socket listens."""
        if self._httpd is not None:
            raise RuntimeError("the server was already started")
        # Binds and listens here, so a client can connect as soon as start() returns.
        httpd = TrackingHTTPServer((self._host, self._port), self._handler, self)
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        self._logger.debug("%s listening on %s", self._label, self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the socket and every connection, join the threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        if thread.is_alive():
            httpd.shutdown()  # serve_forever polls every 50 ms, so this is quick
        httpd.server_close()
        stuck = httpd.close_connections(deadline)
        thread.join(max(0.0, deadline - time.monotonic()))
        if stuck or thread.is_alive():
            self._still_running(timeout, [*stuck, thread])

    def _still_running(self, timeout: float, threads: list[threading.Thread]) -> None:
        """Say which of ``threads`` ``stop()`` left running; a subclass may word it its own way."""
        self._logger.warning(
            "%s threads still running after %.1f s: %s",
            self._label,
            timeout,
            [t.name for t in threads if t.is_alive()],
        )

    def _serve(self) -> None:
        assert self._httpd is not None
        try:
            self._httpd.serve_forever(poll_interval=0.05)
        except Exception:
            self._logger.exception("%s %s crashed", self._label, self.name)

    # -- requests and faults -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered so far, in order."""
        with self._lock:
            return list(self._requests)

    def attempts(self, operation: str) -> int:
        """How many ``operation`` requests were answered (any status)."""
        with self._lock:
            return sum(1 for r in self._requests if r.operation == operation)

    def _queue_fault(self, operation: str, fault: Fault) -> None:
        """Queue ``fault`` for the next requests of ``operation``, after any queued before it
        (``ValueError`` unless its status is an HTTP error and it answers at least once)."""
        if not 400 <= fault.status <= 599:
            raise ValueError(f"status must be an HTTP error status, not {fault.status}")
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults[operation].append(fault)

    def _take_fault(self, operation: str) -> Fault | None:
        """The fault that answers this request of ``operation``, if one is queued."""
        with self._lock:
            queue = self._faults.get(operation)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
            return fault

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @abstractmethod
    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        """Route and answer one request; returns the reply and the operation's name (called
        on the connection's thread)."""


class ApiRequestHandler(BaseHTTPRequestHandler, ABC):
    """Reads one request, has the API answer it, writes the answer as JSON.

    A subclass per provider sets ``server_version`` and the hooks that word its refusals;
    it adds ``do_HEAD`` / ``do_OPTIONS`` (calling ``_dispatch``) if the provider answers them.
    """

    protocol_version = "HTTP/1.1"  # keep-alive, as requests' connection pool expects
    sys_version = ""
    timeout = 30.0  # an idle or stuck client cannot hold its thread forever
    # Headers and body leave in two writes: without this, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: TrackingHTTPServer[HTTPApiServer]

    # -- the provider's words ----------------------------------------------------------------

    @abstractmethod
    def _length_required(self) -> Reply:
        """The answer to a body sent without a Content-Length (chunked)."""

    @abstractmethod
    def _bad_length(self) -> Reply:
        """The answer to a Content-Length that is not a length."""

    @abstractmethod
    def _too_large(self, length: int, limit: int) -> Reply:
        """The answer to a body over the API's ``max_body``."""

    @abstractmethod
    def _internal_error(self) -> Reply:
        """The answer when answering failed (a bug in the emulator)."""

    def _extra_headers(self) -> list[tuple[str, str]]:
        """Headers every answer carries."""
        return []

    # -- the request -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # The request line and status only: headers (Authorization) never reach a log.
        api = self.server.api
        api._logger.debug("%s %s: %s", api._label, self.address_string(), format % args)

    def _dispatch(self) -> None:
        api = self.server.api
        body = self._read_body(api.max_body)
        if body is None:
            return  # already answered
        authorization = self.headers.get("Authorization", "")
        try:
            reply, operation = api._handle(self.command, self.path, authorization, body)
        except Exception:  # a bug here must still answer, as the provider would, with a 500
            api._logger.exception("%s failed on %s %s", api._label, self.command, self.path)
            reply, operation = self._internal_error(), None
        self._send(reply, operation)
        if reply.after is not None:
            reply.after()

    def _read_body(self, limit: int) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._send(self._length_required(), None, close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(self._bad_length(), None, close=True)
            return None
        if length > limit:
            self._send(self._too_large(length, limit), None, close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply, operation: str | None, close: bool = False) -> None:
        # Recorded before the client can see the answer, so a test that counts attempts
        # right after its request returns never races the count.
        path = urlsplit(self.path).path
        self.server.api._record(RecordedRequest(self.command, path, reply.status, operation))
        self.send_response(reply.status)
        if reply.status == HTTPStatus.NO_CONTENT:  # no body, and no headers saying one
            body = b""
        else:
            body = json.dumps(reply.payload).encode()
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        for name, value in [*self._extra_headers(), *reply.headers]:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")  # the unread body makes the stream unusable
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
