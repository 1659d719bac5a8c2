"""The Telnyx REST client speaks Telnyx's own OpenAPI description (``spec3.yml``, from the
shared contracts folder: ../shared/contracts/telnyx/, provenance in its README): Stoplight
Prism serves the spec and validates every request we make against it. Prism serves the paths
as written, without the server's ``/v2``, so the client's base URL is Prism's root.

Plivo publishes no OpenAPI description: its client is tested against the emulator only
(tests/test_plivo_call.py), and the README's Plivo section says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from actors.emulator.telnyx import TelnyxApiServer
from actors.errors import ProviderError
from actors.providers.telnyx import TelnyxRestClient
from actors.routing import encode_client_state
from tests.prism import record_responses, served, violations
from tests.specs import spec

pytestmark = pytest.mark.timeout(420)

KEY = "contract-key"


@pytest.fixture(scope="module")
def telnyx_spec() -> Path:
    return spec("telnyx", "spec3.yml")


@pytest.fixture(scope="module")
def prism(telnyx_spec: Path) -> Iterator[str]:
    yield from served(telnyx_spec)


def recording_client(base_url: str, responses: list[requests.Response]) -> TelnyxRestClient:
    client = TelnyxRestClient(api_key=KEY, api_base_url=base_url, retries=0, timeout_s=20.0)
    record_responses(client.http, responses)
    return client


def dial(client: TelnyxRestClient) -> dict[str, Any]:
    return client.create_call(
        connection_id="1494404757140276705",
        to="+18005550100",
        from_="+18005550101",
        stream_url="wss://media.example.com/telnyx",
        client_state=encode_client_state({"session": "s1", "token": "t1"}),
        codec="PCMA",
        timeout_secs=30,
        webhook_url="https://voice.example.com/telnyx/events",
    )


def test_dial_and_hang_up_follow_the_spec(prism: str) -> None:
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        try:
            call = dial(client)
            hung_up = client.hang_up(call["call_control_id"])
        except ProviderError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(violations(responses)))
    assert hung_up is True
    assert [(r.request.method, r.status_code) for r in responses] == [("POST", 200), ("POST", 200)]
    assert violations(responses) == []


def test_streaming_start_follows_the_spec(prism: str) -> None:
    """A cluster streams a Call Control call again (its gateway died) with ``streaming_start``."""
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        try:
            call = dial(client)
            restarted = client.start_streaming(
                call["call_control_id"],
                stream_url="wss://media2.example.com/telnyx",
                client_state=encode_client_state({"session": "s1", "token": "t2", "nonce": "n"}),
                codec="PCMA",
            )
        except ProviderError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(violations(responses)))
    assert restarted is True
    assert violations(responses) == []


def test_the_harness_can_fail(prism: str) -> None:
    """Negative control: a dial without ``to`` and with a bad track is refused by Prism."""
    response = requests.post(
        f"{prism}/calls",
        json={"connection_id": "c", "from": "+18005550101", "stream_track": "sideways"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=20.0,
    )
    assert response.status_code == 422
    assert "to" in response.headers.get("sl-violations", "")


def test_the_emulator_accepts_what_the_spec_accepts_and_answers_its_shape(prism: str) -> None:
    with TelnyxApiServer(KEY) as server:
        with TelnyxRestClient(api_key=KEY, api_base_url=server.url, retries=0) as ours:
            call = dial(ours)
        with TelnyxRestClient(api_key=KEY, api_base_url=prism, retries=0) as theirs:
            example = dial(theirs)
    assert {"call_control_id", "call_leg_id", "call_session_id", "record_type"} <= set(call)
    assert {"call_control_id", "call_leg_id", "call_session_id", "record_type"} <= set(example)


CALL = "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"  # the spec's example id


def test_machine_detection_on_the_dial_follows_the_spec(prism: str) -> None:
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        try:
            client.create_call(
                connection_id="1494404757140276705",
                to="+18005550100",
                from_="+18005550101",
                stream_url="wss://media.example.com/telnyx",
                answering_machine_detection="greeting_end",
                answering_machine_detection_config={"total_analysis_time_millis": 7000},
            )
        except ProviderError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(violations(responses)))
    assert violations(responses) == []


def test_call_control_commands_follow_the_spec(prism: str) -> None:
    """answer (inbound: call_control), send_dtmf, transfer, reject: each request as the spec
    describes it (AnswerCall, SendDTMF, TransferCall, RejectCall), each answered 200."""
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        try:
            answered = client.answer(
                CALL,
                stream_url="wss://media.example.com/telnyx",
                client_state=encode_client_state({"session": "s1", "token": "t1"}),
                codec="PCMU",
                webhook_url="https://voice.example.com/telnyx/events",
            )
            digits = client.send_dtmf(CALL, "12w#")
            moved = client.transfer(CALL, "sip:desk@example.com", "+18005550101")
            rejected = client.reject(CALL)
        except ProviderError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(violations(responses)))
    assert (answered, digits, moved, rejected) == (True, True, True, True)
    paths = [r.request.path_url.rsplit("/", 1)[-1] for r in responses]
    assert paths == ["answer", "send_dtmf", "transfer", "reject"]
    assert violations(responses) == []


def test_the_harness_refuses_a_transfer_without_to(prism: str) -> None:
    """Negative control for the commands: TransferCall requires ``to``."""
    response = requests.post(
        f"{prism}/calls/{CALL}/actions/transfer",
        json={"from": "+18005550101"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=20.0,
    )
    assert response.status_code == 422
    assert "to" in response.headers.get("sl-violations", "")


def test_the_emulator_takes_the_commands_the_spec_takes(prism: str) -> None:
    with TelnyxApiServer(KEY) as server:
        with TelnyxRestClient(api_key=KEY, api_base_url=server.url, retries=0) as ours:
            call = dial(ours)["call_control_id"]
            assert ours.send_dtmf(call, "12w#") is True
            assert ours.transfer(call, "sip:desk@example.com", "+18005550101") is True
            with pytest.raises(ProviderError) as error:
                ours.reject(call)  # an answered call: reject is for an incoming one
            assert error.value.status == 422
            assert ours.hang_up(call) is True
            assert ours.send_dtmf(call, "1") is False  # over: 422 / 90018


def test_a_texml_update_follows_the_spec(prism: str) -> None:
    """UpdateTexmlCall: a form whose ``Texml`` replaces a TeXML call's instructions."""
    responses: list[requests.Response] = []
    with recording_client(prism, responses) as client:
        try:
            done = client.update_texml_call(
                "61bf923e-5e4d-4595-a110-56190ea18a1b",
                CALL,
                "<Response><Dial><Number>+18005550111</Number></Dial></Response>",
            )
        except ProviderError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(violations(responses)))
    assert done is True
    (response,) = responses
    assert response.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert violations(responses) == []
