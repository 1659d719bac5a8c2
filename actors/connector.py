"""The connector actor: one per session incarnation, owner of that session's connection.

A connector borrows its session's :class:`~actors.session.SessionRecord` and owns one
:class:`~actors.connection.Connection` (made by the factory its provider's plan names). Its
life, in pykka's hooks:

- ``on_start`` attaches to the record (from now on ``Close`` writes reach it as tells),
  makes the connection, replays the writes held for it, and starts the connection, whose
  short-lived dial thread waits out the restart backoff and dials. Nothing blocking happens
  on the actor's thread.
- ``Write`` tells (a ``Close``; or data, encoded into the outbox in the order received) and
  ``GetStatus`` asks are handled one at a time. Data written by the application does not
  come this way: the record encodes it on the caller's thread, and the connection sends it
  from there (see :mod:`actors.service` for the whole threading model).
- The connection tells the actor when it opened and when (and why) it ended; an ended
  connection stops the actor.
- ``on_stop`` (and ``on_failure``, and a crash in ``on_start``) detach from the record, hand
  the writes still in the actor's own mailbox back to the record, close the connection
  within ``shutdown_timeout_s``, and report the exit to the supervisor: exactly once per
  connector.

Inbound frames never pass through this actor: the I/O loop thread (a Daily call's runner)
calls ``on_frame``, which decodes them straight into the record's inbox, so the actor costs
nothing per inbound frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pykka

from .codecs import Frame
from .connection import Connection, ConnectionContext, DialOptions, SharedIo
from .exits import Exit, ExitKind
from .messages import INTERNAL_ERROR, Close, Message, Started, Stopped
from .session import SessionRecord
from .wire.constants import RESTREAM_HEADER

if TYPE_CHECKING:
    from .metrics import ServiceMetrics

__all__ = ["Connector", "ConnectorExited", "ConnectorOpened", "GetStatus", "Write"]

logger = logging.getLogger(__name__)

_MIN_DIAL_S = 0.05  # the shortest dial worth attempting at the end of a reconnect window


# -- messages a connector receives ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """Send ``message`` on the session (a tell from the facade)."""

    message: Message


@dataclass(frozen=True, slots=True)
class GetStatus:
    """Ask for the session's ``SessionStatus``."""


@dataclass(frozen=True, slots=True)
class _Opened:
    subprotocol: str | None


@dataclass(frozen=True, slots=True)
class _StreamStarted:
    """The codec saw its stream start: writes it held until then can now be encoded."""


@dataclass(frozen=True, slots=True)
class _Ended:
    exit: Exit


# -- messages a connector sends its supervisor ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectorOpened:
    session_id: str
    generation: int
    subprotocol: str | None


@dataclass(frozen=True, slots=True)
class ConnectorExited:
    session_id: str
    generation: int
    exit: Exit


def _flush_interval(record: SessionRecord) -> float | None:
    """How often the session's codec wants ``flush()`` called (``flush_interval_s``; the
    Vonage and Exotel codecs gather audio into frames and chunks), or ``None``."""
    interval = getattr(record.codec, "flush_interval_s", None)
    return float(interval) if isinstance(interval, int | float) and interval > 0 else None


class Connector(pykka.ThreadingActor):
    """The actor that owns one session's connection for one incarnation (``generation``)."""

    # A connector stuck in a bug must never keep the interpreter from exiting.
    use_daemon_thread = True

    def __init__(
        self,
        record: SessionRecord,
        supervisor: pykka.ActorRef[Any],
        *,
        generation: int,
        shared: SharedIo | None,
        shutdown_timeout_s: float,
        dial_delay_s: float = 0.0,
        dial_deadline: float = math.inf,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        super().__init__()
        self.record = record
        self.supervisor = supervisor
        self.generation = generation
        self.shared = shared
        self.shutdown_timeout_s = shutdown_timeout_s
        self.dial_delay_s = dial_delay_s
        self.dial_deadline = dial_deadline  # monotonic: the reconnect window closes then
        self.metrics = metrics
        self._started_at = time.monotonic()  # reset in on_start; for the connect latency
        self.connection: Connection | None = None
        self._ended: Exit | None = None  # how the connection ended, if it has
        self._reported = False

    # -- pykka hooks ---------------------------------------------------------------------------

    def on_start(self) -> None:
        """On the connector's own thread, before any message: attach to the record, make and
        start the connection (which dials on a thread of its own), replay the held writes."""
        record = self.record
        threading.current_thread().name = f"connector-{record.session_id}"
        self._started_at = time.monotonic()
        # From now on Close writes are told to us; they wait in the mailbox until we are done.
        record.attach(self.actor_ref, self._deliver)
        try:
            # The provider's plan named the factory: a WebSocket, a Daily call...
            connection = record.connect(
                ConnectionContext(
                    self._dial_options(),
                    record.session_id,
                    record.outbox,
                    record.traffic,
                    on_open=self._on_open,
                    on_frame=self._on_frame,
                    on_exit=self._on_exit,
                    shared=self.shared,
                    dial_delay_s=self.dial_delay_s,
                    sent_log=record.sent_log,
                    # A codec that gathers audio lets an idle stream's tail go on a timer.
                    tick=record.flush_codec if _flush_interval(record) else None,
                    tick_interval_s=_flush_interval(record) or 0.1,
                )
            )
            self.connection = connection  # first: a held Close needs it
            for message in record.take_backlog():  # older than anything in the mailbox
                self._write(message)
            connection.start()
        except Exception as exc:
            # pykka calls neither on_failure nor on_stop after a crash in on_start.
            self._release(Exit(ExitKind.START_CRASH, None, f"{type(exc).__name__}: {exc}"))
            raise

    def on_receive(self, message: Any) -> Any:
        """On the connector's thread, one message at a time."""
        if isinstance(message, Write):
            self._write(message.message)
        elif isinstance(message, GetStatus):
            connection = self.connection
            return self.record.status(connected=connection is not None and connection.connected)
        elif isinstance(message, _Opened):
            self.supervisor.tell(
                ConnectorOpened(self.record.session_id, self.generation, message.subprotocol)
            )
        elif isinstance(message, _StreamStarted):
            self.record.flush_codec()
        elif isinstance(message, _Ended):
            self._ended = message.exit
            self.stop()
        else:
            # A message no handler knows is a bug somewhere: crash, and let supervision act.
            raise TypeError(f"connector got an unexpected message: {type(message).__name__}")
        return None

    def on_stop(self) -> None:
        """On the connector's thread, once it is told to stop (or its connection ended)."""
        self._release(None)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """On the connector's thread, when a handler raised: the crash is the exit."""
        name = exception_type.__name__ if exception_type else "error"
        self._release(Exit(ExitKind.CRASH, None, f"{name}: {exception_value}"))

    # -- the connection's callbacks, from its threads ------------------------------------------
    # (a WebSocket's: the dial thread calls on_exit for a failed dial, the I/O loop thread the
    # rest; a Daily call's: its runner thread)

    def _on_open(self, subprotocol: str | None) -> None:
        # The restart backoff is waited out before the dial: it is no part of the latency.
        seconds = time.monotonic() - self._started_at - self.dial_delay_s
        record = self.record
        logger.debug(
            "session %s: connector %d connected in %.1f ms",
            record.session_id,
            self.generation,
            seconds * 1000,
        )
        if self.metrics is not None:
            self.metrics.connected(record.provider, seconds)
        self._tell_self(_Opened(subprotocol))

    def _on_frame(self, frame: Frame) -> None:
        # The I/O loop's hot path (a Daily call's runner's): decode and queue, no actor hop.
        record = self.record
        put = record.inbox.put
        for message in record.codec.decode(frame):
            put(message)
            kind = type(message)
            if kind is Started:
                record.saw_stream(message)
                record.opening = frame  # for a node that may take the session over
                # Encoding happens on the actor's thread; let it send what the codec held.
                self._tell_self(_StreamStarted())
            elif kind is Stopped:
                record.saw_stream(message)

    def _on_exit(self, exit: Exit) -> None:
        self._tell_self(_Ended(exit))

    def _deliver(self, message: Message) -> bool:
        """Tell ourselves a write (the record's, under its lock); False once we are dead."""
        try:
            self.actor_ref.tell(Write(message))
        except pykka.ActorDeadError:
            return False
        return True

    def _tell_self(self, message: object) -> None:
        # Already stopping? Then _release reads the exit from the connection itself.
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(message)

    # -- internals -----------------------------------------------------------------------------

    def _dial_options(self) -> DialOptions:
        """The session's dial options, with a dial timeout that ends by the reconnect
        window's deadline: a peer that drips its handshake cannot outlast the window."""
        dial = self.record.dial
        now = time.monotonic()
        restream = self.record.restream_left(now + self.dial_delay_s)
        if restream is not None:  # the gateway re-opens the call and waits that long for it
            headers = {**dial.headers, RESTREAM_HEADER: str(max(1, int(restream * 1000)))}
            dial = dataclasses.replace(dial, headers=headers)
        left = self.dial_deadline - now - self.dial_delay_s
        if left >= dial.connect_timeout_s:
            return dial
        return dataclasses.replace(dial, connect_timeout_s=max(_MIN_DIAL_S, left))

    def _write(self, message: Message) -> None:
        if isinstance(message, Close):
            if self.connection is not None:
                self.connection.request_close(message.code, message.reason)
            return
        self.record.encode(message)

    def _release(self, crash: Exit | None) -> None:
        """Detach, rescue unprocessed writes, close the connection, report the exit once."""
        if self._reported:
            return
        self._reported = True
        record = self.record
        # Writes still in our mailbox are older than any held for the next connector meanwhile.
        record.detach(self.actor_ref, self._drain_mailbox)
        connection = self.connection
        exit = crash
        try:
            if connection is not None:
                exit = self._close(connection, crash)
        except Exception as exc:
            # Closing failed (a bug): abort, and report the exit all the same; an unreported
            # exit would leave the session OPEN for ever with nothing behind it.
            logger.exception("session %s: closing the connection failed", record.session_id)
            exit = crash or Exit(ExitKind.CRASH, None, f"{type(exc).__name__}: {exc}")
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.abort(exit)
        if exit is None:
            exit = Exit(ExitKind.NORMAL, None, "stopped before connecting")
        logger.debug("session %s: connector %d exits: %s", record.session_id, self.generation, exit)
        try:
            self.supervisor.tell(ConnectorExited(record.session_id, self.generation, exit))
        except pykka.ActorDeadError:
            logger.warning(
                "session %s: supervisor gone; exit not reported: %s", record.session_id, exit
            )

    def _close(self, connection: Connection, crash: Exit | None) -> Exit | None:
        """Close the connection within the shutdown timeout; the exit to report."""
        if crash is not None and not connection.done:
            # The actor broke, not the socket: close it with a handshake, so that what
            # was sent is delivered and what comes back before the peer's close is still
            # read; what is queued waits for the next connector (1011 tells a gateway to
            # hold the call for it).
            connection.close(
                INTERNAL_ERROR,
                "connector restarting",
                self.shutdown_timeout_s,
                crash,
                flush=False,
            )
        elif crash is not None:
            connection.join(self.shutdown_timeout_s)
        elif not connection.done:
            connection.close(timeout=self.shutdown_timeout_s)
        else:
            connection.join(self.shutdown_timeout_s)
        return crash or self._ended or connection.exit

    def _drain_mailbox(self) -> list[Message]:
        """Take the ``Write`` tells still in this actor's mailbox; pykka would drop them."""
        rescued: list[Message] = []
        others = []
        # We are the mailbox's only consumer, so get() after a non-empty check never blocks.
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            if isinstance(envelope.message, Write):
                rescued.append(envelope.message.message)
            else:
                others.append(envelope)
        for envelope in others:  # asks among them get ActorDeadError from pykka's teardown
            self.actor_inbox.put(envelope)
        return rescued
