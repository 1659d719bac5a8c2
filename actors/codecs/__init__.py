"""Sans-I/O wire protocols: one module per provider, frames in, messages out, and back.

A codec never touches a socket, a thread or a clock, so it is tested with recorded frames alone.
A *frame* is what one WebSocket message carries: ``str`` for a text frame, ``bytes`` for a
binary frame (the type is the opcode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..messages import Message

__all__ = ["Codec", "Frame"]

Frame = str | bytes


class Codec(Protocol):
    """Turns a provider's frames into messages and messages into frames.

    ``outbound_types`` are the message types an application may write to such a session;
    anything else is refused with ``UnsupportedMessage`` before it is queued.
    """

    provider: str
    outbound_types: frozenset[type[Message]]
    malformed: int  # inbound frames that could not be decoded (counted, never fatal)

    def decode(self, frame: Frame) -> Sequence[Message]:
        """The messages one inbound frame carries (possibly none)."""
        ...

    def encode(self, message: Message) -> Sequence[Frame]:
        """The frames that carry one outbound message (possibly none, e.g. held until ready)."""
        ...

    def flush(self) -> Sequence[Frame]:
        """Frames held by ``encode`` that can be sent now (after the stream's ``Started``)."""
        ...
