#!/usr/bin/env python3
"""Soak: create and end many sessions in waves, with traffic, and prove nothing is left behind.

Each wave creates ``--wave`` sessions (concurrently, from a pool of ``--workers`` threads),
writes ``--frames`` 20 ms mu-law frames of 160 bytes to each, then an end marker (a ``Mark`` for
``twilio``, a ``Text`` for ``websocket``), so that every session streams at once; then reads
every session back up to its marker (concurrently, each read bounded), checks that every frame
came back once and in order, and ends every session (concurrently). After the last wave it checks
that this process holds exactly as many threads, open sockets (``/proc/self/fd``) and pykka
actors as at the baseline, and reports how much RSS (``VmRSS`` of ``/proc/self/status``) grew.

Providers:

- ``twilio`` (default): the embedded default config. Every session is an emulated Twilio call:
  the Twilio provider's REST request to the embedded emulator, which dials the embedded media
  gateway and echoes at real time what it plays.
- ``websocket``: an in-process echo server (``actors.gateway.ServerThread(echo)``) dialled
  directly.

The baseline is taken after a warm-up wave of ``--wave`` sessions that is not counted in
``--sessions``. The first Twilio session starts, for the service's whole life, the embedded
media gateway and emulator (their event-loop threads and listening sockets); the first wave
also imports modules, fills caches and opens the REST client's keep-alive connections. None of
that is per session and none of it is a leak, but all of it would show up as growth if the
baseline came before it. Every counted session comes after the baseline, so a leak in any of
them shows. The baseline itself is taken once no TCP connection is left open but the pooled
ones, and no socket whose connection is over still holds its fd (the far ends of the
warm-up's sessions close asynchronously, on the gateway's and the emulator's event loops),
and no webhook request is still being answered (the warm-up calls' last status callbacks),
polled for at most ``SETTLE_S``; after the last wave, threads,
sockets and actors are polled for at most ``SETTLE_S`` until they equal the baseline exactly.

One thing is counted apart: the Twilio REST client's keep-alive connections to the emulator
(``requests`` keeps up to ``DEFAULT_POOLSIZE`` idle ones per adapter, and it has two: create
and hang up) and the emulator's thread serving each. How many are idle at a given instant
depends on how many requests overlapped last, so their number moves between waves (it was 17
after one warm-up and 20 after the next wave) without anything leaking. They are told apart by
port (sockets to or from the emulator's REST port) and thread name, reported as "pooled", and
checked against the pool's bound (``pool_ok``) instead of equality. Everything else (the
session hops, the emulator's media streams, the gateway's side of both, connector, reader and
writer threads, actors) must return to the baseline exactly.

Exit status 0 only if no thread, socket or actor leaked, the pool is within its bound, no frame
was lost or reordered, no operation failed, and RSS grew by at most ``--max-rss-growth-mb``.
The last line printed is machine-readable::

    RESULT provider=twilio sessions=1000 leaked_threads=0 leaked_sockets=0 leaked_actors=0 \
lost=0 errors=0 pool_ok=1 rss_growth_mb=12.8 seconds=19.4 ok=1

``--workers`` defaults to 8: the emulator's REST server listens with a backlog of 5, and a
burst of many more new connections than that stalls some for a second (a dropped SYN is sent
again) or has them dropped.

Writes the summary and the per-wave table as markdown to ``--out`` (default ``SOAK.md``;
``--quick`` writes nothing unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import platform
import shlex
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pykka
from requests.adapters import DEFAULT_POOLSIZE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors import Binary, CallStatus, Mark, Message, Started, Text, TransportService  # noqa: E402
from actors.gateway import ServerThread, echo  # noqa: E402

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
TO, FROM = "+15550100", "+15550199"
READ_TIMEOUT_S = 10.0  # every read is bounded
SETTLE_S = 5.0  # threads and sockets get this long to return to the baseline
SETTLE_POLL_S = 0.05
# The Twilio REST client keeps up to DEFAULT_POOLSIZE idle keep-alive connections per
# adapter (it has two: creating, hanging up); the emulator serves each on a thread so named.
POOL_CONNECTIONS_MAX = 2 * DEFAULT_POOLSIZE
POOL_THREAD_PREFIX = "twilio-emulator-api-conn"
# A thread per webhook request (a call's status callbacks, after the call): over once answered.
REQUEST_THREAD = "webhook-request"

T = TypeVar("T")


# -- measuring the process ------------------------------------------------------------------------


def _socket_inodes() -> list[str]:
    """The inodes of this process's open sockets (Linux: /proc/self/fd)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("socket:["):
                found.append(target[8:-1])
    return found


_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _unix_inodes() -> set[str]:
    """The inodes of every Unix socket (an event loop's self-pipe is a socketpair)."""
    found: set[str] = set()
    with (
        contextlib.suppress(OSError),
        open("/proc/self/net/unix", encoding="utf-8", errors="replace") as lines,
    ):
        next(lines)
        found.update(line.split()[6] for line in lines)
    return found


def _tcp_ports() -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) for this process's TCP sockets."""
    table: dict[str, tuple[int, int, str]] = {}
    for name in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(name, encoding="ascii") as lines:
            next(lines)  # the header
            for line in lines:
                cols = line.split()
                local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
                table[inode] = (
                    int(local.rsplit(":", 1)[1], 16),
                    int(remote.rsplit(":", 1)[1], 16),
                    _TCP_STATES.get(state, state),
                )
    return table


def rss_mb() -> float:
    """Resident set size of this process in MB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass(frozen=True)
class Snapshot:
    """What the process holds. ``threads`` and ``sockets`` exclude the REST keep-alive pool,
    which is counted apart in ``pooled_threads`` / ``pooled_sockets`` (see the docstring)."""

    threads: int
    sockets: int
    actors: int
    rss_mb: float
    pooled_threads: int = 0
    pooled_sockets: int = 0
    connections: int = 0  # TCP sockets neither listening nor pooled: in use, or closing
    # sockets in neither the TCP nor the Unix table: a TCP socket whose connection is over
    # (reset, or closed both ways) but whose fd has not been closed yet
    unlisted: int = 0
    thread_names: tuple[str, ...] = ()
    # the connections, as "<server port> <client|server side> <TCP state>" -> how many
    open_connections: tuple[tuple[str, int], ...] = ()

    @classmethod
    def take(cls, rest_port: int | None = None) -> Snapshot:
        gc.collect()
        names = [t.name for t in threading.enumerate()]
        inodes = _socket_inodes()
        pooled_threads = pooled_sockets = connections = 0
        if rest_port is not None:
            pooled_threads = sum(name.startswith(POOL_THREAD_PREFIX) for name in names)
        ports = _tcp_ports()
        unix = _unix_inodes()
        unlisted = 0
        listening = {local for local, _, state in ports.values() if state == "LISTEN"}
        described: Counter[str] = Counter()
        for inode in inodes:
            found = ports.get(inode)
            if found is None:
                unlisted += inode not in unix
                continue
            if found[2] == "LISTEN":
                continue
            local, remote, state = found
            if rest_port is not None and rest_port in (local, remote):
                pooled_sockets += 1
                continue
            connections += 1
            side = "server" if local in listening else "client"
            described[f"{local if side == 'server' else remote} {side} {state}"] += 1
        return cls(
            threads=len(names) - pooled_threads,
            sockets=len(inodes) - pooled_sockets,
            actors=len(pykka.ActorRegistry.get_all()),
            rss_mb=rss_mb(),
            pooled_threads=pooled_threads,
            pooled_sockets=pooled_sockets,
            connections=connections,
            thread_names=tuple(sorted(names)),
            open_connections=tuple(sorted(described.items())),
            unlisted=unlisted,
        )

    def described(self) -> str:
        parts = [f"{what} x{n}" for what, n in self.open_connections]
        if self.unlisted:
            parts.append(f"connection over, fd still open x{self.unlisted}")
        return ", ".join(parts) or "none"

    @property
    def quiet(self) -> bool:
        """No TCP connection open but the pooled ones, and no webhook request in progress."""
        busy = REQUEST_THREAD in self.thread_names
        return self.connections == 0 and self.unlisted == 0 and not busy

    def counts(self) -> tuple[int, int, int]:
        return self.threads, self.sockets, self.actors


def quiesce(rest_port: int | None) -> Snapshot:
    """The baseline: a snapshot once no TCP connection is open but the pooled ones (the far
    ends of the sessions just ended close on event loops of their own), or after SETTLE_S."""
    waiter = threading.Event()
    deadline = time.monotonic() + SETTLE_S
    while True:
        now = Snapshot.take(rest_port)
        if now.quiet:
            return now
        if time.monotonic() >= deadline:
            print(f"baseline: connections still open after {SETTLE_S:g} s: {now.described()}")
            return now
        waiter.wait(SETTLE_POLL_S)


def settle(baseline: Snapshot, rest_port: int | None) -> Snapshot:
    """A snapshot once threads, sockets and actors are back at the baseline, or after
    SETTLE_S (they close on other threads and event loops, asynchronously)."""
    waiter = threading.Event()
    deadline = time.monotonic() + SETTLE_S
    while True:
        now = Snapshot.take(rest_port)
        if now.counts() == baseline.counts() or time.monotonic() >= deadline:
            return now
        waiter.wait(SETTLE_POLL_S)


# -- one wave -------------------------------------------------------------------------------------


@dataclass
class WaveResult:
    number: int  # 0: the warm-up
    sessions: int
    create_ms: list[float] = field(default_factory=list)
    end_ms: list[float] = field(default_factory=list)
    sent: int = 0
    lost: int = 0  # frames that did not come back
    disorder: int = 0  # frames that came back duplicated, out of order or changed
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    after: Snapshot | None = None


def frame(wave: int, session: int, index: int) -> bytes:
    """A frame that names its wave, session and index, so that any mix-up shows."""
    return (struct.pack("!HHH", wave, session, index) * 27)[:FRAME_BYTES]


class Driver:
    """Creates, feeds, reads and ends the sessions of one provider."""

    def __init__(self, service: TransportService, provider: str, url: str | None) -> None:
        self.service = service
        self.provider = provider
        self.url = url

    def create(self) -> str:
        if self.provider == "twilio":
            info = self.service.create_session(provider="twilio", to=TO, from_=FROM)
        else:
            info = self.service.create_session(provider="websocket", url=self.url)
        return info.session_id

    def marker(self, name: str) -> Message:
        return Mark(name) if self.provider == "twilio" else Text(name)

    def write(self, sid: str, frames: list[bytes], marker: Message) -> None:
        for data in frames:
            self.service.write_websocket_message(sid, Binary(data))
        self.service.write_websocket_message(sid, marker)

    def read_back(self, sid: str, marker: Message) -> list[bytes]:
        """Every frame read up to ``marker`` (raises on anything unexpected)."""
        frames: list[bytes] = []
        while True:
            message = self.service.read_websocket_message(sid, timeout=READ_TIMEOUT_S)
            if message == marker:
                return frames
            if isinstance(message, Binary):
                frames.append(message.data)
            elif isinstance(message, Started | CallStatus) and self.provider == "twilio":
                continue  # the stream's start and the call's progress
            else:
                raise RuntimeError(f"unexpected {message!r} before the end marker")


def _timed(call: Callable[[], str | None]) -> tuple[float, str | None]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def _compare(expected: list[bytes], got: list[bytes]) -> tuple[int, int]:
    """(lost, disorder): expected frames missing from ``got``, and frames of ``got`` that are
    extra, repeated or out of place. Echoed audio may be re-chunked: compare the bytes."""
    joined = b"".join(got)
    if joined == b"".join(expected):
        return 0, 0
    chunks = [joined[i : i + FRAME_BYTES] for i in range(0, len(joined), FRAME_BYTES)]
    matched, position = 0, 0
    for chunk in chunks:  # the longest in-order run of expected frames that came back
        if position < len(expected) and chunk == expected[position]:
            matched += 1
            position += 1
    return len(expected) - matched, len(chunks) - matched


def run_wave(driver: Driver, number: int, size: int, frames: int, workers: int) -> WaveResult:
    result = WaveResult(number, size)
    started = time.perf_counter()
    sids: list[str] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="soak") as pool:
        for outcome in pool.map(lambda _: _attempt(lambda: _timed(driver.create)), range(size)):
            if isinstance(outcome, str):
                result.errors.append(f"create: {outcome}")
            else:
                ms, sid = outcome
                assert sid is not None
                result.create_ms.append(ms)
                sids.append(sid)

        # Every session is written to first (writes are tells: this is quick), so that all
        # of them stream at once; then they are read back, concurrently.
        written: list[tuple[int, str, list[bytes], Message]] = []
        for index, sid in enumerate(sids):
            sent = [frame(number, index, i) for i in range(frames)]
            marker = driver.marker(f"end-{number}-{index}")
            problem = _attempt(functools.partial(driver.write, sid, sent, marker))
            if isinstance(problem, str):
                result.errors.append(f"write: {problem}")
                result.lost += frames
            else:
                written.append((index, sid, sent, marker))
        result.sent = frames * len(sids)

        def check(index: int, sid: str, sent: list[bytes], marker: Message) -> tuple[int, int]:
            return _compare(sent, driver.read_back(sid, marker))

        for (index, *_), outcome2 in zip(
            written, pool.map(lambda job: _attempt(lambda: check(*job)), written), strict=True
        ):
            if isinstance(outcome2, str):
                result.errors.append(f"read: {outcome2}")
                result.lost += frames  # none of them was seen coming back
            else:
                lost, disorder = outcome2
                result.lost += lost
                result.disorder += disorder
                if lost or disorder:
                    result.errors.append(
                        f"session #{index}: {lost} frames lost, {disorder} out of place"
                    )

        def end(sid: str) -> tuple[float, str | None]:
            return _timed(lambda: driver.service.end_session(sid))

        for outcome3 in pool.map(lambda sid: _attempt(lambda: end(sid)), sids):
            if isinstance(outcome3, str):
                result.errors.append(f"end: {outcome3}")
            else:
                result.end_ms.append(outcome3[0])
    # The pool's threads are joined by now: none of them counts against the baseline.
    result.wall_s = time.perf_counter() - started
    left = driver.service.sessions()
    if left:
        result.errors.append(f"{len(left)} sessions still listed after end_session")
    return result


def _attempt(work: Callable[[], T]) -> T | str:
    """``work()``, or the text of what it raised (a failed session must not end the run)."""
    try:
        return work()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# -- report ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


WAVE_HEADER = (
    "| wave | sessions | create p50 ms | create p99 ms | end p50 ms | end p99 ms | wall s "
    "| frames | lost | errors | threads | sockets | actors | pooled conns | RSS MB |"
)
WAVE_RULE = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def wave_row(w: WaveResult) -> str:
    after = w.after
    assert after is not None
    name = "warm-up" if w.number == 0 else str(w.number)
    return (
        f"| {name} | {w.sessions} | {pct(w.create_ms, 0.5):.1f} | {pct(w.create_ms, 0.99):.1f} "
        f"| {pct(w.end_ms, 0.5):.1f} | {pct(w.end_ms, 0.99):.1f} | {w.wall_s:.2f} | {w.sent} "
        f"| {w.lost + w.disorder} | {len(w.errors)} | {after.threads} | {after.sockets} "
        f"| {after.actors} | {after.pooled_threads} | {after.rss_mb:.1f} |"
    )


def _versions() -> str:
    names = ("pykka", "websocket-client", "websockets")
    return ", ".join(f"{n} {metadata.version(n)}" for n in names)


@contextlib.contextmanager
def peer_for(provider: str) -> Iterator[str | None]:
    if provider == "websocket":
        with ServerThread(echo, name="soak-echo") as server:
            yield server.url
    else:
        yield None


def ports_of(service: TransportService, peer_url: str | None) -> dict[str, int]:
    """The listening ports of what the run talks to (the embedded gateway and emulator start
    with the first Twilio session), to tell connections apart in reports."""
    found: dict[str, int] = {}
    for name, thing in service.infrastructure.running.items():
        url = getattr(thing, "url", None)
        port = urlsplit(url).port if isinstance(url, str) else None
        if port is not None:
            found["emulator REST" if name == "emulator" else name] = port
    if peer_url is not None and (port := urlsplit(peer_url).port) is not None:
        found["echo peer"] = port
    return found


@dataclass
class Run:
    """Everything measured in one run."""

    provider: str
    total: int
    size: int
    frames: int
    max_rss_growth_mb: float
    waves: list[WaveResult]
    baseline: Snapshot
    final: Snapshot
    after_close: Snapshot
    elapsed_s: float
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def leaked(self) -> tuple[int, int, int]:
        b, f = self.baseline, self.final
        return f.threads - b.threads, f.sockets - b.sockets, f.actors - b.actors

    @property
    def lost(self) -> int:
        return sum(w.lost + w.disorder for w in self.waves)

    @property
    def errors(self) -> list[str]:
        return [e for w in self.waves for e in w.errors]

    @property
    def growth_mb(self) -> float:
        return self.final.rss_mb - self.baseline.rss_mb

    @property
    def pool_ok(self) -> bool:
        f = self.final
        return (
            f.pooled_threads <= POOL_CONNECTIONS_MAX
            and f.pooled_sockets <= 2 * POOL_CONNECTIONS_MAX
        )

    @property
    def ok(self) -> bool:
        return (
            self.leaked == (0, 0, 0)
            and self.lost == 0
            and not self.errors
            and self.pool_ok
            and self.growth_mb <= self.max_rss_growth_mb
        )

    def summary(self) -> list[str]:
        b, f = self.baseline, self.final
        threads, sockets, actors = self.leaked
        counted = self.waves[1:]
        creates = [ms for w in counted for ms in w.create_ms]
        ends = [ms for w in counted for ms in w.end_ms]
        per_1000 = self.growth_mb * 1000 / self.total
        lines = [
            "| measure | baseline | after the last wave | leaked |",
            "|---|---:|---:|---:|",
            f"| threads | {b.threads} | {f.threads} | {threads} |",
            f"| sockets | {b.sockets} | {f.sockets} | {sockets} |",
            f"| pykka actors | {b.actors} | {f.actors} | {actors} |",
            f"| RSS MB | {b.rss_mb:.1f} | {f.rss_mb:.1f} | {self.growth_mb:+.1f} "
            f"({per_1000:+.1f} per 1,000 sessions; limit {self.max_rss_growth_mb:g}) |",
            f"| REST keep-alive connections (threads / sockets) | {b.pooled_threads} / "
            f"{b.pooled_sockets} | {f.pooled_threads} / {f.pooled_sockets} | bounded by "
            f"{POOL_CONNECTIONS_MAX} / {2 * POOL_CONNECTIONS_MAX}: "
            f"{'yes' if self.pool_ok else 'NO'} |",
            "",
            f"- sessions: {self.total} counted ({len(counted)} waves of up to {self.size}) "
            f"after a warm-up wave of {self.size}; {self.frames} frames of {FRAME_BYTES} "
            "bytes each way per session",
            f"- frames sent {sum(w.sent for w in counted)}, lost or out of place {self.lost}, "
            f"errors {len(self.errors)}",
            f"- create_session p50 {pct(creates, 0.5):.1f} ms, p99 {pct(creates, 0.99):.1f} ms; "
            f"end_session p50 {pct(ends, 0.5):.1f} ms, p99 {pct(ends, 0.99):.1f} ms",
            f"- after service.close() (and the echo peer's stop): threads "
            f"{self.after_close.threads}, sockets {self.after_close.sockets}, "
            f"actors {self.after_close.actors}",
            f"- wall time {self.elapsed_s:.1f} s; verdict: **{'PASS' if self.ok else 'FAIL'}**",
        ]
        if self.ports:
            lines.append(
                "- listening ports: " + ", ".join(f"{k} {v}" for k, v in self.ports.items())
            )
        if not b.quiet:
            lines.append(f"- connections open at the baseline: {b.described()}")
        if not f.quiet:
            lines.append(f"- connections open at the end: {f.described()}")
        extra = Counter(f.thread_names) - Counter(b.thread_names)
        missing = Counter(b.thread_names) - Counter(f.thread_names)
        if extra or missing:
            lines.append(f"- threads gained: {dict(extra)}; lost: {dict(missing)}")
        lines.extend(f"- error: {problem}" for problem in self.errors[:10])
        return lines

    def result_line(self) -> str:
        threads, sockets, actors = self.leaked
        return (
            f"RESULT provider={self.provider} sessions={self.total} leaked_threads={threads} "
            f"leaked_sockets={sockets} leaked_actors={actors} lost={self.lost} "
            f"errors={len(self.errors)} pool_ok={int(self.pool_ok)} "
            f"rss_growth_mb={self.growth_mb:.1f} seconds={self.elapsed_s:.1f} ok={int(self.ok)}"
        )

    def markdown(self, command: str) -> str:
        return "\n".join(
            [
                f"# Soak: {self.provider}",
                "",
                f"Command: `{command}`  ",
                f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ",
                f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
                f"{platform.python_implementation()} {platform.python_version()}, "
                f"{platform.system()} {platform.release()}  ",
                f"Versions: {_versions()}",
                "",
                "Baseline: after a warm-up wave (not counted), which starts what lives as long "
                "as the service (the embedded gateway and emulator). The Twilio REST client's "
                "keep-alive connections (and the emulator's thread for each) are pooled, not "
                "per session: they are counted apart and checked against the pool bound.",
                "",
                *self.summary(),
                "",
                WAVE_HEADER,
                WAVE_RULE,
                *(wave_row(w) for w in self.waves),
                "",
                f"`{self.result_line()}`",
                "",
            ]
        )


def soak(provider: str, total: int, size: int, frames: int, workers: int, max_rss: float) -> Run:
    """Run the warm-up and the counted waves, printing a row per wave."""
    started = time.perf_counter()
    waves: list[WaveResult] = []
    print(f"soak: {total} {provider} sessions in waves of {size}, {frames} frames each")
    print(WAVE_HEADER)
    print(WAVE_RULE)
    with peer_for(provider) as url, TransportService() as service:
        driver = Driver(service, provider, url)
        warm = run_wave(driver, 0, size, frames, workers)
        ports = ports_of(service, url)
        rest_port = ports.get("emulator REST")
        warm.after = baseline = quiesce(rest_port)
        waves.append(warm)
        print(wave_row(warm), flush=True)
        done = 0
        while done < total:
            n = min(size, total - done)
            wave = run_wave(driver, len(waves), n, frames, workers)
            done += n
            wave.after = Snapshot.take(rest_port)
            waves.append(wave)
            print(wave_row(wave), flush=True)
        final = settle(baseline, rest_port)
    after_close = Snapshot.take()  # the service closed, and the echo peer stopped
    elapsed = time.perf_counter() - started
    return Run(
        provider, total, size, frames, max_rss, waves, baseline, final, after_close, elapsed, ports
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=("twilio", "websocket"), default="twilio")
    parser.add_argument("--sessions", type=int, help="sessions in all (default 1000)")
    parser.add_argument("--wave", type=int, help="sessions per wave (default 100)")
    parser.add_argument("--frames", type=int, help="frames per session per wave (default 10)")
    parser.add_argument(
        "--workers", type=int, default=8, help="threads creating, reading and ending sessions"
    )
    parser.add_argument("--quick", action="store_true", help="60 sessions in waves of 20")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    parser.add_argument("--out", help="markdown report (default SOAK.md; --quick: none)")
    args = parser.parse_args(argv)
    total = args.sessions or (60 if args.quick else 1000)
    size = args.wave or (20 if args.quick else 100)
    frames = args.frames if args.frames is not None else (3 if args.quick else 10)
    if total < 1 or size < 1 or frames < 0 or args.workers < 1:
        parser.error("--sessions, --wave and --workers must be >= 1, --frames >= 0")
    out = args.out if args.out is not None else (None if args.quick else str(ROOT / "SOAK.md"))
    words = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "scripts/soak.py", *words])

    run = soak(args.provider, total, size, frames, args.workers, args.max_rss_growth_mb)
    print()
    print("\n".join(run.summary()))
    if out is not None:
        Path(out).write_text(run.markdown(command), encoding="utf-8")
        print(f"wrote {out}")
    print(run.result_line())
    return 0 if run.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
