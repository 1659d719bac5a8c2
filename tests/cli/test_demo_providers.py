"""``transport-actors demo --provider X`` for every provider whose calls go through the gateway,
run as the command a user types (a child process), against the embedded emulators."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The provider, and the bytes of one 20 ms frame of its audio (mu-law 8 kHz; Vonage's PCM16
#: at 16 kHz; Exotel's at 8 kHz).
PROVIDERS = [("telnyx", 160), ("plivo", 160), ("vonage", 640), ("exotel", 320)]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("provider", "frame_bytes"), PROVIDERS)
def test_demo_passes_for_each_provider(provider: str, frame_bytes: int) -> None:
    argv = [sys.executable, "-m", "actors.cli", "demo", "--provider", provider]
    argv += ["--sessions", "2", "--seconds", "1.1", "--no-progress"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=80, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "result: OK" in out
    assert f"one {frame_bytes}-byte frame every 20 ms, calls via" in out
    assert f"{provider} http://127.0.0.1:" in out  # its emulator ran
    sent = int(re.search(r"frames sent\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    back = int(re.search(r"frames received\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    assert sent == back == 2 * 55
    assert re.search(r"marks played back\s+2\b", out)


def test_demo_refuses_converted_audio_for_pcm_providers(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "providers:\n  vonage: {type: vonage, api_base_url: emulator, "
        "audio_encoding: pcm16, audio_sample_rate: 8000}\n",
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "actors.cli", "demo", "-c", str(config), "--provider", "vonage"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 2
    assert "audio_encoding: provider" in done.stderr
