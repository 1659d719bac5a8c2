"""What the Telnyx, Plivo, Vonage and Exotel emulators share to call the runtime's webhooks:
raw HTTP requests (:func:`send`), sent in order per call from worker lanes
(:class:`HookSender`), and a one-thread timer for the outcome of a call that is never answered
(:class:`Later`). Signing is each emulator's own (its provider's scheme)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from .callbacks import MAX_ANSWER_BYTES, WEBHOOK_TIMEOUT_S, HttpResult, Lanes
from .numbers import Behaviour, behaviour_for

__all__ = ["HookSender", "Later", "behaviour_for", "send", "unanswered_outcome"]

logger = logging.getLogger(__name__)


def send(
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    method: str = "POST",
    timeout: float = WEBHOOK_TIMEOUT_S,
) -> HttpResult:
    """One request to an http(s) URL; never raises for a network failure or an HTTP error."""
    if urlsplit(url).scheme not in ("http", "https"):
        return HttpResult(None, error="not an http:// or https:// URL")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s))
            data = response.read(MAX_ANSWER_BYTES + 1)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return HttpResult(exc.code, error=f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        return HttpResult(None, error=f"{type(exc).__name__}: {exc}")
    if len(data) > MAX_ANSWER_BYTES:
        return HttpResult(status, error=f"an answer over {MAX_ANSWER_BYTES} bytes")
    return HttpResult(status, data.decode("utf-8", "replace"))


class HookSender:
    """Queues webhook requests on lanes keyed by call: one call's leave in order."""

    def __init__(self, name: str) -> None:
        self.lanes = Lanes(name, count=2, capacity=1000)
        self.results: list[tuple[str, HttpResult]] = []  # (url path, result), for tests

    def start(self) -> None:
        self.lanes.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.lanes.stop(timeout)

    def post(self, key: str, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Send ``body`` to ``url`` from ``key``'s lane; what came of it is in ``results``."""

        def job() -> HttpResult:
            result = send(url, body, headers)
            self.results.append((urlsplit(url).path, result))
            if not result.ok:
                logger.info("emulator webhook %s: %s", urlsplit(url).path, result.error)
            return result

        self.lanes.submit(key, job)

    def call(self, key: str, job: Callable[[], object]) -> None:
        """Run ``job`` (a request whose answer a call obeys) on ``key``'s lane."""
        self.lanes.submit(key, job)


class Later:
    """Runs callables after a delay, on one thread (started on first use, joined by ``stop``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def call(self, delay_s: float, job: Callable[[], object]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._ids), job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                job = heapq.heappop(self._heap)[2]
            try:
                job()
            except Exception:
                logger.exception("%s: a delayed job failed", self.name)


def unanswered_outcome(
    behaviour: Behaviour, answer_after_s: float, ring_timeout_s: float | None
) -> tuple[str, float] | None:
    """How a call to a number that does not pick up ends, as :mod:`~actors.emulator.numbers`
    says: (``busy`` | ``no-answer`` | ``failed``, after how many seconds), or ``None`` when it
    is answered (an ``answer-late`` past the ring timeout is a ``no-answer`` too)."""
    ring = behaviour.ring_s if behaviour.ring_s is not None else answer_after_s
    if behaviour.answers:
        if ring_timeout_s is not None and ring > ring_timeout_s:
            return "no-answer", ring_timeout_s
        return None
    if behaviour.kind == "no-answer":
        limit = ring_timeout_s if ring_timeout_s is not None else 60.0
        return "no-answer", behaviour.ring_s if behaviour.ring_s is not None else limit
    return behaviour.kind, ring
