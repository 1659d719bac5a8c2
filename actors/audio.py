"""Pure audio helpers: G.711 mu-law/A-law <-> PCM16, resampling, framing, WAV files, analysis.

PCM16 here always means mono, signed 16-bit, little-endian samples in ``bytes``. The G.711
converters are table lookups (a 256-entry decode table, a 65536-entry encode table indexed by the
sample's bit pattern) built once at import, and give exactly the classic ``audioop`` /
ITU-T G.711 results. This is the only module of ours that imports numpy or soxr.
"""

from __future__ import annotations

import logging
import math
import wave
from os import PathLike

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]  # ships no py.typed

__all__ = [
    "alaw_to_pcm16",
    "dominant_frequency",
    "frame_bytes",
    "frames",
    "from_provider_audio",
    "pcm16_to_alaw",
    "pcm16_to_ulaw",
    "read_wav",
    "resample",
    "rms_dbfs",
    "silence",
    "to_provider_audio",
    "tone",
    "ulaw_to_pcm16",
    "write_wav",
]

logger = logging.getLogger(__name__)

_PCM16 = np.dtype("<i2")
_FULL_SCALE = 32768.0

# Encoding names as providers spell them -> bytes per sample and our codec name.
_ENCODINGS: dict[str, tuple[int, str]] = {
    "audio/x-mulaw": (1, "ulaw"),
    "audio/x-alaw": (1, "alaw"),
    "audio/l16": (2, "pcm16"),
    "pcm16": (2, "pcm16"),
}


# The largest magnitude in each of G.711's eight segments (mu-law biased 14-bit, A-law 13-bit).
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    # ITU-T G.711 / Sun g711.c: codes are stored inverted; bias 0x84.
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = a & 0x0F
    seg = (a & 0x70) >> 4
    magnitude = np.where(seg > 0, (2 * t + 33) << (seg + 2), (2 * t + 1) << 3)
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def _all_samples() -> npt.NDArray[np.int32]:
    # Index i holds the sample whose bit pattern is i, matching a uint16 view of PCM16 data.
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    # audioop's st_14linear2ulaw on the 14-bit sample: clip, bias, segment, 4-bit mantissa.
    value = _all_samples() >> 2
    negative = value < 0
    magnitude = np.minimum(np.where(negative, -value, value), 8159) + 33
    seg = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F))
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    # audioop's st_linear2alaw on the 13-bit sample; negatives fold onto -v - 1.
    value = _all_samples() >> 3
    negative = value < 0
    magnitude = np.where(negative, -value - 1, value)
    seg = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)
    mantissa = (magnitude >> np.where(seg < 2, 1, seg)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | mantissa)
    return (code ^ np.where(negative, 0x55, 0xD5)).astype(np.uint8)


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()


def _samples(pcm: bytes) -> npt.NDArray[np.int16]:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 data must have an even number of bytes, not {len(pcm)}")
    return np.frombuffer(pcm, dtype=_PCM16)


def _pcm_bytes(samples: npt.NDArray[np.int16]) -> bytes:
    return samples.astype(_PCM16, copy=False).tobytes()


def ulaw_to_pcm16(data: bytes) -> bytes:
    """G.711 mu-law bytes -> PCM16."""
    return _pcm_bytes(_ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)])


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """PCM16 -> G.711 mu-law bytes (silence is ``0xFF``)."""
    return _ULAW_ENCODE[_samples(pcm).view(np.uint16)].tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    """G.711 A-law bytes -> PCM16."""
    return _pcm_bytes(_ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)])


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """PCM16 -> G.711 A-law bytes (silence is ``0xD5``)."""
    return _ALAW_ENCODE[_samples(pcm).view(np.uint16)].tobytes()


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono PCM16 from ``from_rate`` to ``to_rate`` Hz (soxr, 'HQ'); equal rates copy."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, not {from_rate} -> {to_rate}")
    samples = _samples(pcm)
    if from_rate == to_rate or not len(samples):
        return bytes(pcm)
    out: npt.NDArray[np.int16] = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return _pcm_bytes(out)


def tone(frequency_hz: float, seconds: float, rate: int = 8000, amplitude: float = 0.5) -> bytes:
    """A PCM16 sine wave; ``amplitude`` is a fraction of full scale (0..1)."""
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude must be within 0..1, not {amplitude}")
    t = np.arange(round(seconds * rate)) / rate
    wave_ = amplitude * 32767.0 * np.sin(2.0 * math.pi * frequency_hz * t)
    return _pcm_bytes(np.round(wave_).astype(np.int16))


def silence(seconds: float, rate: int = 8000) -> bytes:
    """``seconds`` of PCM16 silence at ``rate`` Hz."""
    return bytes(2 * round(seconds * rate))


def frame_bytes(encoding: str, rate: int, ms: int = 20) -> int:
    """Bytes in one ``ms`` frame of mono ``encoding`` at ``rate`` Hz (160 for 20 ms of 8 kHz
    mu-law). ``encoding`` is ``audio/x-mulaw``, ``audio/x-alaw``, ``audio/l16`` or ``pcm16``."""
    width = _encoding(encoding)[0]
    samples, remainder = divmod(rate * ms, 1000)
    if remainder or samples <= 0:
        raise ValueError(f"{ms} ms at {rate} Hz is not a whole, positive number of samples")
    return samples * width


def frames(data: bytes, frame_bytes: int, pad: bytes) -> list[bytes]:
    """Split ``data`` into ``frame_bytes``-long frames, padding the last with the byte ``pad``
    (``b"\\xff"`` is mu-law silence, ``b"\\xd5"`` A-law, ``b"\\x00"`` PCM16)."""
    if frame_bytes <= 0:
        raise ValueError(f"frame_bytes must be positive, not {frame_bytes}")
    if len(pad) != 1:
        raise ValueError(f"pad must be a single byte, not {pad!r}")
    chunks = [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]
    if chunks and len(chunks[-1]) < frame_bytes:
        chunks[-1] += pad * (frame_bytes - len(chunks[-1]))
    return chunks


def dominant_frequency(pcm: bytes, rate: int) -> float:
    """The strongest frequency in PCM16 audio, in Hz (0.0 for silence).

    Hann-windowed FFT; the peak bin is refined by parabolic interpolation of the log magnitude,
    which for a Hann window is accurate to a small fraction of a bin.
    """
    samples = _samples(pcm).astype(np.float64)
    if len(samples) < 4:
        raise ValueError("need at least 4 samples to find a frequency")
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0  # DC is an offset, not a tone
    peak = int(np.argmax(spectrum))
    if spectrum[peak] == 0.0:
        return 0.0
    offset = 0.0
    if 0 < peak < len(spectrum) - 1:
        a, b, c = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = a - 2.0 * b + c
        if denominator:
            offset = float(0.5 * (a - c) / denominator)
    return (peak + offset) * rate / len(samples)


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 audio in dB relative to full scale (a full-scale sine is about -3);
    ``-inf`` for silence or no samples."""
    samples = _samples(pcm).astype(np.float64)
    if not len(samples):
        return -math.inf
    rms = math.sqrt(float(np.mean(samples * samples)))
    return 20.0 * math.log10(rms / _FULL_SCALE) if rms else -math.inf


def read_wav(path: str | PathLike[str]) -> tuple[bytes, int]:
    """Read a PCM WAV file (8, 16, 24 or 32 bit; channels averaged to mono) as PCM16 and its rate.

    Raises ``ValueError`` naming the file if it is not an uncompressed PCM WAV file.
    """
    try:
        with wave.open(str(path), "rb") as reader:
            width = reader.getsampwidth()
            channels = reader.getnchannels()
            rate = reader.getframerate()
            raw = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as error:
        raise ValueError(f"{path}: not a PCM WAV file ({error})") from None
    if width not in (1, 2, 3, 4):
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported")
    raw = raw[: len(raw) - len(raw) % (width * channels)]  # a truncated last frame
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 3:  # keep the top 16 bits of each little-endian 24-bit sample
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((triples[:, 2] << 8) | triples[:, 1]).astype(np.uint16).view(np.int16)
    else:
        samples = np.frombuffer(raw, dtype=f"<i{width}").astype(np.int64) >> (8 * (width - 2))
    if channels > 1:
        samples = np.round(samples.reshape(-1, channels).mean(axis=1))
    return _pcm_bytes(samples.astype(np.int16)), rate


def write_wav(path: str | PathLike[str], pcm: bytes, rate: int) -> None:
    """Write mono PCM16 audio to a WAV file."""
    _samples(pcm)  # checks the length
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm)


def _encoding(encoding: str) -> tuple[int, str]:
    try:
        return _ENCODINGS[encoding.lower()]
    except KeyError:
        known = ", ".join(_ENCODINGS)
        raise ValueError(f"unknown audio encoding {encoding!r} (known: {known})") from None


def to_provider_audio(pcm: bytes, rate: int, encoding: str, target_rate: int) -> bytes:
    """PCM16 at ``rate`` -> ``encoding`` at ``target_rate`` (e.g. a 16 kHz TTS voice to
    ``audio/x-mulaw`` at 8000 Hz for Twilio)."""
    codec = _encoding(encoding)[1]
    pcm = resample(pcm, rate, target_rate)
    if codec == "ulaw":
        return pcm16_to_ulaw(pcm)
    if codec == "alaw":
        return pcm16_to_alaw(pcm)
    return pcm


def from_provider_audio(data: bytes, encoding: str, rate: int, target_rate: int) -> bytes:
    """``encoding`` audio at ``rate`` -> PCM16 at ``target_rate`` (the reverse of
    :func:`to_provider_audio`)."""
    codec = _encoding(encoding)[1]
    if codec == "ulaw":
        data = ulaw_to_pcm16(data)
    elif codec == "alaw":
        data = alaw_to_pcm16(data)
    return resample(data, rate, target_rate)


class StreamResampler:
    """A resampler for one direction of one stream: PCM16 chunks in, PCM16 chunks out, with
    the filter's state carried across chunks (resampling 20 ms frames one by one with
    :func:`resample` would put a click at every frame edge).

    ``quality=None`` (the default) is a polyphase windowed-sinc FIR (Kaiser, beta 8, 16 zero
    crossings each side at the lower rate): about 2 ms of delay at 8 kHz, about 70 dB of alias
    rejection, and every 20 ms in gives 20 ms out. A soxr quality (``"HQ"``, ``"VHQ"``...)
    uses soxr's streaming resampler instead: steeper, but it works in blocks and holds 60 to
    120 ms before it gives anything (measured with python-soxr 1.1 on 20 ms chunks); soxr's
    ``"QQ"`` streams smoothly but does not filter at all (a 6 kHz tone folds onto 2 kHz at full
    level when 16 kHz goes to 8 kHz), which is why it is not the default.

    :meth:`drain` returns what the filter still holds (its delay) and resets it, for the end
    of an utterance: before a mark, or when the stream goes idle.
    """

    def __init__(self, from_rate: int, to_rate: int, quality: str | None = None) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {from_rate} -> {to_rate}")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self.quality = quality
        divisor = math.gcd(from_rate, to_rate)
        self._up = to_rate // divisor
        self._down = from_rate // divisor
        self._soxr: soxr.ResampleStream | None = None
        if quality is not None and from_rate != to_rate:
            self._soxr = soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality=quality)
        self._taps = self._design() if self._soxr is None else np.zeros(1)
        self._history = np.zeros(len(self._taps) - 1)
        self._offset = 0  # where, in the next upsampled chunk, the next output sample is taken

    def _design(self) -> npt.NDArray[np.float64]:
        up = self._up
        lower = min(self.from_rate, self.to_rate)
        # Cutoff a little under the lower Nyquist frequency, as a fraction of the upsampled rate.
        cutoff = 0.45 * lower / (self.from_rate * up)
        half = 16 * (self.from_rate * up) // lower  # 16 zero crossings of the lower rate
        n = np.arange(-half, half + 1)
        taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(len(n), 8.0)
        return np.asarray(taps * (up / taps.sum()), dtype=np.float64)  # unity gain after stuffing

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk (any length); the output follows the input by the filter's delay."""
        samples = _samples(pcm)
        if self.from_rate == self.to_rate or not len(samples):
            return bytes(pcm)
        if self._soxr is not None:
            return _pcm_bytes(self._soxr.resample_chunk(samples))
        return self._fir(samples.astype(np.float64))

    def drain(self) -> bytes:
        """What the filter still holds, as if silence followed; the filter starts afresh."""
        if self.from_rate == self.to_rate:
            return b""
        if self._soxr is not None:
            tail: npt.NDArray[np.int16] = self._soxr.resample_chunk(
                np.zeros(0, dtype=np.int16), last=True
            )
            self._soxr.clear()
            return _pcm_bytes(tail)
        pending = (len(self._taps) // 2) // self._up + 1  # input samples still inside the filter
        out = self._fir(np.zeros(pending))
        self.reset()
        return out

    def reset(self) -> None:
        """Forget the filter's state (after a clear: what it holds is not to be played)."""
        if self._soxr is not None:
            self._soxr.clear()
        self._history = np.zeros(len(self._taps) - 1)
        self._offset = 0

    def _fir(self, samples: npt.NDArray[np.float64]) -> bytes:
        up, down = self._up, self._down
        if up > 1:
            stuffed = np.zeros(len(samples) * up)
            stuffed[::up] = samples
        else:
            stuffed = samples
        block = np.concatenate((self._history, stuffed))
        filtered = np.convolve(block, self._taps, mode="valid")  # one value per stuffed sample
        out = filtered[self._offset :: down]
        taken_to = self._offset + len(out) * down
        self._offset = taken_to - len(stuffed)
        self._history = block[len(block) - len(self._history) :]
        return _pcm_bytes(np.clip(np.round(out), -32768, 32767).astype(np.int16))
