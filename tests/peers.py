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
from collections.abc import Callable
from types import TracebackType

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


def close_server(
    listener: socket.socket,
    acceptor: threading.Thread,
    lock: threading.Lock,
    sockets: list[socket.socket],
    threads: list[threading.Thread],
) -> None:
    """End a test server: stop accepting on ``listener`` and join its ``acceptor``, then shut
    down every socket it accepted (``sockets``, under ``lock``) so the ``threads`` serving them
    return, join those, and close the sockets."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    acceptor.join(5)
    with lock:
        accepted, serving = list(sockets), list(threads)
    for sock in accepted:
        with contextlib.suppress(OSError):  # OSError too: a socket TLS took over
            sock.shutdown(socket.SHUT_RDWR)
    for thread in serving:
        thread.join(5)
    for sock in accepted:
        sock.close()


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


class RawPeer:
    """Accepts connections, answers the handshake, then runs ``behaviour(sock)`` per client.

    ``accepted`` counts handshakes done; ``stop()`` closes every socket and joins every thread.
    """

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self.handshake_done = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="raw-peer", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        close_server(self._listener, self._acceptor, self._lock, self._clients, self._threads)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._clients.append(client)
                self._threads.append(thread)
            thread.start()

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
