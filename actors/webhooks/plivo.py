"""Plivo's webhooks, sans-I/O: their V3 signature, and the ``<Stream>`` XML that streams a call.

**The signature** (docs.plivo.com/docs/voice/concepts/signature-validation, read 2026-12-01;
Plivo's Python SDK, ``plivo/utils/signature_v3.py``, computes the same, read for facts only):
every request carries ``X-Plivo-Signature-V3`` and ``X-Plivo-Signature-V3-Nonce``. The signed
string is the request's full URL (scheme, host, port, path), then:

- for a GET: ``?`` and the query parameters sorted by name (each ``name=value``, a repeated
  name's values sorted, joined with ``&``), or nothing when there are none;
- for a POST: ``?`` and the sorted query as above; then, when there was a query *and* POST
  parameters, a ``.``; then the POST parameters sorted by name, each name directly followed
  by its value (nothing between them); with no POST parameters, as a GET;

then ``.`` and the nonce. The signature is the base64 of its HMAC-SHA256 under the auth
token; the header may hold several, comma-separated (one per token Plivo signs with), and one
matching is enough. ``X-Plivo-Signature-Ma-V3`` is the same under the main account's token.

**The answer** (docs.plivo.com/docs/voice/xml/audiostream): ``<Response><Stream
bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000"
extraHeaders="k=v,k=v">wss://...</Stream></Response>``. ``contentType`` is always written:
that page says its default is ``audio/x-l16;rate=8000``, Plivo's streaming overview says
``audio/x-mulaw;rate=8000``. ``extraHeaders`` may only hold ``[A-Za-z0-9]`` and 512 bytes, so
the routing values go hex-encoded (:mod:`actors.routing`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..routing import encode_extra_headers

__all__ = [
    "CONTENT_TYPES",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "dial_xml",
    "hangup_xml",
    "signature_v3",
    "stream_xml",
    "verify_signature_v3",
]

SIGNATURE_HEADER = "X-Plivo-Signature-V3"
NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"
CONTENT_TYPES = frozenset(
    {"audio/x-mulaw;rate=8000", "audio/x-l16;rate=8000", "audio/x-l16;rate=16000"}
)
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def signed_string(method: str, url: str, post_params: Sequence[tuple[str, str]] = ()) -> str:
    """What Plivo signs for a request (before the ``.`` and the nonce)."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = _grouped(parse_qsl(parts.query, keep_blank_values=True))
    sorted_query = "&".join(
        f"{name}={value}" for name in sorted(query) for value in sorted(query[name])
    )
    posted = _grouped(post_params) if method.upper() == "POST" else {}
    if not posted:
        return f"{base}?{sorted_query}" if sorted_query else base
    body = "".join(f"{name}{value}" for name in sorted(posted) for value in sorted(posted[name]))
    return f"{base}?{sorted_query}{'.' if sorted_query else ''}{body}"


def signature_v3(
    auth_token: str,
    method: str,
    url: str,
    nonce: str,
    post_params: Sequence[tuple[str, str]] = (),
) -> str:
    """The ``X-Plivo-Signature-V3`` Plivo sends for this request under ``auth_token``."""
    message = f"{signed_string(method, url, post_params)}.{nonce}"
    digest = hmac.new(
        auth_token.encode("utf-8", "surrogatepass"),
        message.encode("utf-8", "surrogatepass"),
        hashlib.sha256,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature_v3(
    auth_token: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    post_params: Sequence[tuple[str, str]] = (),
) -> bool:
    """Whether the request's ``X-Plivo-Signature-V3`` holds Plivo's signature of it under
    ``auth_token`` (with its ``X-Plivo-Signature-V3-Nonce``). Never raises for what a peer
    sends; every candidate is compared in constant time."""
    lowered = {key.lower(): value for key, value in headers.items()}
    given = lowered.get(SIGNATURE_HEADER.lower())
    nonce = lowered.get(NONCE_HEADER.lower())
    if not given or not nonce or not auth_token:
        return False
    expected = signature_v3(auth_token, method, url, nonce, post_params).encode()
    ok = False
    for candidate in given.split(","):
        ok |= hmac.compare_digest(expected, candidate.strip().encode("utf-8", "surrogatepass"))
    return ok


def _checked(what: str, text: str) -> str:
    bad = _XML_INVALID.search(text)
    if bad is not None:
        raise ValueError(f"{what} holds {bad.group()!r}, which XML cannot carry")
    return text


def stream_xml(
    stream_url: str,
    parameters: Mapping[str, str],
    *,
    content_type: str = "audio/x-mulaw;rate=8000",
    redirect_url: str | None = None,
) -> str:
    """``<Response><Stream bidirectional keepCallAlive contentType extraHeaders>url</Stream>``:
    the answer that streams a call to ``stream_url`` both ways, ``parameters`` in its extra
    headers (:func:`actors.routing.encode_extra_headers`: ``ValueError`` for what Plivo's
    extra headers cannot carry).

    ``redirect_url`` (a cluster's: our ``/plivo/answer?reattach=<session>``) follows as a
    ``<Redirect>``. With ``keepCallAlive="true"`` "subsequent XML elements execute only after
    the stream disconnects" (docs.plivo.com/docs/voice/xml/audiostream, read 2026-12-01), so
    a stream that ends while the caller stays on (its gateway died) brings the call back to
    us, and the answer to that request streams it again."""
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"content_type must be one of {sorted(CONTENT_TYPES)}")
    response = ET.Element("Response")
    attributes = {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "audioTrack": "inbound",
        "contentType": content_type,
    }
    if parameters:
        attributes["extraHeaders"] = encode_extra_headers(parameters)
    stream = ET.SubElement(response, "Stream", attributes)
    stream.text = _checked("stream_url", stream_url)
    if redirect_url is not None:
        redirect = ET.SubElement(response, "Redirect", method="POST")
        redirect.text = _checked("redirect_url", redirect_url)
    return ET.tostring(response, encoding="unicode")


def hangup_xml() -> str:
    """``<Response><Hangup/></Response>``: a call that came back after its stream, for a
    session that is over."""
    response = ET.Element("Response")
    ET.SubElement(response, "Hangup")
    return ET.tostring(response, encoding="unicode")


def dial_xml(to: str, caller_id: str | None = None) -> str:
    """``<Response><Dial [callerId]><Number>|<User>to</...></Dial></Response>``: the Plivo XML
    a transfer gives a call (docs.plivo.com/docs/voice/xml/dial: ``<Number>`` for a phone
    number, ``<User>`` for a SIP endpoint). ``to`` is an E.164 number or a ``sip:`` URI, as
    the facade checked it; built with ElementTree, so no value can break the document."""
    attributes = {} if caller_id is None else {"callerId": _checked("caller_id", caller_id)}
    response = ET.Element("Response")
    dial = ET.SubElement(response, "Dial", attributes)
    noun = "User" if to.startswith(("sip:", "sips:")) else "Number"
    ET.SubElement(dial, noun).text = _checked("to", to)
    return ET.tostring(response, encoding="unicode")
