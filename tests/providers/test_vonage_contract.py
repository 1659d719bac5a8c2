"""The Vonage REST client speaks Vonage's own OpenAPI description of the Voice API: Stoplight
Prism serves it and validates every request we make against it.

The spec is read from the shared contracts folder (``vonage/voice.prism.yml``: Vonage's
``voice.yml`` with the path and ``oneOf`` edits its README lists, so that Prism can serve it;
tests/specs.py finds the folder). Without the folder the tests are skipped and the summary
says so; when Prism cannot be had they fail, as the Twilio contract tests do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from actors.errors import ProviderError
from actors.providers.vonage import VonageRestClient, websocket_ncco
from actors.pubkey import new_private_key
from tests.prism import record_responses, served
from tests.prism import violations as prism_violations
from tests.specs import spec

pytestmark = pytest.mark.timeout(420)

APPLICATION = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


@pytest.fixture(scope="session")
def voice_spec() -> Path:
    return spec("vonage", "voice.prism.yml")


@pytest.fixture(scope="session")
def prism(voice_spec: Path) -> Iterator[str]:
    yield from served(voice_spec)


def violations(responses: list[requests.Response]) -> list[str]:
    # The spec's own example conversation_uuid ("CON-...") is not a uuid: its flaw, not ours.
    return prism_violations(responses, excuse="conversation_uuid")


def recording_client(base_url: str, responses: list[requests.Response]) -> VonageRestClient:
    client = VonageRestClient(
        application_id=APPLICATION, private_key=new_private_key(), api_base_url=base_url, retries=0
    )
    record_responses(client.http, responses)
    return client


def test_create_call_and_hang_up_follow_the_spec(prism: str) -> None:
    responses: list[requests.Response] = []
    ncco = websocket_ncco(
        "wss://media.example.com/vonage", rate=16000, headers={"session": "s", "token": "t"}
    )
    with recording_client(prism, responses) as client:
        try:
            call = client.create_call(
                to="+14155550100",
                from_="14155550101",
                ncco=ncco,
                event_url="https://example.com/vonage/event",
                ringing_timer=60,
            )
            hung_up = client.hang_up(call["uuid"])
        except ProviderError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(violations(responses)))
    assert hung_up is True
    assert [(r.request.method, r.status_code) for r in responses] == [("POST", 201), ("PUT", 204)]
    assert violations(responses) == []
    assert responses[0].request.headers["Authorization"].startswith("Bearer ey")


def test_the_harness_can_fail(prism: str) -> None:
    """Negative control: a create without ``to`` is refused by Prism with 422 and the
    client turns the problem body into a ProviderError."""
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        response = client.http.post(
            f"{prism}/v1/calls", json={"ncco": [{"action": "talk", "text": "hi"}]}, timeout=10
        )
        assert response.status_code == 422, response.text
        error = client.parse_error(response)
    assert error.status == 422
    assert violations(responses)
