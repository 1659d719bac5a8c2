"""The PCM phone's ``reflect`` mode (Vonage, Exotel; for the benchmark): every media frame's
audio comes straight back in the provider's framing, every mark is answered at once, and the
phone plays and sends nothing of its own."""

from __future__ import annotations

import pytest

from actors import Audio, Binary, Mark, Started, TransportService
from actors.config import ExotelProviderConfig, VonageProviderConfig
from actors.config.providers import ProviderConfig
from actors.emulator.exotel import ExotelEmulator
from actors.emulator.vonage import VonageEmulator
from tests._provider_calls import read_until
from tests.pcm_calls import config

MULAW_8K = {"audio_encoding": "audio/x-mulaw", "audio_sample_rate": 8000, "sample_rate": 8000}
PROVIDERS: dict[str, ProviderConfig] = {
    "vonage": VonageProviderConfig(
        name="vonage", api_base_url="emulator", from_number="+447700900002", **MULAW_8K
    ),  # type: ignore[arg-type]
    "exotel": ExotelProviderConfig(
        name="exotel", api_base_url="emulator", caller_id="08047491899", **MULAW_8K
    ),  # type: ignore[arg-type]
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_reflect_sends_every_frame_straight_back_and_answers_marks(provider: str) -> None:
    with TransportService(config(PROVIDERS[provider], media="reflect")) as service:
        info = service.create_session(provider=provider, to="+15550100")
        sid = info.session_id
        read_until(service, sid, Started)
        # mu-law bytes that survive the codec's G.711 round trip (all but 0x7F do)
        frames = [bytes([0x10 + i]) * 160 for i in range(20)]
        for frame in frames:
            service.write_websocket_message(sid, Binary(frame))
        service.write_websocket_message(sid, Mark("m1"))
        back = read_until(service, sid, Mark)
        echoed = b"".join(m.data for m in back if isinstance(m, Audio))
        sent = b"".join(frames)
        # What the phone sends of its own (silence, a tone) would come first: nothing does.
        # Exotel's codec pads the chunk a mark closes with silence (0xFF in mu-law).
        assert echoed[: len(sent)] == sent
        assert set(echoed[len(sent) :]) <= {0xFF}
        assert back[-1] == Mark("m1")
        assert info.call_id is not None
        emulator = service.infrastructure.running[provider]
        assert isinstance(emulator, VonageEmulator | ExotelEmulator)
        media = emulator.call_media(info.call_id)
        assert media is not None
        assert media.mode == "reflect" and media.marks_echoed == ["m1"]
        assert media.recording == b"" and media.errors == []  # nothing played at real time
        service.end_session(sid)
        assert media.ended.wait(5)
