"""Exotel calls end to end through the public facade, on loopback, with no account.

``create_session`` -> the Exotel provider's Calls/connect (basic auth) with a ``StreamUrl``
to the media gateway's ``/exotel`` (session and token as custom query parameters) -> the
emulator's phone dials it, sends ``connected`` and ``start``, then base64 PCM16 ``media``
every 100 ms -> the gateway pairs it (its query's parameters) and relays frames unchanged.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from actors import (
    Audio,
    Binary,
    Clear,
    Close,
    Dtmf,
    Mark,
    ProviderError,
    Started,
    Stopped,
    TransportService,
)
from actors.audio import pcm16_to_ulaw, tone, ulaw_to_pcm16
from actors.config import ExotelProviderConfig, GatewayConfig
from actors.emulator.exotel import ExotelEmulator
from tests._provider_calls import gateway_behind_a_proxy, read_until, running, write_across_a_cut
from tests.pcm_calls import config, pcm_frames, peak_hz

TO, FROM = "+919876543210", "08047491899"


def exotel(**fields: object) -> ExotelProviderConfig:
    return ExotelProviderConfig(
        name="exotel",
        api_base_url="emulator",
        caller_id=FROM,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def service() -> Iterator[TransportService]:
    with TransportService(config(exotel())) as svc:
        yield svc


def emulator_of(service: TransportService) -> ExotelEmulator:
    return running(service, "exotel", ExotelEmulator)


def test_a_tone_goes_there_and_back_in_chunks_exotel_accepts(service: TransportService) -> None:
    info = service.create_session(provider="exotel", to=TO, parameters={"who": "t"})
    sid = info.session_id
    started = read_until(service, sid, Started)[-1]
    assert isinstance(started, Started) and started.call_id == info.call_id
    assert (started.media_format.encoding, started.media_format.sample_rate) == ("pcm16", 8000)
    assert dict(started.parameters) == {"who": "t", "session": sid}  # token, sample-rate hidden
    frames = pcm_frames(1000.0, 1.0, 8000)
    for frame in frames:
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Mark("played"))
    back = read_until(service, sid, Mark)
    echoed = b"".join(m.data for m in back if isinstance(m, Audio))
    assert echoed == b"".join(frames)  # every byte, in order
    assert {len(m.data) for m in back if isinstance(m, Audio)} == {320}  # 20 ms for the app
    assert peak_hz(echoed, 8000) == pytest.approx(1000.0, abs=5.0)
    assert info.call_id is not None
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None
    assert media.errors == []  # every chunk within 3200..99840 bytes, a multiple of 320
    assert sum(size * n for size, n in media.received_sizes.items()) == 16000
    assert all(size >= 3200 and size % 320 == 0 for size in media.received_sizes)
    assert media.marks_echoed == ["played"]
    service.end_session(sid)  # closing the stream is the hang-up
    assert media.ended.wait(5)
    assert emulator_of(service).call(info.call_id).status == "completed"


def test_mu_law_8k_on_a_16k_stream_is_converted_both_ways() -> None:
    cfg = config(exotel(sample_rate=16000, audio_encoding="audio/x-mulaw", audio_sample_rate=8000))
    with TransportService(cfg) as service:
        info = service.create_session(provider="exotel", to=TO)
        sid = info.session_id
        read_until(service, sid, Started)
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
        assert media is not None and media.errors == []
        assert peak_hz(bytes(media.recording), 16000) == pytest.approx(440.0, abs=5.0)
        service.end_session(sid)


def test_clear_dtmf_and_the_callers_hang_up(service: TransportService) -> None:
    info = service.create_session(provider="exotel", to=TO)
    sid = info.session_id
    read_until(service, sid, Started)
    assert info.call_id is not None
    for frame in pcm_frames(500.0, 3.0, 8000):
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Clear())
    service.write_websocket_message(sid, Mark("after-clear"))
    read_until(service, sid, Mark)
    media = emulator_of(service).call_media(info.call_id)
    assert media is not None and media.clears == 1
    assert len(media.recording) < 3 * 16000
    emulator_of(service).send_dtmf(info.call_id, "7")
    assert read_until(service, sid, Dtmf)[-1] == Dtmf("7")
    emulator_of(service).hang_up(info.call_id)
    rest = read_until(service, sid, Close)
    assert any(isinstance(m, Stopped) for m in rest)
    service.end_session(sid)


def test_the_gateway_refuses_an_exotel_stream_without_its_basic_credentials() -> None:
    gateway = GatewayConfig(exotel_username="exo", exotel_password="s3cret:with@chars")
    with TransportService(config(exotel(), gateway)) as service:
        info = service.create_session(provider="exotel", to=TO)  # the URL carries them
        read_until(service, info.session_id, Started)
        assert info.call_id is not None
        call = emulator_of(service).call(info.call_id)
        expected = base64.b64encode(b"exo:s3cret:with@chars").decode()
        assert call.authorization == f"Basic {expected}"
        service.end_session(info.session_id)
        # Another stream to the same path without them is refused at the handshake.
        url = service.infrastructure.gateway().public_url + "/exotel?session=x&token=y"
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=5).close()
        assert refused.value.response.status_code == 401
        stats = service.infrastructure.gateway_stats()
        assert stats is not None and stats.rejected.get("bad_basic_auth") == 1


def test_a_dropped_session_hop_resumes_with_nothing_lost_or_doubled() -> None:
    with gateway_behind_a_proxy() as (gateway, proxy, hop):
        with TransportService(config(exotel(), hop)) as service:
            info = service.create_session(provider="exotel", to=TO)
            sid = info.session_id
            read_until(service, sid, Started)
            sent = [bytes([i, 0]) * 160 for i in range(100)]  # each frame its own
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


def test_exotel_error_bodies_are_provider_errors(service: TransportService) -> None:
    service.create_session(provider="exotel", to=TO)  # starts the emulator
    refusal = {"RestException": {"Status": 402, "Message": "Insufficient balance", "Code": 2}}
    emulator_of(service).api.inject(402, refusal)
    with pytest.raises(ProviderError) as caught:
        service.create_session(provider="exotel", to=TO)
    assert (caught.value.status, caught.value.code) == (402, 2)
    assert "Insufficient balance" in str(caught.value)
