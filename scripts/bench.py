#!/usr/bin/env python3
"""Benchmark transport-actors against raw websocket-client, in the same run, same peer.

The echo peer (the ``websockets`` package) runs in a process of its own so that it does not
share our GIL; its CPU time is reported so that it is visible when it, not us, is the limit.

Measured, each for ours and for the raw baseline, and given as a ratio ours/raw:
- pipelined throughput of one session: messages/s round trip (write N, read N back);
- real-time load: N sessions each sending a Twilio-sized (~300-byte) text frame every 20 ms
  and reading the echoes: round trip p50/p99/max, frames late (> 100 ms) or lost, CPU %;
- create_session latency p50/p99 (ours only: the raw baseline has no session to create).

Prints a table and writes BENCHMARKS.md. ``--quick`` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websocket  # noqa: E402  (the raw baseline)

from actors import Text, TransportService  # noqa: E402
from actors.config import RuntimeConfig, TransportConfig  # noqa: E402
from actors.gateway import ServerThread, echo  # noqa: E402

FRAME_PERIOD_S = 0.020
PAYLOAD_BYTES = 300  # a Twilio media frame: JSON around 160 bytes of base64 mu-law
LATE_S = 0.100


# -- the echo peer, in its own process ---------------------------------------------------------


def _peer_main(conn: Connection) -> None:
    server = ServerThread(echo, max_size=None).start()
    conn.send(server.port)
    conn.recv()  # block until told to stop
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(usage.ru_utime + usage.ru_stime)
    server.stop()


class Peer:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_peer_main, args=(child,), daemon=True)
        self._process.start()
        self.url = f"ws://127.0.0.1:{self._conn.recv()}/"
        self.cpu_s = 0.0

    def stop(self) -> None:
        self._conn.send("stop")
        self.cpu_s = float(self._conn.recv())
        self._process.join(10)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _frame(seq: int) -> str:
    head = f"{seq:012d}{time.perf_counter_ns():020d}"
    return head + "x" * (PAYLOAD_BYTES - len(head))


def _parse(frame: str) -> tuple[int, int]:
    return int(frame[:12]), int(frame[12:32])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- pipelined throughput -----------------------------------------------------------------------


def throughput_ours(url: str, count: int) -> float:
    config = TransportConfig(runtime=RuntimeConfig(inbox_max=count, outbound_max=count))
    with TransportService(config) as service:
        sid = service.create_session(url=url).session_id
        payload = "x" * PAYLOAD_BYTES
        started = time.perf_counter()
        reader = threading.Thread(
            target=lambda: [service.read_websocket_message(sid, timeout=30) for _ in range(count)]
        )
        reader.start()
        for _ in range(count):
            service.write_websocket_message(sid, Text(payload))
        reader.join()
        elapsed = time.perf_counter() - started
        service.end_session(sid)
    return count / elapsed


def throughput_raw(url: str, count: int) -> float:
    ws = websocket.create_connection(url, enable_multithread=True, skip_utf8_validation=True)
    payload = "x" * PAYLOAD_BYTES
    started = time.perf_counter()
    reader = threading.Thread(target=lambda: [ws.recv() for _ in range(count)])
    reader.start()
    for _ in range(count):
        ws.send(payload)
    reader.join()
    elapsed = time.perf_counter() - started
    ws.close()
    return count / elapsed


# -- real-time load ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    sessions: int
    sent: int = 0
    received: int = 0
    late: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    cpu_pct: float = 0.0
    create_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def lost(self) -> int:
        return self.sent - self.received


def _measure(
    senders: list[Callable[[str], object]],
    receivers: list[Callable[[], str]],
    seconds: float,
    result: LoadResult,
) -> None:
    """Send one frame per session every 20 ms on absolute deadlines from one thread, while one
    reader thread per session times every echo; fill in ``result``."""
    ticks = int(seconds / FRAME_PERIOD_S)
    lock = threading.Lock()

    def read(receive: Callable[[], str]) -> None:
        rtts: list[float] = []
        errors = 0
        for _ in range(ticks):
            try:
                data = receive()
            except Exception:
                errors = 1
                break
            rtts.append((time.perf_counter_ns() - _parse(data)[1]) / 1e6)
        with lock:
            result.rtts_ms.extend(rtts)
            result.received += len(rtts)
            result.late += sum(rtt > LATE_S * 1000 for rtt in rtts)
            result.errors += errors

    readers = [threading.Thread(target=read, args=(r,)) for r in receivers]
    for reader in readers:
        reader.start()
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    waiter = threading.Event()
    for tick in range(ticks):
        delay = wall0 + tick * FRAME_PERIOD_S - time.perf_counter()
        if delay > 0:
            waiter.wait(delay)
        for send in senders:
            send(_frame(tick))
            result.sent += 1
    for reader in readers:
        reader.join(10)
    result.cpu_pct = 100 * (_cpu_s() - cpu0) / (time.perf_counter() - wall0)


def load_ours(url: str, sessions: int, seconds: float) -> LoadResult:
    """N sessions through TransportService: the whole path, facade to socket and back."""
    result = LoadResult(sessions)
    config = TransportConfig(runtime=RuntimeConfig(ping_interval_s=5.0))
    with TransportService(config) as service:
        sids = []
        for _ in range(sessions):
            t0 = time.perf_counter()
            sids.append(service.create_session(url=url).session_id)
            result.create_ms.append((time.perf_counter() - t0) * 1000)

        def receiver(sid: str) -> Callable[[], str]:
            def receive() -> str:
                message = service.read_websocket_message(sid, timeout=5)
                assert isinstance(message, Text)
                return message.data

            return receive

        senders = [functools.partial(_write_text, service, sid) for sid in sids]
        _measure(senders, [receiver(sid) for sid in sids], seconds, result)
        for sid in sids:
            service.end_session(sid)
    return result


def _write_text(service: TransportService, sid: str, frame: str) -> None:
    service.write_websocket_message(sid, Text(frame))


def load_raw(url: str, sessions: int, seconds: float) -> LoadResult:
    """The naive program: one websocket-client socket and one reader thread per session."""
    result = LoadResult(sessions)
    sockets = [
        websocket.create_connection(url, enable_multithread=True, skip_utf8_validation=True)
        for _ in range(sessions)
    ]
    for ws in sockets:
        ws.settimeout(5)
    _measure([ws.send for ws in sockets], [ws.recv for ws in sockets], seconds, result)
    for ws in sockets:
        ws.close()
    return result


# -- report --------------------------------------------------------------------------------------


def _versions() -> str:
    names = ("pykka", "websocket-client", "websockets")
    return ", ".join(f"{n} {metadata.version(n)}" for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--sessions", type=int, nargs="*", help="session counts to sweep")
    parser.add_argument("--seconds", type=float, help="seconds of real-time load per step")
    parser.add_argument("--messages", type=int, help="messages for the throughput test")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="report file")
    args = parser.parse_args(argv)
    sweep = args.sessions or ([5] if args.quick else [10, 50, 100])
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    count = args.messages or (2_000 if args.quick else 20_000)

    peer = Peer()
    try:
        ours_tp = throughput_ours(peer.url, count)
        raw_tp = throughput_raw(peer.url, count)
        rows = []
        for n in sweep:
            ours = load_ours(peer.url, n, seconds)
            raw = load_raw(peer.url, n, seconds)
            rows.append((n, ours, raw))
    finally:
        peer.stop()

    lines = [
        "| sessions | impl | p50 ms | p99 ms | max ms | late | lost | errors | CPU % |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, ours, raw in rows:
        for name, r in (("ours", ours), ("raw", raw)):
            lines.append(
                f"| {n} | {name} | {_pct(r.rtts_ms, 0.5):.2f} | {_pct(r.rtts_ms, 0.99):.2f} | "
                f"{max(r.rtts_ms, default=float('nan')):.2f} | {r.late} | {r.lost} | "
                f"{r.errors} | {r.cpu_pct:.0f} |"
            )
        lines.append(
            f"| {n} | ours/raw | {_pct(ours.rtts_ms, 0.5) / _pct(raw.rtts_ms, 0.5):.2f}x | "
            f"{_pct(ours.rtts_ms, 0.99) / _pct(raw.rtts_ms, 0.99):.2f}x | | | | | "
            f"{ours.cpu_pct / max(raw.cpu_pct, 1e-9):.2f}x |"
        )
    creates = [ms for _, ours, _ in rows for ms in ours.create_ms]
    summary = [
        f"- pipelined throughput, one session, {count} x {PAYLOAD_BYTES}-byte text round trips: "
        f"ours {ours_tp:,.0f} msg/s, raw websocket-client {raw_tp:,.0f} msg/s, "
        f"ratio **{ours_tp / raw_tp:.2f}x**",
        f"- create_session on loopback: p50 {_pct(creates, 0.5):.2f} ms, "
        f"p99 {_pct(creates, 0.99):.2f} ms ({len(creates)} sessions)",
        f"- echo peer process CPU over the whole run: {peer.cpu_s:.1f} s",
    ]
    command = "python scripts/bench.py" + (" --quick" if args.quick else "")
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
            "Real-time load: each session sends one 300-byte text frame every 20 ms for "
            f"{seconds:g} s and reads the echoes (round trip through an echo peer in its own "
            "process). *raw* is the naive program: one websocket-client socket and reader "
            "thread per session, no actors.",
            "",
            *lines,
            "",
            *summary,
            "",
        ]
    )
    print(report)
    if not args.quick or args.output != str(ROOT / "BENCHMARKS.md"):
        Path(args.output).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
