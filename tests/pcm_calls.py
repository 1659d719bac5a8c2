"""What the Vonage and Exotel call tests share: configs, tones and FFTs (reading is
``tests._provider_calls.read_until``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from actors.audio import tone
from actors.config import EmulatorConfig, GatewayConfig, TransportConfig
from actors.config.providers import ProviderConfig

from .conftest import fast_config


def config(
    provider: ProviderConfig, gateway: GatewayConfig | None = None, **emulator: object
) -> TransportConfig:
    base = dataclasses.replace(
        fast_config(),
        emulator=EmulatorConfig(**emulator),  # type: ignore[arg-type]
        providers={provider.name: provider},
    )
    return base if gateway is None else dataclasses.replace(base, gateway=gateway)


def pcm_frames(hz: float, seconds: float, rate: int) -> list[bytes]:
    """A tone as 20 ms PCM16 frames at ``rate``."""
    audio = tone(hz, seconds, rate, 0.5)
    size = rate * 2 // 50
    return [audio[i : i + size] for i in range(0, len(audio), size)]


def peak_hz(pcm: bytes, rate: int) -> float:
    """The strongest frequency of PCM16 audio (numpy's FFT, Hann-windowed)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[int(np.argmax(spectrum))])
