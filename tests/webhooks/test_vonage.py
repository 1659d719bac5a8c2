"""Vonage's signed callbacks: what Vonage signs is accepted; everything forged is refused."""

from __future__ import annotations

import hashlib
import json
import time

import jsonschema
import jwt
import pytest

from actors.providers.vonage import websocket_ncco
from actors.pubkey import webhook_token
from actors.webhooks.vonage import Refusal, VonageWebhook, verify_vonage_webhook
from tests.specs import spec

SECRET = "the-signature-secret-of-the-test"
EVENT = json.dumps({"uuid": "63f61863", "status": "answered"}, separators=(",", ":")).encode()


def test_a_signed_event_is_accepted() -> None:
    token = webhook_token(SECRET, EVENT, {"api_key": "abc", "application_id": "app"})
    decided = verify_vonage_webhook(f"Bearer {token}", EVENT, SECRET)
    assert isinstance(decided, VonageWebhook)
    assert decided.payload["status"] == "answered"
    assert decided.claims["api_key"] == "abc"


def test_a_signed_get_answer_webhook_hashes_its_query() -> None:
    query = "to=447700900000&from=447700900001&uuid=aaa"
    payload = json.dumps(
        {"to": "447700900000", "from": "447700900001", "uuid": "aaa"}, separators=(",", ":")
    ).encode()
    token = webhook_token(SECRET, payload)
    decided = verify_vonage_webhook(f"Bearer {token}", b"", SECRET, method="GET", query=query)
    assert isinstance(decided, VonageWebhook) and decided.payload["uuid"] == "aaa"


def forged_tokens() -> list[tuple[str, str]]:
    now = int(time.time())
    right = {"iat": now, "payload_hash": hashlib.sha256(EVENT).hexdigest()}
    return [
        ("another secret", jwt.encode(right, "x" * 32, algorithm="HS256")),
        ("alg none", jwt.encode(right, None, algorithm="none")),
        ("a tampered body", webhook_token(SECRET, EVENT + b" ")),
        ("no payload_hash", jwt.encode({"iat": now}, SECRET, algorithm="HS256")),
        ("an old token", webhook_token(SECRET, EVENT, now=now - 3600)),
        ("garbage", "not.a.jwt"),
    ]


@pytest.mark.parametrize(("what", "token"), forged_tokens(), ids=lambda v: str(v)[:20])
def test_a_forged_callback_is_refused(what: str, token: str) -> None:
    decided = verify_vonage_webhook(f"Bearer {token}", EVENT, SECRET)
    assert isinstance(decided, Refusal), what
    assert decided.status == 401
    assert token not in decided.why  # nothing of the token is echoed


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer "])
def test_a_callback_without_a_token_is_refused(header: str | None) -> None:
    decided = verify_vonage_webhook(header, EVENT, SECRET)
    assert isinstance(decided, Refusal) and decided.status == 401


def test_the_inbound_answer_ncco_follows_vonages_ncco_schema() -> None:
    """The answer webhook's NCCO, checked against Vonage's own JSON Schema for NCCOs."""

    schema = json.loads(spec("vonage", "ncco-schema.json").read_text())
    ncco = websocket_ncco(
        "wss://media.example.com/vonage",
        rate=16000,
        headers={"session": "s1", "token": "t"},
        event_url="https://example.com/vonage/event",
    )
    jsonschema.validate(ncco, schema)
    assert ncco[0]["endpoint"][0]["content-type"] == "audio/l16;rate=16000"
    with pytest.raises(jsonschema.ValidationError):  # the harness can fail
        jsonschema.validate([{"action": "connect", "endpoint": [{"type": "fax"}]}], schema)
