"""Signatures shared by the runtime and the media gateway: pure functions, no I/O.

The credentials below are derived from the gateway's secret, each bound to its
purpose by a label in the HMAC input, so that one can never stand in for the other:

- the **stream token** (label ``provider-stream``) goes into the call's TwiML, so the
  provider, its console, its logs and anything between can read it. It lets **one** provider
  stream pair with its session, **once**, and admits nothing else (never a session hop).
  It may cover a **nonce** (another of the stream's custom parameters, :func:`stream_nonce`):
  each TwiML for the session (the first, and each redirect to another gateway after one died)
  then carries a credential of its own, and a nonce that names a gateway
  (``<gateway id>/<random>``) is accepted by that gateway alone, so an old credential
  replayed to the gateway a call was redirected to is refused there;
- the **inbound token** (label ``inbound-stream``) is a standing credential of one provider
  entry (not of a session): an Exotel Voicebot applet's URL carries it (``?inbound=<entry>
  &inbound_token=...``) so that a stream arriving with no session is admitted as a new
  inbound call of that entry, and nothing else (it pairs no session, opens no hop);
- the **gateway request signature** (label ``gateway-request``) is on what a standalone
  gateway posts to the runtime (an inbound stream's offer, :mod:`actors.streamed_calls`);
- the **hop token** (label ``session-hop``) is what a connector sends as
  ``Authorization: Bearer`` on ``/sessions/{id}``. It never leaves the runtime: it is not in
  the TwiML, nor in anything sent to a provider.

Both are HMAC-SHA256 under the secret, so the runtime and the gateway share that secret and
nothing else (no registry, no database).

**Twilio's request signature** (``X-Twilio-Signature``) proves that a request came from
Twilio: base64 of an HMAC-SHA1, under the account's auth token, of the full URL followed by
the POST parameters sorted by name, each name directly followed by its value. A WebSocket
upgrade is a GET, so its signature covers the URL alone. As Twilio's own validators do, a URL
is accepted signed with or without its scheme's default port (``:443`` for ``wss``/``https``,
``:80`` for ``ws``/``http``).

Every comparison is constant-time; no function here raises for any ``str`` it is given
(lone surrogates included).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "gateway_request_signature",
    "hop_token",
    "inbound_token",
    "nonce_gateway",
    "stream_nonce",
    "stream_token",
    "twilio_signature",
    "twilio_url_variants",
    "verify_gateway_request",
    "verify_hop_token",
    "verify_inbound_token",
    "verify_stream_token",
    "verify_twilio_signature",
]

_STREAM_LABEL = b"provider-stream\0"
_HOP_LABEL = b"session-hop\0"
_INBOUND_LABEL = b"inbound-stream\0"
_REQUEST_LABEL = b"gateway-request\0"
_DEFAULT_PORTS = {"wss": 443, "https": 443, "ws": 80, "http": 80}


def _encode(text: str) -> bytes:
    # surrogatepass: a lone surrogate (from JSON's "\ud800") hashes instead of raising.
    return text.encode("utf-8", "surrogatepass")


def _token(secret: str, label: bytes, session_id: str) -> str:
    digest = hmac.new(_encode(secret), label + _encode(session_id), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _verify(secret: str, label: bytes, session_id: str, token: str | None) -> bool:
    if not token or not session_id:
        return False
    expected = _token(secret, label, session_id)
    return hmac.compare_digest(expected.encode(), _encode(token))


def _nonced(session_id: str, nonce: str) -> str:
    # A session id never holds a NUL (the gateway's pattern), so the two cannot run together.
    return f"{session_id}\0{nonce}" if nonce else session_id


def stream_token(secret: str, session_id: str, nonce: str = "") -> str:
    """The credential the TwiML carries: it pairs one provider stream with the session
    (covering ``nonce`` too, if one is given: see the module docstring)."""
    return _token(secret, _STREAM_LABEL, _nonced(session_id, nonce))


def stream_nonce(gateway_id: str | None = None) -> str:
    """A fresh nonce for one stream credential; naming ``gateway_id``, only that gateway
    accepts it (:func:`nonce_gateway`)."""
    random = secrets.token_urlsafe(12)
    return f"{gateway_id}/{random}" if gateway_id else random


def nonce_gateway(nonce: str) -> str | None:
    """The gateway id a nonce names (``<gateway id>/<random>``), or ``None``: any gateway."""
    named, slash, _ = nonce.rpartition("/")
    return named if slash else None


def hop_token(secret: str, session_id: str) -> str:
    """The credential of the session's own hop to the gateway; it never leaves the runtime."""
    return _token(secret, _HOP_LABEL, session_id)


def verify_stream_token(secret: str, session_id: str, token: str | None, nonce: str = "") -> bool:
    """Whether ``token`` is ``session_id``'s stream token (for ``nonce``) under ``secret``."""
    if not session_id:
        return False
    return _verify(secret, _STREAM_LABEL, _nonced(session_id, nonce), token)


def verify_hop_token(secret: str, session_id: str, token: str | None) -> bool:
    """Whether ``token`` is ``session_id``'s hop token under ``secret``."""
    return _verify(secret, _HOP_LABEL, session_id, token)


def inbound_token(secret: str, entry: str) -> str:
    """The standing credential of provider entry ``entry``'s inbound streams (an Exotel
    applet's URL carries it): it admits a stream with no session as a new call of ``entry``."""
    return _token(secret, _INBOUND_LABEL, entry)


def verify_inbound_token(secret: str, entry: str, token: str | None) -> bool:
    """Whether ``token`` is ``entry``'s inbound token under ``secret``."""
    return _verify(secret, _INBOUND_LABEL, entry, token)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """What Twilio sends as ``X-Twilio-Signature`` for a request to ``url`` with ``params``."""
    fields = params or {}
    data = url + "".join(f"{name}{fields[name]}" for name in sorted(fields))
    digest = hmac.new(_encode(auth_token), _encode(data), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def twilio_url_variants(url: str) -> tuple[str, ...]:
    """``url`` as written, without its scheme's default port, and with it spelled out: the
    forms Twilio may have signed (its validators accept either)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return (url,)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname
    if default is None or host is None or (port is not None and port != default):
        return (url,)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    bare = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    explicit = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    return tuple(dict.fromkeys((url, bare, explicit)))


def verify_twilio_signature(
    auth_tokens: str | Iterable[str],
    url: str,
    signature: str | None,
    params: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``signature`` is Twilio's signature of this request under one of
    ``auth_tokens``, for ``url`` with or without its default port."""
    if not signature:
        return False
    tokens = (auth_tokens,) if isinstance(auth_tokens, str) else tuple(auth_tokens)
    given = _encode(signature)
    ok = False
    for token in tokens:
        for variant in twilio_url_variants(url):
            # No early exit: every candidate is computed, whatever matches.
            ok |= hmac.compare_digest(twilio_signature(token, variant, params).encode(), given)
    return ok


def gateway_request_signature(secret: str, body: bytes) -> str:
    """The signature a standalone gateway puts on a request to the runtime (an inbound
    stream's offer): HMAC-SHA256 under ``secret`` of a purpose label and ``body``."""
    digest = hmac.new(_encode(secret), _REQUEST_LABEL + body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_gateway_request(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the gateway's on ``body`` under ``secret``."""
    if not signature:
        return False
    expected = gateway_request_signature(secret, body)
    return hmac.compare_digest(expected.encode(), _encode(signature))
