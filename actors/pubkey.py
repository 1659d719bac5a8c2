"""Public-key signatures the providers use: the only user of PyJWT (``jwt``) and of
``cryptography``.

**Telnyx** signs its webhooks with Ed25519: :func:`load_ed25519_public_key` reads the portal's
key, :func:`verify_ed25519` checks one signature.

**Vonage** uses JSON Web Tokens, of two kinds, checked against Vonage's own pages
(developer.vonage.com "Authentication" and "JWT": the Voice API takes
``Authorization: Bearer <JWT>``; "Webhooks": signed callbacks):

- **Application tokens** authenticate our REST requests. RS256, signed with the Vonage
  application's private key; claims ``application_id``, ``iat``, ``jti`` (unique per token),
  ``exp`` (Vonage's default lifetime is 15 minutes; we mint a fresh, short-lived one for every
  request, so a leaked token is soon worthless). :func:`application_token` mints one;
  :func:`verify_application_token` is the emulator's check of it with the public key.
- **Signed webhooks**: Vonage puts a JWT in the callback's ``Authorization: Bearer`` header,
  HS256 under the account's *signature secret*, whose ``payload_hash`` claim is the SHA-256
  (hex) of the request body, so the body cannot be altered in transit either.
  :func:`verify_webhook_token` checks both (and the token's age); :func:`webhook_token` signs
  one (the emulator's side).

Keys: :func:`new_private_key` makes an RSA key pair in PEM (the emulator's made-up
application); real ones come from Vonage's dashboard, as a ``private.key`` file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "TOKEN_TTL_S",
    "Ed25519PublicKey",
    "TokenRefused",
    "application_token",
    "load_ed25519_public_key",
    "new_ed25519_key",
    "new_private_key",
    "payload_hash",
    "public_key_of",
    "sign_ed25519",
    "verify_application_token",
    "verify_ed25519",
    "verify_webhook_token",
    "webhook_token",
]

#: How long a token we mint for one request lives (Vonage allows up to 24 h; its default is 15 min).
TOKEN_TTL_S: Final = 300
_LEEWAY_S: Final = 30  # clock skew tolerated between Vonage and us


class TokenRefused(ValueError):
    """A token that does not verify; the message says why (and quotes nothing of it)."""


def application_token(
    application_id: str, private_key: str, *, ttl_s: int = TOKEN_TTL_S, now: float | None = None
) -> str:
    """A fresh RS256 token for Vonage's REST APIs (claims ``application_id``, ``iat``,
    ``jti``, ``exp``)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "application_id": application_id,
        "iat": issued,
        "jti": str(uuid.uuid4()),
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, private_key, algorithm="RS256")


def verify_application_token(token: str, public_key: str) -> dict[str, Any]:
    """The claims of an application token signed by the key whose public half is
    ``public_key``; :class:`TokenRefused` for a bad signature, an expired token, a missing
    claim or another algorithm (``none`` and HS256 included)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            leeway=_LEEWAY_S,
            options={"require": ["application_id", "iat", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"application token refused: {type(exc).__name__}") from None
    return claims


def payload_hash(body: bytes) -> str:
    """SHA-256 (hex) of a webhook's body: what its token's ``payload_hash`` claim holds."""
    return hashlib.sha256(body).hexdigest()


def webhook_token(
    secret: str, body: bytes, claims: Mapping[str, Any] | None = None, *, now: float | None = None
) -> str:
    """A signed-webhook token for ``body`` (HS256 under the signature ``secret``)."""
    issued = int(time.time() if now is None else now)
    payload = {"iat": issued, "jti": str(uuid.uuid4()), **dict(claims or {})}
    payload["payload_hash"] = payload_hash(body)
    return jwt.encode(payload, secret, algorithm="HS256")


def verify_webhook_token(
    token: str,
    secret: str,
    body: bytes,
    *,
    max_age_s: float = 300.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of a signed webhook's token, once its HS256 signature under ``secret``
    holds, its ``payload_hash`` is the body's and it was issued within ``max_age_s`` (a
    replay of an old callback is refused); :class:`TokenRefused` saying which failed."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=_LEEWAY_S,
            options={"require": ["iat", "payload_hash"], "verify_iat": True},
        )
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"webhook token refused: {type(exc).__name__}") from None
    claimed = claims.get("payload_hash")
    if not isinstance(claimed, str) or not hmac.compare_digest(claimed.lower(), payload_hash(body)):
        raise TokenRefused("webhook token refused: payload_hash is not the body's")
    issued = claims.get("iat")
    current = time.time() if now is None else now
    if not isinstance(issued, int | float) or current - issued > max_age_s + _LEEWAY_S:
        raise TokenRefused("webhook token refused: issued too long ago")
    return claims


def new_private_key() -> str:
    """A new 2048-bit RSA private key, PEM (PKCS#8), as Vonage's dashboard hands out."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode("ascii")


def public_key_of(private_key: str) -> str:
    """The public half (PEM) of a private key in PEM."""
    key = serialization.load_pem_private_key(private_key.encode("ascii"), password=None)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def load_ed25519_public_key(public_key: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its 32 bytes; ``ValueError`` if it is not one."""
    try:
        raw = base64.b64decode(public_key.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise ValueError("an Ed25519 public key must be base64 of 32 bytes") from None


def verify_ed25519(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``key``'s signature of ``message``."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def new_ed25519_key() -> tuple[bytes, str]:
    """A new Ed25519 key pair: the private key's 32 raw bytes, and the public key as Telnyx's
    portal shows it (base64 of 32 bytes). The emulator's own, for signing its webhooks."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private, base64.b64encode(public).decode("ascii")


def sign_ed25519(private_key: bytes, message: bytes) -> bytes:
    """The Ed25519 signature of ``message`` under a private key of 32 raw bytes."""
    return Ed25519PrivateKey.from_private_bytes(private_key).sign(message)
