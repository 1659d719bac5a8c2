"""The gateway connection's relay fast path, over real sockets: whole messages go to the relay's
handler as they arrive, everything else through websockets as before, in one order.

The client is a raw TCP socket, so that byte boundaries, fragments, control frames, masks and
malformed frames are exactly as each test writes them. The server is websockets' with the
gateway's connection class; its handler sets a relay hook and reads the rest with
``async for``, noting which way each message came.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from actors.gateway import ServerThread
from actors.gateway._ws import ConnectionClosed, Message, MeteredConnection, ServerConnection


class Server:
    """A websockets server whose connections relay to ``got``: ``("fast", m)`` through the
    hook, ``("recv", m)`` through ``async for``; ``done`` once the handler ended."""

    def __init__(self, max_size: int = 1 << 16) -> None:
        self.got: list[tuple[str, Message]] = []
        self.done = threading.Event()
        self.close_code: int | None = None
        self._max_size = max_size
        self.thread = ServerThread(self._handle, create_connection=MeteredConnection)

    async def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, MeteredConnection)
        connection.limit_messages(self._max_size)
        connection.relay_messages(lambda message: self.got.append(("fast", message)))
        try:
            await connection.send("ready")  # the hook is set: the client may send
            async for message in connection:
                self.got.append(("recv", message))
        except ConnectionClosed:
            pass
        finally:
            connection.relay_messages(None)
            sent = connection.protocol.close_sent
            self.close_code = None if sent is None else int(sent.code)
            self.done.set()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    with s.thread:
        yield s


READY = b"\x81\x05ready"  # the server's first frame


def upgrade() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame; masked with a random key unless ``masked`` is false."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@contextlib.contextmanager
def client(server: Server, *, pipelined: bytes = b"") -> Iterator[socket.socket]:
    """A connection through the handshake (``pipelined`` goes in the same write as the
    request, as no client should); yields the socket; closed after."""
    sock = socket.create_connection(("127.0.0.1", server.thread.port), timeout=5)
    try:
        sock.sendall(upgrade() + pipelined)
        response = b""
        while not response.endswith(READY):
            chunk = sock.recv(4096)
            assert chunk, "closed during the handshake"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101")
        yield sock
    finally:
        sock.close()


def read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Server frames (unmasked) until the server's close frame or the end of the stream."""
    buf, frames = b"", []
    while True:
        while len(buf) >= 2:
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(buf[2:4], "big"), 4
            if len(buf) < at + n:
                break
            frames.append((buf[0] & 0x0F, buf[at : at + n]))
            buf = buf[at + n :]
            if frames[-1][0] == 0x8:
                return frames
        chunk = sock.recv(65536)
        if not chunk:
            return frames
        buf += chunk


def close_frame(code: int = 1000) -> bytes:
    return frame(0x8, code.to_bytes(2, "big"))


def test_whole_messages_take_the_fast_path_in_order_with_everything_else(
    server: Server,
) -> None:
    texts = [f"text {i} ".encode() * 20 for i in range(6)]  # 180 bytes: a 16-bit length
    wire = (
        frame(0x1, texts[0])
        + frame(0x2, b"\x00\xffbinary")
        + frame(0x9, b"ping-1")  # answered by websockets, between two messages
        # A fragmented message (these are still sent byte by byte): websockets assembles it.
        + frame(0x1, b"frag-", fin=False)
        + frame(0x9, b"ping-2")  # a control frame inside it, as RFC 6455 allows
        + frame(0x0, b"men", fin=False)
        + frame(0x0, b"ted", fin=True)
        + b"".join(frame(0x1, t) for t in texts[1:])
        + frame(0x1, "é ü ✓".encode())
        + close_frame()
    )
    with client(server) as sock:
        # One byte per write: every frame arrives in pieces, headers split anywhere.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        half = len(wire) // 2
        for i in range(half):
            sock.send(wire[i : i + 1])
        sock.sendall(wire[half:])  # and the rest at once: many frames per read
        replies = read_frames(sock)
    assert server.done.wait(5)  # its end: once the socket is closed
    messages = [m for _, m in server.got]
    assert messages == [
        texts[0].decode(),
        b"\x00\xffbinary",
        "frag-mented",
        *(t.decode() for t in texts[1:]),
        "é ü ✓",
    ]
    # Byte by byte, each whole message is the only one in flight: the fast path takes it.
    # websockets assembles the fragmented one. (The messages sent at once after it may go
    # either way: while it waits for recv(), those behind it wait too, to keep the order.)
    assert server.got[:3] == [
        ("fast", texts[0].decode()),
        ("fast", b"\x00\xffbinary"),
        ("recv", "frag-mented"),
    ]
    assert (0xA, b"ping-1") in replies and (0xA, b"ping-2") in replies
    assert replies[-1][0] == 0x8 and server.close_code == 1000


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(0x1, b"\xff\xfe not utf-8"), 1007),
        (frame(0x1, b"x" * 2000), 1009),  # over the limit of 1024 set below
        (frame(0x1, b"unmasked", masked=False), 1002),
        (frame(0x3, b"reserved opcode"), 1002),
        (bytes([0xC1]) + frame(0x1, b"rsv1 set")[1:], 1002),
    ],
)
def test_frames_the_fast_path_does_not_take_are_refused_as_websockets_does(
    bad: bytes, code: int
) -> None:
    s = Server(max_size=1024)
    with s.thread, client(s) as sock:
        sock.sendall(frame(0x1, b"before") + bad + frame(0x1, b"after"))
        replies = read_frames(sock)
    assert s.done.wait(5)
    assert s.got == [("fast", "before")]  # nothing after the bad frame is relayed
    assert replies[-1][0] == 0x8
    assert int.from_bytes(replies[-1][1][:2], "big") == code == s.close_code


def test_frames_pipelined_with_the_handshake_still_arrive_whole_and_in_order(
    server: Server,
) -> None:
    second = frame(0x2, b"early-2")
    early = frame(0x1, b"early-1") + second[:3]  # and half a frame
    with client(server, pipelined=early) as sock:
        sock.sendall(second[3:] + frame(0x1, b"late") + close_frame())
        read_frames(sock)
    assert server.done.wait(5)
    assert [m for _, m in server.got] == ["early-1", b"early-2", "late"]
