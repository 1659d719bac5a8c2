"""The REST client base every provider's client subclasses (actors/providers/_rest.py), driven
through a small provider of its own against a real HTTP API on 127.0.0.1: what an operation
may repeat is its policy's call, auth is the subclass's (basic, a key, a token minted per
request), the error body is the subclass's, and ``with`` closes the connections.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from actors.emulator._http import ApiRequestHandler, Fault, HTTPApiServer, Reply
from actors.errors import ProviderError
from actors.providers._http import AT_MOST_ONCE, IDEMPOTENT
from actors.providers._rest import BearerAuth, RestClient
from actors.providers.daily import DailyRestClient
from actors.providers.twilio import TwilioRestClient
from actors.startable import Closable
from tests.conftest import _socket_fds, eventually

pytestmark = pytest.mark.timeout(30)

OPERATIONS = ("place", "end", "read")


class _Handler(ApiRequestHandler):
    server_version = "ThingsApi/1.0"

    def _length_required(self) -> Reply:
        return Reply(411, {"problem": "length required"})

    def _bad_length(self) -> Reply:
        return Reply(400, {"problem": "bad length"})

    def _too_large(self, length: int, limit: int) -> Reply:
        return Reply(413, {"problem": "too large"})

    def _internal_error(self) -> Reply:
        return Reply(500, {"problem": "internal"})


class ThingsApi(HTTPApiServer):
    """``/things/<operation>``: answers what it was sent (method, auth, body), unless a fault
    is queued for that operation."""

    _label = "things api"
    _logger = logging.getLogger(__name__)

    def __init__(self) -> None:
        super().__init__(
            host="127.0.0.1",
            port=0,
            name="things-api",
            handler=_Handler,
            max_body=4096,
            fault_operations=OPERATIONS,
            requests_kept=None,
        )
        self.authorizations: list[str] = []

    def fail(self, operation: str, status: int, times: int = 1) -> None:
        self._queue_fault(operation, Fault(status, {"problem": "injected"}, None, times))

    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        operation = urlsplit(target).path.rpartition("/")[2]
        with self._lock:
            self.authorizations.append(authorization)
        fault = self._take_fault(operation)
        if fault is not None:
            return fault.reply(), operation
        echo = {"method": method, "body": body.decode()}
        return Reply(200, echo), operation


class ThingsClient(RestClient):
    """A provider of the shape the next ones have: its routes, auth and error body only."""

    provider = "things"
    retry_policies: ClassVar[dict[str, Any]] = {"end": IDEMPOTENT, "read": IDEMPOTENT}

    def parse_error(self, response: requests.Response) -> ProviderError:
        try:
            problem = str(response.json()["problem"])
        except (ValueError, KeyError, TypeError):
            problem = "error"
        return ProviderError(self.provider, problem, status=response.status_code)

    def call(
        self, operation: str, *, json_body: object = None, form: list[tuple[str, str]] | None = None
    ) -> dict[str, Any]:
        response = self._request(
            operation, "POST", f"/things/{operation}", json=json_body, form=form
        )
        if not response.ok:
            raise self.parse_error(response)
        return self._json_object(response, f"POST /things/{operation}")


@pytest.fixture
def api() -> Iterator[ThingsApi]:
    with ThingsApi() as server:
        yield server


def client_for(
    api: ThingsApi,
    auth: Any = ("user", "password"),
    on_request: Callable[[str, str, float], None] | None = None,
) -> ThingsClient:
    return ThingsClient(
        api_base_url=api.url,
        auth=auth,
        retries=2,
        backoff_s=0.0,
        timeout_s=5.0,
        on_request=on_request,
    )


def test_an_operation_without_a_policy_is_not_repeated_after_a_5xx(api: ThingsApi) -> None:
    api.fail("place", 503)
    with client_for(api) as client, pytest.raises(ProviderError) as caught:
        client.call("place")
    assert (caught.value.provider, caught.value.status, caught.value.message) == (
        "things",
        503,
        "injected",
    )
    assert api.attempts("place") == 1  # unnamed: AT_MOST_ONCE
    assert "place" not in ThingsClient.retry_policies


def test_an_idempotent_operation_is_repeated_after_a_5xx_and_a_429(api: ThingsApi) -> None:
    api.fail("end", 502)
    api.fail("end", 429)
    with client_for(api) as client:
        assert client.call("end")["method"] == "POST"
    assert api.attempts("end") == 3


def test_at_most_once_is_still_repeated_on_429(api: ThingsApi) -> None:
    api.fail("place", 429)
    with client_for(api) as client:
        client.call("place")
    assert api.attempts("place") == 2
    assert AT_MOST_ONCE.statuses == frozenset({429})


def test_a_bearer_token_function_is_asked_for_every_request_and_retry(api: ThingsApi) -> None:
    """The hook Vonage's JWTs need: a token minted for each request."""
    minted: list[str] = []
    lock = threading.Lock()

    def mint() -> str:
        with lock:
            minted.append(f"jwt-{len(minted)}")
            return minted[-1]

    api.fail("read", 503)
    with client_for(api, auth=BearerAuth(mint)) as client:
        client.call("read")
        client.call("end")
    assert api.authorizations == ["Bearer jwt-0", "Bearer jwt-0", "Bearer jwt-1"]
    # A retry is the same prepared request, sent again by urllib3: its token is the one
    # minted for the request (a JWT lives for minutes, a retry takes seconds).
    assert "jwt" not in repr(BearerAuth(mint)) and "key" not in repr(BearerAuth("key"))


def test_basic_auth_json_and_form_bodies(api: ThingsApi) -> None:
    sent: list[requests.PreparedRequest] = []
    with client_for(api) as client:
        client.http.hooks["response"].append(lambda r, *args, **kwargs: sent.append(r.request))
        as_json = client.call("read", json_body={"a": [1, 2]})
        as_form = client.call("end", form=[("To", "+1555"), ("Event", "a"), ("Event", "b")])
    assert json.loads(as_json["body"]) == {"a": [1, 2]}
    assert parse_qsl(as_form["body"]) == [("To", "+1555"), ("Event", "a"), ("Event", "b")]
    assert [r.headers["Content-Type"] for r in sent] == [
        "application/json",
        "application/x-www-form-urlencoded",
    ]
    assert all(r.headers["Accept"] == "application/json" for r in sent)
    assert api.authorizations[0].startswith("Basic ")


def test_every_request_is_observed_with_its_operation(api: ThingsApi) -> None:
    heard: list[tuple[str, str]] = []
    api.fail("place", 500)
    with client_for(api, on_request=lambda op, status, s: heard.append((op, status))) as client:
        client.call("read")
        with pytest.raises(ProviderError):
            client.call("place")
    assert heard == [("read", "200"), ("place", "500")]


def test_the_rest_clients_are_closable_and_with_closes_their_connections(
    api: ThingsApi,
) -> None:
    before = _socket_fds()
    with client_for(api) as client:
        assert isinstance(client, Closable)
        client.call("read")
        assert _socket_fds() - before  # the pooled connection (and the server's end of it)
    assert eventually(lambda: not _socket_fds() - before, timeout=5.0)
    assert issubclass(TwilioRestClient, Closable)
    assert issubclass(DailyRestClient, Closable)


def test_daily_sends_its_bearer_key_even_where_netrc_has_the_host(
    api: ThingsApi, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key set as a session header loses to ~/.netrc: requests replaces it with the netrc
    entry's basic auth. The key is the client's auth, so it is always what is sent."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with DailyRestClient(api_key="daily-key", api_base_url=api.url, retries=0) as daily:
        assert daily.get_room("room")["method"] == "GET"  # the things API echoes it
    assert api.authorizations == ["Bearer daily-key"]


def test_a_client_checks_the_common_arguments() -> None:
    for bad, why in [
        ({"timeout_s": 0}, "timeout_s"),
        ({"retries": -1}, "retries"),
        ({"backoff_s": -1}, "backoff_s"),
    ]:
        with pytest.raises(ValueError, match=why):
            ThingsClient(api_base_url="http://127.0.0.1:9", auth=("u", "p"), **bad)
