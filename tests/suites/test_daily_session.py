"""Daily sessions end to end through the public facade, on loopback, with no account.

The path: ``create_session(provider="daily")`` -> the Daily provider's REST client -> the
embedded emulator's REST API (room, owner token, dial-out) -> the connector's DailyConnection
joins the room. Joining and the room's audio go through ``actors.emulator.daily_sdk``, a
stand-in of Daily's SDK interface (see tests/test_daily_media.py), since the real SDK can only
join Daily's own rooms; everything of ours is the real thing.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from actors import (
    Audio,
    Clear,
    Close,
    ConfigError,
    Mark,
    ProviderError,
    Started,
    Stopped,
    TransportService,
    UnsupportedMessage,
)
from actors.audio import pcm16_to_ulaw, tone, ulaw_to_pcm16
from actors.config import DailyProviderConfig, TransportConfig
from actors.emulator.daily_sdk import DailyEmulator
from actors.lifecycle import SessionState
from actors.messages import Binary, Message
from tests._provider_calls import running
from tests.conftest import eventually, fast_config

TO = "+15550100"
pytestmark = pytest.mark.timeout(30)


def daily_of(service: TransportService) -> DailyEmulator:
    return running(service, "daily", DailyEmulator)


def read_until(
    service: TransportService, sid: str, done: type[Message], audio: int = 0
) -> list[Message]:
    """Messages until a ``done`` has come and at least ``audio`` bytes of audio."""
    seen: list[Message] = []
    while not (
        any(isinstance(m, done) for m in seen)
        and sum(len(m.data) for m in seen if isinstance(m, Audio)) >= audio
    ):
        message = service.read_websocket_message(sid, timeout=5)
        assert message is not None, f"session ended early: {seen[-3:]}"
        seen.append(message)
    return seen


def test_a_daily_session_makes_a_room_joins_carries_audio_and_cleans_up(
    service: TransportService,
) -> None:
    info = service.create_session(provider="daily", to=TO, parameters={"who": "test"})
    sid = info.session_id
    emulator = daily_of(service)
    api, sdk = emulator.server, emulator.sdk

    # The room, named after the session, private, expiring, allowing the dial-out.
    room = api.room(sid)
    assert room is not None
    assert info.url == room.url
    assert room.privacy == "private"
    assert room.properties["enable_dialout"] is True
    assert room.properties["exp"] > time.time()
    # The dial-out to the phone, whose session id is the call's id.
    (dial_out,) = room.dial_outs
    assert (dial_out.to, info.call_id) == (TO, dial_out.session_id)
    # The session joined with an owner's token for that room.
    assert api.attempts("create_token") == 1
    assert sdk.clients_in(sid) == 1
    assert service.is_websocket_connected(sid)

    started = service.read_websocket_message(sid, timeout=5)  # the phone is in the room
    assert isinstance(started, Started)
    (phone,) = sdk.participants_in(sid)
    assert started.call_id == dial_out.session_id
    assert started.tracks == (phone,)
    assert dict(started.parameters) == {"who": "test"}
    assert (started.media_format.encoding, started.media_format.sample_rate) == ("pcm16", 16000)

    voice = tone(440.0, 0.2, 16000)
    frames = [voice[i : i + 640] for i in range(0, len(voice), 640)]  # 20 ms each
    for frame in frames:
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Mark("spoken"))
    seen = read_until(service, sid, Mark, audio=len(voice))
    echoed = b"".join(m.data for m in seen if isinstance(m, Audio))
    assert echoed == voice  # there and back, in order
    assert all(m.track == phone for m in seen if isinstance(m, Audio))
    assert sdk.heard(sid, phone) == voice

    sdk.say(sid, phone, tone(300.0, 0.04, 16000), 16000)
    said = service.read_websocket_message(sid, timeout=5)
    assert isinstance(said, Audio) and said.data == tone(300.0, 0.04, 16000)
    status = service.status(sid)
    assert (status.frames_out, status.bytes_out) == (len(frames), len(voice))
    assert status.frames_in == len(frames) + 1

    service.end_session(sid)
    assert sdk.clients_in(sid) == 0  # left the call
    assert api.rooms == {}  # and deleted the room
    assert not dial_out.active  # after stopping the dial-out
    assert [r.operation for r in api.requests][-2:] == ["dial_out_stop", "delete_room"]
    assert service.status(sid).state is SessionState.CLOSED


def test_the_phone_hanging_up_ends_the_session(service: TransportService) -> None:
    info = service.create_session(provider="daily", to=TO)
    sid = info.session_id
    sdk = daily_of(service).sdk
    assert isinstance(service.read_websocket_message(sid, timeout=5), Started)
    (phone,) = sdk.participants_in(sid)
    sdk.remove_participant(sid, phone, "hangup")
    assert isinstance(service.read_websocket_message(sid, timeout=5), Stopped)
    closed = service.read_websocket_message(sid, timeout=5)
    assert closed == Close(1000, "the call ended: hangup")
    assert service.read_websocket_message(sid, timeout=5) is None
    assert service.status(sid).state is SessionState.CLOSED
    service.end_session(sid)
    assert daily_of(service).server.rooms == {}


def test_a_room_without_a_dial_out_starts_when_someone_joins(service: TransportService) -> None:
    info = service.create_session(provider="daily")
    sid = info.session_id
    emulator = daily_of(service)
    assert info.call_id is None
    room = emulator.server.room(sid)
    assert room is not None and "enable_dialout" not in room.properties
    service.write_websocket_message(sid, Binary(bytes(640)))  # waits for the call to start
    assert service.status(sid).frames_out == 0
    guest = emulator.sdk.add_participant(sid, "guest")
    seen = read_until(service, sid, Audio)
    assert isinstance(seen[0], Started) and seen[0].tracks == (guest,)
    assert [m.data for m in seen if isinstance(m, Audio)] == [bytes(640)]
    service.end_session(sid)


def test_a_crashed_connector_rejoins_and_the_call_goes_on(service: TransportService) -> None:
    sid = service.create_session(provider="daily", to=TO).session_id
    sdk = daily_of(service).sdk
    assert isinstance(service.read_websocket_message(sid, timeout=5), Started)
    connector = service._sessions[sid].record.connector
    assert connector is not None
    connector.tell(object())  # a message no handler knows: the connector crashes
    assert eventually(lambda: service.status(sid).restarts == 1 and service.status(sid).connected)
    assert eventually(lambda: sdk.clients_in(sid) == 1)  # the old one left, the new one joined
    service.write_websocket_message(sid, Binary(bytes(640)))
    seen = read_until(service, sid, Audio)
    assert not any(isinstance(m, Started) for m in seen)  # the call did not start again
    assert [m.data for m in seen if isinstance(m, Audio)] == [bytes(640)]
    service.end_session(sid)
    assert sdk.clients_in(sid) == 0


def test_mulaw_at_8khz_is_converted_both_ways() -> None:
    daily = DailyProviderConfig(
        name="daily", api_base_url="emulator", audio_encoding="audio/x-mulaw", sample_rate=8000
    )
    config = dataclasses.replace(fast_config(), providers={"daily": daily})
    with TransportService(config) as service:
        sid = service.create_session(provider="daily", to=TO).session_id
        started = service.read_websocket_message(sid, timeout=5)
        assert isinstance(started, Started)
        assert (started.media_format.encoding, started.media_format.sample_rate) == (
            "audio/x-mulaw",
            8000,
        )
        ulaw = pcm16_to_ulaw(tone(440.0, 0.02, 8000))  # 160 bytes: 20 ms of 8 kHz mu-law
        service.write_websocket_message(sid, Binary(ulaw))
        (echo,) = [m for m in read_until(service, sid, Audio) if isinstance(m, Audio)]
        assert echo.data == ulaw
        sdk = daily_of(service).sdk
        (phone,) = sdk.participants_in(sid)
        assert sdk.heard(sid, phone) == ulaw_to_pcm16(ulaw)  # PCM16 into the room
        service.end_session(sid)


def test_a_failed_dial_out_leaves_no_room_behind(service: TransportService) -> None:
    service.create_session(provider="daily")  # starts the emulator; this room stays
    emulator = daily_of(service)
    emulator.server.inject("dial_out_start", 500)
    with pytest.raises(ProviderError) as info:
        service.create_session(provider="daily", to=TO)
    assert (info.value.status, info.value.code) == (500, "server-error")
    assert len(emulator.server.rooms) == 1  # only the first session's
    assert len(service.sessions()) == 1


def test_what_daily_cannot_carry_is_refused(service: TransportService) -> None:
    sid = service.create_session(provider="daily", to=TO).session_id
    with pytest.raises(UnsupportedMessage):
        service.write_websocket_message(sid, Clear())
    with pytest.raises(ValueError, match="even number of bytes"):
        service.write_websocket_message(sid, Binary(b"\x00\x01\x02"))
    with pytest.raises(TypeError, match="makes its own room"):
        service.create_session(provider="daily", url="ws://127.0.0.1:1/")


def test_a_daily_provider_with_a_key_for_the_real_api_needs_it() -> None:
    daily = DailyProviderConfig(name="daily")  # https://api.daily.co/v1, and no key
    with TransportService(TransportConfig(providers={"daily": daily})) as service:
        with pytest.raises(ConfigError) as info:
            service.create_session(provider="daily")
    assert info.value.key_path == "providers.daily.api_key"
