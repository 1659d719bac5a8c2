"""The pieces of actors.transport one by one, without a peer: what goes on the wire next and in
which order (Outgoing), where each frame ends (InFlight, wire_size), what a service's
connections share (SharedIo), and the interface between the I/O loop and what it drives."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from actors.codecs import Frame
from actors.connection import SentLog, SharedIo, Traffic
from actors.errors import ServiceClosed
from actors.queues import Keep, Outbox
from actors.transport.inflight import wire_size
from actors.transport.ioloop import IoLoop
from actors.transport.outgoing import Outgoing
from actors.wire import ClientProtocol, State
from actors.wire.frames import build_frame

pytestmark = pytest.mark.timeout(30)

KEY = b"\x01\x02\x03\x04"


def frames(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """``(opcode, payload, end offset)`` of each masked client frame in ``data``."""
    pos = 0
    while pos < len(data):
        size, head = data[pos + 1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        key = data[pos + head : pos + head + 4]
        start = pos + head + 4
        body = data[start : start + size]
        yield data[pos] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body)), start + size
        pos = start + size


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300, 65535, 65536, 70000])
def test_wire_size_is_the_size_of_the_frame_built(size: int) -> None:
    assert wire_size(size) == len(build_frame(0x2, bytes(size), KEY))


def outgoing(sent_log: SentLog | None = None) -> tuple[Outgoing, Outbox[Frame | Keep], Traffic]:
    outbox: Outbox[Frame | Keep] = Outbox(100)
    traffic = Traffic()
    protocol = ClientProtocol(mask_keys=lambda: KEY)
    return Outgoing(protocol, outbox, traffic, sent_log, 2.0), outbox, traffic


def test_wire_order_control_then_resend_then_outbox_then_close() -> None:
    out, outbox, traffic = outgoing(SentLog(10))
    out.protocol.receive_data(b"\x89\x02hi")  # a ping from the peer: a pong is due
    out.resend = ["again"]
    outbox.put_many([b"\x00" * 160, "text"])
    out.request_close(1000, "bye", flush=True)
    data = out.take()
    seen = [(opcode, payload) for opcode, payload, _ in frames(data)]
    assert seen == [(0xA, b"hi"), (0x1, b"again"), (0x2, b"\x00" * 160), (0x1, b"text"),
                    (0x8, b"\x03\xe8bye")]  # fmt: skip
    # Where each data frame ends on the wire: the pong comes first, the close is no data.
    ends = [end for opcode, _, end in frames(data) if opcode in (0x1, 0x2)]
    assert list(out.inflight.ends) == ends
    assert out.inflight.wire_end == len(data)
    assert (traffic.frames_out, traffic.bytes_out, traffic.frames_resent) == (2, 164, 1)
    assert out.protocol.state is State.CLOSING and not out.more_may_go()
    assert out.take() == b""


def test_a_close_waits_for_the_outbox_unless_it_does_not_flush() -> None:
    out, outbox, _ = outgoing()
    out.request_close(1000, "", flush=True)
    outbox.put_many(["queued"])
    assert [op for op, _, _ in frames(out.take())] == [0x1, 0x8]
    out2, outbox2, traffic2 = outgoing()
    outbox2.put_many(["stays queued"])
    out2.request_close(1011, "restarting", flush=False)
    assert [(op, p) for op, p, _ in frames(out2.take())] == [(0x8, b"\x03\xf3restarting")]
    assert len(outbox2) == 1 and traffic2.frames_out == 0  # for the next connection


def test_a_code_that_only_reports_a_close_goes_as_a_close_without_code() -> None:
    out, _, _ = outgoing()
    out.request_close(1006, "gone", flush=True)
    assert [(op, p) for op, p, _ in frames(out.take())] == [(0x8, b"")]


def test_a_due_ping_goes_first_and_nothing_after_the_peer_closed() -> None:
    out, outbox, _ = outgoing()
    out.protocol.receive_data(b"\x88\x02\x03\xe8")  # the peer closes: the echo is due
    out.ping_due = True
    outbox.put_many(["too late"])
    assert [op for op, _, _ in frames(out.take())] == [0x8]  # the echo; no ping, no data
    assert len(outbox) == 1


class Recorder:
    """A resource that records its stop."""

    def __init__(self, name: str, stopped: list[str]) -> None:
        self.name, self.stopped = name, stopped

    def stop(self, timeout: float = 2.0) -> None:
        self.stopped.append(self.name)


class Other(Recorder):
    pass


def test_shared_io_makes_each_kind_once_and_stops_them_newest_first() -> None:
    shared = SharedIo(tick_s=0.05)
    stopped: list[str] = []
    made: list[Recorder] = []
    barrier = threading.Barrier(8)

    def get() -> None:
        barrier.wait(5)
        made.append(shared.get(Recorder, lambda: Recorder("first", stopped)))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(made) == 8 and len({id(r) for r in made}) == 1
    shared.get(Other, lambda: Other("second", stopped))
    shared.close()
    assert stopped == ["second", "first"]
    with pytest.raises(ServiceClosed):
        shared.get(Recorder, lambda: Recorder("late", stopped))
    shared.close()  # again: nothing left to stop
    assert stopped == ["second", "first"]


class Client:
    """Drives nothing: records what the loop calls, through the LoopClient interface only."""

    def __init__(self, sock: socket.socket, crash_on_data: bool = False) -> None:
        self.sock = sock
        self.crash_on_data = crash_on_data
        self.data: list[bytes] = []
        self.crashes: list[Exception] = []
        self.ticked = threading.Event()
        self.stopped = threading.Event()
        self.got = threading.Event()

    def on_readable(self) -> bytes | None:
        return self.sock.recv(4096)

    def on_data(self, data: bytes) -> None:
        if self.crash_on_data:
            raise RuntimeError("a bug")
        self.data.append(data)
        self.got.set()

    def on_writable(self) -> None:
        pass

    def wants_writable(self) -> bool:
        return False

    def on_tick(self, now: float) -> None:
        self.ticked.set()

    def on_crash(self, exc: Exception) -> None:
        self.crashes.append(exc)
        self.got.set()

    def on_loop_stopped(self) -> None:
        self.stopped.set()


def test_the_loop_drives_its_clients_through_the_interface_and_contains_a_crash() -> None:
    loop = IoLoop(tick_s=0.01)
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        good, bad = Client(pairs[0][0]), Client(pairs[1][0], crash_on_data=True)
        for client in (good, bad):
            client.sock.setblocking(False)
            loop.call_soon(lambda client=client: loop.add(client, client.sock))
        pairs[1][1].send(b"boom")
        pairs[0][1].send(b"hello")
        assert good.got.wait(5) and bad.got.wait(5)
        assert good.data == [b"hello"] and good.crashes == []
        assert [str(exc) for exc in bad.crashes] == ["a bug"]
        assert good.ticked.wait(5)
    finally:
        loop.stop()
        for pair in pairs:
            for sock in pair:
                sock.close()
    assert good.stopped.is_set() and bad.stopped.is_set()
