"""The ``websocket`` provider's codec: frames pass through unchanged."""

from __future__ import annotations

from collections.abc import Sequence

from ..messages import Binary, Close, Message, Text
from . import Frame

__all__ = ["PassthroughCodec"]


class PassthroughCodec:
    """Text frames become ``Text``, binary frames ``Binary``, and back. ``Close`` is the
    connector's business (it ends the WebSocket), so the codec only has to accept it."""

    provider = "websocket"
    outbound_types: frozenset[type[Message]] = frozenset({Text, Binary, Close})
    malformed = 0  # every frame is a valid Text or Binary

    def decode(self, frame: Frame) -> Sequence[Message]:
        if isinstance(frame, str):
            return (Text(frame),)
        return (Binary(frame),)

    def encode(self, message: Message) -> Sequence[Frame]:
        if isinstance(message, Text):
            return (message.data,)
        if isinstance(message, Binary):
            return (message.data,)
        raise TypeError(f"{type(message).__name__} is not carried by the websocket provider")

    def flush(self) -> Sequence[Frame]:
        return ()  # nothing is ever held
