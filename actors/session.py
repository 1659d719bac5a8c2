"""The session record: everything about one session that must outlive its connector.

The supervisor creates a record per session and keeps it until the session ends. A connector
borrows it: it reads the dial options, decodes into the record's inbox and encodes into its
outbox. When the connector crashes and a new one starts, the inbox (messages not yet read), the
outbox (frames not yet sent) and the backlog (writes that reached no connector) are all still
here, so nothing is lost across a restart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .codecs import Codec, Frame
from .connection import ConnectionFactory, DialOptions, SentLog, Traffic
from .errors import TransportError
from .exits import Exit
from .lifecycle import SessionLifecycle, SessionState
from .messages import Binary, Message, SessionInfo, SessionStatus
from .policy import Outage
from .queues import Inbox, Keep, Outbox
from .redaction import redact_url

if TYPE_CHECKING:
    import pykka

    from .policy import RestartPolicy

__all__ = ["SessionRecord"]

_EXITS_KEPT = 16


class SessionRecord:
    """One session's identity, queues, counters and supervision history."""

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
    ) -> None:
        self.session_id = session_id
        self.provider = provider
        self.codec = codec
        self.dial = dial
        self.safe_url = redact_url(dial.url)  # for logs, errors and SessionInfo
        # isinstance() wants a tuple; built once here rather than on every write.
        self.writable: tuple[type[Message], ...] = tuple(codec.outbound_types)
        self.call_id = call_id
        self.connect = connect  # how connectors connect: named by the provider's plan
        self.created_at = time.time()
        self.lifecycle = SessionLifecycle(session_id)
        self.inbox = Inbox(inbox_max, inbound_overflow)
        self.outbox: Outbox[Frame | Keep] = Outbox(outbound_max, outbound_overflow)
        self.traffic = Traffic()
        # Resumable sessions (through the gateway) keep their last sent frames for resending.
        self.sent_log = SentLog(dial.resume_frames) if dial.resume_frames > 0 else None
        # Guards the hand-over of writes between the facade and successive connectors.
        self.lock = threading.Lock()
        self.connector: pykka.ActorRef[Any] | None = None  # takes writes; set in on_start
        self.backlog: deque[Message] = deque()  # writes that found no connector
        self.connector_thread: threading.Thread | None = None
        self.connected = False
        self.restarts = 0
        self.restart_times: deque[float] = deque()  # of crash restarts (the intensity)
        self.outage = Outage()  # time without a connection (the reconnect window)
        self.policy: RestartPolicy | None = None  # the provider's own; else the supervisor's
        self.opened_at: float | None = None  # when the current connection opened (monotonic)
        self.exits: deque[Exit] = deque(maxlen=_EXITS_KEPT)
        self.last_error: str | None = None
        self.failure: TransportError | None = None  # why it never opened, or gave up
        self.dropped_out_extra = 0  # frames discarded when the session ended unsent

    def queue_frames(self, message: Message) -> None:
        """Encode ``message`` into the outbox. The caller holds ``lock``: it keeps the order
        of writes (and the codec's state) across the threads that write."""
        frames = self.codec.encode(message)
        # Only audio may be dropped on overflow; a single frame is this message's own (more
        # are frames the codec held until now, whatever their kind: kept to be safe).
        droppable = isinstance(message, Binary) and len(frames) == 1
        self.outbox.put_many(frames, droppable=droppable)

    @property
    def state(self) -> SessionState:
        return self.lifecycle.state

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
        return SessionStatus(
            session_id=self.session_id,
            provider=self.provider,
            state=self.lifecycle.state,
            connected=self.connected if connected is None else connected,
            restarts=self.restarts,
            frames_in=t.frames_in,
            frames_out=t.frames_out,
            bytes_in=t.bytes_in,
            bytes_out=t.bytes_out,
            dropped_in=self.inbox.dropped,
            dropped_out=self.outbox.dropped + self.dropped_out_extra,
            queued_out=len(self.outbox) + len(self.backlog),
            last_error=self.last_error,
            exit_reasons=tuple(str(e) for e in self.exits),
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
