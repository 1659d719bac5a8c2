"""Peers in processes of their own, for faults a thread cannot fake: ``kill -9`` and a restart.

- :class:`EchoProcess` runs a WebSocket echo server (``actors.gateway.ServerThread`` + ``echo``)
  on a given port;
- :class:`GatewayProcess` runs the media gateway standalone (``python -m actors.cli gateway -c
  FILE``).

Each is a context manager: it starts the child and waits for its ``ready`` line (bounded), and
on exit stops it and reaps it, closing its pipes. ``kill()`` sends SIGKILL and reaps the child;
``restart()`` starts it again with the same arguments (so on the same port).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0

_ECHO_SERVER = """
import sys
from actors.gateway import ServerThread, echo

server = ServerThread(echo, "127.0.0.1", int(sys.argv[1]), name="echo-process").start()
print("ready", server.url, flush=True)
sys.stdin.read()  # until the parent closes our stdin (or dies)
server.stop()
"""


class ChildFailed(RuntimeError):
    """The child exited, or said nothing ready, before its ``ready`` line."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Child:
    """One command run as a child process, restartable; stdout read up to ``ready_prefix``."""

    ready_prefix = "ready"

    def __init__(self, argv: list[str], *, stdin: bool) -> None:
        self._argv = argv
        self._stdin = stdin
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.ready_line = ""
        self.output: list[str] = []  # stdout lines before the ready line

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        assert self._proc is None, "already running"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _reap)
        self._proc = subprocess.Popen(
            self._argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE if self._stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
        )
        try:
            self.ready_line = self._read_until_ready(START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL, then reap: no clean-up code runs in the child."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        self._reap(proc)

    def restart(self) -> None:
        """Kill the child if it still runs, then start it again with the same arguments."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Ask the child to end (``_ask_to_stop``); SIGKILL it if it takes too long."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            self._ask_to_stop(proc)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
        self._reap(proc)

    def _ask_to_stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()  # after SIGKILL, or after a bounded wait: no zombie
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._proc = None

    def _errors(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def _read_until_ready(self, timeout: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buffer = b""
        while True:
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                if line.startswith(self.ready_prefix):
                    return line
                self.output.append(line)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildFailed(f"{self._argv[1:]}: not ready in {timeout} s: {self._errors()}")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = proc.wait(STOP_TIMEOUT_S)
                    raise ChildFailed(
                        f"{self._argv[1:]}: exited with {code} before ready: {self._errors()}"
                    )
                buffer += chunk

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EchoProcess(_Child):
    """A WebSocket echo server on ``127.0.0.1:port`` in a child process.

    ``port=None`` picks a free port (retrying on the rare race where another process takes it
    between the pick and the child's bind).
    """

    def __init__(self, port: int | None = None) -> None:
        self._fixed = port
        self.port = port if port is not None else free_port()
        super().__init__(self._command(), stdin=True)

    def _command(self) -> list[str]:
        return [sys.executable, "-c", _ECHO_SERVER, str(self.port)]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> EchoProcess:
        for attempt in range(3):
            try:
                self.start()
                return self
            except ChildFailed:
                if self._fixed is not None or attempt == 2:
                    raise
                self.port = free_port()
                self._argv = self._command()
        raise AssertionError("unreachable")

    def _ask_to_stop(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        proc.stdin.close()  # EOF on its stdin: it stops its server and exits


class GatewayProcess(_Child):
    """The standalone media gateway, ``transport-actors gateway -c config_path``."""

    def __init__(self, config_path: str | os.PathLike[str]) -> None:
        argv = [sys.executable, "-m", "actors.cli", "gateway", "-c", str(config_path)]
        super().__init__(argv, stdin=False)

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self
