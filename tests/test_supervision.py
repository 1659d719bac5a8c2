"""Supervision paths, driven with real supervisor and connector actors over real sockets.

A codec is the plug-in point that runs inside the connector's handlers, so a codec that raises
on one poison message stands for a bug in a handler, without mocking any of our own code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from actors.codecs import Frame
from actors.codecs.websocket import PassthroughCodec
from actors.connection import DialOptions
from actors.connector import Write
from actors.exits import ExitKind
from actors.gateway import ServerThread
from actors.lifecycle import SessionState
from actors.messages import Close, Message, Text
from actors.policy import IntensityPolicy
from actors.session import SessionRecord
from actors.supervisor import EndSession, Register, Supervisor
from actors.transport import websocket_connection

pytestmark = pytest.mark.timeout(30)

OPEN = frozenset({SessionState.OPEN})
ENDED = frozenset({SessionState.CLOSED, SessionState.FAILED})


class PoisonCodec(PassthroughCodec):
    """Passes everything through, but raises on ``Text("boom")``: a bug in a handler."""

    def encode(self, message: Message) -> Sequence[Frame]:
        if message == Text("boom"):
            raise RuntimeError("poisoned")
        return super().encode(message)


@pytest.fixture
def supervisor() -> Iterator[object]:
    policy = IntensityPolicy(max_restarts=2, within_s=10, backoff_initial_s=0.01)
    ref = Supervisor.start(policy, shared=None, shutdown_timeout_s=1.0)
    try:
        yield ref
    finally:
        ref.stop(block=True, timeout=5)


def make_record(url: str) -> SessionRecord:
    return SessionRecord(
        "sess-1",
        "websocket",
        PoisonCodec(),
        DialOptions(url=url, ping_interval_s=0),
        inbox_max=100,
        outbound_max=100,
        connect=websocket_connection,
    )


def reopened(record: SessionRecord, restarts: int) -> bool:
    """Wait until the session is OPEN after exactly ``restarts`` restarts (its connector then
    attached: on_start attaches before it dials)."""
    return record.lifecycle.wait_until(
        lambda: record.restarts == restarts and record.state is SessionState.OPEN, 5
    )


def end(supervisor, record: SessionRecord) -> None:
    ref = supervisor.ask(EndSession(record.session_id), timeout=5)
    if ref is not None:
        ref.stop(block=True, timeout=5)
    assert record.lifecycle.wait_for(ENDED, 5) in ENDED
    if record.connector_thread is not None:
        record.connector_thread.join(5)


def test_crash_in_handler_is_reported_once_and_restarted(
    supervisor, echo_server: ServerThread
) -> None:
    record = make_record(echo_server.url)
    supervisor.ask(Register(record), timeout=5)
    assert record.lifecycle.wait_for(OPEN, 5) is SessionState.OPEN
    first = record.connector
    assert first is not None
    first.tell(Write(Text("boom")))  # the handler raises: on_failure, report, restart
    assert reopened(record, restarts=1)
    assert record.connector is not first
    assert [e.kind for e in record.exits] == [ExitKind.CRASH]  # one exit, reported once
    assert "RuntimeError: poisoned" in record.exits[0].reason
    # The restarted connector works.
    assert record.connector is not None
    record.connector.tell(Write(Text("after")))
    assert record.inbox.get(5) == Text("after")
    end(supervisor, record)
    assert [e.kind for e in record.exits] == [ExitKind.CRASH, ExitKind.NORMAL]


def test_crash_in_on_start_is_reported_once(supervisor, echo_server: ServerThread) -> None:
    record = make_record(echo_server.url)
    # A write that found no connector: the first connector encodes it in on_start, and dies.
    record.hold(Text("boom"))
    supervisor.ask(Register(record), timeout=5)
    assert record.lifecycle.wait_for(ENDED, 5) is SessionState.FAILED
    assert [e.kind for e in record.exits] == [ExitKind.START_CRASH]
    assert record.failure is not None and "poisoned" in str(record.failure)
    assert record.inbox.get(1) == Close(1011, record.failure.reason)
    assert record.inbox.get(1) is None
    if record.connector_thread is not None:
        record.connector_thread.join(5)


def test_restart_intensity_exceeded_fails_the_session(
    supervisor, echo_server: ServerThread
) -> None:
    record = make_record(echo_server.url)
    supervisor.ask(Register(record), timeout=5)
    assert record.lifecycle.wait_for(OPEN, 5) is SessionState.OPEN
    for crash in range(3):  # max_restarts=2: the third crash is one too many
        assert reopened(record, restarts=crash), f"not open again before crash {crash}"
        connector = record.connector
        assert connector is not None
        connector.tell(Write(Text("boom")))
    assert record.lifecycle.wait_for(ENDED, 5) is SessionState.FAILED
    assert record.restarts == 2 and len(record.exits) == 3
    messages = []
    while (message := record.inbox.get(1)) is not None:
        messages.append(message)
    assert isinstance(messages[-1], Close) and messages[-1].code == 1011
    assert "2 restarts within 10 s" in messages[-1].reason
    if record.connector_thread is not None:
        record.connector_thread.join(5)


def test_end_during_backoff_is_prompt() -> None:
    """Ending a session whose connector waits out a long backoff does not wait for it."""
    # A backoff long enough that the session is still waiting it out when the end comes (with
    # the shared fixture's 0.01 s, the budget could run out first and the session end FAILED).
    policy = IntensityPolicy(max_restarts=2, within_s=10, backoff_initial_s=5.0, backoff_max_s=5.0)
    supervisor = Supervisor.start(policy, shared=None, shutdown_timeout_s=1.0)
    try:
        _end_during_backoff(supervisor)
    finally:
        supervisor.stop(block=True, timeout=5)


def _end_during_backoff(supervisor: Any) -> None:
    with ServerThread(lambda c: c.close(1011, "try again"), name="flaky") as server:
        record = make_record(server.url)
        supervisor.ask(Register(record), timeout=5)
        # 1011 is retryable: the session goes RECONNECTING with a backoff before redialling.
        state = record.lifecycle.wait_for(frozenset({SessionState.RECONNECTING}), 5)
        assert state in (SessionState.RECONNECTING, SessionState.OPEN)
        started = time.monotonic()
        end(supervisor, record)
        assert time.monotonic() - started < 0.5
