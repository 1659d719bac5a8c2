"""Twilio calls end to end through the public facade, on loopback, with no account.

The path is the real one: ``create_session`` -> the Twilio provider's REST client -> the
emulator's Calls API -> the emulator dials the media gateway as Twilio would -> the gateway
pairs the stream with the session's connector -> frames both ways.
"""

from __future__ import annotations

import pytest

from actors import (
    Audio,
    Close,
    Mark,
    ProviderError,
    Started,
    Stopped,
    Text,
    TransportService,
    UnsupportedMessage,
)
from actors.audio import dominant_frequency, pcm16_to_ulaw, tone, ulaw_to_pcm16
from actors.emulator.phone import TwilioEmulator
from actors.lifecycle import SessionState
from actors.messages import Binary
from tests._provider_calls import FROM, TO, config, read_until, resume_after_a_dropped_hop, running


def emulator_of(service: TransportService) -> TwilioEmulator:
    return running(service, "emulator", TwilioEmulator)


def tone_frames(hz: float, seconds: float) -> list[bytes]:
    audio = pcm16_to_ulaw(tone(hz, seconds, 8000, 0.5))
    return [audio[i : i + 160] for i in range(0, len(audio), 160)]


def test_an_emulated_call_carries_a_tone_there_and_back(service: TransportService) -> None:
    info = service.create_session(provider="twilio", to=TO, from_=FROM, parameters={"who": "t"})
    assert info.provider == "twilio"
    assert info.call_id is not None and info.call_id.startswith("CA")
    assert service.is_websocket_connected(info.session_id)
    seen = read_until(service, info.session_id, Started)
    (started,) = [m for m in seen if isinstance(m, Started)]  # after the call's progress
    assert isinstance(started, Started)
    assert started.call_id == info.call_id
    assert started.media_format.encoding == "audio/x-mulaw"
    assert started.media_format.sample_rate == 8000
    assert dict(started.parameters) == {"who": "t", "session": info.session_id}  # no token
    frames = tone_frames(1000.0, 1.0)
    for frame in frames:
        service.write_websocket_message(info.session_id, Binary(frame))
    service.write_websocket_message(info.session_id, Mark("played"))
    # The emulator plays what it gets at real time and echoes it; the mark comes back once
    # everything before it has played.
    back = read_until(service, info.session_id, Mark)
    assert back[-1] == Mark("played")
    audio = [m for m in back if isinstance(m, Audio)]
    echoed = b"".join(m.data for m in audio)
    assert echoed == b"".join(frames)  # every byte, in order
    sequences = [m.sequence for m in audio]
    assert sequences == list(range(sequences[0], sequences[0] + len(audio)))
    assert dominant_frequency(ulaw_to_pcm16(echoed), 8000) == pytest.approx(1000.0, abs=2.0)
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None
    assert media.marks_echoed == ["played"]
    service.end_session(info.session_id)
    assert media.ended.wait(5)
    assert emulator_of(service).api.call(info.call_id).status == "completed"
    assert service.status(info.session_id).state is SessionState.CLOSED


def test_a_hang_up_on_the_phone_side_ends_the_session(service: TransportService) -> None:
    info = service.create_session(provider="twilio", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    emulator_of(service).media.hang_up(info.call_id)  # the far end hangs up
    rest = read_until(service, info.session_id, Close)
    assert any(isinstance(m, Stopped) for m in rest)
    assert rest[-1] == Close(1000, "call ended")
    assert service.read_websocket_message(info.session_id, timeout=5) is None
    service.end_session(info.session_id)  # hangs up a call that has ended: no error


def test_writes_before_the_stream_starts_wait_for_it(service: TransportService) -> None:
    info = service.create_session(provider="twilio", to=TO, from_=FROM)
    # Written at once, before the emulator's start can have arrived in most runs; in any run
    # they must come back whole and in order.
    frames = tone_frames(440.0, 0.2)
    for frame in frames:
        service.write_websocket_message(info.session_id, Binary(frame))
    service.write_websocket_message(info.session_id, Mark("m"))
    back = read_until(service, info.session_id, Mark)
    assert b"".join(m.data for m in back if isinstance(m, Audio)) == b"".join(frames)
    service.end_session(info.session_id)


def test_many_calls_at_once_stay_apart(service: TransportService) -> None:
    sessions = [service.create_session(provider="twilio", to=TO, from_=FROM) for _ in range(5)]
    for i, info in enumerate(sessions):
        service.write_websocket_message(info.session_id, Binary(bytes([i]) * 160))
        service.write_websocket_message(info.session_id, Mark(f"m{i}"))
    for i, info in enumerate(sessions):
        back = read_until(service, info.session_id, Mark)
        assert back[-1] == Mark(f"m{i}")
        assert b"".join(m.data for m in back if isinstance(m, Audio)) == bytes([i]) * 160
    for info in sessions:
        service.end_session(info.session_id)


def test_a_dropped_session_hop_resumes_with_nothing_lost_or_doubled() -> None:
    resume_after_a_dropped_hop("twilio", lambda svc, call: emulator_of(svc).call_media(call))


def test_the_emulator_and_gateway_start_only_for_a_twilio_session(
    echo_server: object,
) -> None:
    with TransportService(config()) as service:
        assert service.infrastructure.running == {}
        url = echo_server.url  # type: ignore[attr-defined]
        info = service.create_session(provider="websocket", url=url)
        assert service.infrastructure.running == {}
        service.end_session(info.session_id)


def test_close_ends_every_call(service: TransportService) -> None:
    infos = [service.create_session(provider="twilio", to=TO, from_=FROM) for _ in range(3)]
    emulator = emulator_of(service)
    service.close()
    for info in infos:
        assert info.call_id is not None
        assert emulator.api.call(info.call_id).status == "completed"


def test_no_caller_value_can_break_the_twiml(service: TransportService) -> None:
    hostile = {
        "quote": "a\"b'c",
        "markup": "</Parameter></Stream><Say>hi</Say>",
        "cdata": "]]><![CDATA[x",
        "amp": "&amp; &lt;",
        "unicode": "é ☎ \U0001f4de",
        "token": "not-the-gateway-token",  # cannot replace the real one
    }
    info = service.create_session(provider="twilio", to=TO, from_=FROM, parameters=hostile)
    started = read_until(service, info.session_id, Started)[-1]
    assert isinstance(started, Started)
    expected = {k: v for k, v in hostile.items() if k != "token"}
    assert dict(started.parameters) == {**expected, "session": info.session_id}
    service.end_session(info.session_id)


def test_twilio_sessions_refuse_what_twilio_cannot_carry(service: TransportService) -> None:
    info = service.create_session(provider="twilio", to=TO, from_=FROM)
    with pytest.raises(UnsupportedMessage):
        service.write_websocket_message(info.session_id, Text("hello"))
    service.end_session(info.session_id)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"from_": FROM}, "needs to="),
        ({"to": TO}, "needs from_="),
        ({"to": TO, "from_": FROM, "url": "ws://x"}, "takes no 'url'"),
    ],
)
def test_a_twilio_session_needs_its_numbers(
    service: TransportService, fields: dict[str, str], words: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=words):
        service.create_session(provider="twilio", **fields)
    assert service.sessions() == []


def test_a_provider_error_names_twilio_code_and_status(service: TransportService) -> None:
    with pytest.raises(ProviderError) as info:
        service.create_session(provider="twilio", to="12345", from_=FROM)
    assert info.value.status == 400
    assert info.value.code == 21211
    assert service.sessions() == []
