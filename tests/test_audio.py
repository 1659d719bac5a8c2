"""Audio helpers: G.711 against its known values, tones through codecs and resamplers, framing
and WAV files."""

from __future__ import annotations

import math
import struct
import warnings
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from actors import audio

ALL_SAMPLES = np.arange(65536, dtype=np.uint32).astype(np.uint16).view("<i2").tobytes()
ALL_CODES = bytes(range(256))


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples_of(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


# -- G.711 ------------------------------------------------------------------------------------


def test_ulaw_known_values() -> None:
    assert audio.ulaw_to_pcm16(b"\x00\xff\x80\x7f") == pcm(-32124, 0, 32124, 0)
    assert audio.pcm16_to_ulaw(pcm(0)) == b"\xff"
    assert audio.pcm16_to_ulaw(pcm(32767, -32768)) == b"\x80\x00"  # clipped to the extremes


def test_alaw_known_values() -> None:
    assert audio.alaw_to_pcm16(b"\xd5\x55") == pcm(8, -8)
    assert audio.pcm16_to_alaw(pcm(0)) == b"\xd5"
    assert audio.alaw_to_pcm16(b"\xaa\x2a") == pcm(32256, -32256)  # the largest magnitudes


def test_ulaw_codes_survive_decode_encode_except_negative_zero() -> None:
    back = audio.pcm16_to_ulaw(audio.ulaw_to_pcm16(ALL_CODES))
    changed = {code: back[code] for code in range(256) if back[code] != code}
    # 0x7F is mu-law's "negative zero": it decodes to 0, which encodes as 0xFF.
    assert changed == {0x7F: 0xFF}


def test_alaw_codes_all_survive_decode_encode() -> None:
    assert audio.pcm16_to_alaw(audio.alaw_to_pcm16(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize(
    ("encode", "decode"),
    [
        (audio.pcm16_to_ulaw, audio.ulaw_to_pcm16),
        (audio.pcm16_to_alaw, audio.alaw_to_pcm16),
    ],
    ids=["ulaw", "alaw"],
)
def test_encoding_every_sample_is_monotonic_and_a_projection(
    encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    quantized = decode(encode(ALL_SAMPLES))
    assert encode(quantized) == encode(ALL_SAMPLES)  # re-encoding a decoded value is stable
    ordered16 = np.sort(np.frombuffer(ALL_SAMPLES, "<i2"))
    ordered = ordered16.astype(np.int32)  # int32: abs(-32768) overflows int16
    levels = np.frombuffer(decode(encode(ordered16.tobytes())), "<i2").astype(np.int32)
    assert np.all(np.diff(levels) >= 0)  # a louder input never decodes quieter
    # decoding yields a step's midpoint: the error stays within half the largest step (1024),
    # plus the 2 bits mu-law drops before encoding; beyond its 32124 peak mu-law clips
    error = np.abs(levels - ordered)
    assert error[np.abs(ordered) <= 32124].max() <= 512 + 4


def test_g711_matches_audioop_where_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # gone in Python 3.13
    assert audio.pcm16_to_ulaw(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert audio.pcm16_to_alaw(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    assert audio.ulaw_to_pcm16(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert audio.alaw_to_pcm16(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        audio.pcm16_to_ulaw(b"\x00\x00\x00")


@pytest.mark.parametrize("frequency", [440.0, 1000.0])
@pytest.mark.parametrize(
    ("encode", "decode"),
    [
        (audio.pcm16_to_ulaw, audio.ulaw_to_pcm16),
        (audio.pcm16_to_alaw, audio.alaw_to_pcm16),
    ],
    ids=["ulaw", "alaw"],
)
def test_tone_keeps_frequency_and_level_through_g711(
    frequency: float, encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    original = audio.tone(frequency, 1.0, rate=8000, amplitude=0.5)
    encoded = encode(original)
    assert len(encoded) == 8000
    back = decode(encoded)
    assert audio.dominant_frequency(back, 8000) == pytest.approx(frequency, abs=2.0)
    assert audio.rms_dbfs(back) == pytest.approx(audio.rms_dbfs(original), abs=1.0)


# -- tones, analysis, resampling --------------------------------------------------------------


def test_tone_has_the_asked_frequency_level_and_length() -> None:
    signal = audio.tone(1000.0, 0.5, rate=16000, amplitude=0.5)
    assert len(signal) == 2 * 8000
    assert max(samples_of(signal)) == pytest.approx(16384, abs=2)
    assert audio.dominant_frequency(signal, 16000) == pytest.approx(1000.0, abs=0.5)
    # a sine's RMS is peak / sqrt(2): 0.5 of full scale is about -9.03 dBFS
    assert audio.rms_dbfs(signal) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)


def test_dominant_frequency_interpolates_between_bins() -> None:
    # 0.25 s at 8 kHz has 4 Hz bins: 1001.3 Hz lies between two of them
    signal = audio.tone(1001.3, 0.25, rate=8000)
    assert audio.dominant_frequency(signal, 8000) == pytest.approx(1001.3, abs=0.3)


def test_silence_is_silent() -> None:
    quiet = audio.silence(0.02, 8000)
    assert quiet == bytes(320)
    assert audio.rms_dbfs(quiet) == -math.inf
    assert audio.rms_dbfs(b"") == -math.inf
    assert audio.dominant_frequency(quiet, 8000) == 0.0


def test_tone_refuses_an_amplitude_beyond_full_scale() -> None:
    with pytest.raises(ValueError, match="amplitude"):
        audio.tone(440.0, 0.1, amplitude=1.5)


def test_resample_up_and_down_keeps_frequency() -> None:
    original = audio.tone(440.0, 1.0, rate=8000)
    up = audio.resample(original, 8000, 16000)
    assert len(up) == 2 * len(original)
    assert audio.dominant_frequency(up, 16000) == pytest.approx(440.0, abs=2.0)
    down = audio.resample(up, 16000, 8000)
    assert len(down) == len(original)
    assert audio.dominant_frequency(down, 8000) == pytest.approx(440.0, abs=2.0)
    assert audio.rms_dbfs(down) == pytest.approx(audio.rms_dbfs(original), abs=0.5)


def test_resample_at_equal_rates_or_of_nothing_is_identity() -> None:
    data = audio.tone(300.0, 0.1)
    assert audio.resample(data, 8000, 8000) == data
    assert audio.resample(b"", 8000, 16000) == b""
    with pytest.raises(ValueError, match="positive"):
        audio.resample(data, 0, 8000)


def test_provider_audio_round_trip() -> None:
    voice = audio.tone(1000.0, 0.5, rate=16000)
    ulaw = audio.to_provider_audio(voice, 16000, "audio/x-mulaw", 8000)
    assert len(ulaw) == 4000  # 0.5 s at 8 kHz, one byte a sample
    assert audio.dominant_frequency(audio.ulaw_to_pcm16(ulaw), 8000) == pytest.approx(1000, abs=2)
    back = audio.from_provider_audio(ulaw, "audio/x-mulaw", 8000, 16000)
    assert len(back) == len(voice)
    assert audio.dominant_frequency(back, 16000) == pytest.approx(1000.0, abs=2.0)
    alaw = audio.to_provider_audio(voice, 16000, "audio/x-alaw", 16000)
    assert alaw == audio.pcm16_to_alaw(voice)
    assert audio.to_provider_audio(voice, 16000, "audio/L16", 16000) == voice
    with pytest.raises(ValueError, match="unknown audio encoding 'audio/opus'"):
        audio.to_provider_audio(voice, 16000, "audio/opus", 8000)


# -- framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "rate", "ms", "expected"),
    [
        ("audio/x-mulaw", 8000, 20, 160),
        ("audio/x-alaw", 8000, 20, 160),
        ("audio/l16", 16000, 20, 640),
        ("pcm16", 8000, 10, 160),
        ("audio/x-mulaw", 8000, 30, 240),
    ],
)
def test_frame_bytes(encoding: str, rate: int, ms: int, expected: int) -> None:
    assert audio.frame_bytes(encoding, rate, ms) == expected


def test_frame_bytes_refuses_unknown_encodings_and_fractional_samples() -> None:
    with pytest.raises(ValueError, match="unknown audio encoding"):
        audio.frame_bytes("audio/opus", 48000)
    with pytest.raises(ValueError, match="whole"):
        audio.frame_bytes("audio/x-mulaw", 11025, 10)


def test_frames_split_and_pad_the_last() -> None:
    assert audio.frames(b"abcdefg", 3, b"\xff") == [b"abc", b"def", b"g\xff\xff"]
    assert audio.frames(b"abcdef", 3, b"\xff") == [b"abc", b"def"]
    assert audio.frames(b"", 160, b"\xff") == []
    twenty_ms = audio.frames(audio.pcm16_to_ulaw(audio.tone(440.0, 0.05)), 160, b"\xff")
    assert [len(frame) for frame in twenty_ms] == [160, 160, 160]
    assert twenty_ms[-1].endswith(b"\xff" * 80)


def test_frames_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match="single byte"):
        audio.frames(b"ab", 2, b"")
    with pytest.raises(ValueError, match="positive"):
        audio.frames(b"ab", 0, b"\x00")


# -- WAV files --------------------------------------------------------------------------------


def write_raw_wav(path: Path, width: int, channels: int, rate: int, frames: bytes) -> None:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)


def test_wav_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    signal = audio.tone(440.0, 0.25, rate=16000)
    audio.write_wav(path, signal, 16000)
    assert audio.read_wav(path) == (signal, 16000)
    with wave.open(str(path), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)


def test_wav_8_bit_is_unsigned(tmp_path: Path) -> None:
    path = tmp_path / "eight.wav"
    write_raw_wav(path, 1, 1, 8000, bytes([0, 128, 255]))
    assert audio.read_wav(path) == (pcm(-32768, 0, 32512), 8000)


def test_wav_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    write_raw_wav(path, 2, 2, 22050, pcm(1000, -3000, 20000, 20000, -7, 8))
    data, rate = audio.read_wav(path)
    assert rate == 22050
    assert samples_of(data) == [-1000, 20000, 0]


@pytest.mark.parametrize(
    ("width", "raw"),
    [
        # 24-bit little endian: 0x123456 -> 0x1234, -1 -> -1, min -> -32768
        (3, b"\x56\x34\x12" + b"\xff\xff\xff" + b"\x00\x00\x80"),
        (4, struct.pack("<3i", 0x12345678, -1, -(2**31))),
    ],
    ids=["24-bit", "32-bit"],
)
def test_wav_wide_samples_keep_their_top_16_bits(tmp_path: Path, width: int, raw: bytes) -> None:
    path = tmp_path / f"wide{width}.wav"
    write_raw_wav(path, width, 1, 48000, raw)
    assert audio.read_wav(path) == (pcm(0x1234, -1, -32768), 48000)


@pytest.mark.parametrize(
    "content",
    [b"these are my notes, not audio", b"RIFF\x24\x00\x00\x00WAVE", b""],
    ids=["text", "truncated header", "empty"],
)
def test_a_bad_wav_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"notes\.wav: not a PCM WAV file"):
        audio.read_wav(path)


def test_a_compressed_wav_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ulaw.wav"
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)  # format 7: G.711 mu-law
    samples = b"\xff" * 4
    chunks = [(b"fmt ", fmt), (b"data", samples)]
    body = b"WAVE" + b"".join(tag + struct.pack("<I", len(data)) + data for tag, data in chunks)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(ValueError, match=r"ulaw\.wav: not a PCM WAV file"):
        audio.read_wav(path)
