"""The signed request a standalone gateway sends the runtime for an inbound stream: pure."""

from __future__ import annotations

import json

import pytest

from actors.signing import gateway_request_signature
from actors.streamed_calls import MAX_SKEW_S, InboundStream, desk_request, read_desk_request

SECRET = "shared-secret-of-the-test"
CALL = InboundStream("exotel", "exotel", "CA1", "+919876543210", "08047491899", "AC1", "ST1")


def test_a_request_reads_back_as_it_was_sent() -> None:
    body, signature = desk_request(SECRET, "offer", CALL, 1000.0)
    assert read_desk_request(SECRET, body, signature, 1000.0 + MAX_SKEW_S) == ("offer", CALL)
    body, signature = desk_request(SECRET, "abandon", CALL, 1000.0)
    assert read_desk_request(SECRET, body, signature, 1000.0) == ("abandon", CALL)


def test_a_forged_tampered_or_old_request_is_refused() -> None:
    body, signature = desk_request(SECRET, "offer", CALL, 1000.0)
    tampered = body.replace(b"CA1", b"CA2")
    assert read_desk_request(SECRET, tampered, signature, 1000.0) == "bad_signature"
    assert read_desk_request("another-secret-entirely", body, signature, 1000.0) == "bad_signature"
    assert read_desk_request(SECRET, body, None, 1000.0) == "bad_signature"
    assert read_desk_request(SECRET, body, signature, 1000.0 + MAX_SKEW_S + 1) == "stale"
    assert read_desk_request(SECRET, body, signature, 1000.0 - MAX_SKEW_S - 1) == "stale"


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"action": "offer", "at": 1000.0},  # no call
        {
            "action": "steal",
            "at": 1000.0,
            "provider": "exotel",
            "entry": "exotel",
            "call_id": "CA1",
            "from": "",
            "to": "",
        },
        {
            "action": "offer",
            "at": 1000.0,
            "provider": "exotel",
            "entry": "exotel",
            "call_id": "",
            "from": "",
            "to": "",
        },  # no call id
        {
            "action": "offer",
            "at": 1000.0,
            "provider": "exotel",
            "entry": "exotel",
            "call_id": "CA1",
            "from": "",
            "to": "",
            "parameters": {"a": 1},
        },
    ],
)
def test_a_signed_request_of_the_wrong_shape_is_a_bad_request(data: object) -> None:
    body = json.dumps(data).encode()
    signature = gateway_request_signature(SECRET, body)  # signed: the shape is what is wrong
    assert read_desk_request(SECRET, body, signature, 1000.0) == "bad_request"


def test_only_offer_and_abandon_are_asked() -> None:
    with pytest.raises(ValueError, match="offer or abandon"):
        desk_request(SECRET, "steal", CALL, 0.0)
