"""Twilio Media Streams, both sides of the wire, sans-I/O.

:class:`TwilioCodec` is the session side: it turns the JSON text frames Twilio sends
(``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``) into messages, and
``Binary``/``Mark``/``Clear`` into the frames a bidirectional stream accepts.
:class:`TwilioStream` is Twilio's side of one stream, for the local emulator and benchmarks: it
builds the frames Twilio would send and parses what the application sends back.
:func:`parse_start` is what the media gateway reads of a stream: its ``start`` event.

Twilio sends ``sequenceNumber``, ``media.chunk`` and ``media.timestamp`` as JSON *strings*; both
sides here accept strings or integers and produce strings.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random
from types import MappingProxyType
from typing import Any, Final

from ..messages import (
    Audio,
    Binary,
    Clear,
    Close,
    Dtmf,
    Mark,
    MediaFormat,
    Message,
    Started,
    Stopped,
)
from . import Frame
from ._frames import Malformed as _Malformed
from ._frames import ProviderCodec
from ._frames import app_event as _app_event
from ._frames import dtmf_digit as _dtmf_digit
from ._frames import dumps as _dumps
from ._frames import int_field as _int
from ._frames import mark_name as _mark_name
from ._frames import media_payload as _media_payload
from ._frames import nonempty_str as _nonempty_str
from ._frames import obj_field as _object
from ._frames import opt_int as _opt_int
from ._frames import str_field as _string
from ._frames import str_list as _str_list
from ._frames import str_map as _str_map

__all__ = [
    "AppEvent",
    "ClearOut",
    "MarkOut",
    "MediaOut",
    "StartInfo",
    "TwilioCodec",
    "TwilioStream",
    "new_sid",
    "parse_start",
]

logger = logging.getLogger(__name__)

_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
_loads = json.loads

# A media event exactly as Twilio writes one (its documented field order, no whitespace, no
# escapes): read by one regular expression instead of json.loads and the field checks, which
# were the runtime's largest cost per inbound frame (one every 20 ms of every call). Anything
# else, including a media event written any other way, takes the JSON path; both read the same
# fields the same way (the digits here are what int() reads from the strings there).
_STR = r'[^"\\\x00-\x1f]*'  # a JSON string's content without escapes (as json.loads reads it)
_MEDIA_EVENT = re.compile(
    r'\{"event":"media","sequenceNumber":"([0-9]{1,18})","media":\{"track":"(' + _STR + r')",'
    r'"chunk":"([0-9]{1,18})","timestamp":"([0-9]{1,18})","payload":"(' + _STR + r')"\},'
    r'"streamSid":"' + _STR + r'"\}'
).fullmatch
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_DEFAULT_FORMAT: Final = MediaFormat()


@dataclass(frozen=True, slots=True)
class StartInfo:
    """What a ``start`` event tells whoever routes its stream (the media gateway): the
    ``customParameters`` the TwiML's ``<Parameter>`` elements set (their string values)."""

    parameters: Mapping[str, str]


_NOT_MEDIA_STREAMS: Final = "expected Media Streams JSON text frames, got"


def parse_start(frame: Frame) -> StartInfo | None:
    """The ``start`` event of a Media Streams frame; ``None`` for any other event.

    Raises ``ValueError`` (its text says what is wrong, fit for a close reason) for a frame
    Twilio does not send: binary, not JSON, not an event object, a ``start`` without its
    object. Lenient about the rest: ``customParameters`` that is not an object reads as none,
    and values that are not strings are left out (the router finds its values missing).
    """
    if not isinstance(frame, str):
        raise ValueError(f"{_NOT_MEDIA_STREAMS} a binary frame")
    try:
        event = _loads(frame)
    except RecursionError:  # "[[[[..." nested past the parser's depth
        raise ValueError(f"{_NOT_MEDIA_STREAMS} one nested too deep") from None
    except ValueError:
        raise ValueError(f"{_NOT_MEDIA_STREAMS} a non-JSON frame") from None
    if type(event) is not dict or not isinstance(event.get("event"), str):
        raise ValueError("expected a Media Streams event object")
    if event["event"] != "start":
        return None
    start = event.get("start")
    if type(start) is not dict:
        raise ValueError("a start event without its start object")
    params = start.get("customParameters")
    if type(params) is not dict:
        return StartInfo(_EMPTY)
    return StartInfo({k: v for k, v in params.items() if type(v) is str})


class TwilioCodec(ProviderCodec):
    """The session side of a Twilio Media Stream (a :class:`~actors.codecs.Codec`).

    Inbound: ``connected`` yields nothing (its ``version`` is kept); ``start`` yields
    :class:`Started` and makes ``stream_sid``/``call_sid`` known; ``media`` yields :class:`Audio`;
    ``dtmf`` :class:`Dtmf`; ``mark`` :class:`Mark`; ``stop`` :class:`Stopped` (and writes are
    held again, until the next ``start``: a call may stream again). A malformed frame
    (not JSON, not an object, a binary frame, a missing or ill-typed field, bad base64) is counted
    in ``malformed``, an unknown event in ``unknown``; both are logged (rate-limited) and yield
    nothing. ``decode`` never raises.

    Outbound: ``Binary`` (so also ``Audio``) becomes a ``media`` frame, ``Mark`` a ``mark``
    frame, ``Clear`` a ``clear`` frame. Until ``start`` has named the stream there is no
    ``streamSid`` to address, so ``encode`` holds messages and returns nothing; the first
    ``encode`` or :meth:`flush` after ``start`` returns the held frames first, in order. At most
    ``max_held`` messages are held: past that the oldest held *media* is dropped (counted in
    ``dropped_held``); marks and clears are never dropped, since the application waits for its
    marks to come back.

    Threads: ``decode`` runs on the connection's reader thread, ``encode`` and ``flush`` on the
    actor's thread. The only state that crosses is ``stream_sid``, published by one attribute
    assignment (after ``call_sid`` and ``parameters``, which the facade reads for a
    re-stream's TwiML); the held messages are touched by ``encode``/``flush`` only.
    """

    provider = "twilio"
    _name = "Twilio"
    _logger = logger
    # Close is the connector's business (it closes the WebSocket), so it is accepted here too.
    outbound_types: frozenset[type[Message]] = frozenset({Binary, Mark, Clear, Close})

    def __init__(
        self,
        *,
        max_held: int = 10_000,
        session_id: str = "-",
        hidden_parameters: frozenset[str] = frozenset(),
    ) -> None:
        """``session_id`` only labels log lines; ``max_held`` bounds what waits for ``start``;
        ``hidden_parameters`` are custom parameters kept out of ``Started`` (the gateway's
        token: an application has no use for it, and might log it)."""
        super().__init__(
            max_held=max_held, session_id=session_id, hidden_parameters=hidden_parameters
        )
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.parameters: Mapping[str, str] = _EMPTY  # the last start's (hidden ones left out)
        self.version: str | None = None
        # Frame prefixes for the current streamSid, built on the encoding thread when it changes.
        self._prefix_sid: str | None = None
        self._media_prefix = ""
        self._clear_frame = ""

    # -- inbound -------------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Sequence[Message]:
        """The messages one frame from Twilio carries: one, or none (see the class docstring)."""
        if not isinstance(frame, str):
            return self._reject(None, "binary frame (Twilio sends text frames)")
        fast = _MEDIA_EVENT(frame)
        if fast is not None:
            sequence, track, chunk, timestamp, payload = fast.groups()
            try:
                data = _a2b(payload, strict_mode=True)
            except ValueError:
                return self._reject("media", "media.payload is not base64")
            return (Audio(data, int(timestamp), int(sequence), track, int(chunk)),)
        try:
            obj = _loads(frame)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            return self._reject(None, "not JSON")
        if type(obj) is not dict:
            return self._reject(None, "not a JSON object")
        event = obj.get("event")
        try:
            # media first: it is all but every frame of a call.
            if event == "media":
                media = _object(obj, "media", "media")
                try:
                    data = _a2b(_string(media, "payload", "media.payload"), strict_mode=True)
                except ValueError:  # binascii.Error, or a non-ASCII str
                    raise _Malformed("media.payload is not base64") from None
                track = media.get("track")
                if track is not None and type(track) is not str:
                    raise _Malformed("media.track is not a string")
                return (
                    Audio(
                        data,
                        _opt_int(media, "timestamp", "media.timestamp"),
                        _opt_int(obj, "sequenceNumber", "sequenceNumber"),
                        track,
                        _opt_int(media, "chunk", "media.chunk"),
                    ),
                )
            if event == "start":
                return (self._start(obj),)
            if event == "dtmf":
                return (Dtmf(_dtmf_digit(obj)),)
            if event == "mark":
                return (Mark(_mark_name(obj)),)
            if event == "stop":
                # Writes wait for the next start from now on: a call update may stream the
                # call again (a new streamSid), and media for this one would go nowhere.
                self.stream_sid = None
                return (Stopped(),)
            if event == "connected":
                version = obj.get("version")
                self.version = version if type(version) is str else None
                return ()
        except _Malformed as problem:
            return self._reject(event, str(problem))
        return self._ignore(event)

    def _start(self, obj: dict[str, Any]) -> Started:
        start = _object(obj, "start", "start")
        stream_sid = _nonempty_str(start.get("streamSid", obj.get("streamSid")), "start.streamSid")
        call_sid = _string(start, "callSid", "start.callSid")
        tracks = _str_list(start, "tracks", "start.tracks")
        params = _str_map(start.get("customParameters", {}), "start.customParameters")
        media_format = _DEFAULT_FORMAT
        if "mediaFormat" in start:
            fmt = _object(start, "mediaFormat", "start.mediaFormat")
            media_format = MediaFormat(
                _string(fmt, "encoding", "start.mediaFormat.encoding"),
                _int(fmt, "sampleRate", "start.mediaFormat.sampleRate"),
                _int(fmt, "channels", "start.mediaFormat.channels"),
            )
        if self.hidden_parameters:
            params = {k: v for k, v in params.items() if k not in self.hidden_parameters}
        self.call_sid = call_sid
        self.parameters = MappingProxyType(dict(params))
        self.stream_sid = stream_sid  # last: this publishes the stream to the encoding thread
        return Started(stream_sid, call_sid, media_format, params, tuple(tracks))

    # -- outbound ------------------------------------------------------------------------------

    def encode(self, message: Message) -> Sequence[Frame]:
        """The frames for one outbound message, after any held ones; none while held.

        Raises ``TypeError`` for a message type Twilio does not carry.
        """
        if not isinstance(message, Binary | Mark | Clear):
            raise TypeError(f"{type(message).__name__} is not carried by the twilio provider")
        sid = self.stream_sid  # read once: the reader thread may publish it at any moment
        if sid is None:
            self._hold(message)
            return ()
        if self._held:
            frames = self._drain(sid)
            frames.append(self._frame(message, sid))
            return frames
        return (self._frame(message, sid),)

    def flush(self) -> Sequence[Frame]:
        """Return (and forget) the held frames once the stream has started; else nothing."""
        sid = self.stream_sid
        if sid is None or not self._held:
            return ()
        return self._drain(sid)

    def _frame(self, message: Message, sid: str) -> str:
        if sid is not self._prefix_sid:
            quoted = json.dumps(sid)
            self._media_prefix = f'{{"event":"media","streamSid":{quoted},"media":{{"payload":"'
            self._clear_frame = f'{{"event":"clear","streamSid":{quoted}}}'
            self._prefix_sid = sid
        if isinstance(message, Binary):
            # The base64 alphabet needs no JSON escaping: concatenation is ~7x json.dumps.
            return self._media_prefix + _b2a(message.data, newline=False).decode("ascii") + '"}}'
        if isinstance(message, Mark):
            return json.dumps(
                {"event": "mark", "streamSid": sid, "mark": {"name": message.name}},
                separators=(",", ":"),
            )
        return self._clear_frame

    def _drain(self, sid: str) -> list[Frame]:
        held = self._held
        frames: list[Frame] = [self._frame(message, sid) for message in held]
        held.clear()
        return frames


# -- Twilio's side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaOut:
    """The application sent audio to play (the payload, base64-decoded)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class MarkOut:
    """The application sent a mark to be echoed once the audio before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearOut:
    """The application asked to drop the audio buffered but not yet played."""


AppEvent = MediaOut | MarkOut | ClearOut


def new_sid(prefix: str, rng: Random | None = None) -> str:
    """A Twilio-style id: ``prefix`` (``"CA"``, ``"MZ"``, ``"AC"``) and 32 lowercase hex digits.

    Unguessable by default; pass ``rng`` for reproducible ids in tests and benchmarks.
    """
    digits = secrets.token_hex(16) if rng is None else f"{rng.getrandbits(128):032x}"
    return prefix + digits


class TwilioStream:
    """Twilio's side of one Media Stream: the frames Twilio sends, and parsing what comes back.

    ``sequence`` is the next ``sequenceNumber`` (``start`` is 1, every later frame one more;
    ``connected`` carries none); ``chunks`` the next ``media.chunk`` per track, from 1.
    """

    def __init__(
        self,
        stream_sid: str,
        call_sid: str,
        account_sid: str,
        *,
        tracks: Sequence[str] = ("inbound",),
        custom_parameters: Mapping[str, str] = _EMPTY,
        media_format: MediaFormat = _DEFAULT_FORMAT,
    ) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.tracks = tuple(tracks)
        self.custom_parameters = dict(custom_parameters)
        self.media_format = media_format
        self.sequence = 1
        self.chunks: dict[str, int] = {}
        self._quoted_sid = json.dumps(stream_sid)

    def _next(self) -> str:
        number = self.sequence
        self.sequence = number + 1
        return str(number)

    def connected(self) -> str:
        """The first frame of every stream."""
        return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self) -> str:
        """The stream's metadata: sids, tracks, custom parameters and media format."""
        fmt = self.media_format
        return _dumps(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": list(self.tracks),
                    "customParameters": self.custom_parameters,
                    "mediaFormat": {
                        "encoding": fmt.encoding,
                        "sampleRate": fmt.sample_rate,
                        "channels": fmt.channels,
                    },
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, payload: bytes, timestamp_ms: int, track: str = "inbound") -> str:
        """One chunk of audio on ``track``, ``timestamp_ms`` after the stream started."""
        chunk = self.chunks.get(track, 1)
        self.chunks[track] = chunk + 1
        # Built by hand: benchmarks send thousands of these a second, and only the sid and
        # the track need JSON quoting.
        return (
            f'{{"event":"media","sequenceNumber":"{self._next()}","media":{{"track":'
            f'{json.dumps(track)},"chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":"'
            f'{_b2a(payload, newline=False).decode("ascii")}"}},"streamSid":{self._quoted_sid}}}'
        )

    def dtmf(self, digit: str, track: str = "inbound_track") -> str:
        """A key pressed on the caller's keypad."""
        return _dumps(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": track, "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        """The echo of the application's mark: the audio sent before it has played."""
        return _dumps(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        """The last frame: the stream has stopped."""
        return _dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )

    def parse(self, frame: Frame) -> AppEvent:
        """What one frame from the application asks for.

        Raises ``ValueError`` naming the problem: a binary frame, not JSON, not an object, an
        unknown event, a missing or ill-typed field, bad base64, or another stream's streamSid.
        """
        obj, event = _app_event(frame, "Twilio Media Streams")
        sid = obj.get("streamSid")
        if sid != self.stream_sid:
            raise ValueError(f"{event} frame has streamSid {sid!r}, expected {self.stream_sid!r}")
        try:
            if event == "media":
                return MediaOut(_media_payload(obj))
            if event == "mark":
                return MarkOut(_mark_name(obj))
        except _Malformed as problem:
            raise ValueError(f"{event} frame: {problem}") from None
        return ClearOut()
