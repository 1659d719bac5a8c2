"""The I/O (actors.transport) driving the wire layer, over a real loopback socket: close
frames that RFC 6455 forbids, which the parser and builder inside the old actors/websocket.py
let through before it used actors.wire."""

from __future__ import annotations

import queue
import socket
import threading

import pytest

from actors import Close, SessionState, Text, TransportService
from actors.connection import ConnectionContext, DialOptions, Traffic
from actors.exits import Exit, ExitKind
from actors.queues import Outbox
from actors.transport import websocket_connection
from tests.conftest import fast_config
from tests.peers import Behaviour, RawPeer, send_then_wait, server_frame

pytestmark = pytest.mark.timeout(30)


def read_all(service: TransportService, sid: str) -> list[object]:
    seen: list[object] = []
    while (message := service.read_websocket_message(sid, timeout=5)) is not None:
        seen.append(message)
    return seen


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x03", Close(1002, "a close frame with a 1-byte payload")),
        (b"\x03\xed", Close(1002, "close code 1005 is not allowed on the wire")),
        (b"\x03\xe7why", Close(1002, "close code 999 is not allowed on the wire")),
        (b"\x03\xe8\xff", Close(1007, "invalid UTF-8 in a close frame's reason")),
    ],
    ids=["one-byte", "1005", "999", "reason-not-utf8"],
)
def test_a_close_frame_that_breaks_rfc_6455_fails_the_session(
    payload: bytes, expected: Close
) -> None:
    """The old parser read these as the peer closing (1005, or the code it found, with the
    reason decoded leniently); they are protocol errors that end the session with 1002/1007."""
    bad = server_frame(0x1, b"fine") + server_frame(0x8, payload)
    with RawPeer(send_then_wait(bad)) as peer, TransportService(fast_config()) as service:
        sid = service.create_session(provider="websocket", url=peer.url).session_id
        assert read_all(service, sid) == [Text("fine"), expected]
        assert service.status(sid).state is SessionState.CLOSED
        service.end_session(sid)


def close_recorder(seen: list[bytes], done: threading.Event) -> Behaviour:
    """Read the client's frames until its close frame; keep that frame's payload, unmasked;
    answer it, then idle."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.settimeout(10)
        buf = b""
        while True:
            while len(buf) < 6 or len(buf) < 6 + (buf[1] & 0x7F):
                chunk = sock.recv(4096)
                if not chunk:
                    return
                buf += chunk
            size = buf[1] & 0x7F  # our client's close frames and pings are short
            key, body = buf[2:6], buf[6 : 6 + size]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(body))
            opcode, buf = buf[0] & 0x0F, buf[6 + size :]
            if opcode == 0x8:
                seen.append(payload)
                sock.sendall(server_frame(0x8, payload))
                done.set()
                stop.wait(30)
                return

    return behave


def test_a_close_code_that_only_reports_a_close_is_not_put_on_the_wire() -> None:
    """A connection asked to close with 1006 (a code that reports a close and may never be
    sent: the facade refuses it from an application, the contract does not) closes with a
    close frame without a code; the old builder sent 1006 as it was."""
    seen: list[bytes] = []
    done = threading.Event()
    opened = threading.Event()
    exits: queue.Queue[Exit] = queue.Queue()
    with RawPeer(close_recorder(seen, done)) as peer:
        connection = websocket_connection(
            ConnectionContext(
                DialOptions(url=peer.url, ping_interval_s=0),
                session_id="close-1006",
                outbox=Outbox(10),
                traffic=Traffic(),
                on_open=lambda subprotocol: opened.set(),
                on_frame=lambda frame: None,
                on_exit=exits.put,
            )
        )
        connection.start()
        try:
            assert opened.wait(10)
            connection.request_close(1006, "gone")
            assert done.wait(10)
            assert exits.get(timeout=10) == Exit(ExitKind.NORMAL, 1006, "gone")
        finally:
            connection.abort()
            assert connection.join(10)
    assert seen == [b""]
