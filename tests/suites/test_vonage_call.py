"""Vonage calls end to end through the public facade, on loopback, with no account.

The path is the real one: ``create_session`` -> the Vonage provider's REST client (a fresh
RS256 JWT per request) -> the emulator's ``/v1/calls`` -> its phone dials the NCCO's
websocket (the media gateway's ``/vonage``) and sends ``websocket:connected`` with the
session's headers, then 20 ms binary PCM frames -> the gateway pairs it with the session's
connector and relays the frames unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from actors import (
    Audio,
    Binary,
    Clear,
    Dtmf,
    Mark,
    ProviderError,
    QueueFull,
    Started,
    TransportService,
)
from actors.audio import pcm16_to_ulaw, tone, ulaw_to_pcm16
from actors.config import VonageProviderConfig
from actors.emulator.vonage import VonageEmulator
from actors.lifecycle import SessionState
from actors.providers.vonage import VonageRestClient
from actors.pubkey import new_private_key
from tests._provider_calls import gateway_behind_a_proxy, read_until, running, write_across_a_cut
from tests.conftest import eventually
from tests.pcm_calls import config, pcm_frames, peak_hz

TO, FROM = "+447700900001", "+447700900002"


def vonage(**fields: object) -> VonageProviderConfig:
    return VonageProviderConfig(
        name="vonage",
        api_base_url="emulator",
        from_number=FROM,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def service() -> Iterator[TransportService]:
    with TransportService(config(vonage())) as svc:
        yield svc


def emulator_of(service: TransportService) -> VonageEmulator:
    return running(service, "vonage", VonageEmulator)


def test_a_tone_goes_there_and_back_in_640_byte_frames(service: TransportService) -> None:
    info = service.create_session(provider="vonage", to=TO, parameters={"who": "t"})
    sid = info.session_id
    (started,) = [m for m in read_until(service, sid, Started) if isinstance(m, Started)]
    assert (started.media_format.encoding, started.media_format.sample_rate) == ("pcm16", 16000)
    assert dict(started.parameters) == {"who": "t", "session": sid}  # the token is hidden
    frames = pcm_frames(1000.0, 1.0, 16000)
    for frame in frames:
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Mark("played"))
    back = read_until(service, sid, Mark)
    assert back[-1] == Mark("played")
    echoed = b"".join(m.data for m in back if isinstance(m, Audio))
    assert echoed == b"".join(frames)  # every byte, in order, unchanged
    assert {len(m.data) for m in back if isinstance(m, Audio)} == {640}
    assert peak_hz(echoed, 16000) == pytest.approx(1000.0, abs=5.0)
    assert info.call_id is not None
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None
    assert media.received_sizes == {640: 50}  # exactly 20 ms per frame on the wire
    assert media.marks_echoed == ["played"] and media.errors == []
    service.end_session(sid)
    assert media.ended.wait(5)
    assert emulator_of(service).call(info.call_id).status == "completed"
    assert service.status(sid).state is SessionState.CLOSED


def test_the_application_may_speak_mu_law_8k_on_an_8k_stream() -> None:
    cfg = config(vonage(sample_rate=8000, audio_encoding="audio/x-mulaw", audio_sample_rate=8000))
    with TransportService(cfg) as service:
        info = service.create_session(provider="vonage", to=TO)
        sid = info.session_id
        started = read_until(service, sid, Started)[-1]
        assert isinstance(started, Started)
        assert started.media_format.encoding == "audio/x-mulaw"
        ulaw = pcm16_to_ulaw(tone(440.0, 1.0, 8000, 0.5))
        for i in range(0, len(ulaw), 160):
            service.write_websocket_message(sid, Binary(ulaw[i : i + 160]))
        service.write_websocket_message(sid, Mark("end"))
        back = read_until(service, sid, Mark)
        audio = [m.data for m in back if isinstance(m, Audio)]
        assert {len(a) for a in audio} == {160}
        assert peak_hz(ulaw_to_pcm16(b"".join(audio)), 8000) == pytest.approx(440.0, abs=5.0)
        assert info.call_id is not None
        media = emulator_of(service).call_media(info.call_id)
        assert media is not None and set(media.received_sizes) == {320}
        assert peak_hz(bytes(media.recording), 8000) == pytest.approx(440.0, abs=5.0)
        service.end_session(sid)


def test_pcm16_at_24k_is_resampled_to_a_16k_stream() -> None:
    cfg = config(vonage(audio_encoding="pcm16", audio_sample_rate=24000))
    with TransportService(cfg) as service:
        info = service.create_session(provider="vonage", to=TO)
        sid = info.session_id
        read_until(service, sid, Started)
        for frame in pcm_frames(700.0, 1.0, 24000):
            service.write_websocket_message(sid, Binary(frame))
        service.write_websocket_message(sid, Mark("end"))
        back = read_until(service, sid, Mark)
        audio = b"".join(m.data for m in back if isinstance(m, Audio))
        assert {len(m.data) for m in back if isinstance(m, Audio)} == {960}  # 20 ms at 24 kHz
        assert peak_hz(audio, 24000) == pytest.approx(700.0, abs=5.0)
        assert info.call_id is not None
        media = emulator_of(service).call_media(info.call_id)
        assert media is not None and set(media.received_sizes) == {640}
        assert peak_hz(bytes(media.recording), 16000) == pytest.approx(700.0, abs=5.0)
        service.end_session(sid)


def test_clear_empties_the_phones_queue_and_dtmf_comes_in(service: TransportService) -> None:
    info = service.create_session(provider="vonage", to=TO)
    sid = info.session_id
    read_until(service, sid, Started)
    assert info.call_id is not None
    for frame in pcm_frames(500.0, 3.0, 16000):  # 3 s, sent faster than real time
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Clear())
    service.write_websocket_message(sid, Mark("after-clear"))
    read_until(service, sid, Mark)
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None
    assert media.clears == 1
    assert len(media.recording) < 3 * 32000  # what the clear dropped was never played
    assert media.overflowed == 0  # 150 frames ahead of real time is within Vonage's 1024
    emulator_of(service).send_dtmf(info.call_id, "5#")
    digits = [m.digit for m in read_until(service, sid, Dtmf)]
    digits += [m.digit for m in read_until(service, sid, Dtmf)]
    assert digits == ["5", "#"]
    service.end_session(sid)


@pytest.mark.slow
def test_seconds_of_audio_written_at_once_all_play_at_real_time(service: TransportService) -> None:
    """Written at once, unpaced, audio past Vonage's 1,024-frame buffer is lost (474 of 1,500
    frames, measured): paced, it goes 1 s ahead of the phone's playout, then one frame per
    20 ms, and every frame plays. 15 s here (750 frames), to keep the suite short: what the
    phone holds never exceeds the lead, however much waits in the pacer."""
    info = service.create_session(provider="vonage", to=TO)
    sid = info.session_id
    read_until(service, sid, Started)
    sent = [bytes([i % 251, i // 251]) * 320 for i in range(750)]  # 15 s, each frame its own
    for frame in sent:
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Mark("end"))
    status = service.status(sid)
    assert status.queued_out >= 650  # waiting in the pacer, part of the outbound queue
    back = read_until(service, sid, Mark)
    assert back[-1] == Mark("end")
    assert info.call_id is not None
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None
    assert media.frames_received == 750 and media.overflowed == 0
    assert bytes(media.recording).startswith(b"".join(sent))  # all of it, in order
    assert media.peak_queued_ms <= 1100  # the lead (1 s), far under Vonage's ~20 s
    assert media.first_audio_at is not None and media.last_audio_at is not None
    spread = media.last_audio_at - media.first_audio_at
    print(f"\nvonage paced: 750/750 frames in {spread:.2f} s, peak {media.peak_queued_ms} ms")
    assert 13.0 < spread < 15.5  # real time: 15 s less the 1 s sent ahead
    assert service.status(sid).queued_out == 0 and service.status(sid).dropped_out == 0
    service.end_session(sid)


def test_a_clear_empties_the_pacers_backlog_too(service: TransportService) -> None:
    info = service.create_session(provider="vonage", to=TO)
    sid = info.session_id
    read_until(service, sid, Started)
    for frame in pcm_frames(500.0, 30.0, 16000):  # 30 s at once: most of it waits to be paced
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Mark("before-clear"))  # waits behind the audio
    assert service.status(sid).queued_out > 1000
    service.write_websocket_message(sid, Clear())
    assert service.status(sid).queued_out == 0  # the backlog is gone with the clear
    marks = [m for m in read_until(service, sid, Mark) if isinstance(m, Mark)]
    assert marks == [Mark("before-clear")]  # answered at once: nothing is before it now
    service.write_websocket_message(sid, Mark("after"))
    read_until(service, sid, Mark)
    assert info.call_id is not None
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None
    assert media.clears == 1 and media.frames_received < 200  # the lead and a tick or two
    assert service.status(sid).dropped_out == 0  # a clear is no drop
    service.end_session(sid)


@pytest.mark.parametrize("overflow", ["drop_oldest", "raise"])
def test_the_pacers_backlog_is_bounded_by_the_outbound_queue(overflow: str) -> None:
    cfg = config(vonage())
    cfg = dataclasses.replace(
        cfg, runtime=dataclasses.replace(cfg.runtime, outbound_max=200, outbound_overflow=overflow)
    )
    with TransportService(cfg) as service:
        info = service.create_session(provider="vonage", to=TO)
        sid = info.session_id
        read_until(service, sid, Started)
        refused = 0
        for frame in pcm_frames(500.0, 10.0, 16000):  # 500 frames at once
            try:
                service.write_websocket_message(sid, Binary(frame))
            except QueueFull:
                refused += 1
        status = service.status(sid)
        assert status.queued_out <= 200
        if overflow == "raise":
            assert refused >= 200 and status.dropped_out == 0
        else:  # the oldest waiting audio went, counted
            assert refused == 0 and status.dropped_out >= 200
        assert status.dropped_out + refused + status.queued_out + status.frames_out == 500
        service.end_session(sid)


def test_an_idle_tail_is_padded_and_sent_on_the_connectors_timer(
    service: TransportService,
) -> None:
    """30 ms written without a mark: one whole frame goes at once, the 10 ms left goes,
    padded to a frame, once the stream has been idle for a timer tick."""
    info = service.create_session(provider="vonage", to=TO)
    sid = info.session_id
    read_until(service, sid, Started)
    service.write_websocket_message(sid, Binary(b"\x01\x00" * 480))  # 30 ms at 16 kHz
    assert info.call_id is not None
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None
    assert eventually(lambda: media.received_sizes == {640: 2}, timeout=3.0)
    service.end_session(sid)


def test_a_dropped_session_hop_resumes_with_nothing_lost_or_doubled() -> None:
    with gateway_behind_a_proxy() as (gateway, proxy, hop):
        with TransportService(config(vonage(), hop)) as service:
            info = service.create_session(provider="vonage", to=TO)
            sid = info.session_id
            read_until(service, sid, Started)
            sent = [bytes([i, 0]) * 320 for i in range(100)]  # each frame its own
            write_across_a_cut(service, sid, proxy, sent)
            back = read_until(service, sid, Mark)
            echoed = [m.data for m in back if isinstance(m, Audio)]
            assert echoed == sent  # both ways: played once each, echoed back once each
            assert service.status(sid).restarts == 1 and proxy.connections == 2
            assert info.call_id is not None
            media = emulator_of(service).call_media(info.call_id)
            assert media is not None and bytes(media.recording) == b"".join(sent)
            assert gateway.stats().resumes == 1
            service.end_session(sid)


def test_hang_up_of_an_ended_call_is_success_and_errors_are_provider_errors(
    service: TransportService,
) -> None:
    info = service.create_session(provider="vonage", to=TO)
    read_until(service, info.session_id, Started)
    service.end_session(info.session_id)
    emulator = emulator_of(service)
    assert info.call_id is not None
    with VonageRestClient(
        application_id=emulator.application_id,
        private_key=emulator.private_key,
        api_base_url=emulator.url,
    ) as client:
        assert client.hang_up(info.call_id) is False  # 404: it has already ended
        problem = {
            "type": "https://developer.nexmo.com/api-errors#throttled",
            "title": "Throttled",
            "detail": "Too many calls",
        }
        emulator.api.inject("create_call", 400, problem)
        with pytest.raises(ProviderError) as caught:
            service.create_session(provider="vonage", to=TO)
        assert (caught.value.status, caught.value.code) == (400, "throttled")
        assert "Throttled: Too many calls" in str(caught.value)
    with (
        VonageRestClient(
            application_id=emulator.application_id,
            private_key=new_private_key(),  # not the application's: its JWTs are refused
            api_base_url=emulator.url,
        ) as forged,
        pytest.raises(ProviderError) as refused,
    ):
        forged.hang_up(info.call_id)
    assert refused.value.status == 401
