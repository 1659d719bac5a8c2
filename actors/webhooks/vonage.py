"""Vonage's signed webhooks, sans-I/O: a request's ``Authorization`` and body become a decision.

Vonage signs the Voice API's callbacks (answer and event webhooks, when the application has
signed callbacks on) with a JWT in ``Authorization: Bearer <token>``: HS256 under the
account's signature secret, with a ``payload_hash`` claim, the SHA-256 (hex) of the request
body, so neither the sender nor the body can be forged (developer.vonage.com "Webhooks:
decoding signed webhooks"; Vonage API Support, "How do I verify that the Voice API Webhook
request and its payload has not been tampered during transit"). For a GET (the answer
webhook's default) the hash is of the query's parameters as a JSON object, in their order,
without whitespace: :func:`signed_payload` builds what is hashed either way.

:func:`verify_vonage_webhook` checks the header, the signature, the body's hash and the
token's age (an old callback replayed is refused): a :class:`VonageWebhook` with the claims,
or a :class:`Refusal` with the HTTP status to answer and the reason it is counted under.
The answer itself, for an inbound call, is the NCCO of
:func:`actors.providers.vonage.websocket_ncco`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from ..pubkey import TokenRefused, verify_webhook_token

__all__ = ["MAX_AGE_S", "Refusal", "VonageWebhook", "signed_payload", "verify_vonage_webhook"]

#: How old a signed callback may be (Vonage's tokens are minted as each callback is sent).
MAX_AGE_S: Final = 300.0
MAX_BODY: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class VonageWebhook:
    """A callback whose signature, body hash and age hold: its claims and its JSON body."""

    claims: Mapping[str, Any] = field(repr=False)
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A callback refused: answer ``status``; count it under ``reason``."""

    status: int
    reason: str
    why: str


def signed_payload(method: str, query: str, body: bytes) -> bytes:
    """What a callback's ``payload_hash`` covers: the body of a POST; for a GET, its query's
    parameters as a compact JSON object (in the order sent)."""
    if method.upper() == "GET":
        pairs = dict(parse_qsl(query, keep_blank_values=True))
        return json.dumps(pairs, separators=(",", ":")).encode()
    return body


def verify_vonage_webhook(
    authorization: str | None,
    body: bytes,
    secret: str,
    *,
    method: str = "POST",
    query: str = "",
    max_age_s: float = MAX_AGE_S,
    now: float | None = None,
) -> VonageWebhook | Refusal:
    """Decide one callback: :class:`VonageWebhook` when ``authorization`` is a Bearer token
    signed under ``secret`` whose ``payload_hash`` is the payload's and that is at most
    ``max_age_s`` old; else a :class:`Refusal` (401 for a missing or bad token, 413 for a
    body over :data:`MAX_BODY`, 400 for a body that is not a JSON object)."""
    if len(body) > MAX_BODY:
        return Refusal(413, "too_large", f"body over {MAX_BODY} bytes")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Refusal(401, "no_signature", "no Bearer token in Authorization")
    if not secret:
        return Refusal(401, "no_secret", "no signature secret configured")
    signed = signed_payload(method, query, body)
    try:
        claims = verify_webhook_token(token.strip(), secret, signed, max_age_s=max_age_s, now=now)
    except TokenRefused as exc:
        return Refusal(401, "bad_signature", str(exc))
    if method.upper() == "GET":
        payload: Any = dict(parse_qsl(query, keep_blank_values=True))
    else:
        try:
            payload = json.loads(body) if body else {}
        except (ValueError, RecursionError):
            payload = None
    if not isinstance(payload, dict):
        return Refusal(400, "bad_body", "the body is not a JSON object")
    return VonageWebhook(claims, payload)
