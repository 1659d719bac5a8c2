"""What the emulated phone speaks on a call's media stream, one class per provider.

:class:`PhoneStream` is what :class:`~actors.emulator.media.MediaDialer` needs of a provider's
side of the stream; :class:`TwilioPhone` is Twilio's (the Telnyx and Plivo emulators bring
theirs, on their codecs' provider sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..codecs.twilio import ClearOut, MarkOut, MediaOut, TwilioStream

__all__ = ["DtmfIn", "PhoneEvent", "PhoneStream", "TwilioPhone"]


@dataclass(frozen=True, slots=True)
class DtmfIn:
    """The application asked the phone to play DTMF keys (Plivo's ``sendDTMF``)."""

    digits: str


#: What one frame of the application asks the phone for.
PhoneEvent = MediaOut | MarkOut | ClearOut | DtmfIn


class PhoneStream(Protocol):
    """One provider's side of a call's media stream, as the phone speaks it: the frames it
    opens with, sends and answers, and what it makes of the application's frames. Twilio's is
    :class:`TwilioPhone`; the Telnyx and Plivo emulators bring their own."""

    stream_sid: str
    clear_returns_marks: bool  # a clear answers the marks it dropped (Twilio, Telnyx)

    def opening(self) -> Sequence[str]:
        """The frames sent once the stream is dialled (``connected``, ``start``...)."""
        ...

    def media(self, payload: bytes, timestamp_ms: int) -> str: ...

    def mark(self, name: str) -> str:
        """The answer to a mark: the audio before it has played."""
        ...

    def dtmf(self, digit: str) -> str: ...

    def stop(self) -> str | None:
        """The last frame before the phone closes (None: the provider sends none)."""
        ...

    def cleared(self, pending_marks: Sequence[str]) -> Sequence[str]:
        """The frames that answer a clear that dropped ``pending_marks``."""
        ...

    def parse(self, frame: str | bytes) -> PhoneEvent:
        """What one application frame asks for; ``ValueError`` for a bad one."""
        ...


class TwilioPhone:
    """Twilio's Media Streams as the phone speaks them (:class:`TwilioStream`)."""

    def __init__(self, stream: TwilioStream) -> None:
        self.stream = stream
        self.stream_sid = stream.stream_sid
        self.clear_returns_marks = True

    def opening(self) -> Sequence[str]:
        return (self.stream.connected(), self.stream.start())

    def media(self, payload: bytes, timestamp_ms: int) -> str:
        return self.stream.media(payload, timestamp_ms)

    def mark(self, name: str) -> str:
        return self.stream.mark(name)

    def dtmf(self, digit: str) -> str:
        return self.stream.dtmf(digit)

    def stop(self) -> str | None:
        return self.stream.stop()

    def cleared(self, pending_marks: Sequence[str]) -> Sequence[str]:
        return [self.stream.mark(name) for name in pending_marks]  # Twilio returns them

    def parse(self, frame: str | bytes) -> PhoneEvent:
        return self.stream.parse(frame)
