"""The facade's contract, end to end: real actors, real threads, real WebSockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterator

import pykka
import pytest
from websockets.exceptions import ConnectionClosed

from actors import (
    Binary,
    Clear,
    Close,
    ConfigError,
    ConnectionFailed,
    Dtmf,
    Mark,
    ReadTimeout,
    ServiceClosed,
    SessionClosed,
    SessionNotFound,
    SessionRequest,
    SessionState,
    Text,
    TransportService,
    UnsupportedMessage,
)
from actors.gateway import ServerConnection, ServerThread
from actors.session import SessionRecord
from tests.conftest import eventually, fast_config
from tests.peers import RawPeer, send_then_wait, server_frame, silent
from tests.processes import free_port

pytestmark = pytest.mark.timeout(30)


async def scripted(connection: ServerConnection) -> None:
    """Echo, except for a few commands that make the server misbehave on request."""
    with contextlib.suppress(ConnectionClosed):
        await _scripted(connection)


async def _scripted(connection: ServerConnection) -> None:
    async for message in connection:
        if isinstance(message, str) and message.startswith("cmd:"):
            command, _, arg = message[4:].partition(":")
            if command == "close":
                code, _, reason = arg.partition(":")
                await connection.close(int(code), reason)
                return
            if command == "drop":  # no close frame: like a reset or a crashed peer
                connection.transport.abort()
                return
            if command == "big":
                await connection.send(b"x" * int(arg))
                continue
            if command == "hello":
                assert connection.request is not None
                token = connection.request.headers.get("X-Token")
                await connection.send(
                    json.dumps({"token": token, "subprotocol": connection.subprotocol})
                )
                continue
        await connection.send(message)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(scripted, name="scripted-server") as srv:
        yield srv


def record_of(service: TransportService, session_id: str) -> SessionRecord:
    """The session's record, to wait on its lifecycle instead of sleeping."""
    return service._sessions[session_id].record


def read_all(service: TransportService, sid: str) -> list[object]:
    messages = []
    while (message := service.read_websocket_message(sid, timeout=5)) is not None:
        messages.append(message)
    return messages


# -- lifecycle ---------------------------------------------------------------------------------


def test_create_write_read_end(service: TransportService, server: ServerThread) -> None:
    info = service.create_session(provider="websocket", url=server.url)
    sid = info.session_id
    assert len(sid) >= 20 and info.provider == "websocket" and info.url == server.url
    assert service.is_websocket_connected(sid)
    assert [s.session_id for s in service.sessions()] == [sid]

    service.write_websocket_message(sid, Text("hello"))
    service.write_websocket_message(sid, Binary(b"\x00\xff"))
    assert service.read_websocket_message(sid, timeout=5) == Text("hello")
    assert service.read_websocket_message(sid, timeout=5) == Binary(b"\x00\xff")

    status = service.status(sid)
    assert status.state is SessionState.OPEN and status.connected
    assert (status.frames_out, status.frames_in) == (2, 2)
    assert status.bytes_out == status.bytes_in == 7
    assert status.dropped == 0 and status.restarts == 0

    service.end_session(sid)
    assert service.sessions() == []
    final = service.status(sid)
    assert final.state is SessionState.CLOSED and not final.connected
    assert not service.is_websocket_connected(sid)
    # Every thread of the session is gone when end_session returns, not just eventually.
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if sid in n], names


def test_ten_thousand_mixed_messages_in_order(
    service: TransportService, server: ServerThread
) -> None:
    sid = service.create_session(url=server.url).session_id
    sent = [Text(f"t{i}") if i % 3 else Binary(i.to_bytes(4, "big")) for i in range(10_000)]
    received: list[object] = []

    def reader() -> None:
        for _ in sent:
            received.append(service.read_websocket_message(sid, timeout=10))

    thread = threading.Thread(target=reader)
    thread.start()
    for message in sent:
        service.write_websocket_message(sid, message)
    thread.join(20)
    assert received == sent
    status = service.status(sid)
    assert status.frames_out == status.frames_in == 10_000 and status.dropped == 0
    service.end_session(sid)


def test_twenty_threads_over_five_sessions(service: TransportService, server: ServerThread) -> None:
    sids = [service.create_session(url=server.url).session_id for _ in range(5)]
    per_thread = 200
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def writer(index: int) -> None:
        # Four writers per session, each with its own tag: per-writer order must hold.
        sid = sids[index % 5]
        try:
            start.wait(5)
            for n in range(per_thread):
                service.write_websocket_message(sid, Text(f"{index}:{n}"))
                service.status(sid)  # asks interleaved with tells
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    for s_index, sid in enumerate(sids):
        seen: dict[int, list[int]] = {}
        for _ in range(4 * per_thread):
            message = service.read_websocket_message(sid, timeout=5)
            assert isinstance(message, Text)
            writer_index, n = map(int, message.data.split(":"))
            assert writer_index % 5 == s_index
            seen.setdefault(writer_index, []).append(n)
        assert all(ns == list(range(per_thread)) for ns in seen.values()) and len(seen) == 4
    for sid in sids:
        service.end_session(sid)


def test_concurrent_create_and_end(service: TransportService, server: ServerThread) -> None:
    errors: list[BaseException] = []

    def life() -> None:
        try:
            sid = service.create_session(url=server.url).session_id
            service.write_websocket_message(sid, Text(sid))
            assert service.read_websocket_message(sid, timeout=5) == Text(sid)
            service.end_session(sid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=life) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors and service.sessions() == []


def test_headers_and_subprotocols_are_sent() -> None:
    with (
        ServerThread(scripted, subprotocols=["audio.v1"]) as server,
        TransportService(fast_config()) as service,
    ):
        request = SessionRequest(
            url=server.url, headers={"X-Token": "s3cret"}, subprotocols=("audio.v2", "audio.v1")
        )
        sid = service.create_session(request).session_id
        service.write_websocket_message(sid, Text("cmd:hello"))
        reply = service.read_websocket_message(sid, timeout=5)
        assert isinstance(reply, Text)
        hello = json.loads(reply.data)
        assert hello["token"] == "s3cret"
        assert hello["subprotocol"] == "audio.v1"


# -- errors ------------------------------------------------------------------------------------


def test_unknown_session(service: TransportService) -> None:
    for call in (
        lambda: service.read_websocket_message("nope", timeout=0),
        lambda: service.write_websocket_message("nope", Text("x")),
        lambda: service.is_websocket_connected("nope"),
        lambda: service.status("nope"),
        lambda: service.end_session("nope"),
    ):
        with pytest.raises(SessionNotFound, match="nope"):
            call()


def test_unsupported_message_is_refused_at_once(
    service: TransportService, server: ServerThread
) -> None:
    sid = service.create_session(url=server.url).session_id
    for message in (Mark("m1"), Clear(), Dtmf("5")):
        with pytest.raises(UnsupportedMessage, match=type(message).__name__):
            service.write_websocket_message(sid, message)
    with pytest.raises(UnsupportedMessage, match="bytes"):
        service.write_websocket_message(sid, b"raw")  # type: ignore[arg-type]
    assert service.status(sid).frames_out == 0
    service.end_session(sid)


def test_end_session_twice_and_write_after_end(
    service: TransportService, server: ServerThread
) -> None:
    sid = service.create_session(url=server.url).session_id
    service.end_session(sid)
    service.end_session(sid)  # a no-op, not an error
    with pytest.raises(SessionClosed, match=sid):
        service.write_websocket_message(sid, Text("late"))
    assert service.read_websocket_message(sid, timeout=0) is None


def test_close_ends_every_session(server: ServerThread) -> None:
    service = TransportService(fast_config())
    sids = [service.create_session(url=server.url).session_id for _ in range(3)]
    records = [record_of(service, sid) for sid in sids]
    blocked: list[object] = []
    reader = threading.Thread(
        target=lambda: blocked.append(service.read_websocket_message(sids[0], timeout=10))
    )
    reader.start()
    service.close()
    reader.join(5)
    assert blocked == [None]  # a reader blocked in read is released by close()
    assert [r.state for r in records] == [SessionState.CLOSED] * 3
    assert not pykka.ActorRegistry.get_all()
    service.close()  # idempotent
    with pytest.raises(ServiceClosed):
        service.create_session(url=server.url)
    with pytest.raises(ServiceClosed):
        service.read_websocket_message(sids[0])
    with pytest.raises(ServiceClosed):
        service.sessions()


def test_peer_close_gives_close_then_none(service: TransportService, server: ServerThread) -> None:
    sid = service.create_session(url=server.url).session_id
    service.write_websocket_message(sid, Text("before"))
    service.write_websocket_message(sid, Text("cmd:close:4001:done here"))
    assert read_all(service, sid) == [Text("before"), Close(4001, "done here")]
    assert service.read_websocket_message(sid, timeout=0) is None  # and stays ended
    status = service.status(sid)
    assert status.state is SessionState.CLOSED and not status.connected
    assert "closed by peer (4001" in status.exit_reasons[-1]
    with pytest.raises(SessionClosed):
        service.write_websocket_message(sid, Text("after"))
    service.end_session(sid)


def test_application_close(service: TransportService, server: ServerThread) -> None:
    sid = service.create_session(url=server.url).session_id
    service.write_websocket_message(sid, Text("last words"))
    service.write_websocket_message(sid, Close(1000, "bye"))
    # After our close frame the peer may send nothing more (RFC 6455 5.5.1), so its echo of
    # "last words" may or may not make it; what was written before Close was sent first.
    messages = read_all(service, sid)
    assert messages[-1] == Close(1000, "bye") and messages[:-1] in ([], [Text("last words")])
    status = service.status(sid)
    assert status.state is SessionState.CLOSED and status.frames_out == 1
    service.end_session(sid)


def test_read_timeout(service: TransportService, server: ServerThread) -> None:
    sid = service.create_session(url=server.url).session_id
    started = time.monotonic()
    with pytest.raises(ReadTimeout, match=r"within 0\.2 s") as caught:
        service.read_websocket_message(sid, timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert isinstance(caught.value, TimeoutError)
    for absurd in (-1, float("nan"), 1e20):
        with pytest.raises(ValueError, match="timeout"):
            service.read_websocket_message(sid, timeout=absurd)
    service.end_session(sid)


def test_refused_connection_names_the_url(service: TransportService) -> None:
    url = f"ws://127.0.0.1:{free_port()}/voice"
    with pytest.raises(ConnectionFailed, match="connection refused") as caught:
        service.create_session(url=url)
    assert url in str(caught.value)
    assert service.sessions() == []


def test_unknown_provider_and_bad_fields(service: TransportService) -> None:
    with pytest.raises(ConfigError, match=r"providers\.sip") as caught:
        service.create_session(provider="sip", url="ws://127.0.0.1:1/")
    assert caught.value.key_path == "providers.sip"
    with pytest.raises(TypeError, match="did you mean 'url'"):
        service.create_session(ulr="ws://127.0.0.1:1/")
    with pytest.raises(ConfigError, match=r"providers\.websocket\.url"):
        service.create_session()  # no url configured, none given
    with pytest.raises(ValueError, match="ws:// or wss://"):
        service.create_session(url="http://127.0.0.1:1/")


def test_from_yaml(tmp_path, server: ServerThread, monkeypatch) -> None:
    monkeypatch.setenv("ECHO_URL", server.url)
    path = tmp_path / "t.yaml"
    path.write_text("providers:\n  echo:\n    type: websocket\n    url: ${ECHO_URL}\n")
    with TransportService.from_yaml(path) as service:
        sid = service.create_session().session_id  # the only provider is the default
        service.write_websocket_message(sid, Text("yaml"))
        assert service.read_websocket_message(sid, timeout=5) == Text("yaml")


# -- supervision -------------------------------------------------------------------------------


def test_crash_in_handler_restarts_without_losing_messages() -> None:
    """A bug in a handler kills the connector, not the session: every write made before,
    across and after the restart reaches the peer exactly once, in order on each connection.

    The old socket is closed with a handshake after what it had taken was sent; the rest goes
    out on the new one. (Across the two connections the peer's own scheduling decides which it
    reads first, so the check is per connection.)"""
    received: list[tuple[int, str]] = []
    connections = 0

    async def record(connection: ServerConnection) -> None:
        nonlocal connections
        number, connections = connections, connections + 1
        # Every message received is recorded, also those that arrive after a close has begun
        # (when echoing them is no longer possible).
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                assert isinstance(message, str)
                received.append((number, message))
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(message)

    expected = ["one", *(f"m{i}" for i in range(50)), "last"]
    with (
        ServerThread(record, name="recording-peer") as peer,
        TransportService(fast_config(shutdown_timeout_s=5.0)) as service,
    ):
        sid = service.create_session(url=peer.url).session_id
        record_ = record_of(service, sid)
        service.write_websocket_message(sid, Text("one"))
        assert service.read_websocket_message(sid, timeout=5) == Text("one")
        connector = record_.connector
        assert connector is not None
        connector.tell("not a message any handler knows")  # a bug in a handler: the actor dies
        for i in range(50):  # writes made across the crash and restart
            service.write_websocket_message(sid, Text(f"m{i}"))
        assert record_.lifecycle.wait_until(
            lambda: record_.restarts == 1 and record_.state is SessionState.OPEN, 5
        )
        service.write_websocket_message(sid, Text("last"))
        while service.read_websocket_message(sid, timeout=5) != Text("last"):
            pass
        assert eventually(lambda: len(received) >= len(expected))
        assert sorted((m for _, m in received), key=expected.index) == expected  # each once
        for number in (0, 1):
            mine = [m for n, m in received if n == number]
            assert mine == sorted(mine, key=expected.index)  # in order on each connection
        status = service.status(sid)
        assert status.restarts == 1 and status.state is SessionState.OPEN
        assert status.exit_reasons[0].startswith("crash in handler: TypeError")
        service.end_session(sid)


def test_dropped_connection_is_redialled(service: TransportService, server: ServerThread) -> None:
    sid = service.create_session(url=server.url).session_id
    record = record_of(service, sid)
    service.write_websocket_message(sid, Text("cmd:drop"))
    assert record.lifecycle.wait_for(frozenset({SessionState.RECONNECTING}), 5) in (
        SessionState.RECONNECTING,
        SessionState.OPEN,
    )
    assert record.lifecycle.wait_for(frozenset({SessionState.OPEN}), 5) is SessionState.OPEN
    service.write_websocket_message(sid, Text("after"))
    assert service.read_websocket_message(sid, timeout=5) == Text("after")
    status = service.status(sid)
    assert status.restarts == 1 and "connection lost" in status.exit_reasons[0]
    service.end_session(sid)


def test_restart_limit_fails_the_session(server: ServerThread) -> None:
    """Refused redials go on for the reconnect window (time, not a count), then FAIL."""
    config = fast_config()
    config = dataclasses.replace(
        config, supervisor=dataclasses.replace(config.supervisor, reconnect_window_s=1.0)
    )
    with TransportService(config) as service:
        sid = service.create_session(url=server.url).session_id
        record = record_of(service, sid)
        server.stop()  # every redial is now refused
        service.write_websocket_message(sid, Text("cmd:drop"))  # may never arrive: fine
        for connection in list(server.connections):
            connection.transport.abort()
        messages = read_all(service, sid)
        assert record.state is SessionState.FAILED
        assert messages and isinstance(messages[-1], Close) and messages[-1].code == 1011
        assert "restart budget ran out" in messages[-1].reason
        assert "reconnect_window_s=1" in messages[-1].reason
        status = service.status(sid)
        assert status.restarts >= 3 and status.state is SessionState.FAILED
        with pytest.raises(SessionClosed, match=r"restart budget ran out.*connection refused"):
            service.write_websocket_message(sid, Text("x"))
        service.end_session(sid)


def test_silent_peer_detected_by_ping_timeout() -> None:
    config = fast_config(ping_interval_s=0.3, ping_timeout_s=0.3)
    with RawPeer(silent) as peer, TransportService(config) as service:
        sid = service.create_session(url=peer.url).session_id
        record = record_of(service, sid)
        opened = time.monotonic()
        state = record.lifecycle.wait_for(frozenset({SessionState.RECONNECTING}), 5)
        detected = time.monotonic() - opened
        assert state is SessionState.RECONNECTING
        # interval + timeout, plus the watchdog's tick: well within 2x the ping timeout budget.
        assert 0.5 <= detected <= 0.3 + 0.3 * 2, detected
        assert str(record.exits[0]).startswith("ping timeout")
        service.end_session(sid)


def test_oversized_frame_is_refused(server: ServerThread) -> None:
    with TransportService(fast_config(max_message_bytes=1000)) as service:
        sid = service.create_session(url=server.url).session_id
        service.write_websocket_message(sid, Text("cmd:big:999"))
        service.write_websocket_message(sid, Text("cmd:big:1001"))
        messages = read_all(service, sid)
        assert messages[0] == Binary(b"x" * 999)
        assert messages[1] == Close(1009, "a frame of 1001 bytes exceeds max_message_bytes=1000")
        assert len(messages) == 2
        service.end_session(sid)


def test_invalid_utf8_text_frame_is_refused(service: TransportService) -> None:
    bad = server_frame(0x1, b"ok") + server_frame(0x1, b"\xff\xfe broken")
    with RawPeer(send_then_wait(bad)) as peer:
        sid = service.create_session(url=peer.url).session_id
        assert read_all(service, sid) == [Text("ok"), Close(1007, "invalid UTF-8 in a text frame")]
        service.end_session(sid)


def test_fragmented_message_is_reassembled(service: TransportService) -> None:
    parts = (
        server_frame(0x2, b"ab", fin=False)
        + server_frame(0x9, b"ping")  # a control frame may come between fragments
        + server_frame(0x0, b"cd", fin=False)
        + server_frame(0x0, b"ef")
    )
    with RawPeer(send_then_wait(parts)) as peer:
        sid = service.create_session(url=peer.url).session_id
        assert service.read_websocket_message(sid, timeout=5) == Binary(b"abcdef")
        service.end_session(sid)


def test_application_close_to_a_peer_that_never_answers(service: TransportService) -> None:
    with RawPeer(silent) as peer:
        sid = service.create_session(url=peer.url).session_id
        started = time.monotonic()
        service.write_websocket_message(sid, Close(4000, "bye"))
        # shutdown_timeout_s (1 s in fast_config) for the peer's close frame, then cut off.
        assert read_all(service, sid) == [Close(4000, "bye")]
        assert 0.9 <= time.monotonic() - started < 3
        assert service.status(sid).state is SessionState.CLOSED
        service.end_session(sid)
