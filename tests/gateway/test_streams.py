"""What the gateway reads of a provider stream: Twilio's ``start``, through its codec."""

from __future__ import annotations

import json

import pytest

from actors.codecs.plivo import PlivoStream
from actors.codecs.telnyx import TelnyxStream
from actors.codecs.twilio import StartInfo, TwilioStream, new_sid, parse_start
from actors.gateway.streams import STREAM_KINDS, StreamRoute, route_of
from actors.routing import encode_client_state


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
    assert set(STREAM_KINDS) == {"twilio", "telnyx", "plivo", "vonage", "exotel"}
    twilio = STREAM_KINDS["twilio"]
    assert twilio.twilio_signature
    frame = twilio_stream(session="s", token="t").start()
    assert twilio.parameters(frame) == {"session": "s", "token": "t"}


def test_telnyx_streams_are_routed_by_custom_parameters_or_client_state() -> None:
    telnyx = STREAM_KINDS["telnyx"]
    assert not telnyx.twilio_signature  # the stream token alone admits it
    texml = TelnyxStream("st", "v3:c", custom_parameters={"session": "s", "token": "t"})
    assert telnyx.parameters(texml.connected()) is None
    assert route_of(telnyx.parameters(texml.start()) or {}) == StreamRoute("s", "t")
    state = encode_client_state({"session": "s2", "token": "t2"})
    dialled = TelnyxStream("st", "v3:c", client_state=state)
    assert route_of(telnyx.parameters(dialled.start()) or {}) == StreamRoute("s2", "t2")
    with pytest.raises(ValueError, match="telnyx"):
        telnyx.parameters(b"\x00")


def test_plivo_streams_are_routed_by_their_hex_extra_headers() -> None:
    plivo = STREAM_KINDS["plivo"]
    headers = {"session": b"a-b_c".hex(), "token": b"t-_".hex(), "app": "1"}
    stream = PlivoStream("st", "call", "MA" + "0" * 18, extra_headers=headers)
    parameters = plivo.parameters(stream.start())
    assert parameters == {"session": "a-b_c", "token": "t-_", "app": "1"}
    assert plivo.parameters(stream.media(b"\xff" * 160, 0)) is None
    with pytest.raises(ValueError, match="plivo"):
        plivo.parameters("{not json")
