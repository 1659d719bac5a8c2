"""``transport-actors demo --inbound`` and ``transport-actors answer``: calls that come in.

The commands run as child processes, as a user runs them. ``demo --inbound`` and ``answer
--dial-in`` use the embedded emulator as the caller (no account); the SIGTERM test's caller is
an emulator in this test process instead, so that the test sees from the provider's side that
the call was hung up once the command has gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actors import cli
from actors.audio import read_wav, tone, write_wav
from actors.config import EmulatorConfig
from actors.emulator.phone import TwilioEmulator
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "AC" + "2e" * 16
TOKEN = "emu-auth-T0KEN-inbound-6161"
GATEWAY_SECRET = "gw-S3CRET-inbound-8888"
CALLER = "+15550177"  # what `answer --dial-in` dials from
OURS = "+15550100"


def _row(output: str, name: str) -> str:
    """The value of one row of a summary table (the first such row)."""
    match = re.search(rf"^\s*{re.escape(name)}\s+(\S+)\s*$", output, re.MULTILINE)
    assert match is not None, f"no {name!r} row in:\n{output}"
    return match.group(1)


def _rows(output: str, name: str) -> list[str]:
    """The values of every row called ``name`` (one per call in ``answer``'s output)."""
    return re.findall(rf"^\s*{re.escape(name)}\s+(\S+)\s*$", output, re.MULTILINE)


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "actors.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or _env(),
        timeout=50,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _peak_hz(pcm: bytes, rate: int) -> float:
    """The strongest frequency of 16-bit PCM, by numpy's FFT (Hann-windowed)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0  # no DC
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[int(np.argmax(spectrum))])


# -- demo --inbound --------------------------------------------------------------------------


def test_demo_inbound_accepts_every_call_and_gets_every_frame_back() -> None:
    code, out, err = _run(
        ["demo", "--inbound", "--sessions", "3", "--seconds", "1", "--no-progress"]
    )
    assert code == 0, out + err
    assert "callers dial http://127.0.0.1:" in out
    assert "inbound calls via gateway ws://127.0.0.1:" in out
    assert int(_row(out, "sessions")) == 3
    assert int(_row(out, "calls dialled")) == int(_row(out, "calls accepted")) == 3
    assert int(_row(out, "frames sent")) == 3 * 50  # 1 s of 20 ms frames per call
    assert int(_row(out, "frames received")) == 3 * 50  # every one echoed by its caller
    assert int(_row(out, "lost")) == 0
    assert int(_row(out, "errors")) == 0
    assert int(_row(out, "marks sent")) == int(_row(out, "marks played back")) == 3
    for name in ("round trip p50 ms", "round trip p99 ms", "accept p50 ms", "accept p99 ms"):
        assert float(_row(out, name)) > 0, name
    assert float(_row(out, "accept p50 ms")) <= float(_row(out, "accept p99 ms"))
    assert "result: OK" in out
    assert "Traceback" not in err


def test_demo_inbound_interrupted_ends_every_session(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C mid-stream: exit 130, and (checked by the leak fixture) nothing left running."""
    from actors.cli import demo_inbound  # noqa: PLC0415

    def interrupt(self: object, elapsed: float, rate: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(demo_inbound._InboundDemo, "_show_progress", interrupt)
    assert cli.main(["demo", "--inbound", "--sessions", "2", "--seconds", "5"]) == 130
    out, err = capsys.readouterr()
    assert "result: INTERRUPTED" in out
    assert int(_row(out, "calls accepted")) == 2
    assert "interrupted" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--provider", "websocket"], "'websocket' is not one"),
        (["--sessions", "101"], "more than inbound.max_sessions (100)"),
    ],
)
def test_demo_inbound_usage_errors(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "--inbound", "--seconds", "0.1", *argv]) == 2
    assert words in capsys.readouterr().err


# -- answer ----------------------------------------------------------------------------------


def test_answer_plays_into_two_dialled_calls_and_records_each_caller(tmp_path: Path) -> None:
    config = tmp_path / "tone.yaml"  # the emulated caller plays a 600 Hz tone, not an echo
    config.write_text(f"emulator: {{numbers: {{'{CALLER}': tone}}, tone_hz: 600.0}}\n")
    played = tmp_path / "in.wav"
    write_wav(played, tone(440.0, 1.0, 16000, 0.5), 16000)  # resampled to 8 kHz mu-law
    recordings = tmp_path / "rec"
    recordings.mkdir()
    argv = ["answer", "-c", str(config), "--dial-in", "2", "--max-calls", "2"]
    code, out, err = _run([*argv, "--wav", str(played), "--record", str(recordings)])
    assert code == 0, out + err
    assert re.search(r"voice URL http://127\.0\.0\.1:\d+/twilio/voice", out)
    assert _rows(out, "frames sent") == ["50", "50"]  # the whole file into each call
    assert _rows(out, "marks played back") == ["1", "1"]  # the final mark: played out
    assert out.count("call result: OK") == 2
    assert "result: OK" in out
    files = sorted(recordings.iterdir())
    assert [f.name for f in files] == sorted(f"{sid}.wav" for sid in _rows(out, "call"))
    assert len(files) == 2
    for path in files:
        pcm, rate = read_wav(path)
        assert rate == 8000
        assert len(pcm) // 2 >= 4000  # at least half a second of the caller
        # The caller's tone, not our 440 Hz coming back: the recording is the caller's side.
        assert _peak_hz(pcm, rate) == pytest.approx(600.0, abs=3.0)


def test_sigterm_during_answer_hangs_up_and_leaves_no_session(tmp_path: Path) -> None:
    played = tmp_path / "long.wav"
    write_wav(played, tone(440.0, 10.0, 8000, 0.5), 8000)
    recordings = tmp_path / "rec"
    recordings.mkdir()
    config = tmp_path / "answer.yaml"
    with TwilioEmulator(EmulatorConfig(), {ACCOUNT: TOKEN}) as emulator:
        config.write_text(
            "providers:\n"
            "  twilio:\n"
            f"    account_sid: {ACCOUNT}\n"
            "    auth_token: ${EMU_TOKEN}\n"
            f"    api_base_url: {emulator.url}\n"
            "gateway:\n"
            "  secret: ${GW_SECRET}\n"
            "  twilio_auth_token: ${EMU_TOKEN}\n",
            encoding="utf-8",
        )
        env = {**_env(), "EMU_TOKEN": TOKEN, "GW_SECRET": GATEWAY_SECRET}
        argv = [sys.executable, "-m", "actors.cli", "--log-level", "INFO", "answer"]
        argv += ["-c", str(config), "--wav", str(played), "--record", str(recordings)]
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
        ) as child:
            assert child.stdout is not None and child.stderr is not None
            lines: list[str] = []
            url = None
            while line := child.stdout.readline():  # blocks until it answers (or dies)
                lines.append(line)
                if (found := re.search(r"voice URL (\S+)", line)) is not None:
                    url = found.group(1)
                if "answering;" in line:
                    break
            assert url is not None, "".join(lines) + child.stderr.read()
            call = emulator.place_inbound_call(OURS, "+15550166", voice_url=url)
            while line := child.stdout.readline():
                lines.append(line)
                if f"call {call.sid} from" in line:
                    break
            # Mid-file: once the caller has heard (and echoed back) some of it.
            assert eventually(lambda: emulator.call_media(call.sid) is not None)
            media = emulator.call_media(call.sid)
            assert media is not None and eventually(lambda: media.frames_sent >= 25)
            child.send_signal(signal.SIGTERM)
            rest, err = child.stdout.read(), child.stderr.read()
            code = child.wait(timeout=20)
        out = "".join(lines) + rest
        assert code == 143, out + err
        assert "result: TERMINATED" in out
        assert "Traceback" not in err and "error:" not in err, err
        # The provider's side: the call was hung up.
        assert emulator.wait_ended(call.sid, 5).status == "completed"
    # The command's side: its one session ended, and what it recorded was written.
    session_id = _row(out, "session")
    assert err.count(": ended CLOSED") == 1, err
    assert f"session {session_id}: ended CLOSED" in err
    assert 10 <= int(_row(out, "frames sent")) < 500
    pcm, rate = read_wav(recordings / f"{call.sid}.wav")
    assert _peak_hz(pcm, rate) == pytest.approx(440.0, abs=3.0)  # our tone, echoed back


def test_answer_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["answer", "--record", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert cli.main(["answer", "--wav", str(tmp_path / "missing.wav")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert cli.main(["answer", "--dial-in", "101"]) == 2
    assert "more than inbound.max_sessions" in capsys.readouterr().err


def test_answer_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        cli.main(["answer", "--help"])
    assert exc_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: transport-actors answer")
    assert "--dial-in" in out and "143 SIGTERM" in out


def test_answer_takes_exotel_calls_that_its_applet_url_streams(tmp_path: Path) -> None:
    """Exotel has no voice webhook: ``answer --provider exotel`` prints the Voicebot applet's
    URL masked, writes it whole to an owner-only file, and the emulated applet dials it."""
    config = tmp_path / "tone.yaml"  # the emulated caller plays a 600 Hz tone
    config.write_text(f"emulator: {{numbers: {{'{OURS}': tone}}, tone_hz: 600.0}}\n")
    played = tmp_path / "in.wav"
    write_wav(played, tone(440.0, 1.0, 16000, 0.5), 16000)  # resampled to 8 kHz PCM16
    recordings = tmp_path / "rec"
    recordings.mkdir()
    url_file = tmp_path / "applet.url"
    argv = ["answer", "-c", str(config), "--provider", "exotel", "--dial-in", "1"]
    argv += ["--max-calls", "1", "--wav", str(played), "--record", str(recordings)]
    code, out, err = _run([*argv, "--applet-url-file", str(url_file)])
    assert code == 0, out + err
    whole = url_file.read_text(encoding="utf-8").strip()
    assert os.stat(url_file).st_mode & 0o777 == 0o600
    token = re.search(r"inbound_token=([^&]+)", whole)
    assert token is not None and token.group(1) not in out + err  # printed masked only
    assert re.search(r"applet URL ws://127\.0\.0\.1:\d+/exotel\?sample-rate=8000&", out)
    assert "inbound_token=***" in out
    assert _rows(out, "frames sent") == ["50"] and _rows(out, "marks played back") == ["1"]
    assert "result: OK" in out
    (recording,) = recordings.iterdir()
    pcm, rate = read_wav(recording)
    assert rate == 8000 and _peak_hz(pcm, rate) == pytest.approx(600.0, abs=3.0)
