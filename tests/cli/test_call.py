"""``transport-actors call``: a real call through the emulator, a WAV played in and recorded back.

The tone tests run the command in-process with the embedded default (the emulator echoes what
it hears). The Ctrl-C and SIGTERM tests run it as a child process whose Twilio is an emulator
in this test process, so that the test can see the call hung up on the provider's side once
the command has gone. ``--log-format json`` is checked line by line, and for secrets.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import cli
from actors.audio import dominant_frequency, read_wav, rms_dbfs, tone, write_wav
from actors.config import EmulatorConfig
from actors.emulator.phone import TwilioEmulator
from actors.signing import hop_token, stream_token
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "AC" + "1f" * 16
TOKEN = "emu-auth-T0KEN-must-not-leak-5150"
GATEWAY_SECRET = "gw-S3CRET-must-not-leak-7777"
TO = "+15550100"


def _row(output: str, name: str) -> str:
    match = re.search(rf"^\s*{re.escape(name)}\s+(\S+)\s*$", output, re.MULTILINE)
    assert match is not None, f"no {name!r} row in:\n{output}"
    return match.group(1)


def _tone_wav(path: Path, hz: float, seconds: float, rate: int) -> Path:
    write_wav(path, tone(hz, seconds, rate, 0.5), rate)
    return path


@pytest.fixture
def emulator() -> Iterator[TwilioEmulator]:
    """A Twilio emulator in this process, with an account whose token we know."""
    with TwilioEmulator(EmulatorConfig(), {ACCOUNT: TOKEN}) as emulator:
        yield emulator


def _config_for(tmp_path: Path, emulator: TwilioEmulator) -> Path:
    """A deployment whose Twilio is ``emulator``, with a gateway secret and signature checks."""
    path = tmp_path / "call.yaml"
    path.write_text(
        "providers:\n"
        "  twilio:\n"
        f"    account_sid: {ACCOUNT}\n"
        "    auth_token: ${EMU_TOKEN}\n"
        f"    api_base_url: {emulator.url}\n"
        "    from_number: '+15550199'\n"
        "gateway:\n"
        "  secret: ${GW_SECRET}\n"
        "  twilio_auth_token: ${EMU_TOKEN}\n",
        encoding="utf-8",
    )
    return path


# -- in-process ------------------------------------------------------------------------------


def test_a_tone_played_through_a_call_comes_back_in_the_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    played = _tone_wav(tmp_path / "in.wav", 1000.0, 1.0, 16000)  # resampled to 8 kHz mu-law
    recorded = tmp_path / "out.wav"
    argv = ["call", "--to", TO, "--play", str(played), "--record", str(recorded)]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "result: OK" in out, out + err
    assert int(_row(out, "frames sent")) == 50  # 1 s in 20 ms frames
    assert int(_row(out, "frames received")) == 50  # the emulator echoed every one
    assert int(_row(out, "marks sent")) == int(_row(out, "marks played back")) == 1
    assert re.match(r"CA[0-9a-f]{32}$", _row(out, "call"))
    pcm, rate = read_wav(recorded)
    assert rate == 8000
    assert len(pcm) // 2 >= 8000  # all of it (and a gap of silence here and there)
    assert dominant_frequency(pcm, rate) == pytest.approx(1000.0, abs=3.0)
    assert float(_row(out, "dominant Hz")) == pytest.approx(1000.0, abs=3.0)
    assert rms_dbfs(pcm) > -12.0  # a half-scale tone, not a whisper


def test_a_daily_call_plays_and_records_pcm_at_the_rooms_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    played = _tone_wav(tmp_path / "in.wav", 700.0, 0.6, 44100)  # resampled to 16 kHz PCM16
    recorded = tmp_path / "out.wav"
    argv = ["call", "--provider", "daily", "--to", TO, "--play", str(played)]
    assert cli.main([*argv, "--record", str(recorded)]) == 0
    out, _ = capsys.readouterr()
    assert "result: OK" in out
    assert int(_row(out, "frames sent")) == 30
    pcm, rate = read_wav(recorded)
    assert rate == 16000
    assert dominant_frequency(pcm, rate) == pytest.approx(700.0, abs=3.0)


def test_seconds_alone_records_what_the_other_side_plays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tone.yaml"
    config.write_text("emulator: {numbers: {'+15550111': tone}, tone_hz: 600.0}\n")
    recorded = tmp_path / "out.wav"
    argv = ["call", "-c", str(config), "--to", "+15550111", "--seconds", "1"]
    assert cli.main([*argv, "--record", str(recorded)]) == 0
    out, _ = capsys.readouterr()
    assert int(_row(out, "frames sent")) == 0
    assert int(_row(out, "frames received")) >= 10  # about 50, fewer on a starved machine
    pcm, rate = read_wav(recorded)
    assert dominant_frequency(pcm, rate) == pytest.approx(600.0, abs=3.0)


def test_a_call_the_other_side_hangs_up_ends_early(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "short.yaml"
    config.write_text("emulator: {max_call_s: 0.5}\n")  # the phone hangs up after 0.5 s
    played = _tone_wav(tmp_path / "in.wav", 440.0, 5.0, 8000)
    recorded = tmp_path / "out.wav"
    argv = ["call", "-c", str(config), "--to", TO, "--play", str(played)]
    assert cli.main([*argv, "--record", str(recorded)]) == 1
    out, _ = capsys.readouterr()
    assert "note: the other side hung up" in out
    assert "result: ENDED EARLY" in out
    assert 0 < int(_row(out, "frames sent")) < 250  # well before the end of the file
    pcm, rate = read_wav(recorded)
    assert dominant_frequency(pcm, rate) == pytest.approx(440.0, abs=3.0)


def test_json_logs_carry_the_session_id_and_no_secret(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    emulator: TwilioEmulator,
) -> None:
    monkeypatch.setenv("EMU_TOKEN", TOKEN)
    monkeypatch.setenv("GW_SECRET", GATEWAY_SECRET)
    played = _tone_wav(tmp_path / "in.wav", 440.0, 0.4, 8000)
    argv = ["--log-level", "DEBUG", "--log-format", "json", "call"]
    argv += ["-c", str(_config_for(tmp_path, emulator)), "--to", TO, "--play", str(played)]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    session_id = _row(out, "session")
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    assert lines
    for entry in lines:
        assert {"time", "level", "logger", "message"} <= entry.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    about = [entry for entry in lines if entry.get("session_id") == session_id]
    messages = [entry["message"] for entry in about]
    # The session's story: placed, connected, open, hung up, ended with its counters.
    for expected in ("Twilio call CA", "CONNECTING -> OPEN", "OPEN -> CLOSING", "ended CLOSED"):
        assert any(expected in message for message in messages), expected
    # Every line that names the session says so in session_id.
    for entry in lines:
        if f"session {session_id}" in entry["message"]:
            assert entry.get("session_id") == session_id, entry
    token = hop_token(GATEWAY_SECRET, session_id)
    basic = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    for secret in (TOKEN, GATEWAY_SECRET, token, stream_token(GATEWAY_SECRET, session_id), basic):
        assert secret not in err
        assert secret not in out


# -- signals (child processes) ---------------------------------------------------------------


def _interrupted_call(
    tmp_path: Path, emulator: TwilioEmulator, signum: int
) -> tuple[int, str, str, str]:
    """Start a 10-second call in a child, send ``signum`` once it streams; return the exit
    code, stdout, stderr and the call's sid."""
    played = _tone_wav(tmp_path / "long.wav", 440.0, 10.0, 8000)
    recorded = tmp_path / "out.wav"
    env = {**os.environ, "EMU_TOKEN": TOKEN, "GW_SECRET": GATEWAY_SECRET, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "actors.cli", "--log-level", "INFO", "call"]
    argv += ["-c", str(_config_for(tmp_path, emulator)), "--to", TO]
    argv += ["--play", str(played), "--record", str(recorded)]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        lines = []
        while line := child.stdout.readline():  # blocks until the call streams (or it dies)
            lines.append(line)
            if "streaming" in line:
                break
        found = re.search(r"call (CA[0-9a-f]{32})", "".join(lines))
        media = emulator.call_media(found.group(1)) if found is not None else None
        # Mid-file: once the phone has played some of it and sent half a second of it back
        # (so that the recording has enough of the tone to measure, even on a loaded machine).
        assert media is not None and eventually(lambda: media.frames_sent >= 25)
        child.send_signal(signum)
        rest, err = child.stdout.read(), child.stderr.read()
        code = child.wait(timeout=20)
    assert found is not None, "".join(lines) + err
    return code, "".join(lines) + rest, err, found.group(1)


@pytest.mark.parametrize(
    ("signum", "code", "verdict"),
    [(signal.SIGINT, 130, "INTERRUPTED"), (signal.SIGTERM, 143, "TERMINATED")],
)
def test_a_signal_during_a_call_hangs_it_up_and_leaves_nothing_behind(
    tmp_path: Path, emulator: TwilioEmulator, signum: int, code: int, verdict: str
) -> None:
    exit_code, out, err, call_sid = _interrupted_call(tmp_path, emulator, signum)
    assert exit_code == code, out + err
    assert f"result: {verdict}" in out
    assert "error:" not in err and "Traceback" not in err, err
    # The provider's side: the call was hung up and its stream is over.
    media = emulator.call_media(call_sid)
    assert media is not None
    assert media.ended.wait(5)
    assert emulator.api.call(call_sid).status == "completed"
    # The session's side: it ended (its final counters logged), after some of the file played.
    session_id = _row(out, "session")
    assert f"session {session_id}: ended CLOSED" in err
    assert 10 <= int(_row(out, "frames sent")) < 500
    pcm, rate = read_wav(tmp_path / "out.wav")  # what was recorded so far, as a WAV
    assert rate == 8000
    assert dominant_frequency(pcm, rate) == pytest.approx(440.0, abs=3.0)


def test_demo_stops_on_sigterm_with_every_session_ended() -> None:
    argv = [sys.executable, "-m", "actors.cli", "--log-level", "INFO", "demo"]
    argv += ["--sessions", "2", "--seconds", "30", "--no-progress"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        lines = []
        while line := child.stdout.readline():
            lines.append(line)
            if "streaming" in line:
                break
        child.send_signal(signal.SIGTERM)
        rest, err = child.stdout.read(), child.stderr.read()
        code = child.wait(timeout=20)
    out = "".join(lines) + rest
    assert code == 143, out + err
    assert "result: TERMINATED" in out
    assert _row(out, "errors") == "0", err
    assert err.count(": ended CLOSED") == 2, err


# -- usage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([], "nothing to do"),
        (["--play", "missing.wav"], "cannot read missing.wav"),
        (["--seconds", "1", "--provider", "websocket"], "needs a twilio or daily provider"),
        (["--seconds", "1", "--record", "no/such/dir/out.wav"], "no such directory"),
        (["--seconds", "1", "--provider", "nope"], "unknown provider 'nope'"),
    ],
)
def test_usage_errors(
    extra: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chdir(tmp_path)
    try:
        assert cli.main(["call", "--to", TO, *extra]) == 2
    finally:
        os.chdir(ROOT)
    _, err = capsys.readouterr()
    assert words in err


def test_a_file_that_is_no_wav_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "in.wav"
    bogus.write_bytes(b"not a wav file at all")
    assert cli.main(["call", "--to", TO, "--play", str(bogus)]) == 2
    assert "not a PCM WAV file" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        cli.main(["call", "--help"])
    assert exc_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: transport-actors call")
    assert "--record" in out and "143 SIGTERM" in out
