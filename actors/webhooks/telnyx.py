"""Telnyx's webhooks, sans-I/O: their Ed25519 signature, and the TeXML that streams a call.

**The signature** (developers.telnyx.com, "Webhook signing"; Telnyx's SDKs agree; read
2026-12-01): every webhook carries ``telnyx-signature-ed25519``, the base64 of an Ed25519
signature (64 bytes), and ``telnyx-timestamp``, Unix seconds, over the bytes
``f"{timestamp}|{raw body}"``. The public key is the account's, from the portal (Account
Settings, Keys & Credentials, Public Key), given as base64 of its 32 raw bytes. A timestamp
older (or further ahead) than ``tolerance_s`` (300 s, Telnyx's advice) is refused, so that a
captured webhook cannot be replayed later. (The key and the check are :mod:`actors.pubkey`'s.)

**TeXML** (the issue's spelling; Telnyx's TeXML ``<Stream>`` page was not readable here, so the
attribute names are unconfirmed there, beyond ``url``): an inbound
call answered with ``<Response><Connect><Stream url="wss://..." bidirectionalMode="rtp"
bidirectionalCodec="PCMU"><Parameter name=... value=.../></Stream></Connect></Response>``
streams both ways; the ``<Parameter>`` values come back in the stream's
``start.custom_parameters``. Built with an XML library, so no value can break it.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from ..pubkey import Ed25519PublicKey, load_ed25519_public_key, verify_ed25519

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_S",
    "dial_texml",
    "hangup_texml",
    "load_public_key",
    "stream_texml",
    "verify_webhook",
]

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
TOLERANCE_S = 300.0

_CODECS = frozenset({"PCMU", "PCMA"})
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def load_public_key(public_key: str) -> Ed25519PublicKey:
    """The portal's public key (base64 of 32 bytes); ``ValueError`` if it is not one."""
    try:
        return load_ed25519_public_key(public_key)
    except ValueError:
        raise ValueError("the Telnyx public key must be base64 of 32 bytes") from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():  # HTTP header names are case-insensitive
        if key.lower() == name:
            return value
    return None


def verify_webhook(
    public_key: str | Ed25519PublicKey,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether ``body`` with these ``headers`` is a webhook Telnyx signed, at most
    ``tolerance_s`` from ``now`` (default: the clock). Never raises for what a peer sends."""
    signature = _header(headers, SIGNATURE_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    if not signature or not stamp or not stamp.isascii() or not stamp.strip().isdigit():
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(stamp)) > tolerance_s:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    return verify_ed25519(key, raw, stamp.encode("ascii") + b"|" + body)


def _checked(what: str, text: str) -> str:
    bad = _XML_INVALID.search(text)
    if bad is not None:
        raise ValueError(f"{what} holds {bad.group()!r}, which XML cannot carry")
    return text


def stream_texml(
    stream_url: str,
    parameters: Mapping[str, str],
    *,
    codec: str = "PCMU",
    redirect_url: str | None = None,
) -> str:
    """``<Response><Connect><Stream url bidirectionalMode="rtp" bidirectionalCodec>`` with one
    ``<Parameter>`` per item of ``parameters``: the TeXML that streams a call to
    ``stream_url`` both ways. ``ValueError`` for a value XML cannot carry, or another codec.

    ``redirect_url`` (a cluster's: our ``/telnyx/voice?reattach=<session>``) follows as a
    ``<Redirect>``: TeXML runs a document's verbs in order ("TeXML Translator starts at the
    top of your TeXML file and executes your TeXML commands sequentially", Telnyx's TeXML
    setup guide), ``<Connect><Stream>`` holds the flow while the stream lasts (the TeXML
    streams page: "the call flow waits for the streaming operation"), and ``<Redirect>``
    "transfers control of a call to the TeXML document" at that URL (its verb page); so a
    stream that ends while the caller stays on (its gateway died) brings the call back to us,
    as Twilio's does. When the call is hung up, nothing runs after the stream."""
    if codec not in _CODECS:
        raise ValueError(f"codec must be PCMU or PCMA, not {codec[:16]!r}")
    response = ET.Element("Response")
    connect = ET.SubElement(response, "Connect")
    stream = ET.SubElement(
        connect,
        "Stream",
        url=_checked("stream_url", stream_url),
        bidirectionalMode="rtp",
        bidirectionalCodec=codec,
    )
    for name, value in parameters.items():
        ET.SubElement(
            stream, "Parameter", name=_checked("a name", name), value=_checked(name, value)
        )
    if redirect_url is not None:
        redirect = ET.SubElement(response, "Redirect", method="POST")
        redirect.text = _checked("redirect_url", redirect_url)
    return ET.tostring(response, encoding="unicode")


def hangup_texml() -> str:
    """``<Response><Hangup/></Response>``: a call that came back after its stream, for a
    session that is over."""
    response = ET.Element("Response")
    ET.SubElement(response, "Hangup")
    return ET.tostring(response, encoding="unicode")


def dial_texml(to: str, caller_id: str | None = None) -> str:
    """``<Response><Dial [callerId]><Number>|<Sip>to</...></Dial></Response>``: the TeXML a
    transfer gives a TeXML call (TeXML's ``<Dial>`` takes Twilio's nouns). ``to`` is an E.164
    number or a ``sip:`` URI, as the facade checked it; built with ElementTree."""
    attributes = {} if caller_id is None else {"callerId": _checked("caller_id", caller_id)}
    response = ET.Element("Response")
    dial = ET.SubElement(response, "Dial", attributes)
    noun = "Sip" if to.startswith(("sip:", "sips:")) else "Number"
    ET.SubElement(dial, noun).text = _checked("to", to)
    return ET.tostring(response, encoding="unicode")
