"""Bounded queues against a slow peer and a slow reader: what is dropped is audio, and counted.

The slow peer is a real ``websockets`` server whose handler does not read until released: its
library stops reading once its own small queue is full, TCP flow control does the rest, and our
writer thread ends up blocked in ``send`` while the application goes on writing. A healthy
session to an echo server runs alongside each case and must not notice.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from actors import Binary, QueueFull, Text, TransportService
from actors.config import TransportConfig, parse_config
from actors.errors import ConfigError
from actors.gateway import ServerConnection, ServerThread
from actors.lifecycle import SessionState
from tests.conftest import eventually, fast_config

pytestmark = pytest.mark.timeout(60)

FRAME = bytes(32 * 1024)  # big frames fill the kernel's buffers quickly


class StalledPeer:
    """Reads nothing until ``release``; then reads everything, counting texts and binaries."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.binaries = 0
        self.texts: list[str] = []
        self.saw_end = threading.Event()
        self.server = ServerThread(self._handle, name="stalled-peer", max_size=1 << 20)

    async def _handle(self, ws: ServerConnection) -> None:
        await asyncio.to_thread(self.release.wait, 30)
        async for message in ws:
            if isinstance(message, str):
                self.texts.append(message)
                if message == "end":
                    self.saw_end.set()
            else:
                self.binaries += 1


@pytest.fixture
def peer() -> Iterator[StalledPeer]:
    stalled = StalledPeer()
    with stalled.server:
        try:
            yield stalled
        finally:
            stalled.release.set()


def config(**runtime: object) -> TransportConfig:
    # No keepalive: a peer that reads nothing for a while is slow here, not dead.
    return fast_config(ping_interval_s=0.0, **runtime)


def round_trip(service: TransportService, sid: str) -> None:
    service.write_websocket_message(sid, Text("ping"))
    assert service.read_websocket_message(sid, timeout=5) == Text("ping")


def test_a_slow_peer_costs_old_audio_only_and_every_frame_is_accounted_for(
    peer: StalledPeer, echo_server: ServerThread
) -> None:
    with TransportService(config(outbound_max=50)) as service:
        healthy = service.create_session(url=echo_server.url).session_id
        sid = service.create_session(url=peer.server.url).session_id
        written = 0
        for i in range(1000):
            service.write_websocket_message(sid, Binary(FRAME))
            written += 1
            if i % 50 == 49:
                service.write_websocket_message(sid, Text(f"marker {i}"))
        record = service._sessions[sid].record
        assert eventually(lambda: record.outbox.dropped > 0)
        round_trip(service, healthy)  # the neighbour does not notice
        peer.release.set()
        service.write_websocket_message(sid, Text("end"))
        assert peer.saw_end.wait(30)
        status = service.status(sid)
        assert status.dropped_out > 0
        assert peer.binaries + status.dropped_out == written  # delivered + dropped == sent
        assert peer.texts == [f"marker {i}" for i in range(49, 1000, 50)] + ["end"]
        assert status.state is SessionState.OPEN
        assert service.status(healthy).restarts == 0
        round_trip(service, healthy)


def test_the_raise_policy_refuses_writes_instead_of_dropping(
    peer: StalledPeer, echo_server: ServerThread
) -> None:
    cfg = config(outbound_max=20, outbound_overflow="raise")
    with TransportService(cfg) as service:
        healthy = service.create_session(url=echo_server.url).session_id
        sid = service.create_session(url=peer.server.url).session_id
        accepted = 0
        with pytest.raises(QueueFull) as info:
            for _ in range(5000):
                service.write_websocket_message(sid, Binary(FRAME))
                accepted += 1
        assert info.value.session_id == sid
        assert "outbound queue is full (20 frames" in str(info.value)
        service.write_websocket_message(sid, Text("still fine"))  # only audio is refused
        round_trip(service, healthy)
        peer.release.set()
        service.write_websocket_message(sid, Text("end"))
        assert peer.saw_end.wait(30)
        assert peer.binaries == accepted  # everything accepted was delivered
        assert peer.texts == ["still fine", "end"]
        assert service.status(sid).dropped_out == 0


def test_a_slow_reader_loses_old_audio_only_and_it_is_counted(echo_server: ServerThread) -> None:
    with TransportService(config(inbox_max=20)) as service:
        sid = service.create_session(url=echo_server.url).session_id
        sent = 300
        for i in range(sent):
            service.write_websocket_message(sid, Binary(i.to_bytes(2, "big")))
        service.write_websocket_message(sid, Text("last"))
        record = service._sessions[sid].record
        assert eventually(lambda: record.traffic.frames_in == sent + 1)
        got = []
        while (message := service.read_websocket_message(sid, timeout=5)) != Text("last"):
            assert isinstance(message, Binary)
            got.append(int.from_bytes(message.data, "big"))
        status = service.status(sid)
        assert len(got) + status.dropped_in == sent  # delivered + dropped == received
        assert got == list(range(sent - len(got), sent))  # the newest kept, in order
        assert status.dropped_in == sent - 20


def test_the_drop_newest_inbox_keeps_the_oldest(echo_server: ServerThread) -> None:
    cfg = config(inbox_max=20, inbound_overflow="drop_newest")
    with TransportService(cfg) as service:
        sid = service.create_session(url=echo_server.url).session_id
        for i in range(100):
            service.write_websocket_message(sid, Binary(i.to_bytes(2, "big")))
        service.write_websocket_message(sid, Text("last"))
        record = service._sessions[sid].record
        assert eventually(lambda: record.traffic.frames_in == 101)
        got = []
        while (message := service.read_websocket_message(sid, timeout=5)) != Text("last"):
            assert isinstance(message, Binary)
            got.append(int.from_bytes(message.data, "big"))
        assert got == list(range(20))
        assert service.status(sid).dropped_in == 80


def test_queue_policies_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"runtime": {"outbound_overflow": "block"}})
    assert info.value.key_path == "runtime.outbound_overflow"
    assert "drop_oldest, raise" in info.value.why
