"""The Twilio Media Streams codec and its Twilio-side counterpart, with recorded frames.

The inbound frames below follow Twilio's documented messages field for field (note that
``sequenceNumber``, ``chunk`` and ``timestamp`` are JSON strings, as Twilio sends them).
"""

from __future__ import annotations

import json
import logging
import random
import re

import pytest

from actors.codecs import Codec
from actors.codecs.twilio import (
    ClearOut,
    MarkOut,
    MediaOut,
    TwilioCodec,
    TwilioStream,
    new_sid,
)
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

ACCOUNT = "AC9e3c7b7f2a2b4a0f8d7e6c5b4a3f2e1d"
CALL = "CA5c1e0f3a7d2b4c6e8f0a1b2c3d4e5f6a"
STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"

CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = (
    '{"event": "start", "sequenceNumber": "1", "start": {'
    f'"accountSid": "{ACCOUNT}", "streamSid": "{STREAM}", "callSid": "{CALL}", '
    '"tracks": ["inbound", "outbound"], '
    '"customParameters": {"session": "s-1", "token": "t0k"}, '
    '"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}, '
    f'"streamSid": "{STREAM}"}}'
)
# payload: base64 of the mu-law bytes ff fe 7f 00 80
MEDIA = (
    '{"event": "media", "sequenceNumber": "3", "media": {"track": "inbound", '
    '"chunk": "1", "timestamp": "5", "payload": "//5/AIA="}, '
    f'"streamSid": "{STREAM}"}}'
)
DTMF = (
    f'{{"event": "dtmf", "streamSid": "{STREAM}", "sequenceNumber": "5", '
    '"dtmf": {"track": "inbound_track", "digit": "1"}}'
)
MARK = (
    f'{{"event": "mark", "sequenceNumber": "4", "streamSid": "{STREAM}", '
    '"mark": {"name": "my label"}}'
)
STOP = (
    '{"event": "stop", "sequenceNumber": "5", '
    f'"stop": {{"accountSid": "{ACCOUNT}", "callSid": "{CALL}"}}, "streamSid": "{STREAM}"}}'
)


def started_codec() -> TwilioCodec:
    codec = TwilioCodec()
    codec.decode(CONNECTED)
    codec.decode(START)
    return codec


# -- inbound ----------------------------------------------------------------------------------


def test_is_a_codec_for_the_twilio_provider() -> None:
    codec: Codec = TwilioCodec()
    assert codec.provider == "twilio"
    assert codec.outbound_types == frozenset({Binary, Mark, Clear, Close})


def test_connected_yields_nothing_and_keeps_the_protocol_version() -> None:
    codec = TwilioCodec()
    assert tuple(codec.decode(CONNECTED)) == ()
    assert codec.version == "1.0.0"
    assert (codec.malformed, codec.unknown, codec.stream_sid) == (0, 0, None)


def test_start_yields_started_and_names_the_stream() -> None:
    codec = TwilioCodec()
    (started,) = codec.decode(START)
    assert started == Started(
        STREAM,
        CALL,
        MediaFormat("audio/x-mulaw", 8000, 1),
        {"session": "s-1", "token": "t0k"},
        ("inbound", "outbound"),
    )
    assert isinstance(started, Started)
    assert dict(started.parameters) == {"session": "s-1", "token": "t0k"}
    assert (codec.stream_sid, codec.call_sid) == (STREAM, CALL)


def test_start_without_optional_metadata_uses_defaults() -> None:
    frame = json.dumps(
        {"event": "start", "sequenceNumber": "1", "start": {"streamSid": "MZ1", "callSid": "CA1"}}
    )
    (started,) = TwilioCodec().decode(frame)
    assert started == Started("MZ1", "CA1", MediaFormat(), {}, ())


def test_media_yields_audio_with_twilio_timing() -> None:
    codec = started_codec()
    (audio,) = codec.decode(MEDIA)
    assert audio == Audio(
        b"\xff\xfe\x7f\x00\x80", timestamp=5, sequence=3, track="inbound", chunk=1
    )
    assert isinstance(audio, Binary)


def test_media_accepts_integer_counters_and_absent_timing() -> None:
    frame = json.dumps(
        {"event": "media", "sequenceNumber": 7, "media": {"timestamp": 140, "payload": "/w=="}}
    )
    (audio,) = TwilioCodec().decode(frame)
    assert audio == Audio(b"\xff", timestamp=140, sequence=7, track=None, chunk=None)


def _compact_media(payload: str, **fields: str) -> str:
    """A media event as Twilio writes it on the wire: its field order, no whitespace."""
    media = {"track": "inbound", "chunk": "2", "timestamp": "40", "payload": payload}
    obj = {"event": "media", "sequenceNumber": "4", "media": media, "streamSid": STREAM}
    for key, value in fields.items():
        (media if key in media else obj)[key] = value
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "frame",
    [
        _compact_media("//5/AIA="),
        _compact_media(""),
        _compact_media("//5/AIA=", track="outbound", chunk="0007", timestamp="0"),
        _compact_media("//5/AIA=", sequenceNumber="123456789012345678"),
        _compact_media("//5/AIA=", track="in\u00e9"),  # an escape: the JSON path reads it
        _compact_media("//5/AIA=", track="é"),
        _compact_media("//5/AIA=", streamSid=""),
        _compact_media("//5/AIA=", chunk="1e3"),  # not digits: refused on either path
        _compact_media("//5/AIA=", timestamp=""),
        _compact_media("not base64!"),
        _compact_media("//5/AIA"),  # padding missing
        _compact_media("//5/AIA=", sequenceNumber="1" * 19),  # past the fast path's digits
        _compact_media("//5/AIA=") + " ",
    ],
)
def test_media_as_twilio_writes_it_decodes_as_any_json_of_it_does(frame: str) -> None:
    # The same event with whitespace after every separator (the JSON path, whatever shape
    # the fast one reads) decodes to the same messages and counts the same problems.
    spaced = json.dumps(json.loads(frame), separators=(", ", ": "), ensure_ascii=False)
    compact, loose = TwilioCodec(), TwilioCodec()
    assert compact.decode(frame) == loose.decode(spaced)
    assert (compact.malformed, compact.unknown) == (loose.malformed, loose.unknown)


@pytest.mark.parametrize(
    ("frame", "message"),
    [(DTMF, Dtmf("1")), (MARK, Mark("my label")), (STOP, Stopped())],
    ids=["dtmf", "mark", "stop"],
)
def test_events(frame: str, message: Message) -> None:
    codec = started_codec()
    assert tuple(codec.decode(frame)) == (message,)
    assert (codec.malformed, codec.unknown) == (0, 0)


MALFORMED = {
    "not json": "this is not json",
    "truncated json": MEDIA[:40],
    "json array": '[{"event": "media"}]',
    "json string": '"media"',
    "no event": '{"sequenceNumber": "3"}',
    "event not a string": '{"event": 7}',
    "media not an object": '{"event": "media", "media": "//5/AIA="}',
    "missing media.payload": '{"event": "media", "sequenceNumber": "3", "media": {"chunk": "1"}}',
    "payload not a string": '{"event": "media", "media": {"payload": 255}}',
    "bad base64 padding": '{"event": "media", "media": {"payload": "//5/AI"}}',
    "bad base64 alphabet": '{"event": "media", "media": {"payload": "//5/A*A="}}',
    "base64 with a newline": '{"event": "media", "media": {"payload": "//5/\\nAIA="}}',
    "non-ascii payload": '{"event": "media", "media": {"payload": "\\u00ff\\u00ff=="}}',
    "timestamp not a number": '{"event": "media", "media": {"timestamp": "5ms", "payload": ""}}',
    "sequence a bool": '{"event": "media", "sequenceNumber": true, "media": {"payload": ""}}',
    "chunk a float": '{"event": "media", "media": {"chunk": 1.5, "payload": ""}}',
    "track not a string": '{"event": "media", "media": {"track": 1, "payload": ""}}',
    "start without callSid": '{"event": "start", "start": {"streamSid": "MZ1"}}',
    "start without streamSid": '{"event": "start", "start": {"callSid": "CA1"}}',
    "start with bad tracks": (
        '{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1", "tracks": "inbound"}}'
    ),
    "start with bad sampleRate": (
        '{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1", "mediaFormat": '
        '{"encoding": "audio/x-mulaw", "sampleRate": "fast", "channels": 1}}}'
    ),
    "start with non-string parameter": (
        '{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1", '
        '"customParameters": {"n": 1}}}'
    ),
    "dtmf without digit": '{"event": "dtmf", "dtmf": {"track": "inbound_track"}}',
    "mark name not a string": '{"event": "mark", "mark": {"name": 4}}',
    "absurdly deep nesting": "[" * 100_000,
}


@pytest.mark.parametrize("frame", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_frames_are_counted_never_raised(frame: str) -> None:
    codec = TwilioCodec()
    assert tuple(codec.decode(frame)) == ()
    assert (codec.malformed, codec.unknown) == (1, 0)
    assert codec.stream_sid is None  # a rejected start publishes nothing


def test_binary_frames_are_malformed() -> None:
    codec = started_codec()
    assert tuple(codec.decode(MEDIA.encode())) == ()
    assert codec.malformed == 1


@pytest.mark.parametrize("event", ["clear", "media-v2", "transcription", ""])
def test_unknown_events_are_counted_apart(event: str) -> None:
    codec = started_codec()
    assert tuple(codec.decode(json.dumps({"event": event, "streamSid": STREAM}))) == ()
    assert (codec.unknown, codec.malformed) == (1, 0)


def test_problems_are_logged_rate_limited_and_without_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codec = TwilioCodec(session_id="sess-42")
    secret_payload = "c2VjcmV0IGF1ZGlv!"  # not base64: every frame is malformed
    frame = json.dumps({"event": "media", "media": {"payload": secret_payload}})
    with caplog.at_level(logging.WARNING, logger="actors.codecs.twilio"):
        for _ in range(250):
            assert tuple(codec.decode(frame)) == ()
    assert codec.malformed == 250
    # the first three, then the 100th and the 200th
    assert [r.getMessage().rsplit("(", 1)[1] for r in caplog.records] == [
        "1 so far)",
        "2 so far)",
        "3 so far)",
        "100 so far)",
        "200 so far)",
    ]
    text = caplog.text
    assert "sess-42" in text
    assert "'media'" in text
    assert "media.payload is not base64" in text
    assert secret_payload not in text


def test_unknown_events_are_logged_with_a_bounded_name(caplog: pytest.LogCaptureFixture) -> None:
    codec = TwilioCodec()
    with caplog.at_level(logging.WARNING, logger="actors.codecs.twilio"):
        codec.decode(json.dumps({"event": "x" * 10_000}))
    (record,) = caplog.records
    assert "unknown event" in record.getMessage()
    assert len(record.getMessage()) < 200


# -- outbound ---------------------------------------------------------------------------------


def test_encode_media_mark_clear_address_the_stream() -> None:
    codec = started_codec()
    (media,) = codec.encode(Binary(b"\xff\x7f\x00"))
    (audio,) = codec.encode(Audio(b"\x01", timestamp=3))
    (mark,) = codec.encode(Mark('end "of" turn ✓'))
    (clear,) = codec.encode(Clear())
    assert json.loads(media) == {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": "/38A"},
    }
    assert json.loads(audio)["media"] == {"payload": "AQ=="}
    assert json.loads(mark) == {
        "event": "mark",
        "streamSid": STREAM,
        "mark": {"name": 'end "of" turn ✓'},
    }
    assert json.loads(clear) == {"event": "clear", "streamSid": STREAM}
    assert all(isinstance(frame, str) for frame in (media, audio, mark, clear))


def test_encode_escapes_an_unusual_stream_sid() -> None:
    codec = TwilioCodec()
    codec.decode(json.dumps({"event": "start", "start": {"streamSid": 'MZ"\\', "callSid": "CA"}}))
    (media,) = codec.encode(Binary(b"a"))
    assert json.loads(media)["streamSid"] == 'MZ"\\'


@pytest.mark.parametrize("message", [Text("hi"), Dtmf("1"), Stopped()])
def test_encode_refuses_what_twilio_does_not_carry(message: Message) -> None:
    with pytest.raises(TypeError, match=type(message).__name__):
        started_codec().encode(message)


def test_writes_before_start_are_held_then_sent_first_in_order() -> None:
    codec = TwilioCodec()
    assert tuple(codec.encode(Binary(b"\x01"))) == ()
    assert tuple(codec.encode(Mark("m1"))) == ()
    assert tuple(codec.encode(Clear())) == ()
    assert tuple(codec.flush()) == ()  # nothing to address yet: still held
    assert codec.held == 3
    codec.decode(START)
    frames = [json.loads(frame) for frame in codec.encode(Binary(b"\x02"))]
    assert [(f["event"], f["streamSid"]) for f in frames] == [
        ("media", STREAM),
        ("mark", STREAM),
        ("clear", STREAM),
        ("media", STREAM),
    ]
    assert [f["media"]["payload"] for f in frames if f["event"] == "media"] == ["AQ==", "Ag=="]
    assert codec.held == 0
    assert len(codec.encode(Mark("m2"))) == 1  # nothing held any more


def test_flush_returns_held_frames_once_started_then_forgets_them() -> None:
    codec = TwilioCodec()
    codec.encode(Mark("a"))
    codec.encode(Binary(b"\x00"))
    codec.decode(START)
    flushed = [json.loads(frame) for frame in codec.flush()]
    assert [f["event"] for f in flushed] == ["mark", "media"]
    assert flushed[0]["mark"]["name"] == "a"
    assert tuple(codec.flush()) == ()


def test_max_held_drops_the_oldest_media_but_never_marks_or_clears() -> None:
    codec = TwilioCodec(max_held=4)
    for message in (Mark("a"), Binary(b"1"), Binary(b"2"), Clear(), Binary(b"3"), Mark("b")):
        codec.encode(message)
    # b"3" pushes out b"1"; Mark("b") is kept, and makes room by pushing out b"2"
    assert (codec.held, codec.dropped_held) == (4, 2)
    codec.decode(START)
    frames = [json.loads(frame) for frame in codec.flush()]
    assert [(f["event"], f.get("mark", f.get("media"))) for f in frames] == [
        ("mark", {"name": "a"}),
        ("clear", None),
        ("media", {"payload": "Mw=="}),
        ("mark", {"name": "b"}),
    ]


def test_marks_and_clears_are_kept_past_max_held() -> None:
    codec = TwilioCodec(max_held=1)
    for message in (Mark("a"), Clear(), Mark("b")):
        codec.encode(message)
    assert (codec.held, codec.dropped_held) == (3, 0)


def test_max_held_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_held"):
        TwilioCodec(max_held=-1)


# -- Twilio's side ----------------------------------------------------------------------------


def make_stream() -> TwilioStream:
    return TwilioStream(
        STREAM, CALL, ACCOUNT, custom_parameters={"session": "s-9"}, tracks=("inbound",)
    )


def test_stream_frames_decode_to_the_expected_messages() -> None:
    stream = make_stream()
    codec = TwilioCodec()
    frames = [
        stream.connected(),
        stream.start(),
        stream.media(b"\xff" * 160, 0),
        stream.media(b"\x7f" * 160, 20),
        stream.media(b"\x00" * 160, 40),
        stream.dtmf("#"),
        stream.mark("played"),
        stream.stop(),
    ]
    messages = [message for frame in frames for message in codec.decode(frame)]
    assert (codec.malformed, codec.unknown) == (0, 0)
    assert messages == [
        Started(STREAM, CALL, MediaFormat(), {"session": "s-9"}, ("inbound",)),
        Audio(b"\xff" * 160, timestamp=0, sequence=2, track="inbound", chunk=1),
        Audio(b"\x7f" * 160, timestamp=20, sequence=3, track="inbound", chunk=2),
        Audio(b"\x00" * 160, timestamp=40, sequence=4, track="inbound", chunk=3),
        Dtmf("#"),
        Mark("played"),
        Stopped(),
    ]
    # sequenceNumber: none on connected, then 1, 2, 3, ... on every frame after it
    numbers = [json.loads(frame).get("sequenceNumber") for frame in frames]
    assert numbers == [None, "1", "2", "3", "4", "5", "6", "7"]
    assert stream.sequence == 8


def test_stream_frames_carry_twilios_field_names_and_string_counters() -> None:
    stream = make_stream()
    stream.start()
    media = json.loads(stream.media(b"\x01\x02", 20, track="outbound"))
    assert media == {
        "event": "media",
        "sequenceNumber": "2",
        "media": {"track": "outbound", "chunk": "1", "timestamp": "20", "payload": "AQI="},
        "streamSid": STREAM,
    }
    assert json.loads(stream.stop())["stop"] == {"accountSid": ACCOUNT, "callSid": CALL}
    assert json.loads(stream.dtmf("5"))["dtmf"] == {"track": "inbound_track", "digit": "5"}


def test_chunks_count_per_track() -> None:
    stream = make_stream()
    chunks = [
        json.loads(stream.media(b"", 0, track=track))["media"]["chunk"]
        for track in ("inbound", "outbound", "inbound")
    ]
    assert chunks == ["1", "1", "2"]


def test_codec_output_parses_on_twilios_side() -> None:
    stream = make_stream()
    codec = TwilioCodec()
    written: list[str | bytes] = []
    written += codec.encode(Binary(b"early"))  # held until start
    codec.decode(stream.start())
    written += codec.flush()
    for message in (Audio(b"\x00\xff"), Mark("turn-1"), Clear()):
        written += codec.encode(message)
    assert [stream.parse(frame) for frame in written] == [
        MediaOut(b"early"),
        MediaOut(b"\x00\xff"),
        MarkOut("turn-1"),
        ClearOut(),
    ]


PARSE_ERRORS = {
    "binary frame": (b'{"event": "clear"}', "binary frame"),
    "not json": ("{event: clear}", "not JSON"),
    "json array": ("[]", "JSON list, not an object"),
    "unknown event": (f'{{"event": "stop", "streamSid": "{STREAM}"}}', "unknown event 'stop'"),
    "missing streamSid": ('{"event": "clear"}', "streamSid None"),
    "wrong streamSid": ('{"event": "clear", "streamSid": "MZother"}', "streamSid 'MZother'"),
    "missing payload": (
        f'{{"event": "media", "streamSid": "{STREAM}", "media": {{}}}}',
        "media.payload is missing",
    ),
    "bad base64": (
        f'{{"event": "media", "streamSid": "{STREAM}", "media": {{"payload": "abc"}}}}',
        "not base64",
    ),
    "mark without name": (
        f'{{"event": "mark", "streamSid": "{STREAM}", "mark": {{"label": "x"}}}}',
        "mark.name is missing",
    ),
}


@pytest.mark.parametrize(("frame", "why"), list(PARSE_ERRORS.values()), ids=list(PARSE_ERRORS))
def test_stream_parse_names_what_is_wrong(frame: str | bytes, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        make_stream().parse(frame)


def test_new_sid_is_twilio_shaped() -> None:
    sid = new_sid("CA")
    assert re.fullmatch(r"CA[0-9a-f]{32}", sid)
    assert new_sid("CA") != sid
    assert new_sid("MZ", random.Random(7)) == new_sid("MZ", random.Random(7))
    assert re.fullmatch(r"MZ[0-9a-f]{32}", new_sid("MZ", random.Random(0)))
