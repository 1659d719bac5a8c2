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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from ..codecs import Frame, twilio

__all__ = [
    "EARLY_FRAMES",
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

#: Frames a provider stream may send before the one that names its call.
EARLY_FRAMES: Final = 8

#: Reads one of a stream's first frames: the call's custom parameters when this is the frame
#: that carries them, ``None`` while it is not; raises ``ValueError`` (the text is a close
#: reason) for a frame this provider does not send.
ParameterReader = Callable[[Frame], Mapping[str, str] | None]


@dataclass(frozen=True, slots=True)
class StreamKind:
    """One provider's streams: how to find their parameters, and whether the handshake
    carries ``X-Twilio-Signature`` (checked when the gateway has Twilio auth tokens)."""

    parameters: ParameterReader
    twilio_signature: bool = False


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


#: Path segment -> the provider's streams. A provider is added here and nowhere else in the
#: gateway.
STREAM_KINDS: Final[Mapping[str, StreamKind]] = MappingProxyType(
    {"twilio": StreamKind(_twilio_parameters, twilio_signature=True)}
)


def route_of(parameters: Mapping[str, str]) -> StreamRoute:
    """The session, token and nonce a stream's custom parameters name."""
    return StreamRoute(
        parameters.get(SESSION_PARAMETER),
        parameters.get(TOKEN_PARAMETER),
        parameters.get(NONCE_PARAMETER, ""),
    )
