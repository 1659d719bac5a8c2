"""Misbehaving peers for tests: real servers on 127.0.0.1 that do what a good peer would not.

``websockets`` answers pings and validates everything itself, so a peer that goes silent or
sends a broken frame is written here on a raw socket: it completes the real RFC 6455 handshake,
then does exactly what the test asks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Behaviour = Callable[[socket.socket, threading.Event], None]


def answer_upgrade(client: socket.socket) -> bytes:
    """Read a WebSocket upgrade request from ``client`` and answer it (101, with RFC 6455's
    accept key); return what the client sent after the request. ``ConnectionError`` (an
    ``OSError``) if the client closes first."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = client.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        request += chunk
    head, _, rest = request.partition(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    client.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return rest


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server-to-client frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class ThreadedServer:
    """A test server on ``listener``: its acceptor thread (``_acceptor``, started by the
    subclass once it is ready) hands each client to :meth:`_accepted`, which serves it on a
    thread of its own with :meth:`_spawn`. ``stop()``, or the end of a ``with`` block, sets
    ``_stop``, stops accepting, shuts down every socket so that the threads serving them
    return, joins those, and closes the sockets."""

    def __init__(self, listener: socket.socket, name: str, *, daemon: bool = False) -> None:
        self._listener = listener
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name=name, daemon=daemon)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)
        with self._lock:
            clients, threads = list(self._clients), list(self._threads)
        for client in clients:
            with contextlib.suppress(OSError):  # OSError too: a socket TLS took over
                client.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        for client in clients:
            client.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._accepted(client)

    def _accepted(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _spawn(
        self,
        target: Callable[..., None],
        *args: object,
        sockets: Sequence[socket.socket] = (),
        name: str | None = None,
    ) -> None:
        """Run ``target(*args)`` on a thread of its own (a daemon if the acceptor is one);
        ``sockets`` are shut down by ``stop()``."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=self._acceptor.daemon)
        with self._lock:
            self._clients.extend(sockets)
            self._threads.append(thread)
        thread.start()


class RawPeer(ThreadedServer):
    """Accepts connections, answers the handshake, then runs ``behaviour(sock)`` per client.

    ``accepted`` counts handshakes done; ``stop()`` closes every socket and joins every thread.
    """

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(socket.create_server(("127.0.0.1", 0)), "raw-peer", daemon=True)
        self._behaviour = behaviour
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.accepted = 0
        self.handshake_done = threading.Event()
        self._acceptor.start()

    def _accepted(self, client: socket.socket) -> None:
        self._spawn(self._serve, client, sockets=[client])

    def _serve(self, client: socket.socket) -> None:
        try:
            answer_upgrade(client)
            with self._lock:
                self.accepted += 1
            self.handshake_done.set()
            self._behaviour(client, self._stop)
        except OSError:
            pass


def silent(sock: socket.socket, stop: threading.Event) -> None:
    """Never read, never answer a ping: a half-open peer, until the peer is stopped."""
    stop.wait(30)


def send_then_wait(data: bytes) -> Behaviour:
    """Send raw bytes (e.g. a broken frame), then idle until the peer is stopped."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(data)
        stop.wait(30)

    return behave
