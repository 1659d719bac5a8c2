"""Fault injection: real processes and sockets on loopback, each fault next to a healthy session.

Every case faults one session and keeps a second, healthy session (the *neighbour*) open in
the same service (or under the same supervisor) throughout. After the fault the neighbour must
be untouched: still ``OPEN``, never restarted, no exit recorded, and a round trip on it works.
The faulted session must either survive with nothing lost (the data is checked), or end
cleanly: its reader gets ``Close(code, reason)`` then ``None``, and its status says why.

Where a timeout is what detects a fault (a silent peer), detection is measured from the moment
of the fault to the moment the session leaves ``OPEN`` and must be at most ``2 *
ping_timeout_s``; ``ping_interval_s`` is a quarter of ``ping_timeout_s`` so that interval +
timeout + a watchdog tick fits.

Faults come from the helpers beside this file: :class:`~tests.proxy.TcpProxy` (reset, freeze,
refuse new connections), :mod:`tests.processes` (an echo server and the standalone gateway in
child processes, for ``kill -9`` and a restart on the same port), and a codec that raises (a
bug in a handler). Nothing sleeps: every wait is on an event, a lifecycle transition or a read
with a timeout.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors import (
    Audio,
    Binary,
    CallStatus,
    Close,
    ConnectionFailed,
    Mark,
    Started,
    Stopped,
    Text,
    TransportService,
)
from actors.codecs import Frame
from actors.codecs.websocket import PassthroughCodec
from actors.config import EmulatorConfig, GatewayConfig, SupervisorConfig, TransportConfig
from actors.connection import DialOptions
from actors.connector import Connector, Write
from actors.emulator.phone import TwilioEmulator
from actors.exits import ExitKind
from actors.gateway import ServerThread
from actors.gateway.server import CALL_UNKNOWN
from actors.lifecycle import SessionState
from actors.messages import Message
from actors.policy import IntensityPolicy
from actors.session import SessionRecord
from actors.supervisor import EndSession, Register, Supervisor
from actors.transport import websocket_connection
from tests._provider_calls import gateway_behind_a_proxy, running
from tests.conftest import fast_config
from tests.processes import ChildFailed, EchoProcess, GatewayProcess, free_port
from tests.proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

TO, FROM = "+15550100", "+15550199"
SECRET = "fault-injection-secret"
PING_TIMEOUT_S = 1.0
PING_INTERVAL_S = 0.25  # <= PING_TIMEOUT_S / 2: interval + timeout + a watchdog tick < 2x timeout
OPEN = frozenset({SessionState.OPEN})
ENDED = frozenset({SessionState.CLOSED, SessionState.FAILED})
READ_S = 5.0  # the longest any single read may wait


# -- child processes: reaped, their pipes closed --------------------------------------------


def _children() -> set[str]:
    """The pids of this process's children, running or zombie (Linux: /proc)."""
    found: set[str] = set()
    for path in Path("/proc/self/task").glob("*/children"):
        try:
            found.update(path.read_text().split())
        except OSError:  # a thread that ended meanwhile
            continue
    return found


def _pipe_fds() -> set[str]:
    found: set[str] = set()
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return found
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Fail a test that leaves a child process (running or a zombie) or a pipe to one."""
    children, pipes = _children(), _pipe_fds()
    yield
    assert _children() - children == set(), "child processes left running or unreaped"
    assert _pipe_fds() - pipes == set(), "pipes to child processes left open"


# -- configuration ----------------------------------------------------------------------------


def fault_config(
    *,
    max_restarts: int = 3,
    within_s: float = 10.0,
    backoff_initial_s: float = 0.02,
    backoff_max_s: float = 0.2,
    media: str | None = None,
    gateway: GatewayConfig | None = None,
    reconnect_window_s: float | None = None,
) -> TransportConfig:
    """Fast timeouts, a ping period that detects a silent peer in about a second, and a restart
    policy sized for the fault at hand."""
    config = dataclasses.replace(
        fast_config(ping_interval_s=PING_INTERVAL_S, ping_timeout_s=PING_TIMEOUT_S),
        supervisor=SupervisorConfig(
            max_restarts=max_restarts,
            within_s=within_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            reconnect_window_s=reconnect_window_s,
        ),
    )
    if media is not None:
        config = dataclasses.replace(config, emulator=EmulatorConfig(media=media))
    if gateway is not None:
        config = dataclasses.replace(config, gateway=gateway)
    return config


def measured(case: str, seconds: float) -> float:
    """Report a detection time (shown with ``pytest -s``) and return it."""
    print(f"detection time, {case}: {seconds * 1000:.0f} ms")
    return seconds


# -- reading and inspecting -------------------------------------------------------------------


def record_of(service: TransportService, session_id: str) -> SessionRecord:
    """The session's record (private, for measuring: its lifecycle can be waited on)."""
    return service._sessions[session_id].record


def read(service: TransportService, session_id: str, timeout: float = READ_S) -> Message | None:
    return service.read_websocket_message(session_id, timeout=timeout)


def read_until(
    service: TransportService, session_id: str, done: Callable[[Message], bool]
) -> list[Message]:
    """Every message up to and including the first for which ``done`` holds."""
    seen: list[Message] = []
    while True:
        message = read(service, session_id)
        assert message is not None, f"session ended early; last messages: {seen[-3:]}"
        seen.append(message)
        if done(message):
            return seen


def is_a(kind: type[Message]) -> Callable[[Message], bool]:
    return lambda message: isinstance(message, kind)


def next_audio(service: TransportService, session_id: str) -> Audio:
    """The next inbound audio frame (skipping any other message)."""
    audio = read_until(service, session_id, is_a(Audio))[-1]
    assert isinstance(audio, Audio)
    return audio


def read_to_the_end(service: TransportService, session_id: str) -> list[Message]:
    """Every message left, up to the ``None`` that says the session has ended."""
    seen: list[Message] = []
    while (message := read(service, session_id)) is not None:
        seen.append(message)
        assert len(seen) < 10_000, "the session does not end"
    return seen


def audio_frames(count: int) -> list[bytes]:
    """``count`` distinct 20 ms mu-law frames, so that loss, order and doubling all show."""
    return [bytes([i % 256]) * 160 for i in range(count)]


def contiguous(numbers: Sequence[int | None]) -> bool:
    """Whether the numbers count up by one from the first: no gap, no repeat, in order."""
    first = numbers[0] if numbers else None
    return first is not None and list(numbers) == list(range(first, first + len(numbers)))


def left_open(record: SessionRecord, timeout: float) -> bool:
    """Wait until the session has left ``OPEN`` after a fault. Counting restarts too means a
    session that left and came back between two looks is not missed."""
    return record.lifecycle.wait_until(
        lambda: record.restarts > 0 or record.state is not SessionState.OPEN, timeout
    )


def reopened(record: SessionRecord, restarts: int, timeout: float = 10.0) -> bool:
    """Wait until the session is ``OPEN`` again after at least ``restarts`` restarts."""
    return record.lifecycle.wait_until(
        lambda: record.restarts >= restarts and record.state is SessionState.OPEN, timeout
    )


def emulator_of(service: TransportService) -> TwilioEmulator:
    return running(service, "emulator", TwilioEmulator)


def session_threads(session_id: str) -> list[str]:
    return [t.name for t in threading.enumerate() if session_id in t.name]


# -- the healthy neighbour --------------------------------------------------------------------


class Neighbour:
    """A healthy session next to the faulted one. :meth:`check` proves the fault passed it by:
    still ``OPEN``, no restart, no exit, no error, and a round trip on it works."""

    def __init__(self, service: TransportService, session_id: str, provider: str) -> None:
        self.service = service
        self.session_id = session_id
        self.provider = provider
        self.round_trips = 0

    @classmethod
    def websocket(cls, service: TransportService, url: str) -> Neighbour:
        info = service.create_session(provider="websocket", url=url)
        neighbour = cls(service, info.session_id, "websocket")
        neighbour.round_trip()
        return neighbour

    @classmethod
    def twilio(cls, service: TransportService) -> Neighbour:
        info = service.create_session(provider="twilio", to=TO, from_=FROM)
        neighbour = cls(service, info.session_id, "twilio")
        read_until(service, info.session_id, is_a(Started))
        neighbour.round_trip()
        return neighbour

    def round_trip(self) -> None:
        """Write, and read back what the peer makes of it (an echo; for a call, the mark that
        says our audio has played)."""
        self.round_trips += 1
        name = f"neighbour-{self.round_trips}"
        sid = self.session_id
        if self.provider == "websocket":
            self.service.write_websocket_message(sid, Text(name))
            assert read(self.service, sid) == Text(name)
        else:
            self.service.write_websocket_message(sid, Binary(b"\x7f" * 160))
            self.service.write_websocket_message(sid, Mark(name))
            back = read_until(self.service, sid, is_a(Mark))
            assert back[-1] == Mark(name)

    def check(self) -> None:
        status = self.service.status(self.session_id)
        assert status.state is SessionState.OPEN
        assert status.connected
        assert status.restarts == 0
        assert status.exit_reasons == ()
        assert status.last_error is None
        self.round_trip()


class RecordNeighbour:
    """The same, for a session registered straight with a supervisor (no facade)."""

    def __init__(self, supervisor: pykka.ActorRef[Any], url: str) -> None:
        self.record = make_record("neighbour", url, PassthroughCodec())
        supervisor.ask(Register(self.record), timeout=5)
        assert self.record.lifecycle.wait_for(OPEN, 5) is SessionState.OPEN
        self.round_trips = 0
        self.round_trip()

    def round_trip(self) -> None:
        self.round_trips += 1
        connector = self.record.connector
        assert connector is not None
        text = Text(f"neighbour-{self.round_trips}")
        connector.tell(Write(text))
        assert self.record.inbox.get(READ_S) == text

    def check(self) -> None:
        status = self.record.status()
        assert status.state is SessionState.OPEN
        assert status.restarts == 0
        assert status.exit_reasons == ()
        assert status.last_error is None
        self.round_trip()


# -- injected bugs ----------------------------------------------------------------------------


class PoisonCodec(PassthroughCodec):
    """Passes everything through, but raises on ``Text("boom")`` when encoding (what a
    connector's ``Write`` handler and its ``on_start`` do with a write) and on an inbound
    ``"poison"`` text frame when decoding (what the connection's reader does with each frame):
    a bug in the code that handles a session's traffic."""

    def encode(self, message: Message) -> Sequence[Frame]:
        if message == Text("boom"):
            raise RuntimeError("poisoned")
        return super().encode(message)

    def decode(self, frame: Frame) -> Sequence[Message]:
        if frame == "poison":
            raise RuntimeError("poisoned inbound")
        return super().decode(frame)


def make_record(session_id: str, url: str, codec: PassthroughCodec) -> SessionRecord:
    return SessionRecord(
        session_id,
        "websocket",
        codec,
        DialOptions(url=url, ping_interval_s=0),
        inbox_max=100,
        outbound_max=100,
        connect=websocket_connection,
    )


@pytest.fixture
def supervisor() -> Iterator[pykka.ActorRef[Any]]:
    policy = IntensityPolicy(max_restarts=2, within_s=10, backoff_initial_s=0.01)
    ref = Supervisor.start(policy, shared=None, shutdown_timeout_s=1.0)
    try:
        yield ref
    finally:
        ref.stop(block=True, timeout=5)


def end_record(supervisor: pykka.ActorRef[Any], record: SessionRecord) -> None:
    ref = supervisor.ask(EndSession(record.session_id), timeout=5)
    if isinstance(ref, pykka.ActorRef):
        ref.stop(block=True, timeout=5)
    assert record.lifecycle.wait_for(ENDED, 5) in ENDED
    if record.connector_thread is not None:
        record.connector_thread.join(5)


# -- a standalone gateway ---------------------------------------------------------------------


@contextmanager
def standalone_gateway(directory: Path) -> Iterator[tuple[GatewayProcess, str]]:
    """``transport-actors gateway`` in a child process on a free port; yields it and its URL.
    A port taken between the pick and the child's bind is retried with another."""
    path = directory / "gateway.yaml"
    for attempt in range(3):
        port = free_port()
        path.write_text(f'gateway: {{listen: "127.0.0.1:{port}", secret: "{SECRET}"}}\n')
        process = GatewayProcess(path)
        try:
            process.start()
        except ChildFailed:
            if attempt == 2:
                raise
            continue
        try:
            yield process, f"ws://127.0.0.1:{port}"
        finally:
            process.stop()
        return


# == 1. a peer process killed with SIGKILL, then restarted ====================================


@pytest.mark.timeout(60)
def test_a_peer_killed_and_restarted_is_redialled_and_gets_what_was_written_meanwhile(
    echo_server: ServerThread,
) -> None:
    """``kill -9`` of the peer's process mid-stream: the session notices at once (the kernel
    closes the dead process's sockets), redials with backoff while the port refuses, and is
    ``OPEN`` again once the peer is back on the same port. Of the frames in flight at the kill,
    what arrives arrives once and in order; a frame written during the outage is delivered
    after the peer is back."""
    config = fault_config(max_restarts=30, within_s=30.0, backoff_initial_s=0.02)
    with EchoProcess() as peer, TransportService(config) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=peer.url).session_id
        record = record_of(service, sid)
        streamed = [Binary(frame) for frame in audio_frames(50)]
        for message in streamed:
            service.write_websocket_message(sid, message)
        assert [read(service, sid) for _ in streamed] == streamed
        in_flight = [Text(f"in flight-{i}") for i in range(50)]
        for text in in_flight:  # still streaming when the peer dies
            service.write_websocket_message(sid, text)

        killed_at = time.monotonic()
        peer.kill()
        assert left_open(record, 5), "the session did not notice its peer died"
        measured("peer SIGKILL (EOF/RST, no timeout)", time.monotonic() - killed_at)
        marker = Text("written while the peer was down")
        service.write_websocket_message(sid, marker)
        peer.restart()  # the same port

        assert reopened(record, restarts=1), f"not open again: {service.status(sid)}"
        # Frames in flight at the kill may be lost (a plain WebSocket has no resume), but what
        # arrives arrives once and in order; the frame written during the outage comes after.
        arrived = read_until(service, sid, lambda m: m == marker)[:-1]
        assert arrived == [m for m in in_flight if m in arrived], arrived
        print(f"in flight at the kill: {len(arrived)} of {len(in_flight)} arrived")
        service.write_websocket_message(sid, Text("after"))
        assert read(service, sid) == Text("after")
        status = service.status(sid)
        assert status.state is SessionState.OPEN and status.restarts >= 1
        # The status keeps the last 16 exits: the lost connection is the first of them, unless
        # a slow restart (a loaded machine) had more refused redials than that.
        first, *refused = status.exit_reasons
        if len(status.exit_reasons) < 16:
            assert first.startswith(str(ExitKind.CONNECTION_LOST)), status.exit_reasons
        # While nothing listened, redials were refused and retried after a backoff.
        assert any("connection refused" in reason for reason in refused), refused
        neighbour.check()
        service.end_session(sid)


# == 2. a connection reset (TcpProxy.cut) =====================================================


def test_a_reset_connection_is_redialled_once_and_nothing_written_after_it_is_lost(
    echo_server: ServerThread,
) -> None:
    """A TCP reset of a plain WebSocket session (no close frame): one restart, one new
    connection, and every frame written once the reset was seen arrives, in order, once."""
    with TcpProxy(echo_server.port) as proxy, TransportService(fault_config()) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=proxy.url).session_id
        record = record_of(service, sid)
        service.write_websocket_message(sid, Text("before"))
        assert read(service, sid) == Text("before")

        proxy.cut()
        # Written once the session has seen the reset (a frame sent into a connection that is
        # being reset is not promised on a plain WebSocket: there is no resume protocol).
        assert left_open(record, 5), "the reset went unnoticed"
        after = [Text(f"after-{i}") for i in range(20)]
        for message in after:
            service.write_websocket_message(sid, message)
        assert [read(service, sid) for _ in after] == after
        assert reopened(record, restarts=1)
        status = service.status(sid)
        assert status.state is SessionState.OPEN
        assert status.restarts == 1
        assert len(status.exit_reasons) == 1
        assert status.exit_reasons[0].startswith(str(ExitKind.CONNECTION_LOST))
        assert proxy.connections == 2
        neighbour.check()
        service.end_session(sid)


def test_a_reset_gateway_hop_resumes_without_loss_while_the_other_call_goes_on() -> None:
    """Two Twilio calls through one gateway, their session hops through one proxy; only the
    first call's hop is reset. It resumes: inbound audio numbered without gap or repeat, and
    the phone played every frame written, in order. The other call never noticed."""
    with gateway_behind_a_proxy(SECRET) as (gateway, proxy, hops):
        with TransportService(fault_config(media="tone", gateway=hops)) as service:
            info = service.create_session(provider="twilio", to=TO, from_=FROM)  # proxy link 0
            sid = info.session_id
            neighbour = Neighbour.twilio(service)  # proxy link 1
            record = record_of(service, sid)
            read_until(service, sid, is_a(Started))
            inbound = [next_audio(service, sid) for _ in range(10)]
            sent = audio_frames(30)
            for frame in sent[:15]:
                service.write_websocket_message(sid, Binary(frame))
            proxy.cut(0)  # this call's hop only
            for frame in sent[15:]:
                service.write_websocket_message(sid, Binary(frame))
            service.write_websocket_message(sid, Mark("all"))
            back = read_until(service, sid, lambda m: m == Mark("all"))
            inbound += [m for m in back if isinstance(m, Audio)]

            assert reopened(record, restarts=1)
            status = service.status(sid)
            assert status.restarts == 1 and status.state is SessionState.OPEN
            assert proxy.connections == 3
            assert contiguous([m.sequence for m in inbound])  # once each, in order
            assert info.call_id is not None
            media = emulator_of(service).call_media(info.call_id)
            assert media is not None
            assert bytes(media.recording) == b"".join(sent)  # all played, in order, once
            assert gateway.stats().resumes == 1
            neighbour.check()
            service.end_session(sid)
            assert media.ended.wait(5)


# == 3. a silent peer (TcpProxy.freeze) =======================================================


def test_a_silent_peer_is_cut_off_by_the_watchdog_and_redialled(echo_server: ServerThread) -> None:
    """A path that goes silent without closing (no FIN, no RST, no pong): the watchdog aborts
    the connection within ping_interval_s + ping_timeout_s (measured: <= 2 * ping_timeout_s),
    the exit says the peer was silent, and the redial (a fresh connection, which flows) brings
    the session back."""
    with TcpProxy(echo_server.port) as proxy, TransportService(fault_config()) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=proxy.url).session_id
        record = record_of(service, sid)
        service.write_websocket_message(sid, Text("before"))
        assert read(service, sid) == Text("before")

        frozen_at = time.monotonic()
        proxy.freeze()
        assert left_open(record, 5 * PING_TIMEOUT_S), "the silent peer was never detected"
        detected = measured("silent peer, websocket", time.monotonic() - frozen_at)
        assert detected <= 2 * PING_TIMEOUT_S, f"detected after {detected:.2f} s"

        assert reopened(record, restarts=1)
        service.write_websocket_message(sid, Text("after"))
        assert read(service, sid) == Text("after")
        status = service.status(sid)
        assert status.state is SessionState.OPEN and status.restarts == 1
        assert status.exit_reasons[0].startswith(str(ExitKind.PING_TIMEOUT))
        assert "silent" in status.exit_reasons[0]
        assert proxy.connections == 2
        neighbour.check()
        service.end_session(sid)


def test_a_silent_gateway_hop_is_cut_off_and_resumed_without_loss() -> None:
    """The same silence on a Twilio call's session hop, with a second call through the same
    gateway and proxy. Frames the gateway sent into the frozen path never arrived, and frames
    the session sent into it never reached the gateway: the resume handshake (each side says
    how many it received) makes up for both, so nothing is lost or doubled."""
    with gateway_behind_a_proxy(SECRET) as (gateway, proxy, hops):
        with TransportService(fault_config(media="tone", gateway=hops)) as service:
            info = service.create_session(provider="twilio", to=TO, from_=FROM)  # proxy link 0
            sid = info.session_id
            neighbour = Neighbour.twilio(service)  # proxy link 1
            record = record_of(service, sid)
            read_until(service, sid, is_a(Started))
            inbound = [next_audio(service, sid) for _ in range(5)]
            sent = audio_frames(30)
            for frame in sent[:10]:
                service.write_websocket_message(sid, Binary(frame))

            frozen_at = time.monotonic()
            proxy.freeze(0)
            for frame in sent[10:20]:  # into the frozen path: the gateway never gets them
                service.write_websocket_message(sid, Binary(frame))
            assert left_open(record, 5 * PING_TIMEOUT_S), "the silent hop was never detected"
            detected = measured("silent peer, gateway hop", time.monotonic() - frozen_at)
            assert detected <= 2 * PING_TIMEOUT_S, f"detected after {detected:.2f} s"

            for frame in sent[20:]:
                service.write_websocket_message(sid, Binary(frame))
            service.write_websocket_message(sid, Mark("all"))
            back = read_until(service, sid, lambda m: m == Mark("all"))
            inbound += [m for m in back if isinstance(m, Audio)]
            status = service.status(sid)
            assert status.state is SessionState.OPEN and status.restarts == 1
            assert status.exit_reasons[0].startswith(str(ExitKind.PING_TIMEOUT))
            assert "silent" in status.exit_reasons[0]
            assert contiguous([m.sequence for m in inbound])
            assert info.call_id is not None
            media = emulator_of(service).call_media(info.call_id)
            assert media is not None
            assert bytes(media.recording) == b"".join(sent)
            assert gateway.stats().resumes == 1
            neighbour.check()
            service.end_session(sid)
            assert media.ended.wait(5)


def test_ending_a_session_whose_peer_went_silent_is_bounded(echo_server: ServerThread) -> None:
    """``end_session`` on a connection whose peer went silent (before the watchdog noticed):
    the close handshake cannot complete, so the socket is aborted within
    ``shutdown_timeout_s``, and nothing of the session is left."""
    with TcpProxy(echo_server.port) as proxy, TransportService(fault_config()) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=proxy.url).session_id
        proxy.freeze()
        started = time.monotonic()
        service.end_session(sid)
        took = time.monotonic() - started
        print(f"end_session on a silent peer: {took * 1000:.0f} ms")
        assert took <= service.config.runtime.shutdown_timeout_s + 0.5
        assert service.status(sid).state is SessionState.CLOSED
        assert session_threads(sid) == []
        neighbour.check()


# == 4. an exception in a connector handler ===================================================


def test_a_crash_in_a_handler_restarts_the_session_which_goes_on(echo_server: ServerThread) -> None:
    """A bug in a connector handler (its ``Write`` handler encodes with a codec that raises):
    the connector crashes, the crash is reported once, the session is restarted on the same
    inbox and outbox and goes on; the poison write is gone, nothing is doubled."""
    with TransportService(fault_config()) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=echo_server.url).session_id
        record = record_of(service, sid)
        record.codec = PoisonCodec()
        service.write_websocket_message(sid, Text("before"))
        assert read(service, sid) == Text("before")

        connector = record.connector
        assert connector is not None
        connector.tell(Write(Text("boom")))  # the handler raises: on_failure, report, restart
        assert reopened(record, restarts=1)
        assert record.connector is not connector
        service.write_websocket_message(sid, Text("after"))
        assert read(service, sid) == Text("after")  # next in order: no "boom", nothing twice
        status = service.status(sid)
        assert status.state is SessionState.OPEN and status.restarts == 1
        assert status.exit_reasons == ("crash in handler: RuntimeError: poisoned",)
        assert status.last_error == "crash in handler: RuntimeError: poisoned"
        neighbour.check()
        service.end_session(sid)


def test_a_crash_decoding_an_inbound_frame_restarts_the_session_which_goes_on(
    echo_server: ServerThread,
) -> None:
    """A bug in the code that handles inbound traffic (the codec raises decoding one frame, on
    the connection's reader thread): the connection ends as a crash, the session is restarted
    and goes on. The poison frame is gone; the messages read before it are all there."""
    with TransportService(fault_config()) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=echo_server.url).session_id
        record = record_of(service, sid)
        record.codec = PoisonCodec()
        before = [Text(f"before-{i}") for i in range(10)]
        for message in before:
            service.write_websocket_message(sid, message)
        service.write_websocket_message(sid, Text("poison"))  # echoed: the reader chokes on it
        assert [read(service, sid) for _ in before] == before

        assert reopened(record, restarts=1)
        service.write_websocket_message(sid, Text("after"))
        assert read(service, sid) == Text("after")
        status = service.status(sid)
        assert status.state is SessionState.OPEN and status.restarts == 1
        assert len(status.exit_reasons) == 1
        assert status.exit_reasons[0].startswith(str(ExitKind.CRASH))
        assert "RuntimeError: poisoned inbound" in status.exit_reasons[0]
        neighbour.check()
        service.end_session(sid)


# == 5. an exception in on_start ==============================================================


def test_a_crash_in_on_start_fails_only_that_session(
    supervisor: pykka.ActorRef[Any], echo_server: ServerThread
) -> None:
    """A connector whose ``on_start`` raises (it encodes a write left in the backlog with a
    codec that raises on it) before the session ever opened: the exit is reported once as a
    crash in ``on_start``, the session goes ``FAILED`` with a ``ConnectionFailed`` naming the
    cause, its reader gets ``Close(1011, why)`` then ``None``, and nothing of it remains. A
    session under the same supervisor is untouched."""
    neighbour = RecordNeighbour(supervisor, echo_server.url)
    record = make_record("poisoned", echo_server.url, PoisonCodec())
    record.hold(Text("boom"))  # a write that found no connector
    supervisor.ask(Register(record), timeout=5)

    assert record.lifecycle.wait_for(ENDED, 5) is SessionState.FAILED
    assert [e.kind for e in record.exits] == [ExitKind.START_CRASH]
    status = record.status()
    assert status.exit_reasons == ("crash in on_start: RuntimeError: poisoned",)
    assert isinstance(record.failure, ConnectionFailed)
    assert "RuntimeError: poisoned" in record.failure.reason
    assert record.inbox.get(1) == Close(1011, record.failure.reason)
    assert record.inbox.get(1) is None
    assert record.connector is None
    if record.connector_thread is not None:
        record.connector_thread.join(5)
    assert session_threads("poisoned") == []
    neighbour.check()
    end_record(supervisor, neighbour.record)


# == 6. the gateway process killed and restarted ==============================================


@pytest.mark.timeout(60)
def test_a_restarted_gateway_ends_the_call_with_4404(
    tmp_path: Path, echo_server: ServerThread
) -> None:
    """``kill -9`` of the standalone gateway mid-call, then a restart on the same port. The
    call's stream died with the old gateway; the session redials (refused while the port is
    down), reaches the new gateway, which has no record of the call and closes the hop with
    4404: the session ends cleanly with that code and reason. A plain WebSocket session in the
    same service is untouched."""
    with standalone_gateway(tmp_path) as (gateway, url):
        remote = GatewayConfig(embedded=False, url=url, public_url=url, secret=SECRET)
        config = fault_config(max_restarts=30, within_s=30.0, media="tone", gateway=remote)
        with TransportService(config) as service:
            neighbour = Neighbour.websocket(service, echo_server.url)
            info = service.create_session(provider="twilio", to=TO, from_=FROM)
            sid = info.session_id
            record = record_of(service, sid)
            read_until(service, sid, is_a(Started))
            for _ in range(5):
                read_until(service, sid, is_a(Audio))

            killed_at = time.monotonic()
            gateway.kill()
            assert left_open(record, 5), "the session did not notice the gateway died"
            measured("gateway SIGKILL (EOF/RST, no timeout)", time.monotonic() - killed_at)
            gateway.restart()

            rest = read_to_the_end(service, sid)
            assert rest, "no Close before the end"
            reason = "the gateway has no record of this call (restarted?)"
            assert rest[-1] == Close(CALL_UNKNOWN, reason)
            # What was in flight (and the call's progress), then Close.
            assert all(isinstance(m, Audio | CallStatus) for m in rest[:-1])
            status = service.status(sid)
            assert status.state is SessionState.CLOSED
            assert status.restarts >= 1
            # The status keeps the last 16 exits: the lost connection is the first of them,
            # unless a slow restart (a loaded machine) had more refused redials than that.
            first, *between, last = status.exit_reasons
            if len(status.exit_reasons) < 16:
                assert first.startswith(str(ExitKind.CONNECTION_LOST)), status.exit_reasons
            else:
                assert first.startswith(
                    (str(ExitKind.CONNECTION_LOST), str(ExitKind.HANDSHAKE_FAILED))
                ), status.exit_reasons
            assert all(r.startswith(str(ExitKind.HANDSHAKE_FAILED)) for r in between), between
            assert last.startswith(str(ExitKind.PEER_CLOSED)), last
            assert "4404" in last
            assert info.call_id is not None
            media = emulator_of(service).call_media(info.call_id)
            assert media is not None and media.ended.wait(5)  # the phone side is over too
            neighbour.check()
            service.end_session(sid)  # the call has ended already: no error


# == 7. the phone hangs up mid-stream =========================================================


def test_a_hang_up_mid_stream_ends_that_call_and_not_the_other() -> None:
    """The far end hangs up one of two streaming calls: that session ends cleanly (``Stopped``,
    ``Close(1000, "call ended")``, then ``None``; ``CLOSED``, no restart), and the other call
    keeps streaming audio, numbered without a gap."""
    with TransportService(fault_config(media="tone")) as service:
        neighbour = Neighbour.twilio(service)
        info = service.create_session(provider="twilio", to=TO, from_=FROM)
        sid = info.session_id
        read_until(service, sid, is_a(Started))
        for _ in range(5):
            read_until(service, sid, is_a(Audio))
        assert info.call_id is not None

        emulator_of(service).media.hang_up(info.call_id)
        rest = read_until(service, sid, is_a(Close))
        assert [m for m in rest if not isinstance(m, CallStatus)][-2:] == [
            Stopped(),
            Close(1000, "call ended"),
        ]  # the call's "completed" progress may come among them
        assert read(service, sid) is None
        status = service.status(sid)
        assert status.state is SessionState.CLOSED
        assert status.restarts == 0

        later = [next_audio(service, neighbour.session_id) for _ in range(10)]
        assert contiguous([m.sequence for m in later])
        neighbour.check()
        service.end_session(sid)


# == 8. restart intensity exceeded ============================================================


def test_a_peer_that_refuses_every_redial_fails_the_session_after_the_reconnect_window(
    echo_server: ServerThread,
) -> None:
    """The connection is reset and every redial is reset on arrival: the session redials for
    the reconnect window (however many redials that is: ``max_restarts`` counts crashes, not
    refused redials), then goes ``FAILED``; its reader gets ``Close(1011, why)`` naming the
    window, then ``None``; after ``end_session`` no thread or actor of it remains."""
    config = fault_config(max_restarts=2, within_s=10.0, reconnect_window_s=1.0)
    with TcpProxy(echo_server.port) as proxy, TransportService(config) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=proxy.url).session_id
        record = record_of(service, sid)
        service.write_websocket_message(sid, Text("before"))
        assert read(service, sid) == Text("before")

        proxy.reject_new = True
        proxy.cut()
        assert record.lifecycle.wait_for(ENDED, 10) is SessionState.FAILED
        rest = read_to_the_end(service, sid)
        assert len(rest) == 1 and isinstance(rest[0], Close), rest
        assert rest[0].code == 1011
        assert rest[0].reason.startswith("restart budget ran out: no connection for 1.0 s")
        assert "reconnect_window_s=1" in rest[0].reason
        status = service.status(sid)
        assert status.state is SessionState.FAILED
        assert status.restarts > 2  # more than max_restarts: the window is what bounds it
        assert status.exit_reasons[0].startswith(str(ExitKind.CONNECTION_LOST))
        assert {r.split(":")[0] for r in status.exit_reasons[1:]} == {"handshake failed"}
        assert status.last_error is not None and "handshake failed" in status.last_error
        assert proxy.rejected == status.restarts
        neighbour.check()

        service.end_session(sid)
        assert session_threads(sid) == []
        connectors = [r for r in pykka.ActorRegistry.get_all() if r.actor_class is Connector]
        assert len(connectors) == 1  # the neighbour's


# == a Close written while the session is between two connections ==========================


def test_a_close_written_while_reconnecting_ends_the_session_at_once(
    echo_server: ServerThread,
) -> None:
    """The application closes a session whose connection has just dropped: the connector
    waiting out its restart backoff is told, does not dial, and the session ends cleanly with
    the application's code and reason (not after the backoff, and without a new connection)."""
    config = fault_config(backoff_initial_s=2.0, backoff_max_s=2.0)
    with TcpProxy(echo_server.port) as proxy, TransportService(config) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=proxy.url).session_id
        record = record_of(service, sid)
        proxy.cut()
        assert left_open(record, 5)
        assert record.state is SessionState.RECONNECTING  # for the next 2 s: the backoff
        started = time.monotonic()
        service.write_websocket_message(sid, Close(1000, "bye"))
        assert record.lifecycle.wait_for(ENDED, 5) is SessionState.CLOSED
        assert time.monotonic() - started < 1.0, "the close waited out the backoff"
        assert read_to_the_end(service, sid) == [Close(1000, "bye")]
        assert proxy.connections == 1  # no redial
        neighbour.check()
        service.end_session(sid)


def test_a_close_left_for_the_next_connector_ends_the_session(echo_server: ServerThread) -> None:
    """A ``Close`` that reached no connector (written in the instant between one connector's
    exit and the next one's start, or rescued from the mailbox of a connector that was
    stopping) goes into the session's backlog; the next connector replays it in ``on_start``,
    and the session ends with it. (At HEAD this ``Close`` was dropped: ``on_start`` replayed
    the backlog before setting ``self.connection``, and ``_write(Close)`` needs it.)"""
    with TcpProxy(echo_server.port) as proxy, TransportService(fault_config()) as service:
        neighbour = Neighbour.websocket(service, echo_server.url)
        sid = service.create_session(provider="websocket", url=proxy.url).session_id
        record = record_of(service, sid)
        # What the record does with a Close written while no connector is attached.
        record.hold(Close(1000, "bye"))
        proxy.cut()  # connector 2 replays the backlog in on_start
        assert record.lifecycle.wait_for(ENDED, 5) is SessionState.CLOSED
        assert read_to_the_end(service, sid) == [Close(1000, "bye")]
        neighbour.check()
        service.end_session(sid)
