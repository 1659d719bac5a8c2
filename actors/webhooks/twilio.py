"""Twilio's webhooks, sans-I/O: a request (method, URL, headers, body) becomes a decision.

Twilio calls the voice URL when a call comes in and the status callback URL as a call
progresses. Each request is checked here, in an order that lets nothing unauthenticated cost
more than a bounded read (:func:`precheck`, before the body is read: method, length, a
signature header at all) and a parse of at most ``max_body`` bytes (:func:`decide_voice`,
:func:`decide_status`: the claimed account must be ours, the signature must be Twilio's under
that account's auth token, then the fields must be there). The answer is a verified
:class:`InboundCall` / :class:`StatusEvent`, or a :class:`Refusal` carrying the HTTP status
and the reason it is counted under.

The signature, as Twilio computes it (https://www.twilio.com/docs/usage/webhooks/webhooks-security,
and its helper library twilio-python's ``RequestValidator``, read for facts only):

- form POST: base64 of HMAC-SHA1, under the auth token, of the URL Twilio requested followed
  by every POST parameter, sorted by name, each name directly followed by its value; a name
  sent more than once contributes each of its distinct values, sorted (as the helper does);
- a JSON body (``application/json``): the URL carries a ``bodySHA256`` query parameter, the
  signature covers that URL alone, and the parameter must equal the lowercase hex SHA-256 of
  the raw body (https://www.twilio.com/docs/api/errors/57012 describes the same);
- the port: Twilio has signed some URLs with the port and some without (twilio-python issues
  #392, #402), so the helper accepts the URL with its port (the scheme's default added when
  absent) or with none; so do we. Credentials in the URL (``user:pass@``) are never signed.

The HMAC itself is :func:`actors.signing.verify_twilio_signature` (URL + sorted name/value
pairs); this module only chooses the URL variants and the pairs.

The TwiML answers are built with ElementTree (via
:func:`actors.providers.twilio.build_stream_twiml` for the stream itself), so no value can
change the document's structure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qs, parse_qsl, urlsplit

from ..providers.twilio import build_stream_twiml
from ..safexml import parse_xml
from ..signing import verify_twilio_signature
from ..wire.constants import CALL_SID as _CALL_SID

__all__ = [
    "MAX_BODY",
    "REATTACH_PARAM",
    "SIGNATURE_HEADER",
    "InboundCall",
    "Refusal",
    "StatusEvent",
    "StreamEvent",
    "body_sha256",
    "connect_twiml",
    "decide_amd",
    "decide_status",
    "decide_stream",
    "decide_voice",
    "hangup_twiml",
    "precheck",
    "reject_twiml",
    "signed_url_variants",
    "validate_twiml",
    "verify_request",
]

SIGNATURE_HEADER = "X-Twilio-Signature"
#: A Twilio webhook body is a few hundred bytes to a few KB; 64 KB is generous and bounded.
MAX_BODY = 64 * 1024
#: More fields than any Twilio request carries: the parser stops (400) past it.
MAX_FIELDS = 256
#: The query parameter of our own ``<Redirect>`` after ``<Connect>``: the session whose
#: stream ended while the call went on (see :func:`connect_twiml`).
REATTACH_PARAM = "reattach"

VOICE_FIELDS = ("CallSid", "AccountSid", "From", "To", "CallStatus", "Direction")
STATUS_FIELDS = ("CallSid", "AccountSid", "CallStatus")
AMD_FIELDS = ("CallSid", "AccountSid", "AnsweredBy")
STREAM_FIELDS = ("CallSid", "AccountSid", "StreamSid", "StreamEvent")
#: What a ``<Stream statusCallback>`` says (Twilio's ``StreamEvent``).
STREAM_EVENTS = frozenset({"stream-started", "stream-stopped", "stream-error"})
REJECT_REASONS = frozenset({"busy", "rejected"})  # what <Reject reason=...> accepts

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request turned away: the HTTP ``status``, the counter it falls under (``reason``:
    ``bad_signature``, ``unknown_account``, ``bad_request``, ``too_large``, ``bad_method``)
    and a ``detail`` for the one log line (ids at most: never a value, a token, a signature)."""

    status: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class InboundCall:
    """A call Twilio asked us to answer, from a verified voice webhook.

    ``fields`` holds every form field Twilio sent (the first value of a repeated name), e.g.
    ``CallerName``, ``ForwardedFrom``, ``CallToken``. ``reattach`` is set when the request is
    our own ``<Redirect>`` coming back after a stream ended: it names that session.
    ``provider`` is the provider type whose webhook brought it (``twilio``, ``telnyx``,
    ``plivo``, ``vonage``: :mod:`actors.webhooks.calls`).
    """

    direction: str
    from_: str
    to: str
    call_id: str
    account_sid: str
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    reattach: str | None = None
    provider: str = "twilio"

    @property
    def call_status(self) -> str:
        """Twilio's ``CallStatus`` when it asked (``ringing`` for a new inbound call)."""
        return self.fields.get("CallStatus", "")


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A verified status callback: ``status`` is Twilio's ``CallStatus`` (``initiated``,
    ``ringing``, ``in-progress``, ``completed``, ``busy``, ``no-answer``, ``failed``,
    ``canceled``); ``sequence`` is its ``SequenceNumber`` (callbacks may arrive out of order).
    ``session_id``: the only session it may be delivered to (Exotel's capability URLs)."""

    call_id: str
    account_sid: str
    status: str
    sequence: int | None
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A verified ``<Stream statusCallback>``: ``event`` is Twilio's ``StreamEvent``
    (``stream-started``, ``stream-stopped``, ``stream-error``), ``stream_sid`` its
    ``StreamSid``, ``error`` its ``StreamError`` (a stream-error's description, else "")."""

    call_id: str
    account_sid: str
    stream_sid: str
    event: str
    error: str = ""
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


# -- the signature ---------------------------------------------------------------------------


def body_sha256(body: bytes) -> str:
    """The ``bodySHA256`` Twilio puts on the URL of a JSON-bodied request: hex SHA-256."""
    return hashlib.sha256(body).hexdigest()


def signed_url_variants(url: str) -> tuple[str, ...]:
    """The URLs Twilio may have signed for a request to ``url``: as it is, with no port, and
    with the port written out (the scheme's default when ``url`` has none); never userinfo.

    The path and query are kept byte for byte: Twilio signs them as it requested them.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return (url,)
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    netloc, tail = rest[:end].rpartition("@")[2], rest[end:]
    if netloc.startswith("["):  # an IPv6 literal: the port, if any, follows the bracket
        close = netloc.find("]") + 1
        host, after = netloc[:close], netloc[close:]
        port = after[1:] if after.startswith(":") else ""
    else:
        host, _, port = netloc.partition(":")
    prefix = f"{scheme}://"
    variants = [prefix + netloc + tail, prefix + host + tail]
    explicit = port or _DEFAULT_PORTS.get(scheme.lower(), "")
    if explicit:
        variants.append(f"{prefix}{host}:{explicit}{tail}")
    return tuple(dict.fromkeys(variants))  # in order, without repeats


def _signed_pairs(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``pairs`` as the one-value-per-name mapping that :func:`twilio_signature` signs.

    Twilio appends ``name + value`` for each distinct value of a name, values sorted. With the
    values of a repeated name folded into one (``v1 + name + v2``), the mapping's
    ``name + value`` is exactly that run of pairs, so the HMAC stays signing.py's.
    """
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    return {name: name.join(sorted(vals)) for name, vals in values.items()}


def verify_request(
    auth_token: str,
    url: str,
    signature: str | None,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> bool:
    """Whether ``signature`` is Twilio's for a request to ``url``.

    A form request passes its decoded POST ``pairs``; a request whose URL has ``bodySHA256``
    passes its raw ``body`` (its pairs are then not signed: the hash stands for the body).
    """
    if not signature:
        return False
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    if "bodySHA256" in query:
        claimed = query["bodySHA256"][0].lower()
        actual = body_sha256(body if body is not None else b"")
        if not hmac.compare_digest(claimed.encode(), actual.encode()):
            return False
        params: dict[str, str] = {}
    else:
        params = _signed_pairs(pairs)
    return any(
        verify_twilio_signature(auth_token, variant, signature, params)
        for variant in signed_url_variants(url)
    )


# -- the decisions ---------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def precheck(
    method: str,
    headers: Mapping[str, str],
    *,
    max_body: int = MAX_BODY,
    signature_header: str | None = SIGNATURE_HEADER,
) -> Refusal | None:
    """What can be refused before a byte of the body is read (``None``: read it); a request
    without ``signature_header`` (Twilio's by default; ``None``: not checked here) too."""
    if method != "POST":
        return Refusal(405, "bad_method", f"method {method[:16]!r}")
    if _header(headers, "Transfer-Encoding") is not None:
        return Refusal(411, "bad_request", "a chunked body (Content-Length required)")
    raw = _header(headers, "Content-Length")
    try:
        length = int(raw) if raw is not None else -1
    except ValueError:
        length = -1
    if length < 0:
        return Refusal(411, "bad_request", "no valid Content-Length")
    if length > max_body:
        return Refusal(413, "too_large", f"a body of {length} bytes (limit {max_body})")
    if signature_header is not None and not _header(headers, signature_header):
        return Refusal(403, "bad_signature", f"no {signature_header} header")
    return None


def _parse(url: str, headers: Mapping[str, str], body: bytes) -> list[tuple[str, str]] | Refusal:
    """The request's fields as (name, value) pairs, from a form or (bodySHA256) a JSON body."""
    content_type = (_header(headers, "Content-Type") or "").split(";")[0].strip().lower()
    try:
        if "bodySHA256" in parse_qs(urlsplit(url).query):
            document = json.loads(body)
            if not isinstance(document, dict):
                return Refusal(400, "bad_request", "a JSON body that is not an object")
            return [
                (str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in document.items()
            ]
        if content_type not in ("application/x-www-form-urlencoded", ""):
            return Refusal(400, "bad_request", f"content type {content_type[:40]!r}")
        return parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,  # an empty value is signed too ("CallerName" + "")
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError...
        return Refusal(400, "bad_request", f"an unreadable body ({type(exc).__name__})")


def _verified(
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    accounts: Mapping[str, str],
    required: Sequence[str],
) -> dict[str, str] | Refusal:
    pairs = _parse(url, headers, body)
    if isinstance(pairs, Refusal):
        return pairs
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    account_sid = fields.get("AccountSid", "")
    if not account_sid:
        return Refusal(400, "bad_request", "no AccountSid")
    token = accounts.get(account_sid)
    if token is None:
        return Refusal(403, "unknown_account", f"account {account_sid[:40]!r} is not ours")
    signature = _header(headers, SIGNATURE_HEADER)
    if not verify_request(token, url, signature, pairs=pairs, body=body):
        return Refusal(403, "bad_signature", f"a signature that is not Twilio's for {account_sid}")
    missing = [name for name in required if not fields.get(name)]
    if missing:
        return Refusal(400, "bad_request", f"missing {', '.join(missing)}")
    if not _CALL_SID.fullmatch(fields["CallSid"]):
        return Refusal(400, "bad_request", "a CallSid that is not 'CA' + 32 hex digits")
    return fields


def decide_voice(
    url: str, headers: Mapping[str, str], body: bytes, accounts: Mapping[str, str]
) -> InboundCall | Refusal:
    """A voice webhook: the call to answer, or why not.

    ``url`` is the URL Twilio requested (the webhook's public URL and the request's path and
    query, as sent); ``accounts`` maps each AccountSid we answer for to its auth token.
    """
    fields = _verified(url, headers, body, accounts, VOICE_FIELDS)
    if isinstance(fields, Refusal):
        return fields
    reattach = parse_qs(urlsplit(url).query).get(REATTACH_PARAM, [None])[0]
    return InboundCall(
        direction=fields["Direction"],
        from_=fields["From"],
        to=fields["To"],
        call_id=fields["CallSid"],
        account_sid=fields["AccountSid"],
        fields=MappingProxyType(fields),
        reattach=reattach or None,
    )


def decide_status(
    url: str, headers: Mapping[str, str], body: bytes, accounts: Mapping[str, str]
) -> StatusEvent | Refusal:
    """A status callback: the event, or why it is refused (as :func:`decide_voice`)."""
    fields = _verified(url, headers, body, accounts, STATUS_FIELDS)
    if isinstance(fields, Refusal):
        return fields
    raw_sequence = fields.get("SequenceNumber", "")
    return StatusEvent(
        call_id=fields["CallSid"],
        account_sid=fields["AccountSid"],
        status=fields["CallStatus"],
        sequence=int(raw_sequence) if raw_sequence.isdigit() else None,
        fields=MappingProxyType(fields),
    )


def decide_amd(
    url: str, headers: Mapping[str, str], body: bytes, accounts: Mapping[str, str]
) -> StatusEvent | Refusal:
    """An ``AsyncAmdStatusCallback``: machine detection's verdict (``AnsweredBy``) as a
    :class:`StatusEvent` whose ``status`` is ``"amd"``; or why it is refused."""
    fields = _verified(url, headers, body, accounts, AMD_FIELDS)
    if isinstance(fields, Refusal):
        return fields
    return StatusEvent(
        call_id=fields["CallSid"],
        account_sid=fields["AccountSid"],
        status="amd",
        sequence=None,
        fields=MappingProxyType(fields),
    )


def decide_stream(
    url: str, headers: Mapping[str, str], body: bytes, accounts: Mapping[str, str]
) -> StreamEvent | Refusal:
    """A ``<Stream statusCallback>`` request: the stream's event, or why it is refused (as
    :func:`decide_voice`: our account, Twilio's signature, then the fields)."""
    fields = _verified(url, headers, body, accounts, STREAM_FIELDS)
    if isinstance(fields, Refusal):
        return fields
    if fields["StreamEvent"] not in STREAM_EVENTS:
        return Refusal(400, "bad_request", f"StreamEvent {fields['StreamEvent'][:24]!r}")
    return StreamEvent(
        call_id=fields["CallSid"],
        account_sid=fields["AccountSid"],
        stream_sid=fields["StreamSid"],
        event=fields["StreamEvent"],
        error=fields.get("StreamError", ""),
        fields=MappingProxyType(fields),
    )


# -- TwiML -----------------------------------------------------------------------------------


def connect_twiml(
    stream_url: str,
    parameters: Mapping[str, str],
    *,
    redirect_url: str | None = None,
    status_callback: str | None = None,
) -> str:
    """``<Response><Connect><Stream url><Parameter/>...</Stream></Connect>[<Redirect>]``
    (``status_callback``: the stream's ``statusCallback``, see ``build_stream_twiml``).

    With no ``action`` on ``<Connect>``, Twilio goes on to the next verb when the stream ends
    (https://www.twilio.com/docs/voice/twiml/connect) and hangs up when there is none. A
    ``redirect_url`` (the voice webhook's URL with ``?reattach=<session id>``) makes that next
    verb a ``<Redirect>`` back to us, signed like any webhook: a stream that *we* dropped
    while the caller stayed on can then be streamed again (to another node or gateway, the
    cluster issue) instead of the call ending. When the caller hangs up, or we end the call
    over REST, no TwiML runs after the stream, so the marker never fires for those.
    """
    response = parse_xml(
        build_stream_twiml(stream_url, parameters, status_callback=status_callback)
    )
    if redirect_url is not None:
        _check_xml_text("redirect_url", redirect_url)
        redirect = ET.SubElement(response, "Redirect", method="POST")
        redirect.text = redirect_url
    return ET.tostring(response, encoding="unicode")


def reject_twiml(reason: str = "busy") -> str:
    """``<Response><Reject reason="busy"/></Response>``: the call is refused unanswered (the
    caller hears a busy signal, or for ``rejected`` a not-in-service tone; nothing is billed)."""
    if reason not in REJECT_REASONS:
        raise ValueError(f"reason must be one of {sorted(REJECT_REASONS)}, not {reason!r}")
    response = ET.Element("Response")
    ET.SubElement(response, "Reject", reason=reason)
    return ET.tostring(response, encoding="unicode")


def hangup_twiml() -> str:
    """``<Response><Hangup/></Response>``."""
    response = ET.Element("Response")
    ET.SubElement(response, "Hangup")
    return ET.tostring(response, encoding="unicode")


def validate_twiml(document: str) -> str:
    """``document`` if it is a well-formed TwiML document (root ``<Response>``), else
    :class:`ValueError`: configured TwiML is checked once, when it is configured."""
    root = parse_xml(document)  # XMLRefused is a ValueError
    if root.tag != "Response":
        raise ValueError(f"the root element must be <Response>, not <{root.tag}>")
    return document


def _check_xml_text(what: str, text: str) -> None:
    bad = _XML_INVALID.search(text)
    if bad is not None:
        raise ValueError(f"{what} holds {bad.group()!r}, which XML cannot carry")
