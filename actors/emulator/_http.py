"""The HTTP plumbing the emulators' REST APIs share: a server that can end its connections.

:class:`TrackingHTTPServer` is a :class:`~http.server.ThreadingHTTPServer` (one daemon thread
per connection) that remembers each connection's socket and thread, so that stopping the
server can shut them down and join them instead of leaving them to the interpreter's exit.
:class:`HTTPApiServer` is the lifecycle an emulated API builds on it: ``start()`` binds and
serves from a thread of its own, ``stop(timeout)`` ends everything within ``timeout``, and
``url`` says where it is. What the API answers is left to the subclass and its handler.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

__all__ = ["HTTPApiServer", "TrackingHTTPServer"]

ApiT = TypeVar("ApiT", bound="HTTPApiServer")


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


class HTTPApiServer:
    """An emulated API served over HTTP on ``host:port`` (port 0: any free port).

    A subclass sets ``_label`` (how its log lines name it, e.g. ``"twilio emulator"``) and
    ``_logger`` (its module's, so that its lines keep their logger), and passes its request
    handler class to ``__init__``. ``start()`` returns once the socket listens; ``stop()``
    closes it and every connection, and joins every thread, within ``timeout``.
    """

    _label: ClassVar[str]
    _logger: ClassVar[logging.Logger]

    def __init__(
        self, *, host: str, port: int, name: str, handler: type[BaseHTTPRequestHandler]
    ) -> None:
        self._host = host
        self._port = port
        self._handler = handler
        self.name = name
        self.port = 0
        self._httpd: TrackingHTTPServer[Self] | None = None
        self._thread: threading.Thread | None = None

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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._httpd is not None
        try:
            self._httpd.serve_forever(poll_interval=0.05)
        except Exception:
            self._logger.exception("%s %s crashed", self._label, self.name)
