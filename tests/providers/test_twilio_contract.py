"""The Twilio REST client speaks Twilio's own OpenAPI description: Stoplight Prism serves the
spec and validates every request we make against it.

The spec is read from the shared contracts folder, ``../shared/contracts/twilio/`` beside the
repository or under ``$TRANSPORT_ACTORS_CONTRACTS`` (tests/specs.py; provenance in
tests/contracts/twilio/README.md). Without that folder the tests are skipped, and the summary
says they did not run and where the spec was looked for. Prism is found or installed by
tests/prism.py; when it cannot be had the tests fail (with what to do), they are not skipped: a
contract nobody checks is no contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from actors.emulator import TwilioApiServer
from actors.errors import ProviderError
from actors.providers.twilio import TwilioRestClient, build_stream_twiml
from tests.prism import record_responses, served, violations
from tests.specs import spec

# Installing Prism (first run only) and starting it take longer than the default 60 s timeout.
pytestmark = pytest.mark.timeout(420)

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "contract-token"


@pytest.fixture(scope="session")
def twilio_spec() -> Path:
    """Twilio's OpenAPI description of its 2010-04-01 API, from the shared contracts folder."""
    return spec("twilio", "twilio_api_v2010.json")


@pytest.fixture(scope="session")
def prism(twilio_spec: Path) -> Iterator[str]:
    """The base URL of Prism mocking Twilio's 2010-04-01 API on 127.0.0.1."""
    yield from served(twilio_spec)


def recording_client(base_url: str, responses: list[requests.Response]) -> TwilioRestClient:
    client = TwilioRestClient(
        account_sid=ACCOUNT, auth_token=TOKEN, api_base_url=base_url, retries=0, timeout_s=10.0
    )
    record_responses(client.http, responses)
    return client


def test_create_call_and_hang_up_follow_the_spec(prism: str) -> None:
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        try:
            call = client.create_call(
                to="+15558675310",
                from_="+15017122661",
                twiml=build_stream_twiml(
                    "wss://example.com/twilio", {"session": "s1", "token": "t"}
                ),
                status_callback="https://example.com/status",
                status_callback_events=("initiated", "answered", "completed"),
            )
            hung_up = client.hang_up(call["sid"])
        except ProviderError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(violations(responses)))
    assert hung_up is True
    assert [(r.request.method, r.status_code) for r in responses] == [("POST", 201), ("POST", 200)]
    assert violations(responses) == []


def test_the_harness_can_fail(prism: str) -> None:
    """Negative control: a create without ``To`` is refused by Prism, and the check flags it."""
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        response = client.http.post(
            f"{prism}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
            data={"From": "+15017122661", "Twiml": "<Response/>"},
            timeout=10.0,
        )
    assert response.status_code == 422, response.text
    assert "To" in json.dumps(response.json().get("validation"))
    assert responses == [response]
    assert violations(responses), "the harness did not flag a 422"


def test_emulator_call_resource_has_the_spec_fields(twilio_spec: Path) -> None:
    """The emulator answers with the same Call resource fields as Twilio's description."""
    description = json.loads(twilio_spec.read_text())
    properties = set(description["components"]["schemas"]["api.v2010.account.call"]["properties"])
    with (
        TwilioApiServer({ACCOUNT: TOKEN}) as server,
        TwilioRestClient(account_sid=ACCOUNT, auth_token=TOKEN, api_base_url=server.url) as client,
    ):
        call = client.create_call(to="+15558675310", from_="+15017122661", twiml="<Response/>")
    assert set(call) == properties
    assert call["api_version"] == "2010-04-01"


def test_the_emulators_update_validation_agrees_with_the_spec(prism: str) -> None:
    """A call update (the REST redirect, transfer and DTMF of issue 13): what Twilio's
    description accepts the emulator accepts; what it refuses the emulator refuses too."""
    forms: list[tuple[dict[str, str], bool]] = [
        ({"Twiml": "<Response><Play digits='ww1'/></Response>"}, True),
        ({"Twiml": "<Response><Dial><Sip>sip:a@example.com</Sip></Dial></Response>"}, True),
        ({"Url": "https://example.com/next", "Method": "GET"}, True),
        ({"Url": "https://example.com/next", "Method": "PUT"}, False),
        ({"Status": "paused"}, False),
        ({"Status": "completed"}, True),
    ]
    with TwilioApiServer({ACCOUNT: TOKEN}) as server:
        for form, valid in forms:
            created = requests.post(
                f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
                data={"To": "+15558675310", "From": "+15017122661", "Twiml": "<Response/>"},
                auth=(ACCOUNT, TOKEN),
                timeout=10.0,
            ).json()
            path = f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{created['sid']}.json"
            ours = requests.post(server.url + path, data=form, auth=(ACCOUNT, TOKEN), timeout=10)
            theirs = requests.post(prism + path, data=form, auth=(ACCOUNT, TOKEN), timeout=10)
            assert (ours.status_code == 200) is valid, (form, ours.text)
            spec_ok = theirs.status_code == 200 and not theirs.headers.get("sl-violations")
            assert spec_ok is valid, (form, theirs.status_code, theirs.text[:500])
