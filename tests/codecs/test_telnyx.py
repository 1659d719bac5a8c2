"""The Telnyx media-streaming codec and its Telnyx-side counterpart, with documented frames.

Fixtures quote Telnyx's documented examples (read 2026-12-01):
CONNECTED and START from developers.telnyx.com/api-reference/websockets/
stream-call-media-over-websocket (the AsyncAPI page); START_CALL_CONTROL, MEDIA, STOP and
ERROR_CALL_CONTROL from developers.telnyx.com/api/call-control/start-call-streaming. The media
payload of that page is elided ("no+JhoaJjpzSHxAKBgYJD...IsSbjomGhoqQn1Ic"), so a whole base64
payload stands in for it. DTMF, MARK and ERROR follow the AsyncAPI page's frame list (``dtmf``,
``mark``, ``error`` with ``payload.code``/``payload.title``).
"""

from __future__ import annotations

import base64
import json
import logging
import re

import pytest

from actors.codecs import Codec
from actors.codecs.telnyx import TelnyxCodec, TelnyxStream
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

STREAM = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
CALL = "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"

CONNECTED = '{"event": "connected", "version": "1.0.0"}'
START = """{
  "event": "start",
  "sequence_number": "1",
  "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
  "start": {
    "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
    "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
    "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
    "from": "+13122010094",
    "to": "+13122123456",
    "tags": ["TAG1", "TAG2"],
    "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
    "custom_parameters": {"customer_id": "customer_123"},
    "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}
  }
}"""
START_CALL_CONTROL = """{
  "event": "start",
  "sequence_number": "1",
  "start": {
    "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
    "call_control_id": "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg",
    "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
    "media_format": {"encoding": "audio/x-mulaw", "sample_rate": 8000, "channels": 1}
  },
  "stream_id": "32de0dea-53cb-4b21-89a4-9e1819c043bc"
}"""
# payload: base64 of the mu-law bytes ff fe 7f 00 80 (the documented one is elided)
MEDIA = """{
  "event": "media",
  "sequence_number": "4",
  "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": "//5/AIA="},
  "stream_id": "32de0dea-53cb-4b21-89a4-9e1819c043bc"
}"""
STOP = """{
  "event": "stop",
  "sequence_number": "5",
  "stop": {
    "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
    "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
  },
  "stream_id": "32de0dea-53cb-4b21-89a4-9e1819c043bc"
}"""
ERROR_CALL_CONTROL = """{
  "stream_id": "32de0dea-53cb-4b21-89a4-9e1819c043bc",
  "event": "error",
  "sequence_number": "6",
  "error": {"title": "rate_limit_reached", "code": "100005", "detail": "Too many requests"}
}"""
ERROR = (
    f'{{"event": "error", "stream_id": "{STREAM}", '
    '"payload": {"code": 100003, "title": "malformed_frame", "detail": "bad json"}}'
)
DTMF = f'{{"event": "dtmf", "stream_id": "{STREAM}", "dtmf": {{"digit": "1"}}}}'
MARK = f'{{"event": "mark", "stream_id": "{STREAM}", "mark": {{"name": "my label"}}}}'


def started(**options: object) -> TelnyxCodec:
    codec = TelnyxCodec(**options)  # type: ignore[arg-type]
    codec.decode(CONNECTED)
    codec.decode(START)
    return codec


def media(chunk: int, payload: bytes = b"\x01", track: str = "inbound") -> str:
    return json.dumps(
        {
            "event": "media",
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(20 * chunk),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def chunks(messages: object) -> list[int | None]:
    assert isinstance(messages, tuple | list)
    return [m.chunk for m in messages if isinstance(m, Audio)]


# -- inbound ----------------------------------------------------------------------------------


def test_is_a_codec_for_the_telnyx_provider() -> None:
    codec: Codec = TelnyxCodec()
    assert codec.provider == "telnyx"
    assert codec.outbound_types == frozenset({Binary, Mark, Clear, Close})


def test_connected_yields_nothing_and_keeps_the_version() -> None:
    codec = TelnyxCodec()
    assert tuple(codec.decode(CONNECTED)) == ()
    assert (codec.version, codec.malformed, codec.unknown, codec.stream_id) == ("1.0.0", 0, 0, None)


def test_start_yields_started_with_parameters_and_client_state() -> None:
    codec = TelnyxCodec()
    (start,) = codec.decode(START)
    assert start == Started(
        STREAM,
        CALL,
        MediaFormat("audio/x-mulaw", 8000, 1),  # "PCMU" read as Twilio's spelling
        {"customer_id": "customer_123", "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d"},
        (),
    )
    assert (codec.stream_id, codec.call_control_id) == (STREAM, CALL)
    assert codec.client_state == "aGF2ZSBhIG5pY2UgZGF5ID1d"


def test_start_of_the_call_control_page_reads_the_same() -> None:
    (start,) = TelnyxCodec().decode(START_CALL_CONTROL)
    assert isinstance(start, Started)
    assert start.stream_id == "32de0dea-53cb-4b21-89a4-9e1819c043bc"
    assert start.media_format == MediaFormat("audio/x-mulaw", 8000, 1)
    assert dict(start.parameters) == {"client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d"}


def test_hidden_parameters_stay_out_of_started() -> None:
    codec = TelnyxCodec(hidden_parameters=frozenset({"customer_id"}))
    (start,) = codec.decode(START)
    assert isinstance(start, Started)
    assert "customer_id" not in start.parameters


def test_media_yields_audio_with_telnyx_timing() -> None:
    codec = started()
    (audio,) = codec.decode(media(1))  # chunk 1 first: nothing waits
    assert chunks([audio]) == [1]
    (audio,) = codec.decode(MEDIA)
    assert audio == Audio(
        b"\xff\xfe\x7f\x00\x80", timestamp=5, sequence=4, track="inbound", chunk=2
    )


@pytest.mark.parametrize(
    ("frame", "message"),
    [(DTMF, Dtmf("1")), (MARK, Mark("my label")), (STOP, Stopped())],
    ids=["dtmf", "mark", "stop"],
)
def test_events(frame: str, message: Message) -> None:
    codec = started()
    assert tuple(codec.decode(frame)) == (message,)
    assert (codec.malformed, codec.unknown) == (0, 0)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (ERROR, ("100003", "malformed_frame")),
        (ERROR_CALL_CONTROL, ("100005", "rate_limit_reached")),
    ],
    ids=["payload", "error-object"],
)
def test_error_frames_are_counted_and_kept(
    frame: str, expected: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    codec = started(session_id="s-7")
    with caplog.at_level(logging.WARNING, logger="actors.codecs.telnyx"):
        assert tuple(codec.decode(frame)) == ()
    assert (codec.errors, codec.last_error, codec.malformed) == (1, expected, 0)
    assert expected[0] in caplog.text and "s-7" in caplog.text


def test_the_outbound_track_is_not_the_caller() -> None:
    codec = started()
    assert tuple(codec.decode(media(1, track="outbound"))) == ()
    assert chunks(codec.decode(media(1, track="inbound"))) == [1]
    assert chunks(codec.decode(media(2, track="inbound_track"))) == [2]
    assert codec.other_track == 1


# -- reordering -------------------------------------------------------------------------------


def test_in_order_audio_is_released_at_once() -> None:
    codec = started()
    assert [chunks(codec.decode(media(n))) for n in (1, 2, 3, 4)] == [[1], [2], [3], [4]]
    assert (codec.late, codec.skipped) == (0, 0)


def test_a_swapped_pair_is_put_back_in_order() -> None:
    codec = started()
    released = [chunks(codec.decode(media(n))) for n in (1, 3, 2, 4)]
    assert released == [[1], [], [2, 3], [4]]
    assert (codec.late, codec.skipped) == (0, 0)


def test_the_first_chunk_may_arrive_second() -> None:
    codec = started()
    assert [chunks(codec.decode(media(n))) for n in (2, 1, 3)] == [[], [1, 2], [3]]


def test_a_codec_taking_a_stream_over_goes_on_at_the_first_chunk_it_gets() -> None:
    codec = started()
    codec.resume_at(400)  # a cluster's takeover: another node had the stream's first chunks
    assert [chunks(codec.decode(media(n))) for n in (397, 398, 400, 399)] == [
        [397],
        [398],
        [],
        [399, 400],
    ]
    assert (codec.skipped, codec.late) == (0, 0)


def test_a_gap_is_given_up_past_the_window_and_the_straggler_counted_late() -> None:
    codec = started(reorder_window=3)
    released = [chunks(codec.decode(media(n))) for n in (1, 3, 4, 5, 6, 2, 7)]
    assert released == [[1], [], [], [], [3, 4, 5, 6], [], [7]]
    assert (codec.skipped, codec.late) == (1, 1)


def test_duplicates_are_late() -> None:
    codec = started()
    codec.decode(media(1))
    codec.decode(media(3))
    assert tuple(codec.decode(media(1))) == ()
    assert tuple(codec.decode(media(3))) == ()
    assert codec.late == 2


def test_window_zero_never_waits() -> None:
    codec = started(reorder_window=0)
    assert [chunks(codec.decode(media(n))) for n in (1, 3, 2, 4)] == [[1], [3], [], [4]]
    assert (codec.skipped, codec.late) == (1, 1)


def test_stop_releases_what_waits_before_stopped() -> None:
    codec = started()
    codec.decode(media(1))
    codec.decode(media(4))
    codec.decode(media(3))
    out = codec.decode(STOP)
    assert chunks(out) == [3, 4] and out[-1] == Stopped()
    assert codec.skipped == 1


def test_media_without_chunk_passes_through() -> None:
    frame = '{"event": "media", "media": {"payload": "/w=="}}'
    (audio,) = started().decode(frame)
    assert audio == Audio(b"\xff")


# -- malformed --------------------------------------------------------------------------------

MALFORMED = {
    "not json": "this is not json",
    "truncated json": MEDIA[:40],
    "json array": '[{"event": "media"}]',
    "no event": '{"sequence_number": "3"}',
    "event not a string": '{"event": 7}',
    "media not an object": '{"event": "media", "media": "//5/AIA="}',
    "missing payload": '{"event": "media", "media": {"chunk": "1"}}',
    "bad base64": '{"event": "media", "media": {"payload": "//5/AI"}}',
    "chunk a float": '{"event": "media", "media": {"chunk": 1.5, "payload": ""}}',
    "timestamp not a number": '{"event": "media", "media": {"timestamp": "5ms", "payload": ""}}',
    "track not a string": '{"event": "media", "media": {"track": 1, "payload": ""}}',
    "start without stream_id": '{"event": "start", "start": {"call_control_id": "c"}}',
    "start without call_control_id": '{"event": "start", "stream_id": "s", "start": {}}',
    "start with bad sample_rate": (
        '{"event": "start", "stream_id": "s", "start": {"call_control_id": "c", '
        '"media_format": {"encoding": "PCMU", "sample_rate": "fast"}}}'
    ),
    "start with non-string parameter": (
        '{"event": "start", "stream_id": "s", "start": {"call_control_id": "c", '
        '"custom_parameters": {"n": 1}}}'
    ),
    "dtmf without digit": '{"event": "dtmf", "dtmf": {}}',
    "mark name not a string": '{"event": "mark", "mark": {"name": 4}}',
    "error without payload": '{"event": "error", "stream_id": "s"}',
    "absurdly deep nesting": "[" * 100_000,
}


@pytest.mark.parametrize("frame", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_frames_are_counted_never_raised(frame: str) -> None:
    codec = TelnyxCodec()
    assert tuple(codec.decode(frame)) == ()
    assert (codec.malformed, codec.unknown, codec.stream_id) == (1, 0, None)


def test_binary_frames_are_malformed_and_unknown_events_counted_apart() -> None:
    codec = started()
    assert tuple(codec.decode(MEDIA.encode())) == ()
    assert tuple(codec.decode('{"event": "transcription"}')) == ()
    assert (codec.malformed, codec.unknown) == (1, 1)


def test_problems_are_logged_rate_limited_without_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codec = TelnyxCodec(session_id="sess-42")
    secret = "c2VjcmV0IGF1ZGlv!"
    frame = json.dumps({"event": "media", "media": {"payload": secret}})
    with caplog.at_level(logging.WARNING, logger="actors.codecs.telnyx"):
        for _ in range(150):
            codec.decode(frame)
    assert codec.malformed == 150
    assert len(caplog.records) == 4  # 1, 2, 3, then the 100th
    assert "sess-42" in caplog.text and secret not in caplog.text


# -- outbound ---------------------------------------------------------------------------------


def test_encode_media_mark_clear() -> None:
    codec = started()
    (frame,) = codec.encode(Binary(b"\xff" * 160))
    payload = base64.b64encode(b"\xff" * 160).decode()
    assert json.loads(frame) == {"event": "media", "media": {"payload": payload}}
    (mark,) = codec.encode(Mark('end "of" turn ✓'))
    assert json.loads(mark) == {"event": "mark", "mark": {"name": 'end "of" turn ✓'}}
    (clear,) = codec.encode(Clear())
    assert json.loads(clear) == {"event": "clear"}


@pytest.mark.parametrize("message", [Text("hi"), Dtmf("1"), Stopped()])
def test_encode_refuses_what_telnyx_does_not_carry(message: Message) -> None:
    codec = started(session_id="s-3")
    assert type(message) not in codec.outbound_types
    with pytest.raises(UnsupportedMessage, match=type(message).__name__) as caught:
        codec.encode(message)
    assert isinstance(caught.value, TypeError)
    assert (caught.value.provider, caught.value.session_id) == ("telnyx", "s-3")


def test_audio_shorter_than_20_ms_is_joined() -> None:
    codec = started()
    assert tuple(codec.encode(Binary(b"\x01" * 100))) == ()
    assert codec.short == 100
    (frame,) = codec.encode(Binary(b"\x02" * 100))
    assert MediaOut(b"\x01" * 100 + b"\x02" * 100) == TelnyxStream(STREAM, CALL).parse(frame)
    assert codec.short == 0


def test_a_mark_pads_the_short_remainder_with_silence_and_clear_drops_it() -> None:
    stream = TelnyxStream(STREAM, CALL)
    codec = started()
    codec.encode(Binary(b"\x01" * 10))
    media_frame, mark = codec.encode(Mark("m"))
    assert stream.parse(media_frame) == MediaOut(b"\x01" * 10 + b"\xff" * 150)
    assert stream.parse(mark) == MarkOut("m")
    codec.encode(Binary(b"\x01" * 10))
    assert [stream.parse(f) for f in codec.encode(Clear())] == [ClearOut()]
    assert codec.short == 0


def test_audio_longer_than_30_s_is_split() -> None:
    codec = started()
    frames = codec.encode(Binary(b"\x00" * (240_000 + 500)))
    sizes = [len(TelnyxStream(STREAM, CALL).parse(f).payload) for f in frames]  # type: ignore[union-attr]
    assert sizes == [240_000, 500]


def test_l16_at_16_khz_needs_640_bytes_and_compressed_codecs_go_as_written() -> None:
    codec = TelnyxCodec(outbound_format=MediaFormat("audio/l16", 16000, 1))
    codec.decode(START)
    assert tuple(codec.encode(Binary(b"\0" * 320))) == ()
    assert len(codec.encode(Binary(b"\0" * 320))) == 1
    opus = TelnyxCodec(outbound_format=MediaFormat("OPUS", 16000, 1))
    opus.decode(START)
    assert len(opus.encode(Binary(b"\1" * 3))) == 1


def test_writes_before_start_are_held_then_sent_in_order() -> None:
    codec = TelnyxCodec()
    for message in (Binary(b"\x01" * 160), Mark("m1"), Clear()):
        assert tuple(codec.encode(message)) == ()
    assert tuple(codec.flush()) == ()
    assert codec.held == 3
    codec.decode(START)
    events = [json.loads(f)["event"] for f in codec.encode(Binary(b"\x02" * 160))]
    assert events == ["media", "mark", "clear", "media"]
    assert codec.held == 0


def test_max_held_drops_the_oldest_audio_never_marks() -> None:
    codec = TelnyxCodec(max_held=2)
    for message in (Mark("a"), Binary(b"1" * 160), Binary(b"2" * 160), Mark("b")):
        codec.encode(message)
    assert (codec.held, codec.dropped_held) == (2, 2)
    codec.decode(START)
    assert [json.loads(f)["event"] for f in codec.flush()] == ["mark", "mark"]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="reorder_window"):
        TelnyxCodec(reorder_window=-1)
    with pytest.raises(ValueError, match="max_held"):
        TelnyxCodec(max_held=-1)


# -- Telnyx's side and the round trip ----------------------------------------------------------


def test_stream_frames_decode_to_the_expected_messages() -> None:
    stream = TelnyxStream(
        STREAM, CALL, custom_parameters={"session": "s-9"}, client_state="c3RhdGU="
    )
    codec = TelnyxCodec()
    frames = [
        stream.connected(),
        stream.start(),
        stream.media(b"\xff" * 160, 0),
        stream.media(b"\x7f" * 160, 20, track="outbound"),
        stream.media(b"\x00" * 160, 20),
        stream.dtmf("#"),
        stream.mark("played"),
        stream.error("100004", "invalid_media"),
        stream.stop(),
    ]
    messages = [m for frame in frames for m in codec.decode(frame)]
    assert messages == [
        Started(STREAM, CALL, MediaFormat(), {"session": "s-9", "client_state": "c3RhdGU="}),
        Audio(b"\xff" * 160, timestamp=0, sequence=2, track="inbound", chunk=1),
        Audio(b"\x00" * 160, timestamp=20, sequence=4, track="inbound", chunk=2),
        Dtmf("#"),
        Mark("played"),
        Stopped(),
    ]
    assert (codec.malformed, codec.unknown, codec.other_track, codec.errors) == (0, 0, 1, 1)
    start = json.loads(frames[1])
    assert start["stream_id"] == STREAM and start["sequence_number"] == "1"
    assert start["start"]["media_format"] == {
        "encoding": "PCMU",
        "sample_rate": 8000,
        "channels": 1,
    }


def test_out_of_order_stream_frames_come_out_in_order() -> None:
    stream = TelnyxStream(STREAM, CALL)
    codec = TelnyxCodec()
    codec.decode(stream.start())
    frames = [stream.media(bytes([n]) * 160, 20 * n, chunk=n) for n in (1, 2, 4, 3, 5)]
    assert chunks([m for f in frames for m in codec.decode(f)]) == [1, 2, 3, 4, 5]


def test_codec_output_parses_on_telnyxs_side() -> None:
    stream = TelnyxStream(STREAM, CALL)
    codec = TelnyxCodec()
    written: list[str | bytes] = list(codec.encode(Binary(b"\x01" * 160)))  # held until start
    codec.decode(stream.start())
    written += codec.flush()
    for message in (Audio(b"\x00" * 200), Mark("turn-1"), Clear()):
        written += codec.encode(message)
    assert [stream.parse(frame) for frame in written] == [
        MediaOut(b"\x01" * 160),
        MediaOut(b"\x00" * 200),
        MarkOut("turn-1"),
        ClearOut(),
    ]


PARSE_ERRORS = {
    "binary frame": (b'{"event": "clear"}', "binary frame"),
    "not json": ("{event: clear}", "not JSON"),
    "unknown event": ('{"event": "stop"}', "unknown event 'stop'"),
    "wrong stream_id": ('{"event": "clear", "stream_id": "other"}', "stream_id 'other'"),
    "missing payload": ('{"event": "media", "media": {}}', "media.payload is missing"),
    "bad base64": ('{"event": "media", "media": {"payload": "abc"}}', "not base64"),
    "mark without name": ('{"event": "mark", "mark": {}}', "mark.name is missing"),
}


@pytest.mark.parametrize(("frame", "why"), list(PARSE_ERRORS.values()), ids=list(PARSE_ERRORS))
def test_stream_parse_names_what_is_wrong(frame: str | bytes, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        TelnyxStream(STREAM, CALL).parse(frame)
