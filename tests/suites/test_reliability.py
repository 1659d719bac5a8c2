"""Reliability promises (issue 11, items 8, 9, 11 and 13): real services, peers and processes.

- **Messages are validated where they are built** (and a ``Close`` where it is written): a bad
  close code, an oversized reason or a ``str`` with no UTF-8 form is refused with a clear error,
  and the session it was meant for goes on as if nothing happened.
- **Any exception in a session's path ends in a reported exit**: a codec whose frames cannot be
  put on the wire crashes the connection, the crash is reported and the session restarted;
  nothing stays OPEN over a dead connection, nothing logs an ERROR per tick.
- **Redialling is bounded by time**: a peer restarting in half a second or a link down for two
  seconds is ridden out whatever the number of redials; a link down for longer than
  ``reconnect_window_s`` FAILs the session with the reason; a peer that drips its handshake
  cannot keep a session ``RECONNECTING``.
- **Concurrent ends**: while one thread ends a session (or closes the service), the others'
  calls keep the contract: end is a no-op, reads drain then return ``None``, writes raise
  ``SessionClosed``, ``status`` says ``CLOSING``; never ``SessionNotFound``.
- A huge ``max_restarts`` does not overflow the backoff; after a ``FAILED``, ``SessionClosed``
  says the restart budget ran out, with the last error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import pytest

from actors import (
    Binary,
    Close,
    ReadTimeout,
    ServiceClosed,
    SessionClosed,
    SessionNotFound,
    Text,
    TransportService,
    policy,
)
from actors.codecs import Frame
from actors.codecs.websocket import PassthroughCodec
from actors.config import SupervisorConfig, TransportConfig
from actors.connector import Write
from actors.exits import Exit, ExitKind
from actors.gateway import ServerThread
from actors.lifecycle import SessionState
from actors.messages import Message, SessionStatus
from actors.policy import IntensityPolicy
from actors.session import SessionRecord
from tests.conftest import eventually, fast_config
from tests.peers import RawPeer, ThreadedServer, answer_upgrade, silent
from tests.processes import EchoProcess
from tests.proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

ENDED = frozenset({SessionState.CLOSED, SessionState.FAILED})


def config_with(supervisor: SupervisorConfig | None = None, **runtime: object) -> TransportConfig:
    """Fast runtime timeouts; the supervisor's *defaults* unless told otherwise (the defaults
    are what must ride out an outage)."""
    config = fast_config(**runtime)
    return dataclasses.replace(config, supervisor=supervisor or SupervisorConfig())


def record_of(service: TransportService, session_id: str) -> SessionRecord:
    return service._sessions[session_id].record


def round_trip(service: TransportService, session_id: str, text: str) -> None:
    service.write_websocket_message(session_id, Text(text))
    assert service.read_websocket_message(session_id, timeout=5) == Text(text)


def reopened(record: SessionRecord, restarts: int, timeout: float = 10.0) -> bool:
    return record.lifecycle.wait_until(
        lambda: record.restarts >= restarts and record.state is SessionState.OPEN, timeout
    )


def timed_end(service: TransportService, session_id: str) -> float:
    started = time.monotonic()
    service.end_session(session_id)
    return time.monotonic() - started


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# == 8. bad messages are refused where they are built; no exception wedges a session ========


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((70000,), ValueError),
        ((-1,), ValueError),
        ((999,), ValueError),
        ((5000,), ValueError),
        (("x",), TypeError),
        ((True,), TypeError),
        ((1000.0,), TypeError),
        ((1000, 5), TypeError),
        ((1000, "\ud800"), ValueError),
    ],
    ids=repr,
)
def test_a_close_that_no_close_frame_can_carry_is_refused_where_it_is_built(
    args: tuple[object, ...], error: type[Exception]
) -> None:
    with pytest.raises(error, match="close"):
        Close(*args)  # type: ignore[arg-type]


def test_text_that_has_no_utf8_form_is_refused_where_it_is_built() -> None:
    with pytest.raises(ValueError, match=r"UTF-8.*position 3"):
        Text("abc\ud800")
    assert Text("héllo ☎").data == "héllo ☎"  # anything else that is text is fine


@pytest.mark.parametrize(
    "close",
    [
        Close(1004),  # reserved
        Close(1005),  # "no status": reported, never sent
        Close(1006),  # "abnormal": reported, never sent
        Close(1015),  # TLS failure: reported, never sent
        Close(2000),  # reserved for future RFCs
        Close(1000, "é" * 62),  # 124 bytes of UTF-8: more than a control frame holds
    ],
    ids=lambda c: f"{c.code}-{len(c.reason.encode())}B",
)
def test_an_unsendable_close_is_refused_at_the_write_and_the_session_goes_on(
    close: Close, echo_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``Close`` that may be reported but not sent is a ``ValueError`` at the write; the
    session is untouched: OPEN, no exit, round trips work, and it ends at once."""
    with TransportService(config_with()) as service:
        sid = service.create_session(url=echo_server.url).session_id
        with pytest.raises(ValueError, match="close"):
            service.write_websocket_message(sid, close)
        round_trip(service, sid, "still here")
        status = service.status(sid)
        assert status.state is SessionState.OPEN and status.exit_reasons == ()
        service.write_websocket_message(sid, Close(4000, "bye"))  # a good one still works
        assert service.read_websocket_message(sid, timeout=5) == Close(4000, "bye")
        assert service.read_websocket_message(sid, timeout=5) is None
        assert timed_end(service, sid) < 1.0
    assert errors_logged(caplog) == []


def test_the_largest_close_reason_that_fits_is_sent_whole(echo_server: ServerThread) -> None:
    reason = "é" * 61 + "x"  # 123 bytes
    with TransportService(config_with()) as service:
        sid = service.create_session(url=echo_server.url).session_id
        service.write_websocket_message(sid, Close(3000, reason))
        assert service.read_websocket_message(sid, timeout=5) == Close(3000, reason)
        service.end_session(sid)


class UnframeableCodec(PassthroughCodec):
    """A codec with a bug: for ``Text("boom")`` it yields a frame the wire cannot carry (a
    ``str`` with a lone surrogate, or not a frame at all). Everything else passes through."""

    def __init__(self, bad: object) -> None:
        super().__init__()
        self.bad = bad

    def encode(self, message: Message) -> Sequence[Frame]:
        if message == Text("boom"):
            return [self.bad]  # type: ignore[list-item]
        return super().encode(message)


@pytest.mark.parametrize("bad", ["\ud800", 12345], ids=["lone-surrogate", "not-a-frame"])
def test_a_frame_that_cannot_be_sent_crashes_the_connection_which_is_reported_and_restarted(
    bad: object, echo_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """The write path runs on the caller's thread: a frame that cannot be framed raised a raw
    exception into the writer (or into the I/O loop, logged and forgotten) and left the
    connection as it was. Now it ends the connection as a crash, reported once: the session is
    restarted, the writer's call returns, and everything after it is delivered."""
    with TransportService(config_with()) as service:
        sid = service.create_session(url=echo_server.url).session_id
        record = record_of(service, sid)
        record.codec = UnframeableCodec(bad)
        round_trip(service, sid, "before")
        service.write_websocket_message(sid, Text("boom"))  # returns: the crash is the session's
        assert reopened(record, restarts=1), service.status(sid)
        round_trip(service, sid, "after")
        status = service.status(sid)
        assert status.state is SessionState.OPEN and status.restarts == 1
        assert len(status.exit_reasons) == 1
        assert status.exit_reasons[0].startswith(str(ExitKind.CRASH))
        assert timed_end(service, sid) < 1.0
    assert len(errors_logged(caplog)) == 1  # the crash, once; no ERROR per tick


# == 9. redialling is bounded by time =========================================================


@pytest.mark.timeout(60)
def test_a_peer_that_takes_a_while_to_restart_is_ridden_out_with_the_default_policy() -> None:
    """``kill -9`` of the peer's process; it comes back on the same port only after the
    session has been refused more times than the old budget (3 restarts, spent in 0.35 s)
    allowed. With the default policy the session redials until it is back, and resumes."""
    with EchoProcess() as peer, TransportService(config_with()) as service:
        sid = service.create_session(url=peer.url).session_id
        record = record_of(service, sid)
        round_trip(service, sid, "before")
        killed_at = time.monotonic()
        peer.kill()
        # More refused redials than max_restarts, and at least half a second without the peer.
        assert eventually(  # a counter: no transition signals it
            lambda: record.restarts > 4 or record.state is SessionState.FAILED, 10
        )
        assert record.state is not SessionState.FAILED, service.status(sid)
        record.lifecycle.wait_until(
            lambda: record.state is SessionState.FAILED,
            max(0.0, 0.5 - time.monotonic() + killed_at),
        )
        assert record.state is SessionState.RECONNECTING, service.status(sid)
        restarting = time.monotonic()
        peer.restart()  # (a Python process: its start takes a while on a loaded machine)
        print(f"the peer took {time.monotonic() - restarting:.2f} s to start again")
        assert reopened(record, restarts=5), service.status(sid)
        print(f"peer down for {time.monotonic() - killed_at:.2f} s: {record.restarts} redials")
        round_trip(service, sid, "after")
        service.end_session(sid)


def test_a_two_second_link_down_is_ridden_out(echo_server: ServerThread) -> None:
    """Through a proxy: the link is reset and every new connection refused for 2 s (a burst
    of resets and a link down); then it is back. The default policy keeps redialling."""
    with TcpProxy(echo_server.port) as proxy, TransportService(config_with()) as service:
        sid = service.create_session(url=proxy.url).session_id
        record = record_of(service, sid)
        round_trip(service, sid, "before")
        proxy.reject_new = True
        proxy.cut()
        # Two seconds, unless the session gives up first (as it did after 3 redials).
        failed = record.lifecycle.wait_until(lambda: record.state is SessionState.FAILED, 2.0)
        assert not failed, service.status(sid)
        proxy.reject_new = False
        assert reopened(record, restarts=1), service.status(sid)
        assert proxy.rejected >= 4
        round_trip(service, sid, "after")
        status = service.status(sid)
        assert status.state is SessionState.OPEN
        assert status.exit_reasons[0].startswith(str(ExitKind.CONNECTION_LOST))
        service.end_session(sid)


def test_a_link_down_longer_than_the_reconnect_window_fails_the_session_with_the_reason(
    echo_server: ServerThread,
) -> None:
    window = 1.0
    supervisor = SupervisorConfig(reconnect_window_s=window, backoff_max_s=0.2)
    with (
        TcpProxy(echo_server.port) as proxy,
        TransportService(config_with(supervisor)) as service,
    ):
        sid = service.create_session(url=proxy.url).session_id
        record = record_of(service, sid)
        round_trip(service, sid, "before")
        proxy.reject_new = True
        cut_at = time.monotonic()
        proxy.cut()
        assert record.lifecycle.wait_for(ENDED, 5) is SessionState.FAILED
        took = time.monotonic() - cut_at
        print(f"FAILED {took:.2f} s after the link went down (reconnect_window_s={window:g})")
        assert window <= took <= window + 0.5
        close = service.read_websocket_message(sid, timeout=5)
        assert isinstance(close, Close) and close.code == 1011
        assert close.reason.startswith("restart budget ran out: no connection for 1.0 s")
        assert "reconnect_window_s=1" in close.reason and "handshake failed" in close.reason
        assert service.read_websocket_message(sid, timeout=5) is None
        with pytest.raises(SessionClosed, match=r"FAILED: restart budget ran out.*handshake"):
            service.write_websocket_message(sid, Text("x"))
        service.end_session(sid)
        # After the end, the final status and the reason are still what the session says.
        assert service.status(sid).state is SessionState.FAILED
        with pytest.raises(SessionClosed, match=r"FAILED: .*handshake failed"):
            service.write_websocket_message(sid, Text("x"))


def test_a_connection_up_for_reset_after_s_forgives_the_earlier_outages(
    echo_server: ServerThread,
) -> None:
    """Two outages of 60% of the reconnect window each, with the link up for longer than
    ``reset_after_s`` in between: the second is counted afresh, and ridden out. (Before, the
    supervisor never learnt when a connection opened: every connection counted as up for 0 s,
    nothing was ever forgiven, and a long call FAILed on the outage that took its lifetime's
    total past the window, however far apart the outages were.)"""
    window, outage_s, up_s = 2.0, 1.2, 0.6
    supervisor = SupervisorConfig(
        reconnect_window_s=window, reset_after_s=up_s / 2, backoff_max_s=0.1
    )
    with (
        TcpProxy(echo_server.port) as proxy,
        TransportService(config_with(supervisor)) as service,
    ):
        sid = service.create_session(url=proxy.url).session_id
        record = record_of(service, sid)
        for outage in (1, 2):
            round_trip(service, sid, f"before {outage}")
            proxy.reject_new = True
            proxy.cut()
            # The link stays down for outage_s, unless the session gives up first.
            failed = record.lifecycle.wait_until(
                lambda: record.state is SessionState.FAILED, outage_s
            )
            assert not failed, f"outage {outage}: {service.status(sid)}"
            proxy.reject_new = False
            assert reopened(record, restarts=outage), service.status(sid)
            # Up and talking for longer than reset_after_s.
            up_since = time.monotonic()
            while time.monotonic() - up_since < up_s:
                round_trip(service, sid, f"after {outage}")
        assert service.status(sid).state is SessionState.OPEN
        service.end_session(sid)


class DripPeer(ThreadedServer):
    """A raw TCP server: its first client gets a real WebSocket handshake (and is hung up on
    when :meth:`hang_up` is called); every later client is answered one byte per
    ``drip_s``, forever, never completing the upgrade: a handshake that drips."""

    def __init__(self, drip_s: float = 0.2) -> None:
        super().__init__(socket.create_server(("127.0.0.1", 0)), "drip-peer", daemon=True)
        self._drip_s = drip_s
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self._first: socket.socket | None = None
        self.dripping = 0
        self._acceptor.start()

    def hang_up(self) -> None:
        assert self._first is not None
        with contextlib.suppress(OSError):
            self._first.shutdown(socket.SHUT_RDWR)

    def _accepted(self, client: socket.socket) -> None:
        first = self._first is None
        if first:
            self._first = client
        self._spawn(self._upgrade if first else self._drip, client, sockets=[client])

    def _upgrade(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError, StopIteration):
            answer_upgrade(client)
            while client.recv(4096):  # read (and ignore) until hung up on
                pass

    def _drip(self, client: socket.socket) -> None:
        with self._lock:
            self.dripping += 1
        answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        with contextlib.suppress(OSError):
            for byte in answer * 100:
                client.sendall(bytes([byte]))
                if self._stop.wait(self._drip_s):
                    return


def test_a_peer_that_drips_its_handshake_cannot_keep_a_session_reconnecting() -> None:
    """The connection drops; every redial reaches a server that answers a byte at a time and
    never upgrades (each read comes well within the socket timeout, so only a deadline on the
    whole handshake ends it). The session leaves RECONNECTING by the window's deadline."""
    window = 1.0
    supervisor = SupervisorConfig(reconnect_window_s=window)
    config = config_with(supervisor, connect_timeout_s=5.0)  # longer than the window
    with DripPeer() as peer, TransportService(config) as service:
        sid = service.create_session(url=peer.url).session_id
        record = record_of(service, sid)
        lost_at = time.monotonic()
        peer.hang_up()
        assert record.lifecycle.wait_for(ENDED, window + 2.0) is SessionState.FAILED, (
            service.status(sid)
        )
        took = time.monotonic() - lost_at
        print(f"left RECONNECTING {took:.2f} s after the loss (reconnect_window_s={window:g})")
        assert took <= window + 0.5
        assert peer.dripping >= 1
        status = service.status(sid)
        assert any("handshake not done within" in reason for reason in status.exit_reasons)
        service.end_session(sid)


def test_each_redial_has_a_deadline_of_connect_timeout_s() -> None:
    """Within a long window, each dripping redial is cut at ``connect_timeout_s`` and the next
    one made: the session keeps trying, one bounded attempt after another."""
    config = config_with(SupervisorConfig(reconnect_window_s=30.0), connect_timeout_s=0.3)
    with DripPeer() as peer, TransportService(config) as service:
        sid = service.create_session(url=peer.url).session_id
        record = record_of(service, sid)
        peer.hang_up()
        assert eventually(lambda: peer.dripping >= 3, 5.0), service.status(sid)
        assert record.state is SessionState.RECONNECTING
        reasons = service.status(sid).exit_reasons[1:]
        assert reasons and all("handshake not done within 0.3 s" in r for r in reasons), reasons
        service.end_session(sid)


# == 11. concurrent ends ======================================================================


Outcome = tuple[str, str]  # (call, what it did: a state, "None", "ok" or an exception name)


def hammer(
    service: TransportService, sid: str, stop: threading.Event, outcomes: deque[Outcome]
) -> Callable[[], None]:
    """A thread body calling status, read, write and end_session on ``sid`` until ``stop``."""

    def run() -> None:
        calls: list[tuple[str, Callable[[], object]]] = [
            ("status", lambda: service.status(sid).state.name),
            ("read", lambda: service.read_websocket_message(sid, timeout=0.02)),
            ("write", lambda: service.write_websocket_message(sid, Binary(b"\xff" * 160))),
            ("end", lambda: service.end_session(sid)),
        ]
        while not stop.is_set():
            for name, call in calls:
                try:
                    result = call()
                    if name == "end":  # it returned: the session is ended, for this thread too
                        result = f"ended:{service.status(sid).state.name}"
                    what = result if isinstance(result, str) else repr(result)
                except ReadTimeout:
                    what = "ReadTimeout"
                except Exception as exc:
                    what = type(exc).__name__
                outcomes.append((name, what))

    return run


def run_hammers(
    service: TransportService, sid: str, end: Callable[[], None], threads: int = 4
) -> list[Outcome]:
    """Start ``end`` on a thread of its own; once the end has begun, ``threads`` threads
    hammer the session until it is done, and for a few more calls after."""
    stop = threading.Event()
    outcomes: deque[Outcome] = deque()
    ender = threading.Thread(target=end, name="ender")
    workers = [
        threading.Thread(target=hammer(service, sid, stop, outcomes), name=f"hammer-{i}")
        for i in range(threads)
    ]
    ender.start()
    try:
        began = lambda: all(info.session_id != sid for info in service.sessions())  # noqa: E731
        assert eventually(began, 5.0), "the end never began"
        for worker in workers:
            worker.start()
        ender.join(15)
        assert not ender.is_alive()
        after = len(outcomes)
        assert eventually(lambda: len(outcomes) >= after + 8, 5.0)  # calls after the end, too
    finally:
        stop.set()
        ender.join(15)
        for worker in workers:
            if worker.ident is not None:
                worker.join(10)
    return list(outcomes)


def test_calls_from_other_threads_while_a_session_is_being_ended_keep_the_contract() -> None:
    """The peer never answers our close frame, so ``end_session`` takes about
    ``shutdown_timeout_s``. Meanwhile four threads call status, read, write and end_session
    on the session: none gets ``SessionNotFound``; ``status`` says CLOSING (then CLOSED);
    writes raise ``SessionClosed``; reads time out or return ``None``; a concurrent
    ``end_session`` returns once the session has ended."""
    config = config_with(shutdown_timeout_s=1.5, ping_interval_s=0)
    with RawPeer(silent) as peer, TransportService(config) as service:
        sid = service.create_session(url=peer.url).session_id
        took: list[float] = []
        outcomes = run_hammers(service, sid, lambda: took.append(timed_end(service, sid)))
        print(f"end_session took {took[0]:.2f} s; {len(outcomes)} calls meanwhile")
        assert took[0] >= 0.5, "the end was too quick to test anything"
        bad = [o for o in outcomes if "SessionNotFound" in o[1]]
        assert bad == [], bad[:5]
        by_call: dict[str, set[str]] = {}
        for name, what in outcomes:
            by_call.setdefault(name, set()).add(what)
        assert "CLOSING" in by_call["status"], by_call
        assert by_call["status"] <= {"OPEN", "CLOSING", "CLOSED"}, by_call
        assert by_call["write"] <= {"None", "SessionClosed"} and "SessionClosed" in by_call["write"]
        assert by_call["read"] <= {"None", "ReadTimeout"}, by_call
        assert by_call["end"] <= {"ended:CLOSED"}, by_call
        # And after the end, the documented behaviour.
        assert service.status(sid).state is SessionState.CLOSED
        assert service.read_websocket_message(sid, timeout=1) is None
        with pytest.raises(SessionClosed):
            service.write_websocket_message(sid, Text("x"))
        service.end_session(sid)  # a no-op
        with pytest.raises(SessionNotFound):  # only for an id never created
            service.status("never-created")


def test_calls_from_other_threads_while_the_service_closes_keep_the_contract() -> None:
    config = config_with(shutdown_timeout_s=1.5, ping_interval_s=0)
    with RawPeer(silent) as peer:
        service = TransportService(config)
        try:
            sid = service.create_session(url=peer.url).session_id
            outcomes = run_hammers(service, sid, service.close)
        finally:
            service.close()
        bad = [o for o in outcomes if "SessionNotFound" in o[1]]
        assert bad == [], bad[:5]
        statuses = {what for name, what in outcomes if name == "status"}
        assert "CLOSING" in statuses, statuses  # answered while the close was in progress
        assert statuses <= {"OPEN", "CLOSING", "CLOSED", "ServiceClosed"}, statuses
        writes = {what for name, what in outcomes if name == "write"}
        assert writes <= {"None", "SessionClosed", "ServiceClosed"}, writes
        with pytest.raises(ServiceClosed):
            service.status(sid)


# == 13. backoff arithmetic; the reason after a FAIL ==========================================


def test_a_huge_max_restarts_does_not_overflow_the_backoff() -> None:
    intensity = IntensityPolicy(
        max_restarts=10**6, within_s=1e9, backoff_initial_s=0.05, backoff_max_s=2.0
    )
    times: deque[float] = deque(float(i) for i in range(5000))  # 2.0**5000 overflows a float
    decision = intensity.decide(times, Exit(ExitKind.CRASH, reason="boom"), 5000.0)
    assert decision.restart and decision.delay_s == pytest.approx(2.0)
    outage = policy.Outage(down_since=0.0, attempts=10**6)
    assert intensity.redial(outage, Exit(ExitKind.CONNECTION_LOST), 1.0).delay_s <= 2.0
    for multiplier in (1.0, 1.5, 1e6, 1e300):
        assert policy.backoff(0.05, multiplier, 2.0, 10**9) <= 2.0
    assert policy.backoff(0.05, 2.0, 2.0, 0) == 0.05 and policy.backoff(0.05, 2.0, 2.0, 3) == 0.4


def test_a_huge_max_restarts_from_config_is_served(echo_server: ServerThread) -> None:
    supervisor = SupervisorConfig(max_restarts=10**6)
    with TransportService(config_with(supervisor)) as service:
        sid = service.create_session(url=echo_server.url).session_id
        round_trip(service, sid, "fine")
        service.end_session(sid)


class PoisonCodec(PassthroughCodec):
    def encode(self, message: Message) -> Sequence[Frame]:
        if message == Text("boom"):
            raise RuntimeError("poisoned")
        return super().encode(message)


def test_after_a_crash_loop_fails_the_session_session_closed_says_the_budget_ran_out(
    echo_server: ServerThread,
) -> None:
    """Crashes (not the network) are what the intensity counts: max_restarts=1, two crashes,
    FAILED; the reader's Close and a later write's ``SessionClosed`` both say the restart
    budget ran out, and name the last error."""
    supervisor = SupervisorConfig(max_restarts=1, within_s=30.0)
    with TransportService(config_with(supervisor)) as service:
        sid = service.create_session(url=echo_server.url).session_id
        record = record_of(service, sid)
        record.codec = PoisonCodec()
        for crash in range(2):
            assert reopened(record, restarts=crash)
            connector = record.connector
            assert connector is not None
            connector.tell(Write(Text("boom")))
        assert record.lifecycle.wait_for(ENDED, 5) is SessionState.FAILED
        messages = []
        while (message := service.read_websocket_message(sid, timeout=5)) is not None:
            messages.append(message)
        assert isinstance(messages[-1], Close) and messages[-1].code == 1011
        assert messages[-1].reason.startswith("restart budget ran out: 1 restarts within 30 s")
        with pytest.raises(SessionClosed) as raised:
            service.write_websocket_message(sid, Text("x"))
        text = str(raised.value)
        assert "restart budget ran out" in text and "max_restarts=1" in text
        assert "crash in handler: RuntimeError: poisoned" in text
        status: SessionStatus = service.status(sid)
        assert status.state is SessionState.FAILED
        service.end_session(sid)
