"""The voice and progress webhooks of Telnyx, Plivo, Vonage and Exotel, sans-I/O: a request
(headers, URL, raw body) becomes a verified :class:`~actors.webhooks.twilio.InboundCall` or
:class:`~actors.webhooks.twilio.StatusEvent`, named by the configured provider it belongs to,
or a :class:`~actors.webhooks.twilio.Refusal`.

Every request is authenticated before anything of its body is parsed (the body itself is
read by the server only up to ``max_body``): Telnyx's Ed25519 signature over
``timestamp|body`` (:mod:`actors.webhooks.telnyx`), Plivo's ``X-Plivo-Signature-V3``
(:mod:`actors.webhooks.plivo`), Vonage's signed-callback JWT (:mod:`actors.webhooks.vonage`).
Exotel signs nothing: its status callback URL is a capability minted by the runtime for one
session (:func:`exotel_capability`: HMAC-SHA256 of the session id under a secret of ours), and
the event it brings is only delivered to that session.

Each provider's call states become the ``CallStatus`` values Twilio uses (``initiated``,
``ringing``, ``in-progress``, ``completed``, ``busy``, ``no-answer``, ``failed``,
``canceled``), so that :class:`~actors.calls.CallPlane` treats every call alike (the README's
"Inbound calls" has the table).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from ..routing import decode_client_state
from .plivo import hangup_xml, verify_signature_v3
from .telnyx import hangup_texml, verify_webhook
from .twilio import InboundCall, Refusal, StatusEvent, reject_twiml
from .vonage import VonageWebhook, verify_vonage_webhook

__all__ = [
    "EXOTEL_STATUS",
    "PLIVO_STATUS",
    "TELNYX_AMD",
    "TELNYX_CAUSES",
    "TELNYX_STREAM_ENDED",
    "VONAGE_STATUS",
    "ProviderKeys",
    "exotel_capability",
    "exotel_status",
    "plivo_call",
    "plivo_hangup",
    "plivo_machine",
    "plivo_refusal",
    "plivo_status",
    "telnyx_event",
    "telnyx_hangup",
    "telnyx_refusal",
    "telnyx_stream_lost",
    "telnyx_voice",
    "verify_plivo",
    "verify_vonage",
    "vonage_call",
    "vonage_disconnected",
    "vonage_event",
    "vonage_refusal",
]

_MAX_FIELDS = 256

#: Telnyx ``call.hangup`` ``hangup_cause`` of a call never answered -> the call's status
#: (causes from Telnyx's CallHangup payload; any other, or an answered call: ``completed``).
TELNYX_CAUSES = MappingProxyType(
    {
        "user_busy": "busy",
        "call_rejected": "busy",
        "timeout": "no-answer",
        "no_answer": "no-answer",
        "originator_cancel": "canceled",
        "not_found": "failed",
        "unspecified": "failed",
    }
)
#: Telnyx's machine detection results (``call.machine[.premium].detection.ended`` and
#: ``...greeting.ended``, their ``payload.result`` enums in Telnyx's OpenAPI) -> Twilio's
#: ``AnsweredBy``, so that ``MachineDetected`` reads the same for every provider.
TELNYX_AMD = MappingProxyType(
    {
        "human": "human",
        "human_residence": "human",
        "human_business": "human",
        "machine": "machine_start",
        "fax_detected": "fax",
        "silence": "unknown",
        "not_sure": "unknown",
        "beep_detected": "machine_end_beep",
        "ended": "machine_end_other",
        "no_beep_detected": "machine_end_other",
    }
)
_TELNYX_AMD_EVENTS = frozenset(
    {
        "call.machine.detection.ended",
        "call.machine.premium.detection.ended",
        "call.machine.greeting.ended",
        "call.machine.premium.greeting.ended",
    }
)
#: Plivo's ``CallStatus`` (answer, ring and hangup callbacks) -> the call's status.
PLIVO_STATUS = MappingProxyType(
    {
        "ringing": "ringing",
        "in-progress": "in-progress",
        "completed": "completed",
        "busy": "busy",
        "failed": "failed",
        "timeout": "no-answer",
        "no-answer": "no-answer",
        "cancel": "canceled",
    }
)
#: Vonage's event ``status`` -> the call's status (``disconnected``, ``human``, ``machine``
#: and the others are not a call's state: they are not delivered as ``CallStatus``).
VONAGE_STATUS = MappingProxyType(
    {
        "started": "initiated",
        "ringing": "ringing",
        "answered": "in-progress",
        "busy": "busy",
        "rejected": "busy",
        "timeout": "no-answer",
        "unanswered": "no-answer",
        "failed": "failed",
        "cancelled": "canceled",
        "completed": "completed",
    }
)
#: Exotel's ``Status`` (StatusCallback) -> the call's status.
EXOTEL_STATUS = MappingProxyType(
    {
        "ringing": "ringing",
        "in-progress": "in-progress",
        "answered": "in-progress",
        "completed": "completed",
        "busy": "busy",
        "no-answer": "no-answer",
        "failed": "failed",
        "canceled": "canceled",
    }
)


@dataclass(frozen=True, slots=True)
class ProviderKeys:
    """What authenticates each provider's webhooks, by configured provider name: Telnyx's
    Ed25519 public key (base64), Plivo's auth token, Vonage's signature secret, and the
    secret Exotel's capability URLs are minted under. Never logged, never in a repr."""

    telnyx: Mapping[str, str] = field(default_factory=dict, repr=False)
    plivo: Mapping[str, str] = field(default_factory=dict, repr=False)
    vonage: Mapping[str, str] = field(default_factory=dict, repr=False)
    exotel: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Telnyx entries whose inbound calls come as Call Control's call.initiated (inbound:
    # call_control), not to the TeXML voice URL.
    telnyx_call_control: frozenset[str] = frozenset()


def _form(body: bytes) -> dict[str, str] | Refusal:
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError as exc:
        return Refusal(400, "bad_request", f"an unreadable form ({type(exc).__name__})")
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _missing(fields: Mapping[str, str], *names: str) -> Refusal | None:
    absent = [name for name in names if not fields.get(name)]
    return Refusal(400, "bad_request", f"missing {', '.join(absent)}") if absent else None


# -- Telnyx ----------------------------------------------------------------------------------


def _telnyx_name(keys: ProviderKeys, headers: Mapping[str, str], body: bytes) -> str | Refusal:
    for name, key in tuple(keys.telnyx.items()):  # filled as emulators start
        if verify_webhook(key, headers, body):
            return name
    why = "no Telnyx public key configured" if not keys.telnyx else "not Telnyx's signature"
    return Refusal(403, "bad_signature", why)


def telnyx_voice(
    keys: ProviderKeys, headers: Mapping[str, str], body: bytes
) -> tuple[str, InboundCall] | Refusal:
    """A TeXML voice webhook (a form: ``CallSid``, ``From``, ``To``, ``AccountSid``...)."""
    name = _telnyx_name(keys, headers, body)
    if isinstance(name, Refusal):
        return name
    fields = _form(body)
    if isinstance(fields, Refusal):
        return fields
    if (missing := _missing(fields, "CallSid", "From", "To")) is not None:
        return missing
    return name, InboundCall(
        direction=fields.get("Direction", "inbound"),
        from_=fields["From"],
        to=fields["To"],
        call_id=fields["CallSid"],
        account_sid=fields.get("AccountSid", ""),
        fields=MappingProxyType(fields),
        provider="telnyx",
    )


def telnyx_event(
    keys: ProviderKeys, headers: Mapping[str, str], body: bytes, *, answered: bool = False
) -> tuple[str, StatusEvent | InboundCall | None] | Refusal:
    """A Call Control webhook (JSON ``{"data": {"event_type", "payload"}}``) or a TeXML
    status callback (a form with ``CallStatus``): the event, or ``None`` for one that is not
    a call state; with ``inbound: call_control``, an incoming ``call.initiated`` is an
    :class:`InboundCall` to answer with ``actions/answer``. Machine detection's results are
    ``amd`` events with Twilio's
    ``AnsweredBy`` (:data:`TELNYX_AMD`). ``answered``: whether the call was answered (a
    hang-up is ``completed``)."""
    name = _telnyx_name(keys, headers, body)
    if isinstance(name, Refusal):
        return name
    if body.lstrip()[:1] != b"{":  # TeXML's status callback: Twilio's fields and words
        fields = _form(body)
        if isinstance(fields, Refusal):
            return fields
        if (missing := _missing(fields, "CallSid", "CallStatus")) is not None:
            return missing
        sequence = fields.get("SequenceNumber", "")
        return name, StatusEvent(
            fields["CallSid"],
            fields.get("AccountSid", ""),
            fields["CallStatus"],
            int(sequence) if sequence.isdigit() else None,
            MappingProxyType(fields),
        )
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    event = data.get("data") if isinstance(data, dict) else None
    payload = event.get("payload") if isinstance(event, dict) else None
    if not isinstance(event, dict) or not isinstance(payload, dict):
        return Refusal(400, "bad_request", "not a Call Control event")
    call_id = payload.get("call_control_id")
    if not isinstance(call_id, str) or not call_id:
        return Refusal(400, "bad_request", "missing payload.call_control_id")
    kind = event.get("event_type")
    # client_state holds the stream token (spent once paired, but a credential): not shown.
    flat = {k: v for k, v in payload.items() if isinstance(v, str) and k != "client_state"}
    flat["event_type"] = str(kind)
    incoming = kind == "call.initiated" and payload.get("direction") == "incoming"
    if incoming and name in keys.telnyx_call_control:  # a call to answer with actions/answer
        from_, to = flat.get("from", ""), flat.get("to", "")
        if not from_ or not to:
            return Refusal(400, "bad_request", "missing payload.from or payload.to")
        return name, InboundCall(
            direction="inbound",
            from_=from_,
            to=to,
            call_id=call_id,
            account_sid=flat.get("connection_id", ""),
            fields=MappingProxyType(flat),
            provider="telnyx",
        )
    if kind == "call.initiated":
        status = "initiated"
    elif kind == "call.answered":
        status = "in-progress"
    elif kind == "call.hangup":
        cause = str(payload.get("hangup_cause", ""))
        status = "completed" if answered else TELNYX_CAUSES.get(cause, "completed")
    elif kind in _TELNYX_AMD_EVENTS:
        status = "amd"
        flat["AnsweredBy"] = TELNYX_AMD.get(str(payload.get("result", "")), "unknown")
    else:
        return name, None
    return name, StatusEvent(call_id, "", status, None, MappingProxyType(flat))


#: Call Control's webhooks that say a call's stream ended while the call goes on (the spec's
#: ``CallStreamingFailed``, ``failure_reason`` e.g. ``connection_failed``; and
#: ``CallStreamingStopped``).
TELNYX_STREAM_ENDED = frozenset({"streaming.failed", "streaming.stopped"})


def telnyx_stream_lost(body: bytes) -> tuple[str, str] | None:
    """``(call_control_id, session id)`` of a verified Call Control webhook saying that the
    stream of one of our calls ended (its ``client_state`` names the session); else
    ``None``."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    event = data.get("data") if isinstance(data, dict) else None
    if not isinstance(event, dict) or event.get("event_type") not in TELNYX_STREAM_ENDED:
        return None
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return None
    call_id = payload.get("call_control_id")
    state = decode_client_state(payload.get("client_state")) or {}
    session = state.get("session")
    if not isinstance(call_id, str) or not call_id or not session:
        return None
    return call_id, session


def telnyx_hangup() -> str:
    """The TeXML that ends a call that came back for a session that is over."""
    return hangup_texml()


def telnyx_refusal() -> str:
    """TeXML that refuses a call unanswered: ``<Reject reason="busy"/>`` (Telnyx's verb)."""
    return reject_twiml("busy")


# -- Plivo -----------------------------------------------------------------------------------


def verify_plivo(
    keys: ProviderKeys, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> tuple[str, dict[str, str]] | Refusal:
    """A Plivo webhook to ``url`` (what Plivo requested: public URL, path and query), signed
    V3 under one configured auth token: its provider name and form fields."""
    fields = _form(body) if method == "POST" else {}
    if isinstance(fields, Refusal):
        return fields
    pairs = list(fields.items())
    for name, token in tuple(keys.plivo.items()):
        if verify_signature_v3(token, method, url, headers, pairs):
            return name, fields
    why = "no Plivo auth token configured" if not keys.plivo else "not Plivo's signature"
    return Refusal(403, "bad_signature", why)


def plivo_call(fields: Mapping[str, str]) -> InboundCall | Refusal:
    """An inbound call from Plivo's answer webhook (``CallUUID``, ``From``, ``To``...)."""
    if (missing := _missing(fields, "CallUUID", "From", "To")) is not None:
        return missing
    return InboundCall(
        direction=fields.get("Direction", "inbound"),
        from_=fields["From"],
        to=fields["To"],
        call_id=fields["CallUUID"],
        account_sid="",
        fields=MappingProxyType(dict(fields)),
        provider="plivo",
    )


def plivo_status(fields: Mapping[str, str]) -> StatusEvent | Refusal:
    """A ring, answer or hang-up callback as an event: routed by ``RequestUUID`` for a call
    we placed (what its session knows it by), else by ``CallUUID``."""
    if (missing := _missing(fields, "CallUUID", "CallStatus")) is not None:
        return missing
    outbound = fields.get("Direction") == "outbound" and fields.get("RequestUUID")
    call_id = fields["RequestUUID"] if outbound else fields["CallUUID"]
    status = PLIVO_STATUS.get(fields["CallStatus"], fields["CallStatus"])
    return StatusEvent(call_id, "", status, None, MappingProxyType(dict(fields)))


def plivo_machine(fields: Mapping[str, str]) -> StatusEvent | Refusal:
    """Machine detection's verdict at our ``machine_detection_url`` (``Machine``: ``true`` or
    ``false``; routed as :func:`plivo_status` routes): an ``amd`` event whose ``AnsweredBy``
    is Twilio's word (``machine_start`` or ``human``: Plivo tells no more than that)."""
    if (missing := _missing(fields, "CallUUID", "Machine")) is not None:
        return missing
    machine = fields["Machine"].lower()
    if machine not in ("true", "false"):
        return Refusal(400, "bad_request", "Machine is neither true nor false")
    outbound = fields.get("Direction", "outbound") == "outbound" and fields.get("RequestUUID")
    call_id = fields["RequestUUID"] if outbound else fields["CallUUID"]
    answered_by = "machine_start" if machine == "true" else "human"
    flat = {**fields, "AnsweredBy": answered_by}
    return StatusEvent(call_id, "", "amd", None, MappingProxyType(flat))


def plivo_hangup() -> str:
    """The Plivo XML that ends a call that came back for a session that is over."""
    return hangup_xml()


def plivo_refusal() -> str:
    """Plivo XML that refuses a call: ``<Response><Hangup reason="busy"/></Response>``."""
    response = ET.Element("Response")
    ET.SubElement(response, "Hangup", reason="busy")
    return ET.tostring(response, encoding="unicode")


# -- Vonage ----------------------------------------------------------------------------------


def verify_vonage(
    keys: ProviderKeys, headers: Mapping[str, str], body: bytes, method: str, query: str
) -> tuple[str, VonageWebhook] | Refusal:
    """A Vonage callback signed under one configured signature secret: its provider name and
    payload (the JSON body, or a GET's query)."""
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    last: Refusal = Refusal(403, "bad_signature", "no Vonage signature secret configured")
    for name, secret in tuple(keys.vonage.items()):
        decided = verify_vonage_webhook(authorization, body, secret, method=method, query=query)
        if isinstance(decided, VonageWebhook):
            return name, decided
        last = Refusal(
            403 if decided.status == 401 else decided.status, "bad_signature", decided.why
        )
    return last


def _text(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if isinstance(value, dict):  # a newer shape: {"type": "phone", "number": ...}
        value = value.get("number")
    return value if isinstance(value, str) else ""


def vonage_call(payload: Mapping[str, Any]) -> InboundCall | Refusal:
    """An inbound call from Vonage's answer webhook (``uuid``, ``from``, ``to``...)."""
    fields = {k: v for k, v in payload.items() if isinstance(v, str)}
    call_id, from_, to = _text(payload, "uuid"), _text(payload, "from"), _text(payload, "to")
    if not (call_id and from_ and to):
        return Refusal(400, "bad_request", "missing uuid, from or to")
    return InboundCall(
        direction="inbound",
        from_=from_,
        to=to,
        call_id=call_id,
        account_sid="",
        fields=MappingProxyType(fields),
        provider="vonage",
    )


def vonage_event(payload: Mapping[str, Any]) -> StatusEvent | Refusal | None:
    """An event webhook as an event (``None``: not a call state, e.g. ``disconnected``)."""
    call_id, status = _text(payload, "uuid"), _text(payload, "status")
    if not call_id or not status:
        return Refusal(400, "bad_request", "missing uuid or status")
    mapped = VONAGE_STATUS.get(status)
    if mapped is None:
        return None
    fields = {k: v for k, v in payload.items() if isinstance(v, str)}
    return StatusEvent(call_id, "", mapped, None, MappingProxyType(fields))


def vonage_disconnected(payload: Mapping[str, Any], session: str) -> InboundCall | None:
    """A websocket's ``disconnected`` event at a synchronous ``eventUrl`` of ours, as the call
    that came back for ``session``; ``None`` for another event (nothing to answer)."""
    if _text(payload, "status") != "disconnected":
        return None
    fields = {k: v for k, v in payload.items() if isinstance(v, str)}
    return InboundCall(
        direction=_text(payload, "direction") or "outbound",
        from_=_text(payload, "from"),
        to=_text(payload, "to"),
        call_id=_text(payload, "uuid"),
        account_sid="",
        fields=MappingProxyType(fields),
        reattach=session,
        provider="vonage",
    )


def vonage_refusal() -> str:
    """The NCCO a refused call gets. Vonage has no reject action: the call is answered, told
    so in a short ``talk``, and hangs up when the NCCO ends."""
    return json.dumps([{"action": "talk", "text": "All our lines are busy. Please call later."}])


# -- Exotel ----------------------------------------------------------------------------------


def exotel_capability(secret: str, session_id: str) -> str:
    """The capability that authenticates Exotel's status callbacks for one session: hex
    HMAC-SHA256 under ``secret`` (Exotel signs nothing itself)."""
    message = f"exotel-status:{session_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def exotel_status(keys: ProviderKeys, query: str, body: bytes) -> tuple[str, StatusEvent] | Refusal:
    """A StatusCallback to our ``?session=...&sig=...`` URL: the event, bound to that session
    (``StatusEvent.session_id``), once the capability holds."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    session, sig = params.get("session", ""), params.get("sig", "")
    name = next(
        (
            n
            for n, secret in tuple(keys.exotel.items())
            if session
            and hmac.compare_digest(sig.encode(), exotel_capability(secret, session).encode())
        ),
        None,
    )
    if name is None:
        return Refusal(403, "bad_signature", "not a status URL the runtime minted")
    fields = _form(body)
    if isinstance(fields, Refusal):
        return fields
    if (missing := _missing(fields, "CallSid", "Status")) is not None:
        return missing
    status = EXOTEL_STATUS.get(fields["Status"].lower(), fields["Status"].lower())
    event = StatusEvent(
        fields["CallSid"], "", status, None, MappingProxyType(fields), session_id=session
    )
    return name, event
