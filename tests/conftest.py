"""Shared fixtures: a real echo server on 127.0.0.1, a service with fast timeouts, and a leak
check that fails any test leaving a thread, a socket or a pykka actor behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator

import pykka
import pytest

from actors import TransportService
from actors.config import RuntimeConfig, SupervisorConfig, TransportConfig
from actors.gateway import ServerThread, echo

LEAK_GRACE_S = 3.0


def _socket_fds() -> set[str]:
    """The inodes of this process's open sockets (Linux: /proc/self/fd)."""
    found = set()
    try:
        names = os.listdir("/proc/self/fd")
    except FileNotFoundError:  # not Linux: sockets unchecked
        return found
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


@pytest.fixture(autouse=True, scope="session")
def process_wide_handles() -> None:
    """Open what libraries open once per process before any leak check takes its snapshot:
    libuv (under uvloop) creates a process-wide signal pipe the first time one of its loops
    runs, and keeps it until the process exits, so the first test to start a gateway or a
    server thread would otherwise be blamed for a "leaked" pipe."""
    try:
        import uvloop  # noqa: PLC0415 (optional: not on Windows)
    except ImportError:
        return
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves threads, sockets or actors behind (after a short grace)."""
    threads_before = set(threading.enumerate())
    sockets_before = _socket_fds()
    actors_before = set(pykka.ActorRegistry.get_all())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    # Threads that are ending get until the deadline: join them instead of sleeping.
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked_threads = sorted(t.name for t in set(threading.enumerate()) - threads_before)
    actors = set(pykka.ActorRegistry.get_all()) - actors_before
    waiter = threading.Event()
    leaked_sockets = _socket_fds() - sockets_before
    while leaked_sockets and time.monotonic() < deadline:
        waiter.wait(0.02)  # fds close asynchronously on the server's loop; poll briefly
        leaked_sockets = _socket_fds() - sockets_before
    for ref in actors:  # leave nothing running for the next test, whatever happens here
        ref.stop(block=False)
    problems = []
    if leaked_threads:
        problems.append(f"threads left running: {leaked_threads}")
    if leaked_sockets:
        problems.append(f"{len(leaked_sockets)} sockets left open")
    if actors:
        problems.append(f"actors left running: {sorted(str(r) for r in actors)}")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def echo_server() -> Iterator[ServerThread]:
    """A real WebSocket echo server on 127.0.0.1, on a free port."""
    with ServerThread(echo, name="echo-server") as server:
        yield server


def fast_config(**runtime: object) -> TransportConfig:
    """The default config with timeouts short enough for tests."""
    base = RuntimeConfig(
        connect_timeout_s=2.0,
        ask_timeout_s=2.0,
        ping_interval_s=2.0,
        ping_timeout_s=2.0,
        shutdown_timeout_s=1.0,
    )
    supervisor = SupervisorConfig(
        max_restarts=3, within_s=10.0, backoff_initial_s=0.01, backoff_max_s=0.1
    )
    return TransportConfig(runtime=dataclasses.replace(base, **runtime), supervisor=supervisor)


@pytest.fixture
def service() -> Iterator[TransportService]:
    """A service with fast timeouts, closed after the test."""
    svc = TransportService(fast_config())
    try:
        yield svc
    finally:
        svc.close()


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; for counters, which signal
    nothing when they change (lifecycle changes have ``wait_until`` instead)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        pause.wait(0.005)
    return True
