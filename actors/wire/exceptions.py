"""The wire layer's exceptions, under :class:`actors.errors.TransportError` like every other.

The tree (the rest of it is drawn in :mod:`actors.errors`)::

    TransportError
    └── WireError               the WebSocket protocol could not go on
        ├── ProtocolError       the peer broke RFC 6455 (close code 1002)
        │   ├── PayloadTooBig   a message over ``max_message_bytes`` (1009)
        │   └── InvalidUTF8     a text message or close reason that is not UTF-8 (1007)
        └── InvalidState        an operation the connection's state forbids (a bug of ours)

Why under ``TransportError`` and not a root of the wire layer's own: ``errors`` is a floor
below ``wire`` (it imports nothing), so the wire layer can stand on it without a cycle, and the
package keeps its rule of one root: whatever escapes to an application is a
``TransportError``. A :class:`ProtocolError` is peer behaviour, not a crash: the protocol
records it (:attr:`actors.wire.ClientProtocol.failure`) and fails the connection with
its :attr:`~ProtocolError.code`; it is not raised to the I/O loop.
"""

from __future__ import annotations

from ..errors import TransportError
from .constants import CloseCode

__all__ = ["InvalidState", "InvalidUTF8", "PayloadTooBig", "ProtocolError", "WireError"]


class WireError(TransportError):
    """The root of the wire layer's exceptions."""


class ProtocolError(WireError):
    """The peer broke RFC 6455.

    ``code`` is the close code the connection is failed with; ``close_reason`` the short
    reason the close frame tells the peer (control frames are small, and the peer needs no
    more). ``str()`` of the exception says exactly what was wrong, for our logs and exits.
    """

    code: CloseCode = CloseCode.PROTOCOL_ERROR
    close_reason: str = "protocol error"


class PayloadTooBig(ProtocolError):
    """A message larger than the protocol's ``max_message_bytes``; refused from the header
    of the frame that crosses the limit, before its payload is buffered."""

    code = CloseCode.MESSAGE_TOO_BIG
    close_reason = "message too big"

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"a frame of {size} bytes exceeds max_message_bytes={limit}")


class InvalidUTF8(ProtocolError):
    """A text message (or a close frame's reason) that is not valid UTF-8."""

    code = CloseCode.INVALID_PAYLOAD
    close_reason = "invalid UTF-8"


class InvalidState(WireError, RuntimeError):
    """An operation the connection's state forbids: sending after a close frame, feeding
    data after the end of the stream. Always a bug in the code that drives the protocol."""
