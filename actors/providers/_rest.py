"""The REST client every provider's control plane is: one base, a subclass per provider, and
the provider entry that holds one (:class:`RestProvider`).

:class:`RestClient` holds what every provider's API client does the same way: one
``requests.Session`` (:attr:`~RestClient.http`) with the provider's auth and ``Accept:
application/json``, requests to a base URL with a timeout, the retries of each operation's
:class:`~actors.providers._http.RetryPolicy` (applied by its
:class:`~actors.providers._http.PolicyAdapter`), a :class:`~actors.errors.ProviderError` for
every transport failure, each request timed, logged (its path, never a query or a secret)
and reported to the :data:`~actors.providers.RequestObserver`, and a ``close()`` (or
``with``) that closes its connections.

A subclass says only what is the provider's own:

- ``provider``: its name in every ``ProviderError``;
- ``retry_policies``: operation -> policy; an operation not named there is
  :data:`~actors.providers._http.AT_MOST_ONCE` (never repeated after an unknown outcome);
- the auth passed to ``__init__``: a ``(user, password)`` pair for HTTP basic auth (Twilio,
  Plivo, Exotel), or :class:`BearerAuth` with a key (Daily, Telnyx) or with a function that
  mints a token for each request (Vonage's JWTs); ``headers`` adds any other fixed header;
  the transport's settings (:class:`RestOptions`) are passed on as they came;
- :meth:`~RestClient.parse_error`: its error body -> ``ProviderError``;
- its routes: methods that call :meth:`~RestClient._request` with ``json=`` (Daily, Telnyx,
  Plivo, Vonage) or ``form=`` (Twilio, Exotel) and read the answer with
  :meth:`~RestClient._json_object` (or :meth:`~RestClient._done` where a 404 means "already
  gone").

A provider entry (a :class:`RestProvider`) makes its client on first use, from its config or
the embedded emulator, with :func:`rest_options`, and closes it with the entry.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar
from urllib.parse import quote

import requests
from requests.auth import AuthBase

from ..config import RuntimeConfig
from ..errors import ConfigError, ProviderError
from ..redaction import redact_url
from ..startable import Closable
from . import Infrastructure, RequestObserver
from ._http import AT_MOST_ONCE, PolicyAdapter, RetryPolicy, close_session, describe_failure

__all__ = [
    "BearerAuth",
    "RestClient",
    "RestOptions",
    "RestProvider",
    "RestSettings",
    "rest_options",
]

logger = logging.getLogger(__name__)


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` on every request.

    ``token`` is the token itself (an API key), or a function called for each request (and
    each retry of it) that returns a fresh one: a short-lived signed token such as a JWT.
    The token never appears in the repr.
    """

    def __init__(self, token: str | Callable[[], str]) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._token() if callable(self._token) else self._token
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class RestOptions(TypedDict, total=False):
    """The transport's settings every provider's client takes as keywords and hands to
    :class:`RestClient` unchanged (its defaults apply to those not given)."""

    timeout_s: float
    retries: int
    backoff_s: float
    backoff_max_s: float
    on_request: RequestObserver | None


class RestSettings(Protocol):
    """What a provider entry's config says of its REST transport."""

    @property
    def timeout_s(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def backoff_s(self) -> float: ...


def rest_options(config: RestSettings, on_request: RequestObserver | None) -> RestOptions:
    """The :class:`RestOptions` of a provider entry's ``config``, heard by ``on_request``."""
    return RestOptions(
        timeout_s=config.timeout_s,
        retries=config.retries,
        backoff_s=config.backoff_s,
        on_request=on_request,
    )


class RestClient(Closable):
    """One provider's REST API at ``api_base_url``, authenticated by ``auth``.

    Every request has ``timeout=timeout_s``. Retries (``retries`` at most, exponential backoff
    from ``backoff_s`` up to ``backoff_max_s``, Retry-After respected but capped there) follow
    the operation's policy in :attr:`retry_policies`. ``on_request`` hears of every request:
    ``(operation, status, seconds)`` (see :data:`~actors.providers.RequestObserver`).

    ``http`` is the ``requests.Session`` every request goes through (tests add response hooks
    to it). Not thread-safe beyond what ``requests.Session`` is; use one client per thread if
    in doubt. A subclass validates its own arguments before calling ``__init__``, which
    checks the common ones (``ValueError`` naming the argument, never its value).
    """

    #: The provider's name, in every :class:`ProviderError` this client raises.
    provider: ClassVar[str]
    #: What may be repeated of each operation; one not named here is ``AT_MOST_ONCE``.
    retry_policies: ClassVar[Mapping[str, RetryPolicy]] = {}

    def __init__(
        self,
        *,
        api_base_url: str,
        auth: AuthBase | tuple[str, str],
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        on_request: RequestObserver | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if backoff_s < 0 or backoff_max_s < 0:
            raise ValueError("backoff_s and backoff_max_s must be >= 0")
        self.api_base_url = api_base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.on_request = on_request
        self._origin = redact_url(self.api_base_url)
        self.http = requests.Session()
        self.http.auth = auth
        self.http.headers["Accept"] = "application/json"
        self.http.headers.update(headers or {})
        adapter = PolicyAdapter(
            self.retry_policies.values(),
            default=AT_MOST_ONCE,
            retries=retries,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
        )
        self.http.mount(f"{self.api_base_url}/", adapter)

    # -- what a subclass writes ----------------------------------------------------------------

    @abstractmethod
    def parse_error(self, response: requests.Response) -> ProviderError:
        """The :class:`ProviderError` for an error ``response``, from the provider's error
        body (whose unknown shapes must not be echoed: they may quote anything)."""

    # -- what a subclass's routes call ---------------------------------------------------------

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        what: str | None = None,
        json: object = None,
        form: Sequence[tuple[str, str]] | None = None,
    ) -> requests.Response:
        """``method`` ``path`` (below ``api_base_url``, percent-quoted) with a JSON body
        (``json``) or a form (``form``), retried as ``operation``'s policy allows, timed,
        logged and observed; a transport failure becomes a :class:`ProviderError` about
        ``what`` (default: ``path``). An error status is returned, for the route to judge."""
        policy = self.retry_policies.get(operation, AT_MOST_ONCE)
        http = self.http
        prepared = http.prepare_request(
            requests.Request(method, f"{self.api_base_url}{quote(path)}", data=form, json=json)
        )
        settings = http.merge_environment_settings(prepared.url, {}, None, None, None)
        started = time.monotonic()
        try:
            response = http.send(prepared, timeout=self.timeout_s, policy=policy, **settings)
        except requests.RequestException as exc:
            elapsed = time.monotonic() - started
            if self.on_request is not None:
                self.on_request(operation, "error", elapsed)
            reason = describe_failure(exc, self._origin, self.timeout_s)
            logger.debug("%s %s -> failed (%s) in %.0f ms", method, path, reason, elapsed * 1000)
            raise ProviderError(self.provider, f"{method} {what or path}: {reason}") from None
        elapsed = time.monotonic() - started
        if self.on_request is not None:
            self.on_request(operation, str(response.status_code), elapsed)
        logger.debug("%s %s -> %d in %.0f ms", method, path, response.status_code, elapsed * 1000)
        return response

    def _json_object(self, response: requests.Response, what: str) -> dict[str, Any]:
        """The JSON object a successful ``response`` carries: an error status raises its
        :meth:`parse_error`; ``ProviderError`` about ``what`` if there is no object."""
        if not response.ok:
            raise self.parse_error(response)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(
                self.provider,
                f"{what}: the response is not a JSON object",
                status=response.status_code,
            )
        return data

    def _done(self, response: requests.Response) -> bool:
        """True if ``response`` is a success, False if a 404 (what the request acts on is gone
        already: a call over, a room deleted); any other answer raises its ``ProviderError``."""
        if response.ok:
            return True
        if response.status_code == 404:
            return False
        raise self.parse_error(response)

    def close(self) -> None:
        """Close the session and its pooled connections."""
        close_session(self.http)


ConfigT = TypeVar("ConfigT", bound=RestSettings)
ClientT = TypeVar("ClientT", bound=RestClient)


class RestProvider(ABC, Generic[ConfigT, ClientT]):
    """A provider entry's control plane: its REST client is made on first use (the config may
    name the embedded emulator, which then starts) and closed with :meth:`close`; all from any
    thread."""

    def __init__(
        self,
        config: ConfigT,
        runtime: RuntimeConfig,
        infrastructure: Infrastructure,
        *,
        on_request: RequestObserver | None = None,
    ) -> None:
        entry: Any = config  # every provider config has its entry's name
        self.name: str = entry.name
        self.config = config
        self.runtime = runtime
        self._infrastructure = infrastructure
        self._on_request = on_request
        self._client: ClientT | None = None
        self._lock = threading.Lock()

    @abstractmethod
    def _make_client(self) -> ClientT:
        """The REST client this entry's config says (called once, under the lock); a
        ``ValueError`` of the client's checks becomes a ``ConfigError`` at the entry."""

    def _rest(self) -> ClientT:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._make_client()
                except ValueError as exc:  # the client's checks name fields, never values
                    raise ConfigError(str(exc), key_path=f"providers.{self.name}") from None
            return self._client

    def _rest_options(self) -> RestOptions:
        """The transport settings of this entry's REST client (heard by ``on_request``)."""
        return rest_options(self.config, self._on_request)

    def close(self) -> None:
        """Release the REST client's connections (a new one is made if used again)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
