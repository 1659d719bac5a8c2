"""Stoplight Prism for contract tests: find or install the pinned version, serve a spec on
loopback, and stop it again.

The version lives in ``tests/contracts/twilio/PRISM_VERSION`` (``.ci/run`` installs the same one
into ``<repo>/.cache/prism``). ``$PRISM_BIN`` overrides where the executable is.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from actors.startable import Startable

from .processes import free_port

ROOT = Path(__file__).resolve().parent.parent
VERSION_FILE = ROOT / "tests" / "contracts" / "twilio" / "PRISM_VERSION"
PRISM_PREFIX = ROOT / ".cache" / "prism"
PACKAGE = "@stoplight/prism-cli"
INSTALL_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0


class PrismUnavailable(RuntimeError):
    """Prism could not be found, installed or started; the message says what to do."""


def pinned_version() -> str:
    """The Prism version the tests and CI use."""
    return VERSION_FILE.read_text().strip()


def _installed_version() -> str | None:
    manifest = PRISM_PREFIX / "node_modules" / "@stoplight" / "prism-cli" / "package.json"
    try:
        version = json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def find_or_install_prism() -> Path:
    """The prism executable: ``$PRISM_BIN``, else the pinned one under ``.cache/prism``
    (installed there with npm if missing or of another version)."""
    override = os.environ.get("PRISM_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PrismUnavailable(f"PRISM_BIN={override} is not an executable file")
        return path
    version = pinned_version()
    local = PRISM_PREFIX / "node_modules" / ".bin" / "prism"
    if local.exists() and _installed_version() == version:
        return local
    npm = shutil.which("npm")
    if npm is None:
        raise PrismUnavailable(
            "the Twilio contract tests need Stoplight Prism, and npm is not on PATH: install "
            "Node.js and npm (Debian: apt-get install nodejs npm), then run\n"
            f"    npm install --prefix {PRISM_PREFIX} {PACKAGE}@{version}\n"
            "or set PRISM_BIN to a prism executable"
        )
    command = [
        npm,
        "install",
        "--prefix",
        str(PRISM_PREFIX),
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        f"{PACKAGE}@{version}",
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise PrismUnavailable(
            f"`{' '.join(command)}` did not finish within {INSTALL_TIMEOUT_S:g} s"
        ) from None
    if result.returncode != 0 or not local.exists():
        raise PrismUnavailable(
            f"`{' '.join(command)}` failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return local


class PrismServer(Startable):
    """``prism mock SPEC`` on 127.0.0.1 and a free port, as a subprocess of its own group.

    ``start()`` returns once Prism answers HTTP (raising :class:`PrismUnavailable` with its
    output if it dies or does not answer in time); ``stop()`` terminates it, then kills it.
    """

    def __init__(self, binary: Path, spec: Path, *, attempts: int = 3) -> None:
        self.binary = binary
        self.spec = spec
        self.attempts = attempts
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> PrismServer:
        failures = []
        for _ in range(self.attempts):
            port = free_port()
            # The port was free a moment ago; another process may take it first: retry then.
            # Closed in stop(); a file, not a pipe, so prism never blocks on a full pipe.
            self._log = tempfile.TemporaryFile()  # noqa: SIM115
            self._process = subprocess.Popen(
                [str(self.binary), "mock", str(self.spec), "-h", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() can end prism and any child it spawned
            )
            if self._wait_ready(port):
                self.url = f"http://127.0.0.1:{port}"
                return self
            failures.append(self._output())
            self.stop()
        raise PrismUnavailable(
            f"prism did not start in {self.attempts} attempts; last output:\n{failures[-1]}"
        )

    def _wait_ready(self, port: int) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
            try:
                connection.request("GET", "/")
                connection.getresponse().read()
                return True  # any HTTP answer (404 for "/") means it serves
            except OSError:
                pass
            finally:
                connection.close()
            try:
                self._process.wait(timeout=0.1)  # doubles as the pause between polls
                return False  # it exited
            except subprocess.TimeoutExpired:
                continue
        return False

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


def served(spec: Path) -> Iterator[str]:
    """Prism serving ``spec`` while the generator runs (a fixture's ``yield from``): its base
    URL. When Prism cannot be had the test fails, with what to do; it is not skipped: a
    contract nobody checks is no contract."""
    try:
        server = PrismServer(find_or_install_prism(), spec).start()
    except PrismUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


def record_responses(http: requests.Session, responses: list[requests.Response]) -> None:
    """Append every response ``http`` gets to ``responses``."""

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        responses.append(response)

    http.hooks["response"].append(record)


def violations(responses: list[requests.Response], excuse: str | None = None) -> list[str]:
    """What is wrong with each recorded response: a non-2xx status or Prism's violations (but
    for a report that names ``excuse``, a flaw of the spec's own)."""
    found = []
    for response in responses:
        where = f"{response.request.method} {response.request.path_url}"
        if not 200 <= response.status_code < 300:
            found.append(f"{where}: HTTP {response.status_code}: {response.text[:2000]}")
        report = response.headers.get("sl-violations")
        if report and (excuse is None or excuse not in report):
            found.append(f"{where}: sl-violations: {report[:2000]}")
    return found
