"""What goes on a connection's wire next, in order, as bytes.

:class:`Outgoing` turns what is due into bytes with the connection's
:class:`~actors.wire.ClientProtocol`: first the protocol's own frames (pongs, the echo of the
peer's close, the close that fails a broken connection) and a keepalive ping, then frames the
gateway asked to have resent, then the session's outbox, then our close frame once the outbox
is empty (or at once, when the close does not flush). It notes where each data frame ends on
the wire (:class:`~.inflight.InFlight`), so that a dead connection can count what it lost.

No socket: the connection writes the bytes. Used by whichever thread holds the connection's
send lock (the protocol is one thread's at a time); the close request and the ping flag are
set by others (a bool or a tuple, each written whole).
"""

from __future__ import annotations

import math
import time

from ..codecs import Frame
from ..connection import SentLog, Traffic
from ..queues import Keep, Outbox
from ..wire import ClientProtocol, State, is_sendable
from .inflight import InFlight, wire_size

__all__ = ["Outgoing"]


class Outgoing:
    """The send side of one connection, without its socket (see the module docstring)."""

    def __init__(
        self,
        protocol: ClientProtocol,
        outbox: Outbox[Frame | Keep],
        traffic: Traffic,
        sent_log: SentLog | None,
        close_timeout_s: float,
    ) -> None:
        self.protocol = protocol
        self.inflight = InFlight()
        self._outbox = outbox
        self._traffic = traffic
        self._sent_log = sent_log
        self._close_timeout_s = close_timeout_s
        self.resend: list[Frame] = []  # what the gateway says it never received
        self.ping_due = False
        self.close_request: tuple[int, str] | None = None
        self.close_now = False  # close without sending what is still queued
        self.close_deadline = math.inf  # our close frame went: the peer's is due by then

    def request_close(self, code: int, reason: str, flush: bool) -> None:
        """Close after what is queued (``flush``), or before it; the first request's code
        and reason are the ones sent."""
        if self.close_request is None:
            self.close_request = (code, reason)
        if not flush:
            self.close_now = True

    def take(self) -> bytes:
        """The bytes due now, in wire order (``b""``: nothing)."""
        protocol = self.protocol
        if self.ping_due:
            self.ping_due = False
            if protocol.state is not State.CLOSED:
                protocol.send_ping()
        control = protocol.data_to_send()  # and pongs, or the echo of the peer's close
        inflight = self.inflight
        if protocol.state is State.OPEN:
            # Where the data frames start on the wire: after the control frames.
            self._queue_frames(protocol, inflight.wire_end + len(control))
        data = protocol.data_to_send()
        if control:
            data = control + data
        inflight.wire_end += len(data)
        return data

    def more_may_go(self) -> bool:
        """Whether frames were queued meanwhile that may still be sent."""
        return len(self._outbox) > 0 and self.protocol.state is State.OPEN

    def _queue_frames(self, protocol: ClientProtocol, pos: int) -> None:
        """Give the protocol (``OPEN``) what is due: frames to resend, the outbox's frames,
        then our close frame once they are all out; note where each data frame ends."""
        traffic = self._traffic
        ends = self.inflight.ends
        outbox = self._outbox
        if self.resend:
            for frame in self.resend:  # before anything new, to keep the order
                if isinstance(frame, str):
                    data = frame.encode()
                    protocol.send_text(data)
                else:
                    data = frame
                    protocol.send_binary(data)
                pos += wire_size(len(data))
                ends.append(pos)
                traffic.frames_resent += 1
            self.resend = []
        if not self.close_now:
            log = self._sent_log
            for item in outbox.take():
                frame = item.frame if isinstance(item, Keep) else item
                if isinstance(frame, str):
                    data = frame.encode()
                    protocol.send_text(data)
                else:
                    data = frame
                    protocol.send_binary(data)
                pos += wire_size(len(data))
                ends.append(pos)
                traffic.frames_out += 1
                traffic.bytes_out += len(data)
                if log is not None:
                    log.record(frame)
        request = self.close_request
        if request is not None and (self.close_now or len(outbox) == 0):
            code, reason = request
            if is_sendable(code):
                protocol.send_close(code, reason)
            else:  # 1005, 1006...: a code that only reports a close is not sent
                protocol.send_close(None)
            self.close_deadline = time.monotonic() + self._close_timeout_s
