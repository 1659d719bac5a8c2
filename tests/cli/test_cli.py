"""The ``transport-actors`` command, run in-process: ``check``, ``demo``, ``--help``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import actors
from actors import cli
from actors.cli import demo

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "config" / "transport.yaml"
WEBSOCKET_EXAMPLE = ROOT / "config" / "examples" / "websocket.yaml"
SECRET = "tok-S3CR3T-must-not-leak-4242"


def _row(output: str, name: str) -> str:
    """The value of one row of the demo's summary table."""
    match = re.search(rf"^\s*{re.escape(name)}\s+(\S+)\s*$", output, re.MULTILINE)
    assert match is not None, f"no {name!r} row in:\n{output}"
    return match.group(1)


def _int_row(output: str, name: str) -> int:
    return int(_row(output, name))


# -- check ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_check_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "-c", str(DEFAULT_CONFIG)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"OK: {DEFAULT_CONFIG}\n")
    assert '"connect_timeout_s": 5.0' in out
    assert '"websocket"' in out
    assert err == ""


@pytest.mark.timeout(60)
def test_check_redacts_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHO_TOKEN", SECRET)
    assert cli.main(["check", "-c", str(WEBSOCKET_EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"OK: {WEBSOCKET_EXAMPLE}\n")
    assert SECRET not in out
    assert SECRET not in err
    assert '"X-Echo-Token": "***"' in out
    assert "wss://echo.example.com/voice" in out


@pytest.mark.timeout(60)
def test_check_missing_env_var(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECHO_TOKEN", raising=False)
    assert cli.main(["check", "-c", str(WEBSOCKET_EXAMPLE)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ")
    assert "ECHO_TOKEN" in err
    assert "providers.echo.headers" in err


@pytest.mark.timeout(60)
def test_check_malformed_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime:\n  connect_timeout_s: [1.0,\n  ask_timeout_s: 2\n", encoding="utf-8")
    assert cli.main(["check", "-c", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ")
    assert str(bad) in err
    assert re.search(r"\bline \d+", err), err


@pytest.mark.timeout(60)
def test_check_invalid_value(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime:\n  connect_timeout_s: -1\n", encoding="utf-8")
    assert cli.main(["check", "-c", str(bad)]) == 2
    _, err = capsys.readouterr()
    assert str(bad) in err
    assert "runtime.connect_timeout_s" in err


@pytest.mark.timeout(60)
def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert cli.main(["check", "-c", str(missing)]) == 2
    _, err = capsys.readouterr()
    assert str(missing) in err


# -- demo -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_demo_streams_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--sessions", "3", "--seconds", "1", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert _int_row(out, "sessions") == 3
    assert _int_row(out, "errors") == 0
    assert _int_row(out, "lost") == 0
    sent = _int_row(out, "frames sent")
    received = _int_row(out, "frames received")
    assert sent > 0
    assert received == sent
    assert sent == 3 * 50  # 1 s of 20 ms frames per session
    # By default these are emulated Twilio calls, with a mark per second played back.
    assert "calls via gateway ws://127.0.0.1:" in out
    assert _int_row(out, "marks sent") == _int_row(out, "marks played back") == 3
    for name in ("round trip p50 ms", "round trip p99 ms", "create_session p50 ms"):
        assert float(_row(out, name)) > 0
    assert "result: OK" in out
    assert "\r" not in err  # no progress line when asked for none


@pytest.mark.timeout(60)
def test_demo_with_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "-c", str(DEFAULT_CONFIG), "--sessions", "1", "--seconds", "0.2"]
    assert cli.main([*argv, "--provider", "websocket", "--frame-ms", "10"]) == 0
    out, _ = capsys.readouterr()
    assert _int_row(out, "frames sent") == _int_row(out, "frames received") == 20
    assert "80-byte frame every 10 ms, echo at ws://127.0.0.1:" in out
    assert "marks sent" not in out  # a plain WebSocket carries no marks


@pytest.mark.timeout(60)
def test_demo_calls_need_twilio_sized_frames(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--frame-ms", "10", "--seconds", "0.1"]) == 2
    assert "--frame-ms must be 20 for calls" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_demo_progress_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli.main(["demo", "--sessions", "2", "--seconds", "0.6"]) == 0
    out, err = capsys.readouterr()
    assert "\r" in err
    assert "frames/s" in err
    assert "frames/s" not in out
    assert _int_row(out, "errors") == 0


@pytest.mark.timeout(60)
def test_demo_interrupted_cleans_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C mid-stream: exit 130, and (checked by the leak fixture) nothing left running."""

    def interrupt(self: object, elapsed: float, rate: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(demo._Demo, "_show_progress", interrupt)
    assert cli.main(["demo", "--sessions", "2", "--seconds", "5"]) == 130
    out, err = capsys.readouterr()
    assert "result: INTERRUPTED" in out
    assert "interrupted" in err


@pytest.mark.timeout(60)
def test_demo_bad_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("supervisor: {max_restarts: 1.5}\n", encoding="utf-8")
    assert cli.main(["demo", "-c", str(bad), "--seconds", "0.1"]) == 2
    _, err = capsys.readouterr()
    assert "supervisor.max_restarts" in err


@pytest.mark.timeout(60)
def test_demo_unknown_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--provider", "nope", "--sessions", "1", "--seconds", "0.1"]) == 2
    _, err = capsys.readouterr()
    assert "unknown provider 'nope'" in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--sessions", "0"],
        ["demo", "--seconds", "-1"],
        ["demo", "--seconds", "nan"],
        ["demo", "--frame-ms", "1"],
        ["check"],
        ["--log-level", "LOUD", "check", "-c", "x"],
        [],
    ],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        cli.main(argv)
    assert exc_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


# -- help and version -------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["demo", "--help"],
        ["check", "--help"],
        ["gateway", "--help"],
        ["emulator", "--help"],
    ],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        cli.main(argv)
    assert exc_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: transport-actors")


@pytest.mark.timeout(60)
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        cli.main(["--version"])
    assert exc_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"transport-actors {actors.__version__}"


# -- gateway and emulator ---------------------------------------------------------------------


def _serve(tmp_path: Path, command: str, yaml_text: str | None) -> tuple[int, str, str]:
    """Run a long-running command in a child process until it prints, then SIGTERM it."""
    argv = [sys.executable, "-m", "actors.cli", command]
    if yaml_text is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml_text, encoding="utf-8")
        argv += ["-c", str(path)]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    ) as child:
        assert child.stdout is not None
        lines = []
        while line := child.stdout.readline():  # blocks until it is serving (or dies)
            lines.append(line)
            if line.startswith("ready"):
                break
        child.send_signal(signal.SIGTERM)
        # Read the rest through the same buffered file: communicate() would skip what
        # readline() has buffered already.
        rest = child.stdout.read()
        err = child.stderr.read() if child.stderr is not None else ""
        return child.wait(timeout=20), "".join(lines) + rest, err


@pytest.mark.timeout(60)
def test_gateway_runs_standalone_until_sigterm(tmp_path: Path) -> None:
    yaml_text = "gateway: {listen: '127.0.0.1:0', secret: '${GW_SECRET:-s3cret-value-0123}'}\n"
    code, out, err = _serve(tmp_path, "gateway", yaml_text)
    assert code == 0, err
    assert "sessions dial ws://127.0.0.1:" in out
    assert "media gateway stopped" in out
    assert "s3cret-value" not in out + err


@pytest.mark.timeout(60)
def test_gateway_needs_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("gateway: {embedded: false}\n", encoding="utf-8")
    assert cli.main(["gateway", "-c", str(path)]) == 2
    assert "gateway.secret: required" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_emulator_runs_standalone_until_sigterm(tmp_path: Path) -> None:
    code, out, err = _serve(tmp_path, "emulator", None)
    assert code == 0, err
    assert "api_base_url http://127.0.0.1:" in out
    assert "account AC00000000000000000000000000000000" in out
