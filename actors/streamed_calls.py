"""Inbound calls that arrive as a provider stream with no session (Exotel's Voicebot applet):
what the gateway knows of one (:class:`InboundStream`), where it hands it
(:class:`InboundDesk`), and the signed request a standalone gateway sends the runtime for it
(:func:`desk_request`, :func:`read_desk_request`: pure, no I/O).

The gateway admits such a stream (:mod:`actors.gateway.inbound`); the embedded gateway hands
it to the runtime in-process, a standalone one (``gateway.inbound_url``) posts it to the
runtime's webhook, ``/exotel/inbound``; either way the runtime's
:class:`~actors.webhooks.streamed.StreamDesk` offers it to the inbound queue.

The request is JSON (``action``: ``offer`` or ``abandon``; the call's fields; ``at``: Unix
time) with ``X-Gateway-Signature``: base64url of HMAC-SHA256 under the gateway's secret of a
purpose label and the body (:func:`actors.signing.gateway_request_signature`). The runtime
refuses a bad signature, and one older (or newer) than :data:`MAX_SKEW_S`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from .signing import gateway_request_signature, verify_gateway_request

__all__ = [
    "MAX_SKEW_S",
    "SIGNATURE_HEADER",
    "InboundDesk",
    "InboundStream",
    "desk_request",
    "read_desk_request",
]

SIGNATURE_HEADER: Final = "X-Gateway-Signature"
#: How far a request's ``at`` may be from the runtime's clock (seconds).
MAX_SKEW_S: Final = 300.0
_ACTIONS: Final = ("offer", "abandon")


@dataclass(frozen=True, slots=True)
class InboundStream:
    """A call that arrived as a provider stream with no session: ``provider`` is the stream's
    kind (``exotel``), ``entry`` the provider entry its inbound token is for; ``parameters``
    are the stream's custom parameters (the inbound token left out)."""

    provider: str
    entry: str
    call_id: str
    from_: str
    to: str
    account_sid: str = ""
    stream_id: str = ""
    parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class InboundDesk(Protocol):
    """Where the gateway hands inbound streams. Both methods block, each on a thread of its
    own: the gateway's loop never waits for them."""

    def offer(self, call: InboundStream) -> Mapping[str, str] | None:
        """Block until ``call`` is accepted (the session's routing parameters: ``session``
        and ``token``) or refused (``None``)."""
        ...

    def abandon(self, call: InboundStream) -> None:
        """The stream ended before ``call`` was answered: it is over."""
        ...


def desk_request(secret: str, action: str, call: InboundStream, now: float) -> tuple[bytes, str]:
    """The body of a desk request, and its ``X-Gateway-Signature``."""
    if action not in _ACTIONS:
        raise ValueError(f"action must be offer or abandon, not {action!r}")
    body = json.dumps(
        {
            "action": action,
            "at": now,
            "provider": call.provider,
            "entry": call.entry,
            "call_id": call.call_id,
            "from": call.from_,
            "to": call.to,
            "account_sid": call.account_sid,
            "stream_id": call.stream_id,
            "parameters": dict(call.parameters),
        },
        separators=(",", ":"),
    ).encode()
    return body, gateway_request_signature(secret, body)


def read_desk_request(
    secret: str, body: bytes, signature: str | None, now: float
) -> tuple[str, InboundStream] | str:
    """``(action, call)`` of a desk request signed under ``secret`` within
    :data:`MAX_SKEW_S` of ``now``; else why it is refused (``bad_signature``, ``stale``,
    ``bad_request``). The signature is checked before anything in the body is read."""
    if not verify_gateway_request(secret, body, signature):
        return "bad_signature"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "bad_request"
    if not isinstance(data, dict):
        return "bad_request"
    at = data.get("at")
    if not isinstance(at, int | float) or isinstance(at, bool) or abs(now - at) > MAX_SKEW_S:
        return "stale"
    action = data.get("action")
    texts = [data.get(k) for k in ("provider", "entry", "call_id", "from", "to")]
    extra = [data.get(k, "") for k in ("account_sid", "stream_id")]
    parameters = data.get("parameters", {})
    if (
        action not in _ACTIONS
        or not all(isinstance(t, str) for t in [*texts, *extra])
        or not isinstance(parameters, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in parameters.items())
        or not texts[2]
    ):
        return "bad_request"
    provider, entry, call_id, from_, to = (str(t) for t in texts)
    account_sid, stream_id = (str(t) for t in extra)
    call = InboundStream(
        provider, entry, call_id, from_, to, account_sid, stream_id, MappingProxyType(parameters)
    )
    return str(action), call
