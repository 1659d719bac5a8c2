"""The Exotel Voicebot codec and its Exotel-side counterpart, with frames from Exotel's docs.

The inbound frames follow Exotel's documented examples field for field: snake_case keys,
``sequence_number``, ``chunk``, ``timestamp``, ``sample_rate`` and ``bit_rate`` as JSON strings,
``payload`` base64 of 16-bit little-endian mono PCM.
"""

from __future__ import annotations

import base64
import json
import timeit

import pytest

from actors.audio import dominant_frequency, pcm16_to_ulaw, tone, ulaw_to_pcm16
from actors.codecs import Codec
from actors.codecs.exotel import MAX_CHUNK, ExotelCodec, ExotelStream
from actors.codecs.pcm import AudioFormat, AudioPolicy
from actors.codecs.twilio import ClearOut, MarkOut, MediaOut
from actors.messages import (
    Audio,
    Binary,
    Clear,
    Close,
    Dtmf,
    Mark,
    MediaFormat,
    Started,
    Stopped,
    Text,
)

STREAM = "MZ0c4b6cbd40e1d1c6a3d9c8e7f6a5b4c3"
START = (
    '{"event": "start", "sequence_number": "1", "stream_sid": "' + STREAM + '", "start": {'
    '"stream_sid": "' + STREAM + '", "call_sid": "CA1", "account_sid": "AC1", '
    '"from": "+919876543210", "to": "+918047491899", '
    '"custom_parameters": {"key1": "value1", "token": "t0k"}, '
    '"media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}}'
)
PCM = tone(440, 0.1, 8000)  # one 100 ms chunk at 8 kHz: 1600 bytes
MEDIA = json.dumps(
    {
        "event": "media",
        "sequence_number": "3",
        "stream_sid": STREAM,
        "media": {"chunk": "2", "timestamp": "200", "payload": base64.b64encode(PCM).decode()},
    }
)
DTMF = (
    '{"event": "dtmf", "sequence_number": "7", "stream_sid": "%s", '
    '"dtmf": {"digit": "5", "duration": "100"}}'
)
MARK = '{"event": "mark", "sequence_number": "15", "stream_sid": "%s", "mark": {"name": "m1"}}'
STOP = (
    '{"event": "stop", "sequence_number": "20", "stream_sid": "%s", '
    '"stop": {"call_sid": "CA1", "account_sid": "AC1", "reason": "callended"}}'
)


PROVIDERS_OWN = AudioPolicy()


def started(
    rate: int = 8000, audio: AudioPolicy = PROVIDERS_OWN
) -> tuple[ExotelCodec, ExotelStream]:
    stream = ExotelStream(STREAM, "CA1", "AC1", sample_rate=rate)
    codec = ExotelCodec(audio=audio)
    codec.decode(stream.connected())
    codec.decode(stream.start())
    return codec, stream


def media_payloads(frames: object) -> list[bytes]:
    out = []
    for frame in frames:  # type: ignore[attr-defined]
        obj = json.loads(frame)
        if obj["event"] == "media":
            assert obj["stream_sid"] == STREAM and set(obj) == {"event", "stream_sid", "media"}
            out.append(base64.b64decode(obj["media"]["payload"]))
    return out


def test_is_a_codec_carrying_audio_marks_and_clears_only() -> None:
    codec: Codec = ExotelCodec()
    assert codec.provider == "exotel"
    assert codec.outbound_types == frozenset({Binary, Mark, Clear, Close})
    assert Text not in codec.outbound_types  # the facade refuses it: UnsupportedMessage
    with pytest.raises(TypeError, match="not carried by the exotel provider"):
        ExotelCodec().encode(Text("hi"))


def test_connected_then_start() -> None:
    codec = ExotelCodec(hidden_parameters=frozenset({"token"}))
    assert tuple(codec.decode('{"event": "connected"}')) == ()
    (message,) = codec.decode(START)
    assert message == Started(STREAM, "CA1", MediaFormat("pcm16", 8000, 1), {"key1": "value1"})
    assert (codec.account_sid, codec.from_, codec.to) == ("AC1", "+919876543210", "+918047491899")
    assert codec.min_chunk == 3200


@pytest.mark.parametrize(("rate", "minimum"), [(8000, 3200), (16000, 3200), (24000, 4800)])
def test_start_at_each_rate(rate: int, minimum: int) -> None:
    codec, _ = started(rate)
    assert codec.wire == AudioFormat("pcm16", rate) and codec.min_chunk == minimum


def test_media_is_cut_into_20_ms_audio_with_exotel_timing() -> None:
    codec, _ = started()
    messages = codec.decode(MEDIA)
    assert [m.data for m in messages if isinstance(m, Binary)] == [
        PCM[i : i + 320] for i in range(0, 1600, 320)
    ]
    assert messages[0] == Audio(PCM[:320], timestamp=200, sequence=3, chunk=2)
    assert [m.timestamp for m in messages if isinstance(m, Audio)] == [200, 220, 240, 260, 280]


def test_dtmf_mark_stop() -> None:
    codec, _ = started()
    assert tuple(codec.decode(DTMF % STREAM)) == (Dtmf("5"),)
    assert tuple(codec.decode(MARK % STREAM)) == (Mark("m1"),)
    assert tuple(codec.decode(STOP % STREAM)) == (Stopped(),)
    assert codec.stop_reason == "callended" and (codec.malformed, codec.unknown) == (0, 0)


def test_writes_are_gathered_into_100_ms_chunks() -> None:
    codec, stream = started()
    frames = []
    for i in range(0, 8000, 320):  # 20 ms writes, 500 ms in all
        frames += codec.encode(Binary(tone(440, 0.5, 8000)[i : i + 320]))
    chunks = media_payloads(frames)
    assert [len(c) for c in chunks] == [3200] * 2 and codec.gathered == 1600
    assert all(isinstance(stream.parse(f), MediaOut) for f in frames)


def test_a_long_write_is_split_at_the_maximum() -> None:
    codec, stream = started()
    frames = codec.encode(Binary(bytes(250_000)))
    sizes = [len(c) for c in media_payloads(frames)]
    assert sizes == [MAX_CHUNK, MAX_CHUNK, 50_240]  # and 80 bytes held: not a multiple of 320
    assert all(s % 320 == 0 and 3200 <= s <= 100_000 for s in sizes)
    assert codec.gathered == 250_000 % 320
    assert [type(stream.parse(f)) for f in frames] == [MediaOut] * 3


def test_a_mark_flushes_padded_to_the_minimum_then_marks() -> None:
    codec, stream = started()
    assert tuple(codec.encode(Binary(PCM[:700]))) == ()  # under 3200: gathered
    *audio, mark = codec.encode(Mark("done"))
    (chunk,) = media_payloads(audio)
    assert chunk == PCM[:700] + bytes(2500) and len(chunk) == 3200
    assert json.loads(mark) == {"event": "mark", "stream_sid": STREAM, "mark": {"name": "done"}}
    assert stream.parse(mark) == MarkOut("done")


def test_a_clear_drops_gathered_audio() -> None:
    codec, stream = started()
    codec.encode(Binary(PCM[:640]))
    (clear,) = codec.encode(Clear())
    assert json.loads(clear) == {"event": "clear", "stream_sid": STREAM}
    assert stream.parse(clear) == ClearOut() and codec.gathered == 0
    (mark,) = codec.encode(Mark("m"))  # nothing left to flush before it
    assert json.loads(mark)["event"] == "mark"


def test_flush_sends_gathered_audio_only_after_an_idle_tick() -> None:
    codec, _ = started()
    codec.encode(Binary(PCM[:640]))
    assert tuple(codec.flush()) == ()  # the application wrote during this tick
    assert [len(c) for c in media_payloads(codec.flush())] == [3200]  # idle: out, padded
    assert tuple(codec.flush()) == ()


def test_writes_before_start_are_held_then_flushed() -> None:
    codec = ExotelCodec()
    codec.encode(Binary(bytes(3200)))
    codec.encode(Mark("m"))
    assert codec.held == 2
    codec.decode(START)
    frames = list(codec.flush())
    assert [json.loads(f)["event"] for f in frames] == ["media", "mark"]


MALFORMED = [
    b"binary",
    "not json",
    '"media"',
    '{"event": 3}',
    '{"event": "media", "media": {"payload": "@@@"}}',
    '{"event": "media", "media": {"payload": "AAAA"}}',  # 3 bytes: not PCM16
    '{"event": "media"}',
    '{"event": "dtmf", "dtmf": {}}',
    '{"event": "mark"}',
    START,  # a second start
]


def test_malformed_frames_are_counted_never_fatal() -> None:
    codec, _ = started()
    for frame in MALFORMED:
        assert tuple(codec.decode(frame)) == ()
    assert codec.decode('{"event": "something-new"}') == ()
    assert (codec.malformed, codec.unknown) == (len(MALFORMED), 1)
    assert tuple(codec.decode(DTMF % STREAM)) == (Dtmf("5"),)


def test_media_before_start_and_bad_formats_are_malformed() -> None:
    codec = ExotelCodec()
    assert tuple(codec.decode(MEDIA)) == ()
    bad = START.replace('"bit_rate": "16"', '"bit_rate": "8"')
    assert tuple(codec.decode(bad)) == ()
    assert tuple(codec.decode(START.replace('"8000"', '"11025"'))) == ()
    assert codec.malformed == 3 and codec.stream_sid is None


def test_the_exotel_side_enforces_the_chunk_rules() -> None:
    stream = ExotelStream(STREAM, "CA1", "AC1")

    def media(size: int, key: str = "stream_sid") -> str:
        payload = base64.b64encode(bytes(size)).decode()
        return json.dumps({"event": "media", key: STREAM, "media": {"payload": payload}})

    assert stream.parse(media(3200)) == MediaOut(bytes(3200))
    assert stream.parse(media(3200, "streamSid")) == MediaOut(bytes(3200))  # Pipecat's spelling
    for size in (320, 3300, MAX_CHUNK + 320):
        with pytest.raises(ValueError, match="breaks Exotel's rules"):
            stream.parse(media(size))
    with pytest.raises(ValueError, match="expected"):
        stream.parse(json.dumps({"event": "clear", "stream_sid": "MZother"}))


def test_a_mulaw_tone_at_16_khz_keeps_its_frequency_both_ways() -> None:
    codec, stream = started(16000, AudioPolicy(AudioFormat("audio/x-mulaw", 8000)))
    mulaw = pcm16_to_ulaw(tone(440, 1.0, 8000, amplitude=0.3))
    frames = []
    for i in range(0, len(mulaw), 160):
        frames += codec.encode(Binary(mulaw[i : i + 160]))
    frames += codec.encode(Mark("end"))
    chunks = media_payloads(frames)
    assert all(len(c) % 320 == 0 and len(c) >= 3200 for c in chunks)
    wire = b"".join(chunks)
    assert dominant_frequency(wire, 16000) == pytest.approx(440, abs=1)
    back = b""
    for at, chunk in enumerate(chunks):
        for message in codec.decode(stream.media(chunk, at * 100)):
            assert isinstance(message, Audio) and len(message.data) == 160
            back += message.data
    assert dominant_frequency(ulaw_to_pcm16(back), 8000) == pytest.approx(440, abs=1)


def test_conversion_cost_per_frame_is_small() -> None:
    """µs of CPU per 20 ms each way (mu-law 8 kHz app <-> PCM16 16 kHz Exotel)."""
    mulaw = pcm16_to_ulaw(tone(440, 0.02, 8000))
    out, stream = started(16000, AudioPolicy(AudioFormat("audio/x-mulaw", 8000)))
    inbound, _ = started(16000, AudioPolicy(AudioFormat("audio/x-mulaw", 8000)))
    chunk = stream.media(tone(440, 0.1, 16000), 0)  # Exotel's 100 ms = 5 frames
    per_out = timeit.timeit(lambda: out.encode(Binary(mulaw)), number=500) / 500 * 1e6
    per_in = timeit.timeit(lambda: inbound.decode(chunk), number=200) / 200 / 5 * 1e6
    print(f"\nexotel mu-law 8k <-> pcm16 16k: out {per_out:.1f} us/frame, in {per_in:.1f} us/frame")
    assert per_out < 2000 and per_in < 2000
