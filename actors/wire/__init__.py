"""The sans-I/O wire layer: the client side of RFC 6455 and the constants both ends share.

Nothing here touches a socket, a thread or a clock, and nothing imports anything of ours but
:mod:`actors.errors`: the I/O (:mod:`actors.transport`) drives
:class:`~actors.wire.protocol.ClientProtocol` with the bytes its socket reads, and writes the
bytes the protocol returns; the media gateway and the providers read
:mod:`actors.wire.constants`.

- :mod:`~actors.wire.constants`: close codes, the resume headers, Twilio's identifier shapes
- :mod:`~actors.wire.frames`: opcodes, masked client frames, close payloads
- :mod:`~actors.wire.protocol`: the state machine: bytes in -> events, messages -> bytes
- :mod:`~actors.wire.exceptions`: its exceptions, under :class:`actors.errors.TransportError`
"""

from __future__ import annotations

from .constants import CloseCode, is_sendable
from .exceptions import InvalidState, InvalidUTF8, PayloadTooBig, ProtocolError, WireError
from .frames import Opcode
from .protocol import ClientProtocol, Close, Event, Ping, Pong, State

__all__ = [
    "ClientProtocol",
    "Close",
    "CloseCode",
    "Event",
    "InvalidState",
    "InvalidUTF8",
    "Opcode",
    "PayloadTooBig",
    "Ping",
    "Pong",
    "ProtocolError",
    "State",
    "WireError",
    "is_sendable",
]
