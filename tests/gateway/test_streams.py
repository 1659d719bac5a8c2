"""What the gateway reads of a provider stream: Twilio's ``start``, through its codec."""

from __future__ import annotations

import json

import pytest

from actors.codecs.twilio import StartInfo, TwilioStream, new_sid, parse_start
from actors.gateway.streams import STREAM_KINDS, route_of


def twilio_stream(**parameters: str) -> TwilioStream:
    sid, call, account = new_sid("MZ"), new_sid("CA"), new_sid("AC")
    return TwilioStream(sid, call, account, custom_parameters=parameters)


def test_a_start_from_twilio_gives_its_custom_parameters() -> None:
    stream = twilio_stream(session="abc", token="t0k")
    assert parse_start(stream.connected()) is None
    start = parse_start(stream.start())
    assert start == StartInfo({"session": "abc", "token": "t0k"})
    route = route_of(start.parameters)
    assert (route.session_id, route.token) == ("abc", "t0k")


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        ("not an object", {}),
        ({"session": 7, "token": "t", "x": "y"}, {"token": "t", "x": "y"}),
        (None, {}),
    ],
)
def test_parameters_that_are_not_strings_read_as_missing(custom: object, expected: object) -> None:
    frame = json.dumps({"event": "start", "start": {"customParameters": custom}})
    start = parse_start(frame)
    assert start is not None and dict(start.parameters) == expected
    assert route_of(start.parameters).session_id is None


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (b"\x00binary", "a binary frame"),
        ("{not json", "a non-JSON frame"),
        ("[" * 100_000, "nested too deep"),
        ('["event"]', "event object"),
        ('{"event": 1}', "event object"),
        ('{"event": "start"}', "without its start object"),
    ],
)
def test_frames_twilio_does_not_send_raise_a_close_reason(frame: str | bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_start(frame)


def test_each_provider_path_is_one_table_entry() -> None:
    assert {"twilio", "vonage", "exotel"} <= set(STREAM_KINDS)
    twilio = STREAM_KINDS["twilio"]
    assert twilio.twilio_signature
    frame = twilio_stream(session="s", token="t").start()
    assert twilio.parameters(frame) == {"session": "s", "token": "t"}
