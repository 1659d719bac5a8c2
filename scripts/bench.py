#!/usr/bin/env python3
"""Benchmark transport-actors against a naive websocket-client program, same run, same peer.

The path measured is the whole call path of a Twilio session: the application writes and
reads through ``TransportService`` -> connector -> media gateway -> a provider-side peer that
speaks Twilio's Media Streams and sends every media frame straight back. The gateway and the
peer (the Twilio emulator in ``reflect`` mode, REST API included) each run in a process of
their own, so that neither shares our GIL; their CPU is reported beside ours.

Per session count N, for ours and for the naive baseline (one websocket-client socket and one
reader thread per call, a shared sender thread, no actors; it places its calls through the
same REST API and dials the same gateway): each call sends one 20 ms media frame (160 bytes
of mu-law, base64 in Twilio's JSON, about 300 bytes on the wire) every 20 ms and reads the
reflections. Reported: round trip p50/p99/p99.9, frames lost, frames late (> 100 ms), CPU %
of this process and of the gateway and peer, RSS per session, threads, call set-up p50/p99,
and the ratios ours/baseline. Also: pipelined throughput of one session against raw
websocket-client (echo server), and 1,000 idle sessions held (RSS, threads).

The plain run (``python scripts/bench.py``) measures every section in one go: the outbound
sweep above, inbound calls from a dial-in peer beside Pipecat (installed into a venv of its
own on first use: ``--no-pipecat`` measures ours alone), cluster mode (``--no-cluster`` skips
it), throughput, set-up and idle sessions; then it judges issue 17's targets from that run's
figures (``scripts/_targets.py``). It prints the report and writes BENCHMARKS.md.
``--quick`` is a seconds-long smoke run without Pipecat or the cluster.

Sections run on their own, each rewriting only its block of BENCHMARKS.md's notes:
``--pipecat-only`` (Pipecat beside our inbound calls), ``--providers`` (one row per telephony
provider, outbound through its emulator in ``reflect`` mode: ``scripts/_providers.py``) and
``--cluster`` (one runtime node against two behind one gateway, on a Redis of its own:
``scripts/_cluster.py``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import requests  # noqa: E402  (the naive baseline's REST calls)
import websocket  # noqa: E402  (the naive baseline and the raw throughput reference)
from _cluster import CLUSTER_BEGIN, CLUSTER_END, cluster_report, cluster_sweep  # noqa: E402

# The frame clock, tags and helper processes, shared with the dial-in peer (scripts/_peer.py).
from _peer import (  # noqa: E402
    FRAME_S,
    LATE_MS,
    CallSpec,
    DialResult,
    Helper,
    serve_dialer,
)
from _peer import cpu_s as _cpu_s  # noqa: E402
from _peer import frame as _frame  # noqa: E402
from _peer import pct as _pct  # noqa: E402
from _peer import report_cpu_until_stopped as _report_cpu_until_stopped  # noqa: E402
from _peer import rss_mb as _rss_mb  # noqa: E402
from _peer import rtt_ms as _rtt_ms  # noqa: E402
from _providers import (  # noqa: E402
    PROVIDERS,
    PROVIDERS_BEGIN,
    PROVIDERS_END,
    provider_rows,
    providers_report,
)
from _rows import NOTES_MARKER, PEER_HEADER, PeerRow, load_line, with_block  # noqa: E402
from _rows import peer_row as _peer_row  # noqa: E402
from _rows import ratio as _ratio  # noqa: E402
from _rows import row_from_dial as _row_from_dial  # noqa: E402
from _rows import row_holds as _row_holds  # noqa: E402
from _targets import Outbound, RunFigures, targets_report  # noqa: E402

from actors import Audio, Binary, Started, Text, TransportService  # noqa: E402
from actors.config import (  # noqa: E402
    EmulatorConfig,
    GatewayConfig,
    InboundConfig,
    RuntimeConfig,
    TransportConfig,
    TwilioProviderConfig,
    WebSocketProviderConfig,
)
from actors.emulator.phone import TwilioEmulator  # noqa: E402
from actors.gateway import ServerThread, echo  # noqa: E402
from actors.gateway.server import MediaGateway  # noqa: E402
from actors.signing import hop_token, stream_token  # noqa: E402

ACCOUNT = "AC" + "be" * 16
AUTH = "bench-auth-token"
SECRET = "bench-gateway-secret"
TO, FROM = "+15550100", "+15550199"


# -- helper processes: the gateway and the peer -----------------------------------------------


def _serve_gateway(conn: Connection) -> None:
    gateway = MediaGateway(GatewayConfig(embedded=False, secret=SECRET)).start()
    conn.send(gateway.url)
    _report_cpu_until_stopped(conn)
    gateway.stop()


def _serve_peer(conn: Connection) -> None:
    emulator = TwilioEmulator(EmulatorConfig(media="reflect"), {ACCOUNT: AUTH}).start()
    conn.send(emulator.url)
    _report_cpu_until_stopped(conn)
    emulator.stop()


# -- one load step ----------------------------------------------------------------------------


@dataclass
class Step:
    impl: str
    sessions: int
    sent: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    late: int = 0
    errors: list[str] = field(default_factory=list)
    setup_ms: list[float] = field(default_factory=list)
    create_ms: list[float] = field(default_factory=list)  # ours: create_session alone
    cpu_pct: float = 0.0
    gateway_pct: float = 0.0
    peer_pct: float = 0.0
    rss_per_session_mb: float = 0.0
    threads: int = 0
    rss_mb: float = 0.0  # this process's RSS at the window's end
    gateway_rss_mb: float = 0.0  # the gateway process's, likewise

    @property
    def received(self) -> int:
        return len(self.rtts_ms)

    @property
    def lost(self) -> int:
        return self.sent - self.received


class Lanes:
    """Per-session reader results, merged under a lock."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.lock = threading.Lock()

    def add(self, rtts: list[float], error: str | None) -> None:
        with self.lock:
            self.step.rtts_ms.extend(rtts)
            self.step.late += sum(rtt > LATE_MS for rtt in rtts)
            if error:
                self.step.errors.append(error)


def _run_load(
    step: Step,
    send_all: Callable[[int], int],
    readers: list[threading.Thread],
    seconds: float,
    gateway: Helper,
    peer: Helper,
) -> None:
    """Every 20 ms one frame per session, from one thread on absolute deadlines; measure CPU."""
    ticks = int(seconds / FRAME_S)
    for reader in readers:
        reader.start()
    g0, p0 = gateway.cpu_s(), peer.cpu_s()
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    waiter = threading.Event()
    for tick in range(ticks):
        delay = wall0 + tick * FRAME_S - time.perf_counter()
        if delay > 0:
            waiter.wait(delay)
        step.sent += send_all(tick)
    wall = time.perf_counter() - wall0
    step.cpu_pct = 100 * (_cpu_s() - cpu0) / wall
    step.gateway_pct = 100 * (gateway.cpu_s() - g0) / wall
    step.peer_pct = 100 * (peer.cpu_s() - p0) / wall
    step.threads = threading.active_count()
    step.rss_mb, step.gateway_rss_mb = _rss_mb(), _rss_mb(gateway.pid)
    for reader in readers:
        reader.join(LATE_MS / 1000 * 20)


def load_ours(n: int, seconds: float, gateway: Helper, peer: Helper) -> Step:
    step = Step("ours", n)
    config = TransportConfig(
        runtime=RuntimeConfig(ping_interval_s=10.0, ping_timeout_s=10.0),
        providers={
            "twilio": TwilioProviderConfig(
                name="twilio", account_sid=ACCOUNT, auth_token=AUTH, api_base_url=peer.url
            )
        },
        gateway=GatewayConfig(embedded=False, url=gateway.url, secret=SECRET),
    )
    rss0 = _rss_mb()
    with TransportService(config) as service:

        def create(_: int) -> str:
            t0 = time.perf_counter()
            sid = service.create_session(provider="twilio", to=TO, from_=FROM).session_id
            step.create_ms.append((time.perf_counter() - t0) * 1000)
            while not isinstance(service.read_websocket_message(sid, timeout=10), Started):
                pass
            step.setup_ms.append((time.perf_counter() - t0) * 1000)
            return sid

        with ThreadPoolExecutor(8) as pool:
            sids = list(pool.map(create, range(n)))
        step.rss_per_session_mb = (_rss_mb() - rss0) / n
        lanes = Lanes(step)
        ticks = int(seconds / FRAME_S)

        def read(sid: str) -> None:
            rtts: list[float] = []
            error = None
            try:
                while len(rtts) < ticks:
                    message = service.read_websocket_message(sid, timeout=LATE_MS / 1000 * 20)
                    if isinstance(message, Audio):
                        rtts.append(_rtt_ms(message.data))
            except Exception as exc:
                error = f"{sid}: {exc}"
            lanes.add(rtts, error)

        def send_all(tick: int) -> int:
            message = Binary(_frame(tick))
            for sid in sids:
                service.write_websocket_message(sid, message)
            return len(sids)

        readers = [threading.Thread(target=read, args=(sid,)) for sid in sids]
        _run_load(step, send_all, readers, seconds, gateway, peer)
        for sid in sids:
            service.end_session(sid)
    return step


class NaiveCall:
    """The baseline: what a program without this library would write for one call."""

    def __init__(self, http: requests.Session, peer: Helper, gateway: Helper, n: int) -> None:
        session_id = f"naive-{n}-{os.urandom(6).hex()}"
        token = stream_token(SECRET, session_id)
        twiml = (
            f'<Response><Connect><Stream url="{gateway.url}/twilio">'
            f'<Parameter name="session" value="{session_id}"/>'
            f'<Parameter name="token" value="{token}"/></Stream></Connect></Response>'
        )
        reply = http.post(
            f"{peer.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
            data={"To": TO, "From": FROM, "Twiml": twiml},
            auth=(ACCOUNT, AUTH),
            timeout=10,
        )
        reply.raise_for_status()
        self.call_sid = reply.json()["sid"]
        self.ws = websocket.create_connection(
            f"{gateway.url}/sessions/{session_id}",
            header=[f"Authorization: Bearer {hop_token(SECRET, session_id)}"],
            enable_multithread=True,
            timeout=10,
        )
        self.stream_sid = ""
        while not self.stream_sid:
            event = json.loads(self.ws.recv())
            if event["event"] == "start":
                self.stream_sid = event["start"]["streamSid"]

    def send(self, payload: bytes) -> None:
        self.ws.send(
            json.dumps(
                {
                    "event": "media",
                    "streamSid": self.stream_sid,
                    "media": {"payload": base64.b64encode(payload).decode()},
                }
            )
        )


def load_naive(n: int, seconds: float, gateway: Helper, peer: Helper) -> Step:
    step = Step("naive", n)
    rss0 = _rss_mb()
    http = requests.Session()
    calls: list[NaiveCall] = []
    try:

        def place(i: int) -> NaiveCall:
            t0 = time.perf_counter()
            call = NaiveCall(http, peer, gateway, i)
            step.setup_ms.append((time.perf_counter() - t0) * 1000)
            return call

        with ThreadPoolExecutor(8) as pool:
            calls = list(pool.map(place, range(n)))
        step.rss_per_session_mb = (_rss_mb() - rss0) / n
        lanes = Lanes(step)
        ticks = int(seconds / FRAME_S)

        def read(call: NaiveCall) -> None:
            rtts: list[float] = []
            error = None
            try:
                while len(rtts) < ticks:
                    event = json.loads(call.ws.recv())
                    if event["event"] == "media":
                        rtts.append(_rtt_ms(base64.b64decode(event["media"]["payload"])))
            except Exception as exc:
                error = f"{call.call_sid}: {exc!r}"
            lanes.add(rtts, error)

        def send_all(tick: int) -> int:
            payload = _frame(tick)
            for call in calls:
                call.send(payload)
            return len(calls)

        readers = [threading.Thread(target=read, args=(call,)) for call in calls]
        _run_load(step, send_all, readers, seconds, gateway, peer)
    finally:
        for call in calls:
            http.post(
                f"{peer.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.call_sid}.json",
                data={"Status": "completed"},
                auth=(ACCOUNT, AUTH),
                timeout=10,
            )
            call.ws.close()
        http.close()
    return step


# -- single-session throughput and idle sessions ----------------------------------------------


def _echo_server() -> ServerThread:
    return ServerThread(echo, max_size=None, name="bench-echo").start()


def throughput(count: int) -> tuple[float, float]:
    """Pipelined round trips of one session, ours and raw websocket-client, messages/s."""
    payload = "x" * 300
    server = _echo_server()
    try:
        config = TransportConfig(runtime=RuntimeConfig(inbox_max=count, outbound_max=count))
        with TransportService(config) as service:
            sid = service.create_session(url=server.url).session_id
            started = time.perf_counter()
            reader = threading.Thread(
                target=lambda: [
                    service.read_websocket_message(sid, timeout=30) for _ in range(count)
                ]
            )
            reader.start()
            message = Text(payload)
            for _ in range(count):
                service.write_websocket_message(sid, message)
            reader.join()
            ours = count / (time.perf_counter() - started)
        ws = websocket.create_connection(
            server.url, enable_multithread=True, skip_utf8_validation=True
        )
        started = time.perf_counter()
        raw_reader = threading.Thread(target=lambda: [ws.recv() for _ in range(count)])
        raw_reader.start()
        for _ in range(count):
            ws.send(payload)
        raw_reader.join()
        raw = count / (time.perf_counter() - started)
        ws.close()
    finally:
        server.stop()
    return ours, raw


def create_latency(n: int) -> list[float]:
    """``create_session`` of a plain WebSocket session on loopback, ms, one at a time."""
    server = _echo_server()
    times: list[float] = []
    try:
        with TransportService() as service:
            for _ in range(n):
                t0 = time.perf_counter()
                sid = service.create_session(url=server.url).session_id
                times.append((time.perf_counter() - t0) * 1000)
                service.end_session(sid)
    finally:
        server.stop()
    return times


def idle(n: int) -> tuple[float, int, float]:
    """Hold ``n`` idle sessions: RSS per session (MB), threads, seconds to open them all."""
    server = _echo_server()
    try:
        config = TransportConfig(
            providers={"websocket": WebSocketProviderConfig(name="websocket", url=server.url)}
        )
        rss0 = _rss_mb()
        with TransportService(config) as service:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                sids = list(pool.map(lambda _: service.create_session().session_id, range(n)))
            opened = time.perf_counter() - t0
            per_session = (_rss_mb() - rss0) / n
            threads = threading.active_count()
            assert all(service.is_websocket_connected(sid) for sid in sids[:: max(1, n // 20)])
    finally:
        server.stop()
    return per_session, threads, opened


# -- a real peer side by side: Pipecat --------------------------------------------------------

PIPECAT_VENV = ROOT / ".cache" / "pipecat-venv"
# What was measured (BENCHMARKS.md names it). The venv is made on first use of --pipecat, and
# made again when this list changes; it is never a dependency of the project.
PIPECAT_REQUIREMENTS = (
    "pipecat-ai[websocket]==1.14.0",
    "fastapi==0.165.0",
    "uvicorn[standard]==0.54.0",
)
PIPECAT_SWEEP = [25, 50, 75, 100, 150, 200, 250]
CLUSTER_SWEEP = [25, 50, 75, 100, 125, 150, 200]
PIPECAT_BEGIN = "<!-- pipecat: begin (written by bench.py --pipecat) -->"
PIPECAT_END = "<!-- pipecat: end -->"
INBOUND = "ours: inbound"


def pipecat_python() -> Path:
    """The Pipecat venv's interpreter, the venv made and Pipecat installed into it if need be."""
    python = PIPECAT_VENV / "bin" / "python"
    stamp = PIPECAT_VENV / "bench-requirements.txt"
    wanted = "\n".join(PIPECAT_REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(
        f"bench: installing {', '.join(PIPECAT_REQUIREMENTS)} into {PIPECAT_VENV}", file=sys.stderr
    )
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PIPECAT_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PIPECAT_REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return python


class PipecatServer:
    """``scripts/pipecat_echo_server.py`` in a process of its own, in the Pipecat venv."""

    def __init__(self, python: Path, log: Path) -> None:
        self._log = log.open("w")
        self._process = subprocess.Popen(
            [str(python), str(ROOT / "scripts" / "pipecat_echo_server.py")],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], 120)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("pipecat-echo ready"):
            self.stop()
            raise RuntimeError(f"the Pipecat server did not start (see {log}): {line!r}")
        fields = dict(item.split("=") for item in line.split()[2:])
        self.pid = self._process.pid
        self.base = f"127.0.0.1:{fields['port']}"
        self.url = f"ws://{self.base}/ws"

    def active(self) -> int:
        with urllib.request.urlopen(f"http://{self.base}/active", timeout=5) as reply:
            return int(json.load(reply)["pipelines"])

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until the last step's pipelines have all ended."""
        deadline = time.monotonic() + timeout
        waiter = threading.Event()
        while self.active() and time.monotonic() < deadline:
            waiter.wait(0.1)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._log.close()


def _cpu_per_frame(n: int, row: PeerRow) -> str:
    """CPU microseconds per echoed frame by process, from the window's start until the last
    echo (less noisy than latency on a shared machine, and true of a late step too)."""
    echoed = max(1, len(row.rtts_ms))
    parts = ", ".join(
        f"{name} {1e6 * s / echoed:.1f}" for name, s in row.cpu_until_drained_s.items()
    )
    return f"N={n} {row.impl}: CPU us per echoed frame: {parts}"


def load_pipecat(
    n: int, seconds: float, server: PipecatServer, dialer: Helper, idle_rss: float
) -> PeerRow:
    """N Twilio calls dialled into the Pipecat echo bot by the dial-in peer."""
    server.wait_idle()
    specs = [CallSpec(server.url)] * n
    result: DialResult = dialer.request(("load", specs, seconds, {"pipecat": server.pid}))
    return _row_from_dial("pipecat", n, result, {"pipecat": idle_rss})


def load_ours_inbound(
    n: int, seconds: float, gateway: Helper, rest: Helper, dialer: Helper
) -> PeerRow:
    """Ours measured as Pipecat is: N inbound calls dialled in by the same dial-in peer.

    The runtime is this process: a ``TransportService`` on the external gateway process with a
    Twilio provider whose account the peer signs for, and N application threads, each taking a
    call with ``accept_session`` and writing back every ``Binary`` it reads (the mu-law tags
    come back untouched; ``Started``, ``CallStatus`` and the like are skipped). Per call the
    peer posts the voice webhook as Twilio would (signed), reads the ``<Connect><Stream>`` it
    answers, and dials that stream at the gateway with its parameters. CPU and RSS: runtime +
    gateway; the peer's CPU is its own column. ``rest`` is the Twilio REST API (the emulator):
    a session's end hangs its call up there, as on Twilio (the call is already over: 404).
    """
    config = TransportConfig(
        runtime=RuntimeConfig(ping_interval_s=10.0, ping_timeout_s=10.0),
        providers={
            "twilio": TwilioProviderConfig(
                name="twilio", account_sid=ACCOUNT, auth_token=AUTH, api_base_url=rest.url
            )
        },
        gateway=GatewayConfig(embedded=False, url=gateway.url, secret=SECRET),
        inbound=InboundConfig(max_sessions=max(16, 2 * n), max_connections=64),
    )
    idle_rss = {"runtime": _rss_mb(), "gateway": _rss_mb(gateway.pid)}
    errors: list[str] = []
    with TransportService(config) as service:
        voice_url = service.voice_url

        def answer_calls() -> None:
            try:
                sid = service.accept_session(timeout=60).session_id
            except Exception as exc:
                errors.append(f"accept: {type(exc).__name__}: {exc}")
                return
            read, write = service.read_websocket_message, service.write_websocket_message
            try:
                while (message := read(sid, timeout=60)) is not None:
                    if isinstance(message, Binary):
                        write(sid, message)
            except Exception as exc:
                errors.append(f"{sid}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=answer_calls, name="bench-app") for _ in range(n)]
        for thread in threads:
            thread.start()
        spec = CallSpec("", voice_url=voice_url, auth_token=AUTH, to=TO, from_=FROM)
        try:
            pids = {"runtime": os.getpid(), "gateway": gateway.pid}
            result: DialResult = dialer.request(("load", [spec] * n, seconds, pids))
        finally:
            for thread in threads:
                thread.join(10)
    result.errors.extend(errors)
    return _row_from_dial(INBOUND, n, result, idle_rss)


def inbound_sweep(sweep: list[int], seconds: float, gateway: Helper, rest: Helper) -> list[PeerRow]:
    """Ours alone, inbound calls from the dial-in peer (no Pipecat: nothing to install)."""
    dialer = Helper(serve_dialer)
    rows: list[PeerRow] = []
    try:
        for n in sweep:
            rows.append(load_ours_inbound(n, seconds, gateway, rest, dialer))
            print(_peer_row(rows[-1]), file=sys.stderr, flush=True)
            print(_cpu_per_frame(n, rows[-1]), file=sys.stderr, flush=True)
    finally:
        dialer.stop()
    return rows


def pipecat_sweep(
    sweep: list[int], seconds: float, gateway: Helper, rest: Helper
) -> list[tuple[PeerRow, PeerRow]]:
    """Per N: ours (inbound calls), then Pipecat, same load from the same dial-in peer."""
    python = pipecat_python()
    server = PipecatServer(python, ROOT / ".cache" / "pipecat-server.log")
    dialer = Helper(serve_dialer)
    rows: list[tuple[PeerRow, PeerRow]] = []
    try:
        server_idle_rss = _rss_mb(server.pid)
        for n in sweep:
            ours = load_ours_inbound(n, seconds, gateway, rest, dialer)
            pipecat = load_pipecat(n, seconds, server, dialer, server_idle_rss)
            rows.append((ours, pipecat))
            print(*_pipecat_table([(ours, pipecat)])[2:], sep="\n", file=sys.stderr, flush=True)
    finally:
        dialer.stop()
        server.stop()
    return rows


def _pipecat_table(rows: list[tuple[PeerRow, PeerRow]]) -> list[str]:
    lines = list(PEER_HEADER)
    for ours, pipecat in rows:
        lines += [_peer_row(ours), _peer_row(pipecat)]
        lines.append(
            f"| {ours.sessions} | ours/pipecat | "
            f"{_ratio(_pct(ours.rtts_ms, 0.5), _pct(pipecat.rtts_ms, 0.5))} | "
            f"{_ratio(_pct(ours.rtts_ms, 0.99), _pct(pipecat.rtts_ms, 0.99))} | "
            f"{_ratio(_pct(ours.rtts_ms, 0.999), _pct(pipecat.rtts_ms, 0.999))} | | | | | | "
            f"{_ratio(ours.cpu_total, pipecat.cpu_total)} | "
            f"{_ratio(ours.cpu_per_call, pipecat.cpu_per_call)} | | "
            f"{_ratio(ours.rss_per_call_mb, pipecat.rss_per_call_mb)} | |"
        )
    return lines


def pipecat_report(rows: list[tuple[PeerRow, PeerRow]], seconds: float, command: str) -> str:
    ours_held = [ours.sessions for ours, _ in rows if _row_holds(ours)]
    pipecat_held = [pipecat.sessions for _, pipecat in rows if _row_holds(pipecat)]
    both = [ours for ours, pipecat in rows if _row_holds(ours) and _row_holds(pipecat)]
    if both:
        at = max(both, key=lambda row: row.sessions)
        pipecat_at = next(p for o, p in rows if o is at)
        cpu_line = (
            f"- CPU per call at the largest N both hold ({at.sessions}): ours "
            f"{at.cpu_per_call:.2f} ms/s, Pipecat {pipecat_at.cpu_per_call:.2f} ms/s, ratio "
            f"**{_ratio(at.cpu_per_call, pipecat_at.cpu_per_call)}** (target <= 0.3x)"
        )
    else:
        cpu_line = "- CPU per call: no N is held by both, so no ratio at a held load"
    lossless = [o for o, p in rows if o.lost == 0 == p.lost and not o.errors and not p.errors]
    if lossless:
        at = max(lossless, key=lambda row: row.sessions)
        pipecat_at = next(p for o, p in rows if o is at)
        cpu_line += (
            f"; at the largest N both echo every frame ({at.sessions}): ours "
            f"{at.cpu_per_call:.2f} ms/s, Pipecat {pipecat_at.cpu_per_call:.2f} ms/s, ratio "
            f"**{_ratio(at.cpu_per_call, pipecat_at.cpu_per_call)}** (where a side is "
            "saturated, CPU per call says little)"
        )
    return "\n".join(
        [
            PIPECAT_BEGIN,
            "## Beside a real peer: Pipecat",
            "",
            f"Command: `{command}`  ",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ",
            f"Pipecat venv: {', '.join(PIPECAT_REQUIREMENTS)} (`.cache/pipecat-venv`)",
            "",
            f"Per N, {seconds:.0f} s of load, one 20 ms mu-law frame every 20 ms per call, "
            "each echoed by the application. *pipecat*: the dial-in peer (its own process) "
            "opens N Twilio Media Streams to `scripts/pipecat_echo_server.py` (one uvicorn "
            "worker) and times each echo; CPU and RSS are of the server process. "
            "*ours: inbound*: the same peer posts our voice webhook for each call as Twilio "
            "would (signed), dials the `<Connect><Stream>` it answers at our gateway process, "
            "and the runtime (the bench process: `TransportService`, one application thread per "
            "call that takes it with `accept_session` and writes back every `Binary` it reads) "
            "echoes; CPU and RSS are of the runtime and the gateway. Each round trip crosses "
            "the gateway's relay twice; Pipecat's crosses no relay. *peer %* is the dial-in "
            "peer's own CPU (not counted in CPU %). CPU ms/s per call: CPU time per second "
            "of call.",
            "",
            *_pipecat_table(rows),
            "",
            f"- real time held (p99 <= 20 ms, nothing lost): ours up to "
            f"**{max(ours_held, default=0)}** calls, Pipecat up to "
            f"**{max(pipecat_held, default=0)}**",
            cpu_line,
            PIPECAT_END,
        ]
    )


# -- the report -------------------------------------------------------------------------------


def _versions() -> str:
    names = ("pykka", "websocket-client", "websockets", "requests")
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


def _table(rows: list[tuple[Step, Step]]) -> list[str]:
    lines = [
        "| N | impl | p50 ms | p99 ms | p99.9 ms | lost | late | errors | CPU % | gateway % "
        "| peer % | RSS MB/session | threads | set-up p50 ms | set-up p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours, naive in rows:
        for s in (ours, naive):
            lines.append(
                f"| {s.sessions} | {s.impl} | {_pct(s.rtts_ms, 0.5):.2f} | "
                f"{_pct(s.rtts_ms, 0.99):.2f} | {_pct(s.rtts_ms, 0.999):.2f} | {s.lost} | "
                f"{s.late} | {len(s.errors)} | {s.cpu_pct:.0f} | {s.gateway_pct:.0f} | "
                f"{s.peer_pct:.0f} | {s.rss_per_session_mb:.3f} | {s.threads} | "
                f"{_pct(s.setup_ms, 0.5):.2f} | {_pct(s.setup_ms, 0.99):.2f} |"
            )
        ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
        lines.append(
            f"| {ours.sessions} | ours/naive | "
            f"{ratio(_pct(ours.rtts_ms, 0.5), _pct(naive.rtts_ms, 0.5)):.2f}x | "
            f"{ratio(_pct(ours.rtts_ms, 0.99), _pct(naive.rtts_ms, 0.99)):.2f}x | "
            f"{ratio(_pct(ours.rtts_ms, 0.999), _pct(naive.rtts_ms, 0.999)):.2f}x | | | | "
            f"{ratio(ours.cpu_pct, naive.cpu_pct):.2f}x | | | "
            f"{ratio(ours.rss_per_session_mb, naive.rss_per_session_mb):.2f}x | | "
            f"{ratio(_pct(ours.setup_ms, 0.5), _pct(naive.setup_ms, 0.5)):.2f}x | |"
        )
    return lines


def _holds(step: Step) -> bool:
    return step.lost == 0 and not step.errors and _pct(step.rtts_ms, 0.99) <= 20.0


def _command(args: argparse.Namespace, *flags: str) -> str:
    """The command line that reproduces this run: ``--quick``, ``flags`` (what the run
    measured), then the sweep's ``--sessions``, ``--pipecat-sessions`` and ``--seconds``."""
    parts = ["python scripts/bench.py", *["--quick"] * args.quick, *flags]
    sweeps = (("--sessions", args.sessions), ("--pipecat-sessions", args.pipecat_sessions))
    for option, values in sweeps:
        if values:
            parts += [option, *map(str, values)]
    if args.seconds:
        parts.append(f"--seconds {args.seconds:g}")
    return " ".join(parts)


def _write_section(out: Path, block: str, begin: str, end: str) -> None:
    """Rewrite one section of the report's notes in place (the rest of the file is kept)."""
    old = out.read_text() if out.exists() else ""
    head, notes = old, ""
    if NOTES_MARKER in old:
        head, notes = old[: old.index(NOTES_MARKER)], old[old.index(NOTES_MARKER) :]
    out.write_text(head + with_block(notes, block, begin, end))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--sessions", type=int, nargs="*", help="session counts to sweep")
    parser.add_argument("--seconds", type=float, help="seconds of real-time load per step")
    parser.add_argument("--messages", type=int, help="messages for the throughput test")
    parser.add_argument("--idle", type=int, help="idle sessions to hold (0: skip)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="report file")
    parser.add_argument(
        "--pipecat",
        action="store_true",
        help="also run Pipecat side by side (installs it into .cache/pipecat-venv on first use)",
    )
    parser.add_argument(
        "--pipecat-only",
        action="store_true",
        help="only the Pipecat comparison: rewrites that section of the report, nothing else",
    )
    parser.add_argument(
        "--inbound-only",
        action="store_true",
        help="only ours on inbound calls from the dial-in peer (the Pipecat sweep's N, no "
        "Pipecat): prints the rows; writes --output only if it is given",
    )
    parser.add_argument(
        "--no-pipecat",
        action="store_true",
        help="skip Pipecat (and its install); ours on inbound calls is still measured",
    )
    parser.add_argument(
        "--no-cluster", action="store_true", help="skip cluster mode (no redis-server needed)"
    )
    parser.add_argument("--pipecat-sessions", type=int, nargs="*", help="N for the Pipecat sweep")
    parser.add_argument(
        "--providers",
        nargs="*",
        choices=PROVIDERS,
        help="only the per-provider rows (outbound calls through each provider's emulator in "
        "reflect mode; all five when none is named) at --sessions N (default 100): rewrites "
        "that section of the report, nothing else",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="only cluster mode on this machine: one runtime node against two behind one "
        "gateway, Redis on a free port, at --sessions N (default 25 to 200): "
        "rewrites that section of the report, nothing else",
    )
    args = parser.parse_args(argv)
    # The plain run measures every section, so that each target's figure comes from one run;
    # --quick (the suite's smoke run) leaves out Pipecat's heavy install and the cluster.
    pipecat = args.pipecat or args.pipecat_only or not (args.quick or args.no_pipecat)
    pipecat_why = "--quick" if args.quick else "--no-pipecat"
    with_cluster = not (args.quick or args.no_cluster)
    cluster_why = "--quick" if args.quick else "--no-cluster"
    if with_cluster and shutil.which("redis-server") is None:
        with_cluster, cluster_why = False, "redis-server is not installed"
    pipecat_n = args.pipecat_sessions or ([5] if args.quick else PIPECAT_SWEEP)
    sweep = args.sessions or ([5] if args.quick else [50, 100, 150, 200, 250, 300])
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    count = args.messages or (2_000 if args.quick else 20_000)
    idle_n = args.idle if args.idle is not None else (20 if args.quick else 1000)
    began = time.perf_counter()
    load0 = os.getloadavg()

    out = Path(args.output)
    written = not args.quick or args.output != str(ROOT / "BENCHMARKS.md")
    if args.providers is not None:
        providers = args.providers or list(PROVIDERS)
        provider_n = args.sessions or ([3] if args.quick else [100])
        gateway = Helper(_serve_gateway)
        try:
            provider_results = provider_rows(providers, provider_n, seconds, gateway, SECRET)
        finally:
            gateway.stop()
        command = _command(args, "--providers", *args.providers)
        date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        block = providers_report(provider_results, seconds, command, date, load_line(load0))
        print(block)
        for row in provider_results:
            for error in row.errors[:5]:
                print(f"{row.impl} N={row.sessions}: {error}", file=sys.stderr)
        if written:
            _write_section(out, block, PROVIDERS_BEGIN, PROVIDERS_END)
        return 0
    if args.cluster:
        cluster_n = args.sessions or ([3] if args.quick else CLUSTER_SWEEP)
        cluster_results = cluster_sweep(cluster_n, seconds, SECRET)
        command = _command(args, "--cluster")
        date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        block = cluster_report(cluster_results, seconds, command, date, load_line(load0))
        print(block)
        for pair in cluster_results:
            for row in pair:
                for error in row.errors[:5]:
                    print(f"{row.impl} N={row.sessions}: {error}", file=sys.stderr)
        if written:
            _write_section(out, block, CLUSTER_BEGIN, CLUSTER_END)
        return 0
    gateway, peer = Helper(_serve_gateway), Helper(_serve_peer)
    rows: list[tuple[Step, Step]] = []
    pipecat_rows: list[tuple[PeerRow, PeerRow]] = []
    inbound_rows: list[PeerRow] = []
    if args.inbound_only:
        try:
            inbound = inbound_sweep(pipecat_n, seconds, gateway, peer)
        finally:
            gateway.stop()
            peer.stop()
        table = "\n".join([*PEER_HEADER, *map(_peer_row, inbound)])
        print(table)
        for row in inbound:
            for error in row.errors[:5]:
                print(f"N={row.sessions}: {error}", file=sys.stderr)
        if "--output" in (argv if argv is not None else sys.argv):
            Path(args.output).write_text(table + "\n")
        return 0
    try:
        for n in [] if args.pipecat_only else sweep:
            ours = load_ours(n, seconds, gateway, peer)
            naive = load_naive(n, seconds, gateway, peer)
            rows.append((ours, naive))
            print(*_table([(ours, naive)])[2:], sep="\n", file=sys.stderr, flush=True)
        if pipecat:
            pipecat_rows = pipecat_sweep(pipecat_n, seconds, gateway, peer)
            inbound_rows = [ours for ours, _ in pipecat_rows]
        else:
            inbound_rows = inbound_sweep(pipecat_n, seconds, gateway, peer)
    finally:
        gateway.stop()
        peer.stop()
    flags = [
        *["--no-pipecat"] * args.no_pipecat,
        *["--no-cluster"] * args.no_cluster,
        *["--pipecat"] * args.pipecat,
        *["--pipecat-only"] * args.pipecat_only,
    ]
    command = _command(args, *flags)
    if pipecat:
        block = pipecat_report(pipecat_rows, seconds, command)
    if args.pipecat_only:
        print(block)
        if written:
            _write_section(out, block, PIPECAT_BEGIN, PIPECAT_END)
        return 0
    ours_tp, raw_tp = throughput(count)
    ws_create = create_latency(50 if not args.quick else 5)
    idle_rss, idle_threads, idle_s = idle(idle_n) if idle_n else (float("nan"), 0, 0.0)
    cluster_rows: list[tuple[PeerRow, PeerRow]] | None = None
    if with_cluster:
        # Last, on a machine the other sections' processes have left: it starts its own.
        cluster_n = args.sessions or CLUSTER_SWEEP
        cluster_date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        cluster_load = os.getloadavg()
        cluster_rows = cluster_sweep(cluster_n, seconds, SECRET)
        cluster_block = cluster_report(
            cluster_rows,
            seconds,
            command,
            cluster_date,
            load_line(cluster_load),
        )
    figures = RunFigures(
        outbound=[
            Outbound(o.sessions, _pct(o.rtts_ms, 0.99), o.lost, len(o.errors), o.rss_per_session_mb)
            for o, _ in rows
        ],
        inbound=inbound_rows,
        pipecat=pipecat_rows if pipecat else None,
        cluster=cluster_rows,
        cluster_skipped_why=cluster_why,
        pipecat_skipped_why=pipecat_why,
        throughput=(ours_tp, raw_tp),
        create_ms=ws_create,
        idle=(idle_n, idle_rss, idle_threads),
    )

    held = [ours.sessions for ours, _ in rows if _holds(ours)]
    twilio_creates = [ms for ours, _ in rows for ms in ours.create_ms]
    naive_held = [naive.sessions for _, naive in rows if _holds(naive)]
    summary = [
        f"- real time held (p99 <= 20 ms, nothing lost): ours up to "
        f"**{max(held, default=0)}** sessions, the naive baseline up to "
        f"**{max(naive_held, default=0)}**",
        f"- pipelined throughput, one session, {count} x 300-byte text round trips through an "
        f"echo server: ours {ours_tp:,.0f} msg/s, raw websocket-client {raw_tp:,.0f} msg/s, "
        f"ratio **{ours_tp / raw_tp:.2f}x**",
        f"- create_session: a Twilio call (REST to the emulator, then the WebSocket to the "
        f"gateway) p50 {_pct(twilio_creates, 0.5):.2f} ms, p99 {_pct(twilio_creates, 0.99):.2f} "
        f"ms under the sweep's concurrent creation; a plain WebSocket session, one at a time, "
        f"p50 {_pct(ws_create, 0.5):.2f} ms, p99 {_pct(ws_create, 0.99):.2f} ms",
        f"- {idle_n} idle sessions held: {idle_rss:.3f} MB RSS per session, "
        f"{idle_threads} threads, opened in {idle_s:.1f} s",
        f"- the whole run took {time.perf_counter() - began:.0f} s",
    ]
    report = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Command: `{command}`  ",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"{platform.system()} {platform.release()}  ",
            f"Versions: {_versions()}",
            "",
            "Each of N calls sends a 20 ms mu-law media frame every 20 ms through the whole "
            "path (facade, connector, media gateway process, Twilio-speaking peer process that "
            "reflects it) and reads it back; *naive* is one websocket-client socket and reader "
            "thread per call, no actors, same gateway and peer. CPU % is of one core; "
            "set-up is placing the call over REST until its WebSocket is open.",
            "",
            *_table(rows),
            "",
            *summary,
            "",
            *targets_report(figures),
            "",
        ]
    )
    print(report)
    if pipecat:
        print(block)
    if cluster_rows is not None:
        print(cluster_block)
    if written:
        # Written notes (history, profiles) below the marker survive a new run; so does the
        # Pipecat section, unless this run measured it anew.
        old = out.read_text() if out.exists() else ""
        notes = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else ""
        if pipecat:
            notes = with_block(notes, block, PIPECAT_BEGIN, PIPECAT_END)
        if cluster_rows is not None:
            notes = with_block(notes, cluster_block, CLUSTER_BEGIN, CLUSTER_END)
        out.write_text(report + ("\n" + notes if notes else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
