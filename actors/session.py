"""The session record: everything about one session that must outlive its connector.

The facade creates a record per session and the supervisor keeps it until the session ends.
A connector borrows it: it reads the dial options, decodes into the record's inbox and encodes
into its outbox. When the connector crashes and a new one starts, the inbox (messages not yet
read), the outbox (frames not yet sent) and the writes held for the next connector are all
still here, so nothing is lost across a restart.

Who writes what (one owner per piece of state):

- what the session *is* (its id, provider, codec, dial options, call id) is set at creation;
- the write path (admitting a write, encoding it into the outbox in order, the connector the
  ``Close`` messages go to, the writes held while there is none, whether the session is being
  ended, what was never sent) is the record's own, changed only through its methods, under its
  lock: :meth:`~SessionRecord.write` (the facade), :meth:`~SessionRecord.attach`,
  :meth:`~SessionRecord.encode`, :meth:`~SessionRecord.detach` (the connector),
  :meth:`~SessionRecord.mark_ending` (the facade) and :meth:`~SessionRecord.discard_unsent`
  (the supervisor, once the session is over);
- the lifecycle is moved by the supervisor only (:mod:`actors.lifecycle`);
- the supervision history (restarts, exits, the outage, the last error, why it failed) is a
  :class:`~actors.policy.Supervision` written by the supervisor only;
- the queues and the traffic counters keep their own invariants (:mod:`actors.queues`); the
  counters are written by whichever thread moves the traffic, and only ever grow;
- the **re-stream mark** (the call's stream is expected to end and a new one to come, until a
  deadline: ``send_dtmf`` on Twilio) is set by the call plane (:meth:`~SessionRecord.
  expect_restream`), cleared by the decoding thread when the new stream has started
  (:meth:`~SessionRecord.saw_stream`), both under a lock of its own; the supervisor and the
  connector read it (one attribute read).
- a paced codec's backlog (its ``pacer``, :mod:`actors.codecs.pacing`) is the codec's state,
  driven by the record under its lock with the time (a codec has no clock): after every
  encode and every ``flush`` the record takes what the pacer lets go into the outbox. The
  backlog is part of the outbound queue: it counts in ``queued_out``, a write past the
  bound raises ``QueueFull`` (``outbound_overflow: raise``) or drops the backlog's oldest
  audio (counted as ``outbox_full``), and what is left of it when the session ends counts
  as ``unsent_at_end``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .codecs import Codec, Frame
from .codecs.pacing import Pacer
from .connection import ConnectionFactory, DialOptions, SentLog, Traffic
from .errors import (
    ConnectionFailed,
    QueueFull,
    SessionClosed,
    TransportError,
    UnsupportedMessage,
)
from .exits import Exit
from .lifecycle import SessionLifecycle, SessionState
from .messages import Binary, Close, Message, SessionInfo, SessionStatus, Started, Stopped
from .policy import Supervision
from .queues import Inbox, Keep, Outbox
from .redaction import redact_url

if TYPE_CHECKING:
    import pykka

    from .policy import RestartPolicy

__all__ = ["SessionRecord"]

_NO_WRITES = frozenset({SessionState.CLOSING, SessionState.CLOSED, SessionState.FAILED})


class SessionRecord:
    """One session's identity, queues, counters, write path and supervision history."""

    def __init__(
        self,
        session_id: str,
        provider: str,
        codec: Codec,
        dial: DialOptions,
        *,
        inbox_max: int,
        outbound_max: int,
        inbound_overflow: str = "drop_oldest",
        outbound_overflow: str = "drop_oldest",
        call_id: str | None = None,
        connect: ConnectionFactory,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.session_id: Final = session_id
        self.provider: Final = provider
        # Set once here; a test may swap it on a live session to inject a fault.
        self.codec = codec
        # Re-pointed only by a cluster whose call moved to another gateway (its next redial).
        self.dial = dial
        self.safe_url: Final = redact_url(dial.url)  # for logs, errors and SessionInfo
        # isinstance() wants a tuple; built once here rather than on every write.
        self.writable: Final[tuple[type[Message], ...]] = tuple(codec.outbound_types)
        self.call_id: Final = call_id
        # The frame that started the provider's stream (the one that decoded to ``Started``):
        # a cluster keeps it with the lease, so that a node taking the session over can give
        # its own codec the same state (stream id, format, call id) by decoding it again.
        self.opening: Frame | None = None
        self.connect: Final = connect  # how connectors connect: named by the provider's plan
        self.created_at: Final = time.time()
        self.lifecycle: Final = SessionLifecycle(session_id)
        self.inbox: Final = Inbox(inbox_max, inbound_overflow)
        self.outbox: Final[Outbox[Frame | Keep]] = Outbox(outbound_max, outbound_overflow)
        self.traffic: Final = Traffic()
        # Resumable sessions (through the gateway) keep their last sent frames for resending.
        self.sent_log: Final = SentLog(dial.resume_frames) if dial.resume_frames > 0 else None
        #: Written by the supervisor only (see :class:`~actors.policy.Supervision`).
        self.supervision: Final = Supervision(policy)
        self._refuse_when_full = outbound_overflow == "raise"
        # Orders the writes of every thread (and the codec's state), and guards the hand-over
        # of writes between the facade and successive connectors.
        self._lock = threading.Lock()
        self._connector: pykka.ActorRef[Any] | None = None  # takes the Close messages
        self._deliver: Callable[[Message], bool] | None = None  # tells it one; False: dead
        self._connector_thread: threading.Thread | None = None
        self._backlog: deque[Message] = deque()  # writes that found no connector
        self._ending = False  # end_session (or close) has taken the session
        self._unsent_at_end = 0  # frames discarded when the session ended unsent
        # (deadline (monotonic), whether the old stream's Stopped came yet), or None
        self._restream: tuple[float, bool] | None = None
        self._restream_lock = threading.Lock()

    # -- reads, from any thread ----------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self.lifecycle.state

    @property
    def connector(self) -> pykka.ActorRef[Any] | None:
        """The connector attached now (it takes ``Close`` and answers ``GetStatus``)."""
        return self._connector

    @property
    def connector_thread(self) -> threading.Thread | None:
        """The thread of the last connector that attached (joined when the session ends)."""
        return self._connector_thread

    @property
    def ending(self) -> bool:
        """Whether ``end_session`` (or ``close``) has taken the session: no more writes."""
        return self._ending

    @property
    def pacer(self) -> Pacer | None:
        """The codec's pacer, if it paces its frames (Vonage)."""
        pacer = getattr(self.codec, "pacer", None)
        return pacer if isinstance(pacer, Pacer) else None

    @property
    def queued_out(self) -> int:
        """Frames in the outbox (and a paced codec's backlog) and writes held for the next
        connector."""
        pacer = self.pacer
        paced = pacer.backlog if pacer is not None else 0
        return len(self.outbox) + len(self._backlog) + paced

    @property
    def dropped_overflow_out(self) -> int:
        """Outbound audio frames dropped because the outbound queue was full (the outbox's,
        and a paced codec's backlog's)."""
        pacer = self.pacer
        return self.outbox.dropped + (pacer.dropped if pacer is not None else 0)

    @property
    def unsent_at_end(self) -> int:
        """Frames that were still queued when the session ended: never sent, counted."""
        return self._unsent_at_end

    @property
    def restarts(self) -> int:
        return self.supervision.restarts

    @property
    def exits(self) -> tuple[Exit, ...]:
        return self.supervision.exits

    @property
    def last_error(self) -> str | None:
        return self.supervision.last_error

    @property
    def failure(self) -> TransportError | None:
        return self.supervision.failure

    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self.session_id,
            provider=self.provider,
            url=self.safe_url,
            call_id=self.call_id,
            created_at=self.created_at,
        )

    def status(self, connected: bool | None = None) -> SessionStatus:
        t = self.traffic
        history = self.supervision
        return SessionStatus(
            session_id=self.session_id,
            provider=self.provider,
            state=self.lifecycle.state,
            connected=history.connected if connected is None else connected,
            restarts=history.restarts,
            frames_in=t.frames_in,
            frames_out=t.frames_out,
            bytes_in=t.bytes_in,
            bytes_out=t.bytes_out,
            dropped_in=self.inbox.dropped,
            dropped_out=self.dropped_overflow_out + self._unsent_at_end,
            queued_out=self.queued_out,
            last_error=history.last_error,
            exit_reasons=tuple(str(e) for e in history.exits),
            malformed_in=self.codec.malformed + getattr(self.codec, "unknown", 0),
            resent_out=t.frames_resent,
            lost_in_flight=self.lost_in_flight(),
        )

    def lost_in_flight(self) -> int:
        """Frames sent and never delivered because a connection died with them in flight.
        A resumable session's last in-flight frames count only once it has ended without a
        resume to settle them (until then a redial may resend them): never goes down."""
        t = self.traffic
        if self.lifecycle.state.is_final:
            return t.frames_lost + t.frames_unsettled
        return t.frames_lost

    def restream_left(self, now: float) -> float | None:
        """Seconds left for the expected re-stream (see :meth:`expect_restream`), or ``None``
        when none is expected (or its deadline has passed)."""
        mark = self._restream
        if mark is None or mark[0] <= now:
            return None
        return mark[0] - now

    @property
    def restream_marked(self) -> bool:
        """Whether a re-stream is expected (its deadline may have passed)."""
        return self._restream is not None

    def expect_restream(self, deadline: float | None, *, stopped: bool = False) -> None:
        """The call's stream is about to end and the call to stream again for this session
        (a call update), by ``deadline`` (``time.monotonic()``); ``None``: not any more.
        ``stopped``: the stream has ended already (an update between two streams)."""
        with self._restream_lock:
            self._restream = None if deadline is None else (deadline, stopped)

    def saw_stream(self, message: Message) -> None:
        """The decoding thread saw ``Stopped`` or ``Started``: the old stream's end, then the
        new one's start, is the expected re-stream come (the mark is cleared)."""
        if not self.restream_marked:  # all but always: no lock on the decoding thread
            return
        with self._restream_lock:
            mark = self._restream
            if mark is None:
                return
            if type(message) is Stopped:
                self._restream = (mark[0], True)
            elif type(message) is Started and mark[1]:
                self._restream = None

    def closed_why(self) -> str:
        """Why the session takes no more writes, for ``SessionClosed``."""
        if self.state is SessionState.FAILED:
            # The policy's reason: the restart budget that ran out, and the last exit.
            failure = self.failure
            reason = failure.reason if isinstance(failure, ConnectionFailed) else self.last_error
            return f"FAILED: {reason}"
        if self._ending:
            return "being ended by end_session"
        return self.last_error or str(self.state)

    # -- the facade's, on the application's threads --------------------------------------------

    def write(self, message: Message) -> None:
        """Admit one write of the application's, on its thread, and queue it in order.

        Data is encoded into the outbox here, which the open connection drains (no hop through
        the connector's mailbox per frame; a write made during a restart waits there for the
        next connection). A ``Close`` is the connector's business: it is told to the attached
        connector, or held for the next one. Raises ``UnsupportedMessage`` for a type the
        provider cannot carry, ``ValueError`` for a ``Close`` no close frame can carry,
        ``SessionClosed`` once the session is ending or over, and ``QueueFull`` for audio
        written to a full outbox when its overflow policy is ``raise``.
        """
        if not isinstance(message, self.writable):
            raise UnsupportedMessage(self.session_id, self.provider, type(message).__name__)
        if isinstance(message, Close):
            message.check_sendable()  # a ValueError now, not a wedged connection later
        with self._lock:
            if self._ending or self.lifecycle.state in _NO_WRITES:
                raise SessionClosed(self.session_id, self.closed_why())
            if (
                self._refuse_when_full
                and isinstance(message, Binary)  # the rest is never refused nor dropped
                and self.queued_out >= self.outbox.maxsize
            ):
                raise QueueFull(self.session_id, self.outbox.maxsize)
            if not isinstance(message, Close):
                self._encode(message)
                return
            # A connector that just died says so: the Close is held for the next one.
            deliver = self._deliver
            if deliver is None or not deliver(message):
                self._backlog.append(message)

    def mark_ending(self) -> None:
        """``end_session`` (or ``close``) takes the session: once this returns, every write
        raises ``SessionClosed``."""
        with self._lock:
            self._ending = True

    def hold(self, message: Message) -> None:
        """Keep a write for the next connector to attach (it replays it first)."""
        with self._lock:
            self._backlog.append(message)

    # -- the connector's, on its actor thread ---------------------------------------------------

    def attach(self, connector: pykka.ActorRef[Any], deliver: Callable[[Message], bool]) -> None:
        """A connector starts on this thread: from now on ``Close`` writes are handed to
        ``deliver`` (which tells it, and returns False if it has died)."""
        with self._lock:
            self._connector = connector
            self._deliver = deliver
            self._connector_thread = threading.current_thread()

    def take_backlog(self) -> list[Message]:
        """The writes held for a connector, oldest first, for the one attached to replay."""
        with self._lock:
            held = list(self._backlog)
            self._backlog.clear()
            return held

    def encode(self, message: Message) -> None:
        """Encode a data write into the outbox, in order with every other thread's."""
        with self._lock:
            self._encode(message)

    def flush_codec(self) -> None:
        """Queue what the codec held until its stream started (never dropped), and what its
        pacer lets go by now (on the connection's timer tick)."""
        with self._lock:  # ordered with the writers' encodes
            frames = self.codec.flush()
            if frames:  # on a timer tick (Vonage, Exotel) mostly nothing: no pump for it
                self.outbox.put_many(frames, droppable=False)
            pacer = self.pacer
            if pacer is not None and pacer.backlog:
                self._release(pacer)

    def detach(self, connector: pykka.ActorRef[Any], rescue: Callable[[], list[Message]]) -> None:
        """A connector stops: no more ``Close`` writes for it. ``rescue`` takes the writes
        still in its mailbox; they are held for the next connector, ahead of any held since
        (they are older)."""
        with self._lock:
            if self._connector is connector:
                self._connector = None
                self._deliver = None
            # Under the lock: no write can reach the mailbox while it is emptied.
            self._backlog.extendleft(reversed(rescue()))

    # -- the supervisor's, on its thread --------------------------------------------------------

    def discard_unsent(self) -> None:
        """The session is over: count what will never be sent, and let it go."""
        with self._lock:
            pacer = self.pacer
            paced = pacer.discard() if pacer is not None else 0
            unsent = len(self.outbox.take()) + len(self._backlog) + paced
            self._backlog.clear()
            self._unsent_at_end += unsent

    # -- internals -----------------------------------------------------------------------------

    def _encode(self, message: Message) -> None:
        # The caller holds the lock: it keeps the order of writes (and the codec's state)
        # across the threads that write.
        frames = self.codec.encode(message)
        # Only audio may be dropped on overflow; a single frame is this message's own (more
        # are frames the codec held until now, whatever their kind: kept to be safe).
        droppable = isinstance(message, Binary) and len(frames) == 1
        if frames:
            self.outbox.put_many(frames, droppable=droppable)
        pacer = self.pacer
        if pacer is not None and pacer.backlog:
            self._release(pacer)
            excess = len(self.outbox) + pacer.backlog - self.outbox.maxsize
            if excess > 0 and not self._refuse_when_full:
                pacer.drop_oldest(excess)  # counted by the pacer: dropped_overflow_out

    def _release(self, pacer: Pacer) -> None:
        """Queue what the pacer lets go now (the caller holds the lock): audio may be dropped
        on overflow like any audio frame, a notify is kept."""
        frames = pacer.release(time.monotonic())
        start = 0
        for i in range(1, len(frames) + 1):
            if i == len(frames) or type(frames[i]) is not type(frames[start]):
                self.outbox.put_many(frames[start:i], droppable=isinstance(frames[start], bytes))
                start = i
