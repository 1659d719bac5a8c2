"""TwiML as the emulator obeys it: a document becomes a tuple of actions, with no I/O.

:func:`parse_twiml` reads a ``<Response>`` (with defusedxml: entities and DTDs refused) and
returns one action per verb, in order; :mod:`actors.emulator.calls` runs them. What each verb
does in the emulator:

- ``<Connect><Stream url>`` (:class:`Connect`): the media phone dials the stream, with each
  ``<Parameter>`` as a custom parameter; when the far side closes it, the call goes on with the
  next verb (or with the TwiML of ``<Connect action>``), as Twilio's does;
- ``<Reject reason>`` (:class:`Reject`): an inbound call ends unanswered, ``busy`` for
  ``reason="busy"``, ``no-answer`` for ``rejected`` (the default), as Twilio documents;
- ``<Say>``, ``<Play>`` (:class:`Say`, :class:`Play`): nothing but a log line, except that
  ``<Play digits="ww123">`` is recorded as DTMF played into the call (how a REST update sends
  digits on Twilio), once played: each key takes a moment, ``w``/``W`` half a second / one;
- ``<Pause length>`` (:class:`Pause`): waits;
- ``<Redirect>`` (:class:`Redirect`): fetch that URL (signed) and obey it instead;
- ``<Dial>`` (:class:`Dial`) to a number, ``<Number>``, ``<Sip>`` or ``<Client>``: recorded as a
  transfer, then the next verb;
- ``<Hangup>`` (:class:`Hangup`); any other verb (:class:`Unsupported`) is logged and skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..safexml import XMLRefused, parse_xml

__all__ = [
    "Action",
    "Connect",
    "Dial",
    "DialTarget",
    "Hangup",
    "Pause",
    "Play",
    "Redirect",
    "Reject",
    "Say",
    "StreamTarget",
    "TwiMLError",
    "Unsupported",
    "parse_stream_target",
    "parse_twiml",
]

_METHODS = ("GET", "POST")
_REJECT_REASONS = ("rejected", "busy")
_DIAL_NOUNS = {"Number": "number", "Sip": "sip", "Client": "client"}


class TwiMLError(ValueError):
    """A TwiML document that cannot be parsed, or whose verbs are malformed."""


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Where a call's ``<Connect><Stream>`` sends its audio, and the custom parameters."""

    url: str
    parameters: Mapping[str, str]
    name: str | None = None
    track: str | None = None
    status_callback: str | None = None  # <Stream statusCallback>: stream-started/-stopped
    status_callback_method: str = "POST"


@dataclass(frozen=True, slots=True)
class Connect:
    """``<Connect><Stream>``: stream the call; ``action`` is fetched when the stream ends."""

    stream: StreamTarget
    action: str | None = None
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Reject:
    """``<Reject>``: refuse an inbound call unanswered; it ends ``status``."""

    reason: str = "rejected"

    @property
    def status(self) -> str:
        """The call's final status: ``busy`` for ``reason="busy"``, else ``no-answer``."""
        return "busy" if self.reason == "busy" else "no-answer"


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Play:
    """``<Play>``: a URL to play (a no-op here) or ``digits`` to press (recorded)."""

    url: str = ""
    digits: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    length_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class DialTarget:
    """One party a ``<Dial>`` rings: ``kind`` is ``number``, ``sip`` or ``client``."""

    kind: str
    target: str


@dataclass(frozen=True, slots=True)
class Dial:
    """``<Dial>``: a transfer to ``targets``; ``caller_id`` and ``action`` as written."""

    targets: tuple[DialTarget, ...]
    caller_id: str | None = None
    action: str | None = None
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A verb the emulator does not act on (``<Gather>``, ``<Record>``...): logged, skipped."""

    verb: str


Action = Connect | Reject | Say | Play | Pause | Redirect | Dial | Hangup | Unsupported


def _root(document: str) -> ET.Element:
    try:
        root = parse_xml(document)
    except XMLRefused as exc:
        raise TwiMLError(f"Twiml {exc}") from None
    if root.tag != "Response":
        raise TwiMLError(f"Twiml root element must be <Response>, not <{root.tag}>")
    return root


def _method(element: ET.Element, attribute: str = "method") -> str:
    method = (element.get(attribute) or "POST").upper()
    if method not in _METHODS:
        raise TwiMLError(f"<{element.tag} {attribute}> must be GET or POST, not {method!r}")
    return method


def _text(element: ET.Element) -> str:
    return (element.text or "").strip()


def _stream(stream: ET.Element) -> StreamTarget:
    url = stream.get("url")
    if not url:
        raise TwiMLError("<Stream> needs a url attribute")
    parameters: dict[str, str] = {}
    for parameter in stream.iter("Parameter"):
        name = parameter.get("name")
        if name is not None:
            parameters[name] = parameter.get("value", "")
    return StreamTarget(
        url=url,
        parameters=MappingProxyType(parameters),
        name=stream.get("name"),
        track=stream.get("track"),
        status_callback=stream.get("statusCallback") or None,
        status_callback_method=_method(stream, "statusCallbackMethod"),
    )


def _connect(element: ET.Element) -> Action:
    stream = element.find("Stream")
    if stream is None:  # <Connect><Room>, <Conversation>, <VirtualAgent>...
        nouns = ",".join(child.tag for child in element) or "nothing"
        return Unsupported(f"Connect({nouns})")
    return Connect(_stream(stream), action=element.get("action") or None, method=_method(element))


def _pause(element: ET.Element) -> Pause:
    raw = element.get("length", "1")
    try:
        length = float(raw)
    except ValueError:
        raise TwiMLError(f"<Pause length> must be a number of seconds, not {raw!r}") from None
    if not 0 <= length <= 3600:
        raise TwiMLError(f"<Pause length> must be 0..3600 seconds, not {raw!r}")
    return Pause(length)


def _dial(element: ET.Element) -> Dial:
    targets = [
        DialTarget(_DIAL_NOUNS[child.tag], _text(child))
        for child in element
        if child.tag in _DIAL_NOUNS
    ]
    if not targets and _text(element):
        targets.append(DialTarget("number", _text(element)))
    if not targets or any(not t.target for t in targets):
        raise TwiMLError("<Dial> needs a number, a <Number>, a <Sip> or a <Client>")
    return Dial(
        tuple(targets),
        caller_id=element.get("callerId") or None,
        action=element.get("action") or None,
        method=_method(element),
    )


def _reject(element: ET.Element) -> Reject:
    reason = element.get("reason", "rejected")
    if reason not in _REJECT_REASONS:
        raise TwiMLError(f"<Reject reason> must be rejected or busy, not {reason!r}")
    return Reject(reason)


def _redirect(element: ET.Element) -> Redirect:
    url = _text(element)
    if not url:
        raise TwiMLError("<Redirect> needs a URL")
    return Redirect(url, _method(element))


def _action(element: ET.Element) -> Action:
    tag = element.tag
    if tag == "Connect":
        return _connect(element)
    if tag == "Say":
        return Say(_text(element))
    if tag == "Play":
        digits = element.get("digits")
        return Play(_text(element), digits if digits else None)
    if tag == "Pause":
        return _pause(element)
    if tag == "Redirect":
        return _redirect(element)
    if tag == "Dial":
        return _dial(element)
    if tag == "Reject":
        return _reject(element)
    if tag == "Hangup":
        return Hangup()
    return Unsupported(tag)


def parse_twiml(document: str) -> tuple[Action, ...]:
    """The verbs of ``document``, in order. Raises :class:`TwiMLError` when it is not XML, its
    root is not ``<Response>``, or a verb the emulator obeys is malformed."""
    return tuple(_action(element) for element in _root(document))


def parse_stream_target(twiml: str) -> StreamTarget | None:
    """The ``<Response><Connect><Stream>`` of ``twiml``, or ``None`` if it has none.

    Parsed with defusedxml (entities and DTDs refused). Raises :class:`TwiMLError` when the
    document is not XML, its root is not ``<Response>``, or the ``<Stream>`` has no ``url``.
    """
    stream = _root(twiml).find("Connect/Stream")
    return None if stream is None else _stream(stream)
