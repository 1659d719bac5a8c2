"""Immutable messages: what an application reads from and writes to a session.

Every message is a frozen, slotted dataclass. ``Text``, ``Binary`` and ``Close`` are plain
WebSocket traffic; ``Started``, ``Dtmf``, ``Mark`` and ``Stopped`` are provider events decoded by a
codec; ``Mark`` and ``Clear`` are also commands an application writes to a provider. Inbound audio
may arrive as :class:`Audio`, a ``Binary`` that also carries the provider's timestamp and
sequence number, so ``isinstance(message, Binary)`` holds for every piece of audio.

:class:`SessionInfo` and :class:`SessionStatus` are the snapshots the facade hands back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .checks import header_problem, short_repr, subprotocol_problem, url_text_problem
from .lifecycle import SessionState
from .wire.constants import CloseCode, is_sendable
from .wire.frames import MAX_CONTROL_PAYLOAD

__all__ = [
    "Audio",
    "Binary",
    "CallStatus",
    "Clear",
    "Close",
    "Dtmf",
    "MachineDetected",
    "Mark",
    "MediaFormat",
    "Message",
    "SessionInfo",
    "SessionRequest",
    "SessionStatus",
    "Started",
    "Stopped",
    "StreamError",
    "Text",
]

#: RFC 6455 close codes used by this package, as plain ints (a ``Close`` shows the number):
#: the names of :class:`actors.wire.CloseCode`, defined there once.
NORMAL_CLOSURE = int(CloseCode.NORMAL_CLOSURE)
GOING_AWAY = int(CloseCode.GOING_AWAY)
PROTOCOL_ERROR = int(CloseCode.PROTOCOL_ERROR)
ABNORMAL_CLOSURE = int(CloseCode.ABNORMAL)
INVALID_PAYLOAD = int(CloseCode.INVALID_PAYLOAD)
MESSAGE_TOO_BIG = int(CloseCode.MESSAGE_TOO_BIG)
INTERNAL_ERROR = int(CloseCode.INTERNAL_ERROR)
MIN_CLOSE_CODE = 1000  # RFC 6455 section 7.4: codes below 1000 are not used
MAX_CLOSE_CODE = 4999  # and none above 4999 is defined
MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2  # a close frame's payload: code, reason

#: Whether a code may travel in a close frame (RFC 6455 section 7.4): the wire layer's rule.
is_sendable_close_code = is_sendable


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} cannot be encoded as UTF-8: {exc.reason} at position {exc.start}"
        ) from None


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message type."""


@dataclass(frozen=True, slots=True)
class Text(Message):
    """A text frame."""

    data: str

    def __post_init__(self) -> None:
        data: object = self.data  # typed str, but callers are not all type-checked
        if type(data) is not str:  # caught here, not as a crash on a writer thread
            raise TypeError(f"Text data must be str, not {type(data).__name__}")
        # A text frame is UTF-8: a str that has none (a lone surrogate) is refused here, with
        # its position, rather than lost on the wire later. isascii() is the cheap common case.
        if not data.isascii():
            _check_utf8(data, "Text data")


@dataclass(frozen=True, slots=True)
class Binary(Message):
    """A binary frame; for telephony providers, one chunk of audio in the call's format.

    ``data`` is ``bytes``; a ``bytearray`` or ``memoryview`` is copied into ``bytes`` (a
    message is immutable, and may be sent after the caller has reused its buffer).
    """

    data: bytes

    def __post_init__(self) -> None:
        data: object = self.data  # typed bytes, but callers are not all type-checked
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f"Binary data must be bytes, not {type(data).__name__}")
            object.__setattr__(self, "data", bytes(data))


@dataclass(frozen=True, slots=True)
class Audio(Binary):
    """Inbound audio with the provider's timing: a ``Binary`` with ``timestamp`` and ``sequence``.

    ``timestamp`` is milliseconds since the stream started, ``sequence`` the provider's frame
    number, ``track`` the media flow it belongs to (e.g. Twilio's ``"inbound"``) and ``chunk``
    the provider's per-track chunk number; each is ``None`` where the provider gives none.
    """

    timestamp: int | None = None
    sequence: int | None = None
    track: str | None = None
    chunk: int | None = None


@dataclass(frozen=True, slots=True)
class Close(Message):
    """The session's stream has closed (inbound), or: close it (outbound).

    ``code`` is an RFC 6455 close code; ``reason`` says why in words.
    """

    code: int = NORMAL_CLOSURE
    reason: str = ""

    def __post_init__(self) -> None:
        code: object = self.code  # typed, but callers are not all type-checked
        reason: object = self.reason
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"a close code is an int, not {type(code).__name__}")
        if not MIN_CLOSE_CODE <= code <= MAX_CLOSE_CODE:
            raise ValueError(
                f"a close code is between {MIN_CLOSE_CODE} and {MAX_CLOSE_CODE} "
                f"(RFC 6455 section 7.4), got {code}"
            )
        if type(reason) is not str:
            raise TypeError(f"a close reason is a str, not {type(reason).__name__}")
        if not reason.isascii():
            _check_utf8(reason, "a close reason")

    def check_sendable(self) -> None:
        """Raise ``ValueError`` unless this ``Close`` may be sent in a close frame.

        Any code from 1000 to 4999 may be *reported* (1005 "no code", 1006 "abnormal" describe
        what happened to a connection, never travel); only these may be *sent*: 1000-1003,
        1007-1014 (registered by RFC 6455 and IANA) and 3000-4999 (libraries and
        applications), with a reason of at most 123 bytes of UTF-8 (a control frame carries
        125 bytes, 2 of them the code).
        """
        if not is_sendable_close_code(self.code):
            raise ValueError(
                f"close code {self.code} may not be sent (RFC 6455 section 7.4: send "
                "1000-1003, 1007-1014 or 3000-4999)"
            )
        size = len(self.reason.encode())
        if size > MAX_CLOSE_REASON_BYTES:
            raise ValueError(
                f"a close reason is at most {MAX_CLOSE_REASON_BYTES} bytes of UTF-8, got {size}"
            )


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """The audio format of a call's stream."""

    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Started(Message):
    """The provider's media stream has started.

    ``parameters`` are the custom parameters the stream was created with (read-only);
    ``tracks`` names the media flows to expect (e.g. ``("inbound",)``), empty where unknown.
    """

    stream_id: str
    call_id: str
    media_format: MediaFormat = field(default_factory=MediaFormat)
    parameters: Mapping[str, str] = field(default_factory=dict)
    tracks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A frozen dataclass holding a dict is not immutable; a read-only view is.
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))


@dataclass(frozen=True, slots=True)
class Dtmf(Message):
    """A key pressed on the phone's keypad (``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``)."""

    digit: str


@dataclass(frozen=True, slots=True)
class Mark(Message):
    """Inbound: the provider has played everything written before the mark of this name.

    Outbound: ask the provider to report back when the audio written so far has played.
    """

    name: str


@dataclass(frozen=True, slots=True)
class Clear(Message):
    """Outbound command: drop the audio the provider has buffered but not yet played."""


@dataclass(frozen=True, slots=True)
class Stopped(Message):
    """The provider's media stream has stopped (the call ended or the stream was closed)."""


@dataclass(frozen=True, slots=True)
class CallStatus(Message):
    """Call progress, from the provider's status callbacks, read in order with the media.

    ``status`` is Twilio's ``CallStatus``: ``initiated``, ``ringing``, ``in-progress``,
    ``completed``, ``busy``, ``no-answer``, ``failed`` or ``canceled``. ``answered_by`` is
    machine detection's verdict where the callback carries one (``human``, ``machine_start``,
    ``machine_end_beep``, ``fax``, ``unknown``...); ``sequence`` the callback's
    ``SequenceNumber``; ``fields`` every field of the callback (read-only).
    """

    status: str
    answered_by: str | None = None
    sequence: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def final(self) -> bool:
        """Whether the call is over (``completed``, ``busy``, ``no-answer``, ``failed``,
        ``canceled``)."""
        return self.status in FINAL_CALL_STATUSES


#: The statuses after which a call is over; all but ``completed`` mean it never streamed.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


@dataclass(frozen=True, slots=True)
class StreamError(Message):
    """The provider could not stream the call (Twilio's ``<Stream statusCallback>`` said
    ``stream-error``): ``stream_sid`` is the stream's ``StreamSid``, ``error`` its
    ``StreamError``, ``fields`` every field of the callback (read-only). Read in order with
    the media; the session then ends (its ``Close`` says ``stream error: ...``) unless the
    error names a stream other than the one the session is on."""

    stream_sid: str
    error: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


@dataclass(frozen=True, slots=True)
class MachineDetected(Message):
    """Answering machine detection has decided (``create_session(machine_detection=...)``).

    ``answered_by`` is Twilio's ``AnsweredBy``: ``human``, ``machine_start``,
    ``machine_end_beep``, ``machine_end_silence``, ``machine_end_other``, ``fax`` or
    ``unknown``; ``duration_ms`` its ``MachineDetectionDuration`` where given. Comes once per
    call, in order with the media: with the answered ``CallStatus`` (``MachineDetection``
    waits for the verdict before the call's TwiML runs), or later (``AsyncAmd``; Telnyx and
    Plivo always: their verdicts are webhooks of their own). Where a provider tells a
    machine first and the end of its greeting later (Telnyx with ``DetectMessageEnd``), a
    ``machine_start`` is followed by one ``machine_end_*``. Telnyx's and Plivo's results are
    given in Twilio's words (the README's table).
    """

    answered_by: str
    duration_ms: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def machine(self) -> bool:
        """Whether a machine (or a fax) answered, not a person."""
        return self.answered_by.startswith("machine") or self.answered_by == "fax"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What ``create_session`` and ``accept_session`` return: who the session is, where it is
    connected, and its call: ``direction`` (``"outbound"``, or ``"inbound"`` for a call
    accepted from the voice webhook), ``from_`` and ``to`` where known, and for an inbound call
    every field of the webhook (``CallerName``, ``ForwardedFrom``...; read-only). In a cluster,
    ``resumed`` marks a call taken over from a node that died, with its ``state``."""

    session_id: str
    provider: str
    url: str
    call_id: str | None = None
    created_at: float = 0.0
    direction: str = "outbound"
    from_: str | None = None
    to: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    # A cluster's takeover (accept_session): the call was carried by a node that died, and
    # goes on here; ``state`` is what its application last saved (save_state), if anything.
    resumed: bool = False
    state: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """A snapshot of one session's state and counters, as ``status()`` returns it."""

    session_id: str
    provider: str
    state: SessionState
    connected: bool
    restarts: int
    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int
    dropped_in: int
    dropped_out: int
    queued_out: int
    last_error: str | None
    exit_reasons: tuple[str, ...] = ()
    malformed_in: int = 0  # inbound frames the codec could not use (malformed, unknown event)
    resent_out: int = 0  # frames sent again after a reconnect (gateway resume)
    # Sent (in frames_out) and never delivered: a connection died with them in flight and
    # nothing resent them. Delivered + dropped_out + lost_in_flight + queued_out == written.
    lost_in_flight: int = 0

    @property
    def dropped(self) -> int:
        """Every frame dropped in either direction, each one counted."""
        return self.dropped_in + self.dropped_out


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What ``create_session`` is asked to create; every field is optional.

    ``provider`` names an entry under ``providers:`` in the config (default: the only one, or
    ``"websocket"``). ``url``, ``headers`` and ``subprotocols`` override the provider's dial
    settings for this session; ``to``, ``from_`` and ``parameters`` are for telephony providers.

    Every field is checked when the request is made, and a wrong one is named: a value of the
    wrong type raises ``TypeError`` (``subprotocols`` is a list or tuple of str: a bare
    ``"abc"`` is refused, not split into letters); a value that cannot go into a handshake
    raises ``ValueError`` (a CR, LF or other control character in a header name or value, or a
    space or control character in ``url``; a subprotocol that is no HTTP token). Header values
    are never quoted in a message. ``headers`` and ``parameters`` are kept as read-only copies.
    """

    provider: str | None = None
    url: str | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    subprotocols: tuple[str, ...] | None = None
    to: str | None = None
    from_: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    # Answering machine detection, "Enable" | "DetectMessageEnd" or a mapping of Twilio's AMD
    # parameters (MachineDetection, AsyncAmd, MachineDetectionTimeout...); Telnyx and Plivo
    # take what they have a counterpart of (the README's table), ValueError for the rest.
    machine_detection: str | Mapping[str, str] | None = None
    timeout: int | None = None  # Twilio: how long this call rings, seconds (5..600)

    def __post_init__(self) -> None:
        _check_call_options(self.machine_detection, self.timeout)
        if isinstance(self.machine_detection, Mapping):
            object.__setattr__(
                self,
                "machine_detection",
                MappingProxyType(_str_map("machine_detection", self.machine_detection)),
            )
        # Typed, but callers are not all type-checked: caught here, by name, not as an
        # AttributeError deep in a provider or a header line injected into the handshake.
        for name in ("provider", "url", "to", "from_"):
            value: object = getattr(self, name)
            if value is not None and type(value) is not str:
                raise TypeError(f"SessionRequest.{name} must be a str, not {type(value).__name__}")
        if self.url is not None and (problem := url_text_problem(self.url)) is not None:
            raise ValueError(f"SessionRequest.url: {problem}")
        if self.headers is not None:
            headers = _str_map("headers", self.headers)
            for key, text in headers.items():
                if (problem := header_problem(key, text)) is not None:
                    raise ValueError(f"SessionRequest.headers: {problem}")
            object.__setattr__(self, "headers", MappingProxyType(headers))
        if self.subprotocols is not None:
            object.__setattr__(self, "subprotocols", _subprotocols(self.subprotocols))
        object.__setattr__(
            self, "parameters", MappingProxyType(_str_map("parameters", self.parameters))
        )


#: Twilio's answering machine detection parameters (POST Calls.json), all optional but the first.
AMD_PARAMETERS = frozenset(
    {
        "MachineDetection",
        "AsyncAmd",
        "AsyncAmdStatusCallback",
        "AsyncAmdStatusCallbackMethod",
        "MachineDetectionTimeout",
        "MachineDetectionSpeechThreshold",
        "MachineDetectionSpeechEndThreshold",
        "MachineDetectionSilenceTimeout",
    }
)
_AMD_MODES = ("Enable", "DetectMessageEnd")


def _check_call_options(machine_detection: object, timeout: object) -> None:
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise TypeError(f"SessionRequest.timeout must be an int, not {type(timeout).__name__}")
        if not 5 <= timeout <= 600:
            raise ValueError(f"SessionRequest.timeout must be 5..600 seconds, got {timeout}")
    if machine_detection is None:
        return
    if isinstance(machine_detection, str):
        mode = machine_detection
    elif isinstance(machine_detection, Mapping):
        unknown = [k for k in machine_detection if k not in AMD_PARAMETERS]
        if unknown:
            raise ValueError(
                f"SessionRequest.machine_detection: unknown parameter {short_repr(unknown[0])} "
                f"(Twilio's are {', '.join(sorted(AMD_PARAMETERS))})"
            )
        mode = machine_detection.get("MachineDetection", "Enable")
    else:
        raise TypeError(
            "SessionRequest.machine_detection must be 'Enable', 'DetectMessageEnd' or a "
            f"mapping of Twilio's parameters, not {type(machine_detection).__name__}"
        )
    if mode not in _AMD_MODES:
        raise ValueError(
            f"SessionRequest.machine_detection must be one of {', '.join(_AMD_MODES)}, "
            f"got {short_repr(mode)}"
        )


def _str_map(name: str, value: object) -> dict[str, str]:
    """``value`` as a dict of str to str, or a ``TypeError`` naming the field and the key."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"SessionRequest.{name} must be a mapping of str to str, not {type(value).__name__}"
        )
    result: dict[str, str] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise TypeError(f"SessionRequest.{name}: a key must be a str, not {type(key).__name__}")
        if type(item) is not str:  # the value itself is never quoted: a header may be a secret
            raise TypeError(
                f"SessionRequest.{name}[{short_repr(key)}] must be a str, not {type(item).__name__}"
            )
        result[key] = item
    return result


def _subprotocols(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise TypeError(
            "SessionRequest.subprotocols must be a list or tuple of str, not a bare "
            f"{type(value).__name__}: for one subprotocol write subprotocols=[...]"
        )
    if not isinstance(value, list | tuple):
        raise TypeError(
            "SessionRequest.subprotocols must be a list or tuple of str, "
            f"not {type(value).__name__}"
        )
    for index, item in enumerate(value):
        if type(item) is not str:
            raise TypeError(
                f"SessionRequest.subprotocols[{index}] must be a str, not {type(item).__name__}"
            )
        if (problem := subprotocol_problem(item)) is not None:
            raise ValueError(f"SessionRequest.subprotocols[{index}]: {problem}")
    return tuple(value)
