"""A TCP proxy on 127.0.0.1 that a test can fault, the way a network faults a connection.

- ``cut()`` resets connections going through it (``SO_LINGER`` 0: both ends get a TCP RST, no
  WebSocket close frame), while the proxy keeps accepting new ones: what a NAT timeout or a
  flapping link does to a long-lived WebSocket.
- ``freeze()`` stops forwarding on connections open now, both ways, without closing them: a
  half-open path (a dead NAT entry, a peer whose host hung). Nothing is lost in the proxy:
  ``thaw()`` lets through what was held, like a path that comes back. New connections are not
  frozen, so a client that gives up and redials gets through.
- ``reject_new = True`` resets every new connection as soon as it is accepted, before anything
  reaches the target: a peer that is up but refuses to serve, so that every redial fails.

Connections are numbered in the order they were accepted (from 0), and ``cut``, ``freeze`` and
``thaw`` take that number to fault just one of them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from actors.startable import Startable


class _Link:
    """One proxied connection: the accepted client socket and the socket to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.flowing = threading.Event()  # cleared: frozen, the pumps hold what they read
        self.flowing.set()
        self.cut = False
        self.pumps: list[threading.Thread] = []

    def reset(self) -> None:
        """Reset both sockets, and return only once the RSTs are sent: a socket's RST goes
        out when its last user lets go, so the pumps (woken by SHUT_RD) are joined first."""
        self.cut = True
        self.flowing.set()  # release a pump holding data: it sees `cut` and drops it
        for sock in (self.client, self.upstream):
            _arm_reset(sock)
        for pump in self.pumps:
            if pump is not threading.current_thread():
                pump.join(1.0)  # a pump stuck in sendall to a full socket: give up on it
        self.client.close()
        self.upstream.close()


class TcpProxy(Startable):
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[_Link] = []  # every link accepted, in order; cut ones stay listed
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.connections = 0  # connections accepted and forwarded to the target
        self.rejected = 0  # connections reset on arrival because of `reject_new`
        self.reject_new = False
        self._acceptor = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def cut(self, index: int | None = None) -> None:
        """Reset every connection open now, or only the ``index``-th one accepted."""
        for link in self._select(index):
            link.reset()

    def freeze(self, index: int | None = None) -> None:
        """Stop forwarding, both ways, on every connection open now (or the ``index``-th),
        leaving them open. Connections accepted later flow normally."""
        for link in self._select(index):
            link.flowing.clear()

    def thaw(self, index: int | None = None) -> None:
        """Forward again on frozen connections, starting with what was held."""
        for link in self._select(index):
            link.flowing.set()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        self._acceptor.join(timeout)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _select(self, index: int | None) -> list[_Link]:
        with self._lock:
            links = list(self._links) if index is None else [self._links[index]]
        return [link for link in links if not link.cut]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.reject_new:
                with self._lock:
                    self.rejected += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            link = _Link(client, upstream)
            with self._lock:
                if self._closed:
                    link.reset()
                    return
                self.connections += 1
                self._links.append(link)
                for a, b in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(
                        target=_pump, args=(link, a, b), name="tcp-proxy-pump", daemon=True
                    )
                    link.pumps.append(thread)
                    self._threads.append(thread)
                    thread.start()


def _pump(link: _Link, source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            link.flowing.wait()  # frozen: hold this chunk (or the EOF) until thawed or cut
            if link.cut:
                return
            if not data:
                break
            sink.sendall(data)
    except OSError:
        if link.cut:
            return
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _arm_reset(sock: socket.socket) -> None:
    """Make the socket's close a reset, and wake a pump blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # wakes a pump blocked in recv, sends nothing


def _reset(sock: socket.socket) -> None:
    _arm_reset(sock)
    sock.close()  # with a zero linger: a RST, not a FIN
