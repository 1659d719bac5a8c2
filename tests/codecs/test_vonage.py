"""The Vonage WebSocket codec and its Vonage-side counterpart, with frames from Vonage's docs.

The text frames below are Vonage's documented examples field for field (the NCCO ``headers``
flattened into ``websocket:connected``; ``digit`` and ``duration`` at the top of
``websocket:dtmf``); audio is raw PCM16 in binary frames of exactly 20 ms.
"""

from __future__ import annotations

import json
import timeit

import numpy as np
import pytest

from actors.audio import (
    StreamResampler,
    dominant_frequency,
    pcm16_to_ulaw,
    rms_dbfs,
    tone,
    ulaw_to_pcm16,
)
from actors.codecs import Codec
from actors.codecs.pcm import AudioFormat, AudioPolicy
from actors.codecs.vonage import ClearOut, MediaOut, NotifyOut, VonageCodec, VonageSocket
from actors.messages import (
    Audio,
    Binary,
    Clear,
    Close,
    Dtmf,
    Mark,
    MediaFormat,
    Started,
    Text,
)

CONNECTED = (
    '{"event":"websocket:connected","content-type":"audio/l16;rate=16000",'
    '"language": "en-GB", "caller-id": "447700900123", "call_uuid": "aaaaaaaa-bbbb"}'
)
DTMF = '{"event":"websocket:dtmf","digit":"5","duration":260}'
MULAW8K = AudioPolicy(AudioFormat("audio/x-mulaw", 8000))


PROVIDERS_OWN = AudioPolicy()


def started(rate: int = 16000, audio: AudioPolicy = PROVIDERS_OWN) -> VonageCodec:
    codec = VonageCodec(audio=audio, stream_id="VS1")
    codec.decode(VonageSocket(rate, {"call_uuid": "c-1"}).connected())
    return codec


def test_is_a_codec_carrying_audio_marks_and_clears_only() -> None:
    codec: Codec = VonageCodec()
    assert codec.provider == "vonage"
    assert codec.outbound_types == frozenset({Binary, Mark, Clear, Close})
    assert Text not in codec.outbound_types  # the facade refuses it: UnsupportedMessage
    with pytest.raises(TypeError, match="not carried by the vonage provider"):
        VonageCodec().encode(Text("hello"))


def test_connected_yields_started_with_the_flattened_headers() -> None:
    codec = VonageCodec(stream_id="VS1", hidden_parameters=frozenset({"caller-id"}))
    (message,) = codec.decode(CONNECTED)
    assert message == Started(
        "VS1",
        "aaaaaaaa-bbbb",
        MediaFormat("pcm16", 16000, 1),
        {"language": "en-GB", "call_uuid": "aaaaaaaa-bbbb"},
    )
    assert codec.frame_bytes == 640 and codec.frame_ms == 20


def test_connected_keeps_non_string_headers_as_json() -> None:
    frame = VonageSocket(8000, {"age": 40, "address": {"city": "NYC"}}).connected()
    (message,) = VonageCodec().decode(frame)
    assert isinstance(message, Started)
    assert dict(message.parameters) == {"age": "40", "address": '{"city":"NYC"}'}
    assert message.call_id == ""


@pytest.mark.parametrize(("rate", "size"), [(8000, 320), (16000, 640), (24000, 960)])
def test_binary_frames_are_audio_of_exactly_20_ms(rate: int, size: int) -> None:
    codec = started(rate)
    socket = VonageSocket(rate)
    pcm = tone(440, 0.02, rate)
    assert len(pcm) == size == socket.frame_bytes
    # Numbered as frames come (websocket:connected was the first): Vonage numbers none.
    assert tuple(codec.decode(socket.audio(pcm))) == (Audio(pcm, None, 2),)
    # And back: exactly one frame of that size per 20 ms written.
    assert tuple(codec.encode(Binary(pcm))) == (pcm,)
    assert socket.parse(pcm) == MediaOut(pcm)


def test_dtmf_cleared_and_notify() -> None:
    codec = started()
    assert tuple(codec.decode(DTMF)) == (Dtmf("5"),)
    assert tuple(codec.decode('{"event":"websocket:dtmf","dtmf":{"digit":"#"}}')) == (Dtmf("#"),)
    assert tuple(codec.decode('{"event":"websocket:cleared"}')) == ()
    assert codec.cleared == 1
    notify = VonageSocket().notify({"name": "greeting done"})
    assert tuple(codec.decode(notify)) == (Mark("greeting done"),)
    # A notify that is none of our marks is not an error, and is no Mark either.
    assert tuple(codec.decode(VonageSocket().notify({"other": 1}))) == ()
    assert (codec.malformed, codec.unknown) == (0, 1)


def test_encodes_clear_and_notify() -> None:
    codec = started()
    socket = VonageSocket()
    (clear,) = codec.encode(Clear())
    assert json.loads(clear) == {"action": "clear"} and socket.parse(clear) == ClearOut()
    (notify,) = codec.encode(Mark("m1"))
    assert json.loads(notify) == {"action": "notify", "payload": {"name": "m1"}}
    event = socket.parse(notify)
    assert isinstance(event, NotifyOut) and event.name == "m1"
    assert tuple(codec.decode(socket.notify(event.payload))) == (Mark("m1"),)


def test_writes_are_framed_and_a_mark_pads_the_remainder() -> None:
    codec = started(8000)
    pcm = tone(300, 0.05, 8000)  # 800 bytes: two frames and 160 bytes over
    frames = list(codec.encode(Binary(pcm[:500])))
    frames += codec.encode(Binary(pcm[500:]))
    assert frames == [pcm[:320], pcm[320:640]]  # the remainder is held, not sent
    *audio, notify = codec.encode(Mark("end"))
    assert audio == [pcm[640:] + bytes(160)] and json.loads(notify)["action"] == "notify"


def test_a_clear_drops_the_held_remainder() -> None:
    codec = started(8000)
    assert tuple(codec.encode(Binary(bytes(100)))) == ()
    assert tuple(codec.encode(Clear())) == ('{"action":"clear"}',)
    assert tuple(codec.encode(Mark("m"))) == ('{"action":"notify","payload":{"name":"m"}}',)


def test_flush_pads_only_after_a_whole_idle_tick() -> None:
    codec = started(8000)
    codec.encode(Binary(bytes(100)))
    assert tuple(codec.flush()) == ()  # written during this tick: the stream may go on
    assert tuple(codec.flush()) == (bytes(320),)  # idle for a tick: the tail goes out
    assert tuple(codec.flush()) == ()


def test_writes_before_connected_are_held_then_flushed() -> None:
    codec = VonageCodec(max_held=2)
    for _ in range(3):
        assert tuple(codec.encode(Binary(bytes(320)))) == ()
    codec.encode(Mark("m"))
    assert (codec.held, codec.dropped_held) == (2, 2)  # audio gave way; the mark is kept
    codec.decode(VonageSocket(8000).connected())
    assert list(codec.flush()) == [bytes(320), '{"action":"notify","payload":{"name":"m"}}']


def test_odd_pcm16_writes_carry_half_a_sample_over() -> None:
    codec = started(8000)
    pcm = tone(500, 0.02, 8000)
    assert tuple(codec.encode(Binary(pcm[:101]))) == ()
    assert tuple(codec.encode(Binary(pcm[101:]))) == (pcm,)


MALFORMED = [
    "not json",
    "[1, 2]",
    '{"event": 7}',
    '{"event":"websocket:dtmf"}',
    '{"event":"websocket:notify","payload":"x"}',
    '{"event":"websocket:connected","content-type":"audio/l16;rate=44100"}',
    CONNECTED.replace("rate=16000", "rate=8000"),  # connected again, at another rate
    b"",
    b"\x00\x01\x02",  # odd: not PCM16
]


def test_malformed_frames_are_counted_never_fatal() -> None:
    codec = started()
    for frame in MALFORMED:
        assert tuple(codec.decode(frame)) == ()
    assert codec.decode('{"event":"websocket:something-new"}') == ()
    assert (codec.malformed, codec.unknown) == (len(MALFORMED), 1)
    assert tuple(codec.decode(DTMF)) == (Dtmf("5"),)  # still working


def test_a_codec_taking_a_stream_over_numbers_on_from_where_the_other_was() -> None:
    codec = started(8000)
    codec.resume_at(120)  # a cluster's takeover: 120 frames were received by another node
    assert [m.sequence for m in codec.decode(bytes(320))] == [121]  # type: ignore[attr-defined]


def test_the_same_websocket_connected_again_goes_on_with_the_same_stream() -> None:
    """A cluster's gateway failover connects the call again (a new NCCO): its second
    websocket:connected is the same call, counted, and the audio goes on numbered as before."""
    codec = started()
    codec.decode(bytes(640))
    assert tuple(codec.decode(CONNECTED)) == ()
    assert (codec.reconnected, codec.malformed) == (1, 0)
    assert [m.sequence for m in codec.decode(bytes(640))] == [4]  # type: ignore[attr-defined]


def test_audio_before_connected_is_malformed() -> None:
    codec = VonageCodec()
    assert tuple(codec.decode(bytes(640))) == ()
    assert codec.malformed == 1


def test_an_irregular_frame_size_is_accepted_and_counted() -> None:
    codec = started(8000)
    assert tuple(codec.decode(bytes(640))) == (Audio(bytes(320), None, 2),) * 2
    assert codec.irregular == 1


def test_the_vonage_side_refuses_what_vonage_would() -> None:
    socket = VonageSocket(16000)
    for frame in (bytes(320), "[]", '{"action":"talk"}', '{"action":"notify"}'):
        with pytest.raises(ValueError):
            socket.parse(frame)


def _tone_through(rate: int) -> tuple[bytes, bytes]:
    """A 440 Hz tone written as mu-law 8 kHz, out of the Vonage side at ``rate``, and back."""
    codec = started(rate, MULAW8K)
    socket = VonageSocket(rate)
    mulaw = pcm16_to_ulaw(tone(440, 1.0, 8000, amplitude=0.3))
    wire: list[bytes] = []
    for i in range(0, len(mulaw), 160):
        wire += [f for f in codec.encode(Binary(mulaw[i : i + 160])) if isinstance(f, bytes)]
    wire += [f for f in codec.encode(Mark("end")) if isinstance(f, bytes)]
    assert {len(f) for f in wire} == {socket.frame_bytes}
    back = b""
    for frame in wire:
        event = socket.parse(frame)
        assert isinstance(event, MediaOut)
        back += b"".join(m.data for m in codec.decode(event.payload) if isinstance(m, Binary))
    return b"".join(wire), back


@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_mulaw_tone_keeps_its_frequency_both_ways(rate: int) -> None:
    wire, back = _tone_through(rate)
    assert len(wire) >= rate * 2  # a whole second (plus the padded tail)
    assert dominant_frequency(wire, rate) == pytest.approx(440, abs=1)
    assert rms_dbfs(wire[rate // 5 :]) == pytest.approx(rms_dbfs(tone(440, 1, 8000, 0.3)), abs=0.5)
    pcm = ulaw_to_pcm16(back)
    assert dominant_frequency(pcm, 8000) == pytest.approx(440, abs=1)


def test_resampling_20_ms_writes_leaves_no_click_at_frame_edges() -> None:
    # PCM16 8 kHz written 20 ms at a time, out at 16 kHz: a resampler without state between
    # frames puts a 50 Hz comb of clicks ~45 dB under the tone; ours stays 60 dB under.
    codec = started(16000, AudioPolicy(AudioFormat("pcm16", 8000)))
    pcm = tone(440, 1.0, 8000, amplitude=0.3)
    wire = b"".join(
        f for i in range(0, len(pcm), 320) for f in codec.encode(Binary(pcm[i : i + 320]))
    )
    samples = np.frombuffer(wire, "<i2")[1600:].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / 16000)
    assert spectrum[freqs > 600].max() < spectrum.max() / 1000


def test_conversion_cost_per_frame_is_small() -> None:
    """µs of CPU per 20 ms frame each way (mu-law 8 kHz <-> PCM16 16 kHz): the issue's figure."""
    mulaw = pcm16_to_ulaw(tone(440, 0.02, 8000))
    pcm16k = tone(440, 0.02, 16000)
    out, inbound = started(16000, MULAW8K), started(16000, MULAW8K)
    per_out = timeit.timeit(lambda: out.encode(Binary(mulaw)), number=500) / 500 * 1e6
    per_in = timeit.timeit(lambda: inbound.decode(pcm16k), number=500) / 500 * 1e6
    print(f"\nvonage mu-law 8k <-> l16 16k: out {per_out:.1f} us/frame, in {per_in:.1f} us/frame")
    assert per_out < 2000 and per_in < 2000  # generous: a shared 2-core machine


def test_stream_resampler_carries_state_across_chunks() -> None:
    pcm = tone(1000, 0.5, 16000)
    resampler = StreamResampler(16000, 8000)
    out = b"".join(resampler.process(pcm[i : i + 640]) for i in range(0, len(pcm), 640))
    assert len(out) == len(pcm) // 2  # 20 ms in, 20 ms out, every time
    assert dominant_frequency(out, 8000) == pytest.approx(1000, abs=1)
    tail = resampler.drain()  # the filter's delay, then a fresh start: silence in, silence out
    assert 0 < len(tail) < 100 and resampler.drain() == bytes(len(tail))
