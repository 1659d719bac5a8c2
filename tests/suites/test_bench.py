"""The benchmark script keeps working: one --quick run, its report checked (not its speed); its
inbound row (our runtime answering calls the dial-in peer places through the voice webhook) in a
short run; and the dial-in peer of its Pipecat row (scripts/_peer.py) works, without Pipecat."""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from actors.audio import pcm16_to_ulaw, ulaw_to_pcm16
from actors.gateway import ServerThread
from actors.gateway._ws import ServerConnection

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_bench_quick_runs_and_reports(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "scripts/bench.py", "--quick", "--output", str(report)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert text in result.stdout  # printed and written alike
    assert "| 5 | ours |" in text and "| 5 | naive |" in text and "ours/naive" in text
    assert "pipelined throughput" in text and "idle sessions held" in text
    for impl in ("ours", "naive"):
        row = next(line for line in text.splitlines() if line.startswith(f"| 5 | {impl} |"))
        cells = [cell.strip() for cell in row.split("|")]
        lost, errors = cells[6], cells[8]
        assert (lost, errors) == ("0", "0"), row


@pytest.mark.timeout(90)
def test_bench_inbound_row_echoes_every_frame(tmp_path: Path) -> None:
    """``--inbound-only``: the dial-in peer posts our voice webhook (signed), dials the stream
    it answers, and application threads that accept_session echo every frame back."""
    report = tmp_path / "inbound.md"
    command = [
        sys.executable,
        "scripts/bench.py",
        "--inbound-only",
        "--pipecat-sessions",
        "3",
        "--seconds",
        "0.5",
        "--output",
        str(report),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=80, check=False
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in report.read_text().splitlines() if "| ours: inbound |" in line)
    cells = [cell.strip() for cell in row.split("|")]
    sent, lost, errors = cells[6], cells[7], cells[9]
    assert (sent, lost, errors) == ("75", "0", "0"), row
    assert "runtime" in cells[10] and "gateway" in cells[10], row


@functools.cache
def _peer_module() -> ModuleType:
    """scripts/_peer.py (the scripts are not a package): the bench's shared peer code."""
    spec = importlib.util.spec_from_file_location("_peer", ROOT / "scripts" / "_peer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_peer"] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_ulaw_tag_survives_a_round_trip_through_pcm() -> None:
    """Pipecat's serializer decodes mu-law to PCM and encodes it back: the tag must come
    through (a raw struct tag would not: 0x7F comes back as 0xFF)."""
    peer = _peer_module()
    for tick in (0, 1, 0x7F7F7F7F, peer.PROBE):
        sent = peer.ulaw_frame(tick)
        assert len(sent) == 160
        back = pcm16_to_ulaw(ulaw_to_pcm16(sent))
        tag = peer.ulaw_tag(back)
        assert tag is not None and tag[0] == tick
        assert tag == peer.ulaw_tag(sent)
    assert peer.ulaw_tag(b"\xff" * 160) is None  # the server's own silence is not an echo


async def _twilio_echo_app(connection: ServerConnection) -> None:
    """An application behind Twilio Media Streams that plays back what it hears, in 40 ms
    chunks after the first frame (as Pipecat does by default): the peer cuts them apart."""
    stream_sid = ""
    held = b""
    async for message in connection:
        event = json.loads(message)
        if event["event"] == "start":
            stream_sid = event["start"]["streamSid"]
            # The peer's own wire (not websockets' reader once dialled) answers pings.
            await asyncio.wait_for(await connection.ping(), 5)
            _ECHO_APP_ENDS.append("ponged")
        elif event["event"] == "media":
            audio = base64.b64decode(event["media"]["payload"])
            first = _is_probe(audio)
            held += audio
            if first or len(held) >= 320:
                payload = base64.b64encode(held).decode()
                held = b""
                reply = {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
                await connection.send(json.dumps(reply))
    _ECHO_APP_ENDS.append(f"closed {connection.close_code}")  # the peer's close handshake


_ECHO_APP_ENDS: list[str] = []


def _is_probe(audio: bytes) -> bool:
    peer = _peer_module()
    tag = peer.ulaw_tag(audio)
    return tag is not None and tag[0] == peer.PROBE


@pytest.mark.timeout(60)
def test_dial_in_peer_times_every_echo() -> None:
    """The dial-in peer (the Pipecat row's load) against a Twilio echo app on loopback: every
    call ready, every frame sent comes back and is timed, CPU sampled for the named process."""
    peer = _peer_module()
    _ECHO_APP_ENDS.clear()
    server = ServerThread(_twilio_echo_app, name="bench-twilio-echo").start()
    try:
        specs = [peer.CallSpec(f"{server.url}/ws", {"n": str(i)}) for i in range(4)]
        result = peer.run_dial(specs, 0.4, {"app": os.getpid()})
    finally:
        server.stop()
    assert sorted(_ECHO_APP_ENDS) == ["closed 1000"] * 4 + ["ponged"] * 4
    assert result.errors == []
    assert (result.ready, result.sent) == (4, 4 * 20)
    assert result.lost == 0 and len(result.rtts_ms) == 80
    assert all(0 < rtt < 2000 for rtt in result.rtts_ms)
    assert set(result.cpu_pct) == {"app"} and result.rss_mb["app"] > 0
    # CPU until the last echo, by process and the peer's own: what CPU per frame is made of.
    assert set(result.cpu_until_drained_s) == {"app", "peer"}
    assert all(seconds >= 0 for seconds in result.cpu_until_drained_s.values())


def _rows(text: str, marker: str) -> list[list[str]]:
    """The cells of the table rows of ``text`` that contain ``marker``."""
    return [
        [cell.strip() for cell in line.split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and marker in line
    ]


@pytest.mark.timeout(150)
def test_bench_provider_rows_echo_every_frame_of_every_provider(tmp_path: Path) -> None:
    """``--providers``: per provider, outbound calls through its emulator (its own process, in
    reflect mode) and the gateway process; every tagged frame comes back, and the section is
    written into the report's notes, the rest of the file kept."""
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nthe main table\n")
    command = [sys.executable, "scripts/bench.py", "--providers", "--sessions", "2"]
    command += ["--seconds", "0.5", "--output", str(report)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=140, check=False
    )
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nthe main table\n") and "<!-- providers: end -->" in text
    for provider in ("twilio", "telnyx", "plivo", "vonage", "exotel"):
        (cells,) = _rows(text, f"| 2 | {provider} |")
        sent, lost, errors = cells[7], cells[8], cells[10]
        assert (sent, lost, errors) == ("50", "0", "0"), cells
        assert all(name in cells[11] for name in ("runtime", "gateway", "emulator")), cells
    assert "ms of CPU per second of call" in text  # the conversion's own cost


@pytest.mark.timeout(150)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_bench_cluster_rows_one_runtime_and_two(tmp_path: Path) -> None:
    """``--cluster``: Redis of its own, one gateway, one runtime node then two; every inbound
    call of the dial-in peer is accepted by a node and echoed, each node's CPU reported."""
    report = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "scripts/bench.py", "--cluster", "--sessions", "2"]
    command += ["--seconds", "0.5", "--output", str(report)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=140, check=False
    )
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    (one,) = _rows(text, "| 1 runtime (")
    (two,) = _rows(text, "| 2 runtimes (")
    for cells in (one, two):
        sent, lost, errors = cells[6], cells[7], cells[9]
        assert (sent, lost, errors) == ("50", "0", "0"), cells
        assert "gateway" in cells[10] and "redis" in cells[10], cells
    assert one[2] == "1 runtime (2)"
    accepted = two[2].removeprefix("2 runtimes (").removesuffix(")").split("/")
    assert sum(map(int, accepted)) == 2 and "node1" in two[10], two
