"""Why a connector (or its WebSocket) stopped: the one report every exit produces.

Pure data: the supervisor's restart policy reads it, ``status()`` shows it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .wire.constants import CloseCode

__all__ = ["Exit", "ExitKind"]


class ExitKind(enum.Enum):
    NORMAL = "normal"  # we closed it: end_session, close(), or the application wrote Close
    PEER_CLOSED = "closed by peer"  # the peer sent a close frame
    CONNECTION_LOST = "connection lost"  # reset, EOF without a close frame, send failed
    PING_TIMEOUT = "ping timeout"  # no pong within ping_interval_s + ping_timeout_s
    HANDSHAKE_FAILED = "handshake failed"  # refused, DNS, TLS, HTTP status other than 101
    PROTOCOL_ERROR = "protocol error"  # bad framing, invalid UTF-8, oversized frame
    CRASH = "crash in handler"  # an exception in the connector's own code
    START_CRASH = "crash in on_start"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Exit:
    """One exit: its kind, the WebSocket close code where there is one, and a reason."""

    kind: ExitKind
    code: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        text = str(self.kind)
        if self.code is not None:
            text += f" ({self.code}"
            text += f" {self.reason!r})" if self.reason else ")"
        elif self.reason:
            text += f": {self.reason}"
        return text

    @property
    def close_code(self) -> int:
        """The close code a reader is shown: the real one, else what the exit amounts to
        (1000 for ours, 1011 for a crash, 1006 for a connection that just went away)."""
        if self.code is not None:
            return self.code
        if self.kind is ExitKind.NORMAL:
            return int(CloseCode.NORMAL_CLOSURE)
        if self.kind in (ExitKind.CRASH, ExitKind.START_CRASH):
            return int(CloseCode.INTERNAL_ERROR)
        return int(CloseCode.ABNORMAL)
