"""Signatures shared by the runtime and the media gateway: pure functions, no I/O.

- A **session token** proves that whoever presents it was given it by the runtime: it is an
  HMAC-SHA256 of the session id under the gateway's secret, so the runtime and the gateway share
  that secret and nothing else (no registry, no database).
- **Twilio's request signature** (``X-Twilio-Signature``) proves that a request came from
  Twilio: base64 of an HMAC-SHA1, under the account's auth token, of the full URL followed by
  the POST parameters sorted by name, each name directly followed by its value. A WebSocket
  upgrade is a GET, so its signature covers the URL alone.

Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

__all__ = [
    "session_token",
    "twilio_signature",
    "verify_session_token",
    "verify_twilio_signature",
]


def session_token(secret: str, session_id: str) -> str:
    """The token that lets a session (and its provider stream) attach to the gateway."""
    digest = hmac.new(secret.encode(), session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_session_token(secret: str, session_id: str, token: str | None) -> bool:
    """Whether ``token`` is ``session_id``'s token under ``secret``."""
    if not token or not session_id:
        return False
    expected = session_token(secret, session_id)
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """What Twilio sends as ``X-Twilio-Signature`` for a request to ``url`` with ``params``."""
    fields = params or {}
    data = url + "".join(f"{name}{fields[name]}" for name in sorted(fields))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(
    auth_token: str, url: str, signature: str | None, params: Mapping[str, str] | None = None
) -> bool:
    """Whether ``signature`` is Twilio's signature of this request under ``auth_token``."""
    if not signature:
        return False
    expected = twilio_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
