"""What the REST clients of every provider share: retries that never repeat what is unsafe,
secret-free descriptions of transport failures, and a close that really closes.

``requests`` and ``urllib3`` are used only here and by the provider modules beside it.
"""

from __future__ import annotations

import logging
import math
import time
from http import HTTPStatus
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util.retry import Retry

from ..errors import ProviderError
from . import RequestObserver

__all__ = [
    "StrictRetry",
    "clip",
    "close_session",
    "describe_failure",
    "reason_phrase",
    "retrying_adapter",
    "timed_request",
]

logger = logging.getLogger(__name__)


class StrictRetry(Retry):
    """``Retry`` that retries only the statuses it lists and caps Retry-After at backoff_max.

    Plain ``Retry`` also retries 413 and 503 whenever they carry Retry-After: for a request
    that is not safe to repeat (creating a call) that would risk doing it twice, so
    ``status_forcelist`` is made the whole story.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if self.status_forcelist is None or status_code not in self.status_forcelist:
            return False
        return super().is_retry(method, status_code, has_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        # A hostile or confused server must not park us for an hour.
        return min(super().parse_retry_after(retry_after), self.backoff_max)


def retrying_adapter(
    statuses: frozenset[int],
    *,
    retries: int,
    read: int,
    backoff_s: float,
    backoff_max_s: float,
    methods: frozenset[str] = frozenset({"GET", "POST"}),
) -> HTTPAdapter:
    """An adapter retrying connection errors, ``read`` read errors and ``statuses``, with
    exponential backoff from ``backoff_s`` capped at ``backoff_max_s`` (Retry-After too).
    What is safe to repeat is the caller's decision: ``statuses`` and ``read`` say it."""
    retry = StrictRetry(
        total=retries,
        connect=retries,
        read=read,
        status=retries,
        other=0,
        redirect=0,
        allowed_methods=methods,
        status_forcelist=statuses,
        backoff_factor=backoff_s,
        backoff_max=backoff_max_s,
        respect_retry_after_header=True,
        retry_after_max=max(1, math.ceil(backoff_max_s)),
        raise_on_status=False,
        raise_on_redirect=False,
    )
    return HTTPAdapter(max_retries=retry)


def close_session(http: requests.Session) -> None:
    """Close ``http`` and its pooled connections now.

    ``Session.close()`` only forgets the pools: recent urllib3 closes a forgotten pool's
    sockets when the pool is garbage-collected, and a response still referenced (from an
    exception's traceback, a hook's list) keeps it alive.
    """
    for adapter in list(http.adapters.values()):
        if isinstance(adapter, HTTPAdapter):
            pools = adapter.poolmanager.pools
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
    http.close()


def describe_failure(exc: requests.RequestException, origin: str, timeout_s: float) -> str:
    """A secret-free sentence for a transport failure (the exception's text is not used: it
    may quote a URL with credentials)."""
    reason: BaseException = exc
    if exc.args and isinstance(exc.args[0], MaxRetryError) and exc.args[0].reason is not None:
        reason = exc.args[0].reason
    if isinstance(exc, requests.ReadTimeout) or isinstance(reason, ReadTimeoutError):
        return f"no response within {timeout_s:g} s from {origin}"
    if isinstance(reason, NameResolutionError):
        return f"cannot resolve the host of {origin}"
    if isinstance(reason, NewConnectionError):
        if _caused_by(reason, ConnectionRefusedError):
            return f"connection refused to {origin}"
        return f"cannot connect to {origin}"
    if isinstance(exc, requests.ConnectTimeout) or isinstance(reason, ConnectTimeoutError):
        return f"connect timeout ({timeout_s:g} s) to {origin}"
    if isinstance(exc, requests.exceptions.SSLError) or isinstance(reason, SSLError):
        return f"TLS handshake with {origin} failed"
    if isinstance(reason, ProtocolError):
        return f"connection to {origin} dropped before a response"
    if isinstance(exc, requests.exceptions.RetryError) or isinstance(reason, ResponseError):
        return f"gave up after repeated error responses from {origin}"
    return f"{type(reason).__name__} talking to {origin}"


def timed_request(
    http: requests.Session,
    method: str,
    url: str,
    *,
    provider: str,
    operation: str,
    path: str,
    what: str,
    origin: str,
    timeout_s: float,
    observer: RequestObserver | None,
    **body: Any,
) -> requests.Response:
    """One request with a timeout, timed and logged (``path``, never the query or a secret);
    a transport failure becomes a :class:`ProviderError` about ``what``."""
    started = time.monotonic()
    try:
        response = http.request(method, url, timeout=timeout_s, **body)
    except requests.RequestException as exc:
        elapsed = time.monotonic() - started
        if observer is not None:
            observer(operation, "error", elapsed)
        reason = describe_failure(exc, origin, timeout_s)
        logger.debug("%s %s -> failed (%s) in %.0f ms", method, path, reason, elapsed * 1000)
        raise ProviderError(provider, f"{method} {what}: {reason}") from None
    elapsed = time.monotonic() - started
    if observer is not None:
        observer(operation, str(response.status_code), elapsed)
    logger.debug("%s %s -> %d in %.0f ms", method, path, response.status_code, elapsed * 1000)
    return response


def clip(text: str, limit: int = 500) -> str:
    """``text`` cut to ``limit`` characters (an error message quotes at most that much)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reason_phrase(status: int, reason: str) -> str:
    """The server's reason phrase (clipped), else the standard one for ``status``."""
    if reason:
        return clip(reason, 100)
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error response"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
