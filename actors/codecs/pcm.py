"""The application's audio format for providers that carry linear PCM (Vonage, Exotel), and the
per-direction conversion between it and the wire.

An application reads and writes either the provider's own format (PCM16 at the stream's rate:
``AudioPolicy()``) or a configured one: G.711 mu-law at 8 kHz, or PCM16 at 8, 16 or 24 kHz
(``AudioPolicy(AudioFormat("audio/x-mulaw", 8000))``). A codec holds one :class:`Converter`
per direction, since the resampler's filter state belongs to one continuous signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..audio import StreamResampler, frame_bytes, pcm16_to_ulaw, ulaw_to_pcm16
from ..messages import MediaFormat

__all__ = [
    "FRAME_MS",
    "AudioFormat",
    "AudioPolicy",
    "Converter",
    "FrameBuffer",
]

#: Every codec here frames audio in 20 ms: Vonage's frame, and the application's unit.
FRAME_MS: Final = 20

_PCM16: Final = "pcm16"
_MULAW: Final = "audio/x-mulaw"
_ALIASES: Final = {"pcm16": _PCM16, "audio/l16": _PCM16, "audio/x-mulaw": _MULAW}
_PCM_RATES: Final = (8000, 16000, 24000)


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """Mono audio: ``encoding`` is ``"pcm16"`` (``"audio/l16"`` is read as a synonym) or
    ``"audio/x-mulaw"``; mu-law only at 8000 Hz, PCM16 at 8000, 16000 or 24000 Hz."""

    encoding: str = _PCM16
    sample_rate: int = 8000

    def __post_init__(self) -> None:
        encoding = _ALIASES.get(str(self.encoding).lower())
        if encoding is None:
            raise ValueError(
                f"audio encoding must be pcm16 or audio/x-mulaw, not {self.encoding!r}"
            )
        object.__setattr__(self, "encoding", encoding)
        rates = (8000,) if encoding == _MULAW else _PCM_RATES
        if type(self.sample_rate) is not int or self.sample_rate not in rates:
            allowed = ", ".join(map(str, rates))
            raise ValueError(
                f"{encoding} sample_rate must be one of {allowed}, not {self.sample_rate!r}"
            )

    @property
    def frame_bytes(self) -> int:
        """Bytes in one 20 ms frame (160 for mu-law, 320/640/960 for PCM16 at 8/16/24 kHz)."""
        return frame_bytes(self.encoding, self.sample_rate, FRAME_MS)

    @property
    def silence(self) -> bytes:
        """The byte that pads a frame with silence."""
        return b"\xff" if self.encoding == _MULAW else b"\x00"

    def media_format(self) -> MediaFormat:
        """This format as a ``Started`` message states it."""
        return MediaFormat(self.encoding, self.sample_rate, 1)


@dataclass(frozen=True, slots=True)
class AudioPolicy:
    """What the application reads and writes: ``format`` (``None``: the provider's own, PCM16
    at the stream's rate, and nothing is converted) and the resampler's ``quality`` (``None``:
    the low-latency FIR of :class:`~actors.audio.StreamResampler`; or a soxr quality)."""

    format: AudioFormat | None = None
    quality: str | None = None

    def resolve(self, wire: AudioFormat) -> AudioFormat:
        """The application's format on a stream whose wire format is ``wire``."""
        return wire if self.format is None else self.format


class Converter:
    """One direction of conversion, ``source`` -> ``target``, with its resampler's state.

    Not thread-safe: a codec uses one for inbound audio (the reader thread) and another for
    outbound audio (the actor's thread).
    """

    def __init__(self, source: AudioFormat, target: AudioFormat, quality: str | None = None):
        self.source = source
        self.target = target
        self.identity = source == target
        self._odd = b""  # a PCM16 write may end inside a sample (e.g. a TTS stream's chunks)
        self._resampler = (
            StreamResampler(source.sample_rate, target.sample_rate, quality)
            if source.sample_rate != target.sample_rate
            else None
        )

    def convert(self, data: bytes) -> bytes:
        """Convert one chunk. PCM16 with an odd number of bytes keeps its last byte for the
        next chunk (its sample's other half), so a stream may be cut anywhere."""
        if self.source.encoding == _PCM16:
            if self._odd:
                data = self._odd + data
                self._odd = b""
            if len(data) % 2:
                self._odd = data[-1:]
                data = data[:-1]
            pcm = data
        else:
            pcm = ulaw_to_pcm16(data)
        if self.identity:
            return data
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        return pcm16_to_ulaw(pcm) if self.target.encoding == _MULAW else pcm

    def drain(self) -> bytes:
        """What the resampler still holds (its few ms of delay); it then starts afresh."""
        self._odd = b""  # half a sample is no sound
        if self._resampler is None:
            return b""
        pcm = self._resampler.drain()
        return pcm16_to_ulaw(pcm) if self.target.encoding == _MULAW else pcm

    def reset(self) -> None:
        """Forget what the resampler holds (after a clear)."""
        self._odd = b""
        if self._resampler is not None:
            self._resampler.reset()


class FrameBuffer:
    """Bytes waiting to be cut into frames of ``unit`` bytes (a remainder is held)."""

    def __init__(self, unit: int, silence: bytes) -> None:
        self.unit = unit
        self.silence = silence
        self._data = bytearray()

    def __len__(self) -> int:
        return len(self._data)

    def add(self, data: bytes) -> None:
        self._data += data

    def take(self, size: int) -> bytes:
        """The first ``size`` bytes (``size`` <= ``len(self)``), removed."""
        chunk = bytes(self._data[:size])
        del self._data[:size]
        return chunk

    def frames(self) -> list[bytes]:
        """Every whole frame held, in order; the remainder stays."""
        unit = self.unit
        whole = len(self._data) - len(self._data) % unit
        if not whole:
            return []
        data = self.take(whole)
        return [data[i : i + unit] for i in range(0, whole, unit)]

    def pad(self, to: int) -> None:
        """Pad with silence to a multiple of ``to`` bytes (nothing held: nothing added)."""
        short = -len(self._data) % to
        if self._data and short:
            self._data += self.silence * short

    def clear(self) -> None:
        self._data.clear()
