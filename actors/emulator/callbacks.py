"""The emulator's outgoing HTTP: status callbacks and TwiML fetches, signed as Twilio signs.

Every request carries ``X-Twilio-Signature`` under the account's auth token
(:func:`actors.signing.twilio_signature`): a ``POST`` signs the URL and its form fields; a
``GET`` puts the fields in the query string and signs that URL alone, as Twilio does.

Nothing here runs on a thread that answers the emulator's API or plays its media: requests go
to :class:`Lanes`, a fixed set of worker threads, each with a bounded queue. A request's key
(the call's sid) picks its lane, so the requests of one call leave in the order they were
queued, one at a time, while other calls' requests go on in the other lanes. A full lane drops
the request (counted, logged) rather than block the caller. Each request has a timeout
(Twilio's 15 s by default: what Twilio waits for a webhook before it gives up on it).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..signing import twilio_signature

__all__ = ["WEBHOOK_TIMEOUT_S", "CallbackSender", "HttpResult", "Lanes", "SentRequest"]

logger = logging.getLogger(__name__)

#: Twilio waits this long for a webhook's answer, then gives up on the URL (error 11205/31408).
WEBHOOK_TIMEOUT_S = 15.0
MAX_ANSWER_BYTES = 64 * 1024  # a TwiML document larger than this is refused
_USER_AGENT = "TwilioProxy/1.1"
_KEPT = 10_000
_STOP = object()


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What a request got: the HTTP ``status`` and ``body``, or the ``error`` that stopped it."""

    status: int | None
    body: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One request the emulator made: what (``kind``: ``status``, ``amd``, ``stream``,
    ``voice``), where, which fields, and what came of it."""

    kind: str
    call_sid: str
    method: str
    url: str
    params: Mapping[str, str]
    result: HttpResult


class Lanes:
    """``count`` worker threads named ``name``, each with a queue of at most ``capacity`` jobs."""

    def __init__(self, name: str, *, count: int = 4, capacity: int = 1000) -> None:
        self.name = name
        self._queues: list[queue.Queue[Any]] = [queue.Queue(capacity) for _ in range(count)]
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"{name}-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        self.dropped = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Let each lane finish the job in hand, drop the rest, join the threads."""
        deadline = time.monotonic() + timeout
        for q in self._queues:
            while True:
                try:
                    job = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(job, tuple):
                    job[1].cancel()
            try:
                q.put_nowait(_STOP)
            except queue.Full:  # only if a put raced the drain; the lane stops at its next job
                pass
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, key: str, job: Callable[[], Any]) -> concurrent.futures.Future[Any] | None:
        """Queue ``job`` on ``key``'s lane; its future, or ``None`` if the lane was full."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        lane = self._queues[zlib.crc32(key.encode()) % len(self._queues)]
        try:
            lane.put_nowait((job, future))
        except queue.Full:
            self.dropped += 1
            logger.warning("emulator: %s queue full; a request for %s was dropped", self.name, key)
            return None
        return future

    def _work(self, lane: queue.Queue[Any]) -> None:
        while True:
            item = lane.get()
            if item is _STOP:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # the job's failure belongs to its future
                future.set_exception(exc)


def http_request(
    url: str,
    params: Mapping[str, str],
    auth_token: str,
    *,
    method: str = "POST",
    timeout: float = WEBHOOK_TIMEOUT_S,
) -> HttpResult:
    """One signed request, as Twilio makes its webhooks; never raises for a network failure."""
    if urlsplit(url).scheme not in ("http", "https"):
        return HttpResult(None, error="not an http:// or https:// URL")
    headers = {"User-Agent": _USER_AGENT}
    data: bytes | None = None
    target = url
    if method == "GET":
        if params:
            target = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"
        headers["X-Twilio-Signature"] = twilio_signature(auth_token, target)
    else:
        data = urlencode(params).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["X-Twilio-Signature"] = twilio_signature(auth_token, url, params)
    # http(s) only (checked above): no file: or custom schemes.
    request = urllib.request.Request(target, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_ANSWER_BYTES + 1)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return HttpResult(exc.code, error=f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return HttpResult(None, error=f"{type(exc).__name__}: {exc}")
    if len(body) > MAX_ANSWER_BYTES:
        return HttpResult(status, error=f"an answer over {MAX_ANSWER_BYTES} bytes")
    return HttpResult(status, body.decode("utf-8", "replace"))


class CallbackSender:
    """Sends the emulator's webhooks from its lanes; ``accounts`` maps AccountSid to token.

    :meth:`notify` queues a callback whose answer nobody waits for (status, AMD, stream
    events); :meth:`fetch` a TwiML request whose answer the call waits for (its future). The
    two have lanes of their own, so a slow status receiver never delays a call's TwiML.
    :attr:`sent` records every request made (the last 10 000).
    """

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
        lanes: int = 4,
        capacity: int = 1000,
    ) -> None:
        self._accounts = dict(accounts)
        self.timeout_s = timeout_s
        self._notify = Lanes("emulator-callback", count=lanes, capacity=capacity)
        self._fetch = Lanes("emulator-fetch", count=lanes, capacity=capacity)
        self._sent: deque[SentRequest] = deque(maxlen=_KEPT)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._notify.start()
        self._fetch.start()

    def stop(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        self._fetch.stop(timeout)
        self._notify.stop(max(0.0, deadline - time.monotonic()))

    @property
    def dropped(self) -> int:
        """Requests dropped because their lane was full."""
        return self._notify.dropped + self._fetch.dropped

    @property
    def sent(self) -> list[SentRequest]:
        with self._lock:
            return list(self._sent)

    def notify(
        self,
        kind: str,
        call_sid: str,
        *,
        account_sid: str,
        url: str,
        params: Mapping[str, str],
        method: str = "POST",
    ) -> bool:
        """Queue a callback behind the call's earlier ones; ``False`` if it was dropped."""
        job = self._job(kind, call_sid, account_sid, url=url, params=params, method=method)
        return self._notify.submit(call_sid, job) is not None

    def fetch(
        self,
        call_sid: str,
        account_sid: str,
        url: str,
        params: Mapping[str, str],
        method: str = "POST",
    ) -> concurrent.futures.Future[HttpResult]:
        """Request the call's TwiML from ``url``; the future's result is the answer."""
        job = self._job("voice", call_sid, account_sid, url=url, params=params, method=method)
        future = self._fetch.submit(call_sid, job)
        if future is None:
            future = concurrent.futures.Future()
            future.set_result(HttpResult(None, error="the emulator's fetch queue is full"))
        return future

    def _job(
        self,
        kind: str,
        call_sid: str,
        account_sid: str,
        *,
        url: str,
        params: Mapping[str, str],
        method: str,
    ) -> Callable[[], HttpResult]:
        fields = MappingProxyType(dict(params))
        token = self._accounts.get(account_sid, "")

        def send() -> HttpResult:
            result = http_request(url, fields, token, method=method, timeout=self.timeout_s)
            with self._lock:
                self._sent.append(SentRequest(kind, call_sid, method, url, fields, result))
            if not result.ok:
                logger.warning(
                    "emulator: %s webhook for %s to %s failed: %s",
                    kind,
                    call_sid,
                    urlsplit(url).netloc,
                    result.error or f"HTTP {result.status}",
                )
            return result

        return send
