"""Provider streams: the paths providers dial at the gateway, and how each stream names its call.

All the gateway knows of a provider is one :class:`StreamKind` in :data:`STREAM_KINDS`, keyed by
the last segment of the path the provider dials (``/twilio``): a pure function that reads the
stream's first frames (from its provider's codec in :mod:`actors.codecs`) and finds the custom
parameters the call was placed with, and whether the handshake carries Twilio's signature. The
call's ``session`` and ``token`` parameters route the stream (:func:`route_of`); from then on
its frames are relayed unchanged, never parsed.

Each provider carries the parameters its call was placed with in its own way, which is what a
new entry's function reads: Twilio, ``start.customParameters``; Telnyx,
``start.custom_parameters``; Exotel, ``start.custom_parameters`` (snake_case frames); Plivo,
the ``extra_headers`` string (``"k=v;k=v"``) of its ``start``; Vonage, the NCCO's ``headers``
flattened into its first frame, ``websocket:connected``, after which its frames are binary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from ..codecs import Frame, twilio
from ..codecs.plivo import PlivoCodec
from ..codecs.telnyx import TelnyxCodec
from ..messages import Started
from ..routing import decode_client_state, decode_extra_headers

__all__ = [
    "EARLY_FRAMES",
    "INBOUND_PARAMETER",
    "INBOUND_TOKEN_PARAMETER",
    "NONCE_PARAMETER",
    "SESSION_PARAMETER",
    "STREAM_KINDS",
    "TOKEN_PARAMETER",
    "StreamKind",
    "StreamRoute",
    "route_of",
]

#: The custom parameters a call is placed with so that its stream finds its session at the
#: gateway (the Twilio provider puts them in the TwiML's ``<Parameter>`` elements).
SESSION_PARAMETER: Final = "session"
TOKEN_PARAMETER: Final = "token"  # noqa: S105 (the name of a parameter)
#: The nonce the token covers, if any (:func:`actors.signing.stream_nonce`).
NONCE_PARAMETER: Final = "nonce"
#: An inbound stream's (one that arrives with no session: an Exotel applet's URL): the
#: provider entry whose call it is, and that entry's standing inbound token.
INBOUND_PARAMETER: Final = "inbound"
INBOUND_TOKEN_PARAMETER: Final = "inbound_token"  # noqa: S105 (the name of a parameter)

#: Frames a provider stream may send before the one that names its call.
EARLY_FRAMES: Final = 8

#: Reads one of a stream's first frames: the call's custom parameters when this is the frame
#: that carries them, ``None`` while it is not; raises ``ValueError`` (the text is a close
#: reason) for a frame this provider does not send.
ParameterReader = Callable[[Frame], Mapping[str, str] | None]
#: Reads the frame that named the call (``start``): the call's own fields (``call_id``,
#: ``from``, ``to``, ``account_sid``, ``stream_id``; ``""`` where the frame lacks one).
CallReader = Callable[[Frame], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class StreamKind:
    """One provider's streams: how to find their parameters, and whether the handshake
    carries ``X-Twilio-Signature`` (checked when the gateway has Twilio auth tokens).

    ``query_parameters``: the query of the URL the provider dialled names parameters too
    (Exotel's custom parameters ride there); the frame's win where both name one.
    ``exotel_basic_auth``: the handshake must carry ``Authorization: Basic`` of the gateway's
    Exotel credentials, when it has them.
    ``inbound_call``: a stream of this provider may arrive with no session (an inbound call
    that dialled the gateway itself: Exotel's Voicebot applet); this reads its call's fields.
    """

    parameters: ParameterReader
    twilio_signature: bool = False
    query_parameters: bool = False
    exotel_basic_auth: bool = False
    inbound_call: CallReader | None = None


@dataclass(frozen=True, slots=True)
class StreamRoute:
    """Where a stream belongs: either value is ``None`` when the parameters lack it; the
    ``nonce`` its token covers is ``""`` when there is none."""

    session_id: str | None
    token: str | None
    nonce: str = ""


def _twilio_parameters(frame: Frame) -> Mapping[str, str] | None:
    start = twilio.parse_start(frame)
    return None if start is None else start.parameters


# -- Vonage and Exotel (issue 16) ------------------------------------------------------------


def _json_event(frame: Frame, provider: str) -> dict[str, Any]:
    if isinstance(frame, bytes):
        raise ValueError(f"a binary frame before the {provider} stream named its call")
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        raise ValueError(f"a non-JSON frame before the {provider} stream named its call") from None
    if type(obj) is not dict:
        raise ValueError(f"a {provider} frame that is not an event object")
    return obj


def _strings(values: object) -> dict[str, str]:
    if type(values) is not dict:
        return {}
    return {k: v for k, v in values.items() if type(k) is str and type(v) is str}


def _vonage_parameters(frame: Frame) -> Mapping[str, str] | None:
    """Vonage's first frame, ``websocket:connected``, carries the NCCO endpoint's headers
    flattened to its top level; its audio (binary) comes only after it."""
    obj = _json_event(frame, "Vonage")
    if obj.get("event") != "websocket:connected":
        return None
    return _strings({k: v for k, v in obj.items() if k not in ("event", "content-type")})


def _exotel_parameters(frame: Frame) -> Mapping[str, str] | None:
    """Exotel's ``start`` carries ``custom_parameters`` (snake_case frames); ``connected``
    comes before it."""
    obj = _json_event(frame, "Exotel")
    if obj.get("event") != "start":
        return None
    start = obj.get("start")
    if type(start) is not dict:
        raise ValueError("an Exotel start without its start object")
    return _strings(start.get("custom_parameters"))


def _exotel_call(frame: Frame) -> Mapping[str, str]:
    """The call an Exotel ``start`` describes (already read by :func:`_exotel_parameters`)."""
    start = _json_event(frame, "Exotel").get("start")
    fields = _strings(start)
    return {
        "call_id": fields.get("call_sid", ""),
        "from": fields.get("from", ""),
        "to": fields.get("to", ""),
        "account_sid": fields.get("account_sid", ""),
        "stream_id": fields.get("stream_sid", ""),
    }


def _telnyx_parameters(frame: Frame) -> Mapping[str, str] | None:
    """Telnyx: ``start.custom_parameters`` (TeXML's ``<Parameter>``), else the routing values
    in ``start.client_state`` (Call Control, :func:`actors.routing.encode_client_state`)."""
    started = _started(TelnyxCodec(), frame)
    if started is None:
        return None
    parameters = dict(started.parameters)
    if SESSION_PARAMETER not in parameters:
        parameters.update(decode_client_state(parameters.get("client_state")) or {})
    return parameters


def _plivo_parameters(frame: Frame) -> Mapping[str, str] | None:
    """Plivo: the ``start``'s extra headers, routing values hex-decoded."""
    started = _started(PlivoCodec(), frame)
    return None if started is None else decode_extra_headers(started.parameters)


def _started(codec: TelnyxCodec | PlivoCodec, frame: Frame) -> Started | None:
    """The ``Started`` one frame decodes to with a fresh codec; ``None`` for another frame of
    the provider's (``connected``, early media); ``ValueError`` for one the codec counts as
    malformed (binary, not JSON, a ``start`` without its fields)."""
    messages = codec.decode(frame)
    if codec.malformed:
        raise ValueError(f"not a well-formed {codec.provider} frame")
    for message in messages:
        if isinstance(message, Started):
            return message
    return None


#: Path segment -> the provider's streams. A provider is added here and nowhere else in the
#: gateway.
STREAM_KINDS: Final[Mapping[str, StreamKind]] = MappingProxyType(
    {
        "twilio": StreamKind(_twilio_parameters, twilio_signature=True),
        # -- issue 16 --
        "vonage": StreamKind(_vonage_parameters),
        "exotel": StreamKind(
            _exotel_parameters,
            query_parameters=True,
            exotel_basic_auth=True,
            inbound_call=_exotel_call,
        ),
        # -- end issue 16 --
        # Neither signs its stream's upgrade in a way checked here: the single-use stream
        # token is what authenticates them.
        "telnyx": StreamKind(_telnyx_parameters),
        "plivo": StreamKind(_plivo_parameters),
    }
)


def route_of(parameters: Mapping[str, str]) -> StreamRoute:
    """The session, token and nonce a stream's custom parameters name."""
    return StreamRoute(
        parameters.get(SESSION_PARAMETER),
        parameters.get(TOKEN_PARAMETER),
        parameters.get(NONCE_PARAMETER, ""),
    )
