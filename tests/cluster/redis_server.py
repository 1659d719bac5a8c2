"""A real ``redis-server`` of the test's own, on a free loopback port (or another host's
address, in a network namespace: ``host``, ``netns``): never the machine's 6379.

:class:`RedisServer` starts ``redis-server --port N --save '' --appendonly no --bind
127.0.0.1`` (nothing persisted: a restart comes back empty, as a Redis without persistence
does), waits until it answers PING, and on :meth:`stop` kills and reaps it. For faults:
:meth:`kill` (SIGKILL), :meth:`restart` (on the same port), :meth:`freeze` / :meth:`thaw`
(SIGSTOP / SIGCONT: a hung Redis that accepts TCP connections and never answers).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from types import TracebackType

from tests.processes import free_port

START_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def ping(port: int, timeout: float = 0.5, host: str = "127.0.0.1") -> bool:
    """Whether a Redis answers PING on host:port within ``timeout`` (RESP by hand)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` child process (see the module docstring)."""

    def __init__(
        self, port: int | None = None, *, host: str = "127.0.0.1", netns: str | None = None
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self._binary = binary
        self.host = host
        self._prefix = ["ip", "netns", "exec", netns] if netns else []  # another host's
        self.port = port if port is not None else free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="redis-test-")
        self._proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        assert self._proc is None, "already running"
        argv = [
            *self._prefix,
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--loglevel",
            "warning",
            # Bound to another host's address (a namespace of the test's), Redis would refuse
            # every client without a password.
            "--protected-mode",
            "no" if self._prefix else "yes",
        ]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        pause = threading.Event()
        while not ping(self.port, host=self.host):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            pause.wait(0.01)
        return self

    def kill(self) -> None:
        """SIGKILL and reap: the server vanishes mid-whatever, its data with it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
            proc.send_signal(signal.SIGCONT)  # a stopped process dies only once continued
        proc.wait(5)
        self.frozen = False

    def restart(self) -> None:
        """Kill it (if running) and start it again on the same port, empty."""
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is ever answered."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        self.kill()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        for attempt in range(3):
            try:
                return self.start()
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port = free_port()  # another process took the port meanwhile
        raise AssertionError("unreachable")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
