"""The transport under every provider's REST client: retry policies that never repeat what is
unsafe, the adapter that applies them per request, secret-free descriptions of transport
failures, a close that really closes, and what every provider's error parser reads an error
answer with (its JSON, a field's text, the message; an unknown body is never echoed).

:class:`~actors.providers._rest.RestClient` says *what* may be repeated (a
:class:`RetryPolicy` per operation); this module says *how* (urllib3's ``Retry``, one
``HTTPAdapter`` per policy behind one :class:`PolicyAdapter`). ``requests`` and ``urllib3``
are used only here and by the provider modules beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
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

__all__ = [
    "AT_MOST_ONCE",
    "IDEMPOTENT",
    "PolicyAdapter",
    "RetryPolicy",
    "StrictRetry",
    "clip",
    "close_session",
    "describe_failure",
    "json_body",
    "reason_phrase",
    "text_of",
    "title_detail",
]


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """What may be repeated of one operation after a failure.

    A connection error where the request never left is always retried (nothing happened);
    beyond that, ``statuses`` are the answers after which the request is sent again, and
    ``after_read_error`` says whether it is sent again when it left but no answer came (it may
    have been acted on). The policy is the operation's, not its HTTP method's: a POST that
    hangs up is as safe to repeat as a DELETE.
    """

    statuses: frozenset[int]
    after_read_error: bool


#: For a request whose effect must not happen twice (placing a call, starting a dial-out):
#: repeated only on 429, the one answer that proves the server did not act on it.
AT_MOST_ONCE = RetryPolicy(statuses=frozenset({429}), after_read_error=False)
#: For a request that does no harm when repeated after an unknown outcome (reads, deletes,
#: hanging up, creating what we name ourselves): 429, 5xx and read errors are retried too.
IDEMPOTENT = RetryPolicy(statuses=frozenset({429, 500, 502, 503, 504}), after_read_error=True)


def _retry(policy: RetryPolicy, *, retries: int, backoff_s: float, backoff_max_s: float) -> Retry:
    """urllib3's ``Retry`` for ``policy``: ``retries`` at most, exponential backoff from
    ``backoff_s`` capped at ``backoff_max_s`` (Retry-After too), never a redirect."""
    return StrictRetry(
        total=retries,
        connect=retries,
        read=retries if policy.after_read_error else 0,
        status=retries,
        other=0,
        redirect=0,
        allowed_methods=None,  # the policy decides what is safe, not the method
        status_forcelist=policy.statuses,
        backoff_factor=backoff_s,
        backoff_max=backoff_max_s,
        respect_retry_after_header=True,
        retry_after_max=max(1, math.ceil(backoff_max_s)),
        raise_on_status=False,
        raise_on_redirect=False,
    )


class PolicyAdapter(BaseAdapter):
    """A transport adapter that sends each request with the retries of its policy.

    ``Session.send(prepared, policy=...)`` passes ``policy`` down to :meth:`send` (requests
    hands an adapter the keyword arguments of ``send``); a request sent without one, or sent
    through ``Session.request``, gets ``default``. Each policy has an ``HTTPAdapter`` (and
    connection pool) of its own, built up front from ``policies``.
    """

    def __init__(
        self,
        policies: Iterable[RetryPolicy],
        *,
        default: RetryPolicy = AT_MOST_ONCE,
        retries: int,
        backoff_s: float,
        backoff_max_s: float,
    ) -> None:
        super().__init__()
        self.default = default
        self._adapters = {
            policy: HTTPAdapter(
                max_retries=_retry(
                    policy, retries=retries, backoff_s=backoff_s, backoff_max_s=backoff_max_s
                )
            )
            for policy in {default, *policies}
        }

    def send(  # noqa: PLR0917 (requests' BaseAdapter.send signature, one keyword added)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
        *,
        policy: RetryPolicy | None = None,
    ) -> requests.Response:
        adapter = self._adapters[self.default if policy is None else policy]
        return adapter.send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )

    def close(self) -> None:
        for adapter in self._adapters.values():
            _close_pools(adapter)
            adapter.close()


def close_session(http: requests.Session) -> None:
    """Close ``http`` and its pooled connections now.

    ``Session.close()`` only forgets the pools: recent urllib3 closes a forgotten pool's
    sockets when the pool is garbage-collected, and a response still referenced (from an
    exception's traceback, a hook's list) keeps it alive.
    """
    for adapter in list(http.adapters.values()):
        if isinstance(adapter, HTTPAdapter):
            _close_pools(adapter)
    http.close()  # every adapter's close(): a PolicyAdapter closes its own pools there


def _close_pools(adapter: HTTPAdapter) -> None:
    pools = adapter.poolmanager.pools
    for key in list(pools.keys()):
        pool = pools.get(key)
        if pool is not None:
            pool.close()


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


def json_body(body: bytes | str) -> Any:
    """The JSON an error answer's ``body`` holds; ``None`` if it is not JSON (or not UTF-8)."""
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None


def text_of(value: object) -> str:
    """``value`` stripped if it is a string, else ``""`` (a field of an error body)."""
    return value.strip() if isinstance(value, str) else ""


def title_detail(title: str, detail: str) -> str:
    """``title: detail``, which reads best; either alone when the other is missing or the
    same."""
    return f"{title}: {detail}" if title and detail and detail != title else title or detail


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
