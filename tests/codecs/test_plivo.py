"""The Plivo audio-streaming codec and its Plivo-side counterpart, with documented frames.

Fixtures quote Plivo's documented examples (read 2026-12-01): START and MEDIA from
plivo.com/docs/voice-agents/audio-streaming/concepts/audio-streaming-reference (the media
payload there is elided, "//uQxAAAAAANIAAAAAExBTUUzLjEwMFVV...", so a whole one stands in);
CHECKPOINT and PLAYED_STREAM from plivo.com/docs/voice/xml/the-stream-element/checkpoint-event;
PLAYED from support.plivo.com ("How do I know if the buffered audio is played"); PLAY_AUDIO
from plivo.com/docs/voice/xml/the-stream-element/play-audio-event. DTMF and CLEARED_AUDIO
follow the message lists of plivo.com/docs/voice/audio-streaming/audio-streaming.
"""

from __future__ import annotations

import base64
import json
import logging
import re

import pytest

from actors.codecs import Codec
from actors.codecs.plivo import DtmfOut, PlivoCodec, PlivoStream
from actors.codecs.twilio import ClearOut, MarkOut, MediaOut
from actors.errors import UnsupportedMessage
from actors.messages import (
    Audio,
    Binary,
    Clear,
    Close,
    Dtmf,
    Mark,
    MediaFormat,
    Message,
    Started,
    Stopped,
    Text,
)

CALL = "12345678-1234-1234-1234-123456789abc"
STREAM = "87654321-4321-4321-4321-cba987654321"
ACCOUNT = "MAXXXXXXXXXXXXXXXXXX"

START = """{
  "event": "start",
  "sequenceNumber": 1,
  "start": {
    "callId": "12345678-1234-1234-1234-123456789abc",
    "streamId": "87654321-4321-4321-4321-cba987654321",
    "accountId": "MAXXXXXXXXXXXXXXXXXX",
    "tracks": ["inbound"],
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}
  },
  "extra_headers": "userId=12345;sessionId=abc-xyz"
}"""
# payload: base64 of the mu-law bytes ff fe 7f 00 80 (the documented one is elided)
MEDIA = """{
  "event": "media",
  "sequenceNumber": 42,
  "streamId": "87654321-4321-4321-4321-cba987654321",
  "media": {"track": "inbound", "timestamp": "1705312200000", "chunk": 41, "payload": "//5/AIA="},
  "extra_headers": "userId=12345;sessionId=abc-xyz"
}"""
CHECKPOINT = """{
  "event": "checkpoint",
  "streamId": "20170ada-f610-433b-8758-c02a2aab3662",
  "name": "customer greeting audio"
}"""
PLAYED_STREAM = """{
  "event": "playedStream",
  "streamId": "20170ada-f610-433b-8758-c02a2aab3662",
  "name": "customer greeting audio"
}"""
PLAYED = """{
  "event": "played",
  "streamId": "20170ada-f610-433b-8758-c02a2aab3662",
  "name": "customer greeting audio"
}"""
PLAY_AUDIO = """{
  "event": "playAudio",
  "media": {"contentType": "audio/x-l16", "sampleRate": 8000, "payload": "AAABAA=="}
}"""
DTMF = f'{{"event": "dtmf", "streamId": "{STREAM}", "dtmf": {{"track": "inbound", "digit": "5"}}}}'
CLEARED_AUDIO = f'{{"sequenceNumber": 0, "event": "clearedAudio", "streamId": "{STREAM}"}}'


def started(**options: object) -> PlivoCodec:
    codec = PlivoCodec(**options)  # type: ignore[arg-type]
    codec.decode(START)
    return codec


# -- inbound ----------------------------------------------------------------------------------


def test_is_a_codec_for_the_plivo_provider() -> None:
    codec: Codec = PlivoCodec()
    assert codec.provider == "plivo"
    assert codec.outbound_types == frozenset({Binary, Mark, Clear, Dtmf, Close})


def test_start_yields_started_with_the_extra_headers() -> None:
    codec = PlivoCodec()
    (start,) = codec.decode(START)
    assert start == Started(
        STREAM,
        CALL,
        MediaFormat("audio/x-mulaw", 8000, 1),
        {"userId": "12345", "sessionId": "abc-xyz"},
        ("inbound",),
    )
    assert (codec.stream_id, codec.call_id, codec.account_id) == (STREAM, CALL, ACCOUNT)


@pytest.mark.parametrize(
    "headers",
    ["test1=12,test2=123", "test1=12;test2=123", {"test1": "12", "test2": "123"}],
    ids=["stream-xml-commas", "semicolons", "object"],
)
def test_extra_headers_in_every_documented_spelling(headers: object) -> None:
    frame = json.loads(START)
    frame["extra_headers"] = headers
    (start,) = PlivoCodec(hidden_parameters=frozenset({"test2"})).decode(json.dumps(frame))
    assert isinstance(start, Started)
    assert dict(start.parameters) == {"test1": "12"}


def test_media_yields_audio_with_a_timestamp_relative_to_the_first() -> None:
    codec = started()
    (audio,) = codec.decode(MEDIA)
    assert audio == Audio(
        b"\xff\xfe\x7f\x00\x80", timestamp=0, sequence=42, track="inbound", chunk=41
    )
    later = json.loads(MEDIA)
    later["media"]["timestamp"] = "1705312200020"
    (audio,) = codec.decode(json.dumps(later))
    assert isinstance(audio, Audio) and audio.timestamp == 20


def test_other_tracks_are_not_the_caller() -> None:
    frame = json.loads(MEDIA)
    frame["media"]["track"] = "outbound"
    codec = started()
    assert tuple(codec.decode(json.dumps(frame))) == ()
    assert codec.other_track == 1


@pytest.mark.parametrize(
    ("frame", "messages"),
    [
        (DTMF, (Dtmf("5"),)),
        (PLAYED_STREAM, (Mark("customer greeting audio"),)),
        (PLAYED, (Mark("customer greeting audio"),)),
        (CLEARED_AUDIO, ()),
        ('{"event": "stop"}', (Stopped(),)),
    ],
    ids=["dtmf", "playedStream", "played", "clearedAudio", "stop"],
)
def test_events(frame: str, messages: tuple[Message, ...]) -> None:
    codec = started()
    assert tuple(codec.decode(frame)) == messages
    assert (codec.malformed, codec.unknown) == (0, 0)
    assert codec.cleared == (1 if "clearedAudio" in frame else 0)


MALFORMED = {
    "not json": "this is not json",
    "json array": "[]",
    "binary-looking text": "\x00\x01",
    "no event": '{"sequenceNumber": 3}',
    "media without payload": '{"event": "media", "media": {"chunk": 1}}',
    "bad base64": '{"event": "media", "media": {"payload": "//5/AI"}}',
    "timestamp not a number": '{"event": "media", "media": {"timestamp": "x", "payload": ""}}',
    "start without streamId": '{"event": "start", "start": {"callId": "c"}}',
    "start without callId": '{"event": "start", "start": {"streamId": "s"}}',
    "start with bad tracks": (
        '{"event": "start", "start": {"streamId": "s", "callId": "c", "tracks": "inbound"}}'
    ),
    "start with bad sampleRate": (
        '{"event": "start", "start": {"streamId": "s", "callId": "c", '
        '"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": true}}}'
    ),
    "start with bad extra_headers": (
        '{"event": "start", "start": {"streamId": "s", "callId": "c"}, "extra_headers": 5}'
    ),
    "dtmf without digit": '{"event": "dtmf", "dtmf": {"track": "inbound"}}',
    "playedStream without name": '{"event": "playedStream", "streamId": "s"}',
    "absurdly deep nesting": "[" * 100_000,
}


@pytest.mark.parametrize("frame", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_frames_are_counted_never_raised(frame: str) -> None:
    codec = PlivoCodec()
    assert tuple(codec.decode(frame)) == ()
    assert (codec.malformed, codec.unknown, codec.stream_id) == (1, 0, None)


def test_binary_frames_are_malformed_and_unknown_events_counted_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codec = started(session_id="s-5")
    with caplog.at_level(logging.WARNING, logger="actors.codecs.plivo"):
        assert tuple(codec.decode(MEDIA.encode())) == ()
        assert tuple(codec.decode('{"event": "' + "x" * 10_000 + '"}')) == ()
    assert (codec.malformed, codec.unknown) == (1, 1)
    assert "s-5" in caplog.text and all(len(r.getMessage()) < 200 for r in caplog.records)


# -- outbound ---------------------------------------------------------------------------------


def test_encode_every_outbound_kind() -> None:
    codec = started()
    play, checkpoint, clear, dtmf = (
        json.loads(frame)
        for message in (Binary(b"\xff\x7f\x00"), Mark("greeting"), Clear(), Dtmf("1234#"))
        for frame in codec.encode(message)
    )
    assert play == {
        "event": "playAudio",
        "streamId": STREAM,
        "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "/38A"},
    }
    assert checkpoint == {"event": "checkpoint", "streamId": STREAM, "name": "greeting"}
    assert clear == {"event": "clearAudio", "streamId": STREAM}
    assert dtmf == {"event": "sendDTMF", "dtmf": "1234#"}


def test_content_type_and_rate_can_differ_from_the_stream() -> None:
    codec = started(content_type="audio/x-l16", sample_rate=16000)
    (frame,) = codec.encode(Binary(b"\0\0"))
    assert json.loads(frame)["media"]["contentType"] == "audio/x-l16"
    assert json.loads(frame)["media"]["sampleRate"] == 16000


@pytest.mark.parametrize("message", [Text("hi"), Stopped()])
def test_encode_refuses_what_plivo_does_not_carry(message: Message) -> None:
    with pytest.raises(UnsupportedMessage, match=type(message).__name__) as caught:
        started(session_id="s-2").encode(message)
    assert (caught.value.provider, caught.value.session_id) == ("plivo", "s-2")


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "E"])
def test_dtmf_other_than_keys_is_refused(digits: str) -> None:
    with pytest.raises(ValueError, match="DTMF"):
        started().encode(Dtmf(digits))


def test_writes_before_start_are_held_then_sent_in_order() -> None:
    codec = PlivoCodec()
    for message in (Binary(b"\x01"), Mark("m1"), Clear(), Dtmf("9")):
        assert tuple(codec.encode(message)) == ()
    assert tuple(codec.flush()) == ()
    assert codec.held == 4
    codec.decode(START)
    events = [json.loads(f)["event"] for f in codec.encode(Binary(b"\x02"))]
    assert events == ["playAudio", "checkpoint", "clearAudio", "sendDTMF", "playAudio"]
    assert codec.held == 0 and tuple(codec.flush()) == ()


def test_flush_after_start_returns_the_held_frames_once() -> None:
    codec = PlivoCodec()
    codec.encode(Mark("a"))
    codec.decode(START)
    assert [json.loads(f)["name"] for f in codec.flush()] == ["a"]
    assert tuple(codec.flush()) == ()


def test_max_held_drops_the_oldest_audio_never_marks() -> None:
    codec = PlivoCodec(max_held=2)
    for message in (Mark("a"), Binary(b"1"), Binary(b"2"), Mark("b")):
        codec.encode(message)
    assert (codec.held, codec.dropped_held) == (2, 2)
    with pytest.raises(ValueError, match="max_held"):
        PlivoCodec(max_held=-1)


# -- Plivo's side and the round trip -----------------------------------------------------------


def test_stream_frames_decode_to_the_expected_messages() -> None:
    stream = PlivoStream(STREAM, CALL, ACCOUNT, extra_headers={"session": "s9"})
    codec = PlivoCodec()
    frames = [
        stream.start(),
        stream.media(b"\xff" * 160, 0),
        stream.media(b"\x7f" * 160, 20),
        stream.dtmf("#"),
        stream.played("turn-1"),
        stream.played("turn-2", event="played"),
        stream.cleared(),
    ]
    messages = [m for frame in frames for m in codec.decode(frame)]
    assert messages == [
        Started(STREAM, CALL, MediaFormat(), {"session": "s9"}, ("inbound",)),
        Audio(b"\xff" * 160, timestamp=0, sequence=2, track="inbound", chunk=1),
        Audio(b"\x7f" * 160, timestamp=20, sequence=3, track="inbound", chunk=2),
        Dtmf("#"),
        Mark("turn-1"),
        Mark("turn-2"),
    ]
    assert (codec.malformed, codec.unknown, codec.cleared) == (0, 0, 1)
    start = json.loads(frames[0])
    assert start["extra_headers"] == "session=s9" and start["sequenceNumber"] == 1


def test_codec_output_parses_on_plivos_side() -> None:
    stream = PlivoStream(STREAM, CALL, ACCOUNT)
    codec = PlivoCodec()
    written: list[str | bytes] = list(codec.encode(Binary(b"early")))
    codec.decode(stream.start())
    written += codec.flush()
    for message in (Audio(b"\x00\xff"), Mark("turn-1"), Clear(), Dtmf("*1")):
        written += codec.encode(message)
    assert [stream.parse(frame) for frame in written] == [
        MediaOut(b"early"),
        MediaOut(b"\x00\xff"),
        MarkOut("turn-1"),
        ClearOut(),
        DtmfOut("*1"),
    ]


def test_the_documented_client_frames_parse() -> None:
    stream = PlivoStream("20170ada-f610-433b-8758-c02a2aab3662", CALL, ACCOUNT)
    assert stream.parse(CHECKPOINT) == MarkOut("customer greeting audio")
    assert stream.parse(PLAY_AUDIO) == MediaOut(base64.b64decode("AAABAA=="))


PARSE_ERRORS = {
    "binary frame": (b'{"event": "clearAudio"}', "binary frame"),
    "not json": ("{event}", "not JSON"),
    "unknown event": ('{"event": "playedStream"}', "unknown event 'playedStream'"),
    "clearAudio without streamId": ('{"event": "clearAudio"}', "streamId None"),
    "wrong streamId": ('{"event": "clearAudio", "streamId": "x"}', "streamId 'x'"),
    "rate plivo does not play": (
        '{"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "sampleRate": 16000, '
        '"payload": ""}}',
        "does not play 'audio/x-mulaw' at 16000 Hz",
    ),
    "missing payload": (
        '{"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000}}',
        "media.payload is missing",
    ),
    "checkpoint without name": (
        f'{{"event": "checkpoint", "streamId": "{STREAM}"}}',
        "name is missing",
    ),
    "dtmf not keys": ('{"event": "sendDTMF", "dtmf": "1;2"}', "is not DTMF keys"),
}


@pytest.mark.parametrize(("frame", "why"), list(PARSE_ERRORS.values()), ids=list(PARSE_ERRORS))
def test_stream_parse_names_what_is_wrong(frame: str | bytes, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        PlivoStream(STREAM, CALL, ACCOUNT).parse(frame)
