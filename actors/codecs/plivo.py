"""Plivo Audio Streaming over WebSocket, both sides of the wire, sans-I/O.

:class:`PlivoCodec` is the session side: Plivo's JSON text frames (``start``, ``media``,
``dtmf``, ``playedStream``, ``clearedAudio``) become messages, and ``Binary``/``Mark``/``Clear``/
``Dtmf`` the frames a bidirectional stream accepts (``playAudio``, ``checkpoint``,
``clearAudio``, ``sendDTMF``). :class:`PlivoStream` is Plivo's side of one stream, for the
emulator and benchmarks.

Provenance (read 2026-12-01 through the search tool; nothing copied):

- plivo.com/docs/voice/audio-streaming/audio-streaming ("Stream Event Protocol") and
  plivo.com/docs/voice-agents/audio-streaming/concepts/audio-streaming-reference: the message
  lists both ways, the ``start`` example (``start.callId``, ``start.streamId``,
  ``start.accountId``, ``start.tracks``, ``start.mediaFormat`` {``encoding``, ``sampleRate``}
  and a top-level ``extra_headers`` string ``"userId=12345;sessionId=abc-xyz"``), the
  ``media`` example (``sequenceNumber`` a number, ``media.chunk`` a number,
  ``media.timestamp`` a string of Unix milliseconds).
- plivo.com/docs/voice/xml/the-stream-element/checkpoint-event and .../play-audio-event, and
  docs.plivo.com/docs/voice/xml/audiostream (the ``<Stream>`` attributes): ``checkpoint`` and
  its ``playedStream`` answer (``streamId``, ``name``), ``playAudio`` (``media.contentType``,
  ``media.sampleRate``: audio/x-l16 8000 or 16000, audio/x-mulaw 8000; ``media.payload``),
  ``clearAudio`` (``streamId``), ``extraHeaders`` written ``"test1=12,test2=123"``.
- support.plivo.com "How do I know if the buffered audio is played": the checkpoint answer is
  spelled ``"event": "played"`` there.
- Pipecat's ``PlivoFrameSerializer`` (facts only): ``playAudio`` with a top-level ``streamId``,
  ``clearAudio`` with ``streamId``, ``dtmf.digit`` read on input. Several independent
  integrations send ``{"event": "sendDTMF", "dtmf": "1234#"}``; Plivo's own ``sendDTMF``
  page was not readable here.

Where the sources disagree, both are accepted (see ``_MARK_EVENTS`` and ``_extra_headers``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from ..errors import UnsupportedMessage
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
from ._frames import (
    Malformed,
    ProviderCodec,
    b64,
    dtmf_digit,
    dumps,
    int_field,
    label,
    obj_field,
    opt_int,
    opt_str,
    parse_object,
    str_field,
    str_list,
    str_map,
    unb64,
)
from .twilio import ClearOut, MarkOut, MediaOut

__all__ = ["DtmfOut", "PlivoAppEvent", "PlivoCodec", "PlivoStream"]

logger = logging.getLogger(__name__)

# The protocol pages call a reached checkpoint "playedStream"; Plivo's support article "played".
_MARK_EVENTS: Final = frozenset({"playedStream", "played"})
# Keys Plivo plays with sendDTMF; anything else is refused before it reaches the wire.
_DTMF: Final = re.compile(r"[0-9*#A-Da-d]+")
_PLAYABLE: Final = {"audio/x-mulaw": frozenset({8000}), "audio/x-l16": frozenset({8000, 16000})}
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_PLIVO_FORMAT: Final = MediaFormat("audio/x-mulaw", 8000, 1)


def _extra_headers(value: object) -> dict[str, str]:
    """``extra_headers`` as a mapping. The protocol pages show ``"k=v;k=v"``, the ``<Stream>``
    page ``"k=v,k=v"`` (keys and values limited to [A-Za-z0-9], so both separators are safe);
    an object of strings is taken as it is."""
    if value is None:
        return {}
    if type(value) is dict:
        return str_map(value, "extra_headers")
    if type(value) is not str:
        raise Malformed("extra_headers is not a string")
    headers: dict[str, str] = {}
    for item in re.split(r"[;,]", value):
        key, sep, text = item.strip().partition("=")
        if key:
            headers[key.strip()] = text.strip() if sep else ""
    return headers


class PlivoCodec(ProviderCodec):
    """The session side of a Plivo audio stream (a :class:`~actors.codecs.Codec`).

    Inbound: ``start`` yields :class:`Started` (``streamId``, ``callId``, the media format, the
    extra headers as parameters, the tracks); ``media`` on a caller track yields :class:`Audio`
    (``timestamp`` made relative to the stream's first audio: Plivo sends Unix milliseconds);
    ``dtmf`` yields :class:`Dtmf`; ``playedStream`` (or ``played``) is our mark coming back,
    :class:`Mark`; ``clearedAudio`` is counted in ``cleared``; a ``stop``, which Plivo's pages do
    not list but some integrations see, yields :class:`Stopped`. Audio on another track is
    counted in ``other_track``. A malformed frame is counted in ``malformed``, an unknown event
    in ``unknown``; ``decode`` never raises.

    Outbound: ``Binary`` becomes ``playAudio`` (``content_type``/``sample_rate`` default to the
    stream's format), ``Mark`` a ``checkpoint``, ``Clear`` a ``clearAudio``, ``Dtmf`` (one or
    more keys) a ``sendDTMF``. Frames name the stream, so until ``start`` messages are held (at
    most ``max_held``; past that the oldest held audio goes, counted in ``dropped_held``).

    Threads: as for the Twilio codec; ``stream_id`` is published last by ``start``.
    """

    provider = "plivo"
    _name = "Plivo"
    _logger = logger
    # Close is the connector's business (it closes the WebSocket), so it is accepted here too.
    outbound_types: frozenset[type[Message]] = frozenset({Binary, Mark, Clear, Dtmf, Close})

    def __init__(
        self,
        *,
        content_type: str | None = None,
        sample_rate: int | None = None,
        caller_tracks: frozenset[str] = frozenset({"inbound"}),
        max_held: int = 10_000,
        session_id: str = "-",
        hidden_parameters: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(
            max_held=max_held, session_id=session_id, hidden_parameters=hidden_parameters
        )
        self.content_type = content_type
        self.sample_rate = sample_rate
        self.caller_tracks = caller_tracks
        self.stream_id: str | None = None
        self.call_id: str | None = None
        self.account_id: str | None = None
        self.media_format: MediaFormat | None = None
        self.other_track = 0
        self.cleared = 0
        self._first_timestamp: int | None = None
        self._media_prefix = ""

    # -- inbound -------------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Sequence[Message]:
        """The messages one frame from Plivo carries: one, or none (see the class docstring)."""
        event: object = None
        try:
            obj = parse_object(frame)
            event = obj.get("event")
            if event == "media":  # first: it is all but every frame of a call
                return self._media(obj)
            if event == "start":
                return (self._start(obj),)
            if event == "dtmf":
                return (Dtmf(dtmf_digit(obj)),)
            if event in _MARK_EVENTS:
                return (Mark(str_field(obj, "name", "name")),)
            if event == "clearedAudio":
                self.cleared += 1
                return ()
            if event == "stop":
                return (Stopped(),)
        except Malformed as problem:
            return self._reject(event, str(problem))
        return self._ignore(event)

    def _media(self, obj: dict[str, Any]) -> Sequence[Message]:
        media = obj_field(obj, "media", "media")
        data = unb64(str_field(media, "payload", "media.payload"), "media.payload")
        track = opt_str(media, "track", "media.track")
        timestamp = opt_int(media, "timestamp", "media.timestamp")
        audio_args = (
            opt_int(obj, "sequenceNumber", "sequenceNumber"),
            track,
            opt_int(media, "chunk", "media.chunk"),
        )
        if track is not None and track not in self.caller_tracks:
            self.other_track += 1
            return ()
        if timestamp is not None:
            if self._first_timestamp is None:
                self._first_timestamp = timestamp
            timestamp -= self._first_timestamp
        return (Audio(data, timestamp, *audio_args),)

    def _start(self, obj: dict[str, Any]) -> Started:
        start = obj_field(obj, "start", "start")
        stream_id = str_field(start, "streamId", "start.streamId")
        if not stream_id:
            raise Malformed("start.streamId is empty")
        call_id = str_field(start, "callId", "start.callId")
        account_id = opt_str(start, "accountId", "start.accountId")
        tracks = str_list(start, "tracks", "start.tracks")
        # Documented at the top level of the frame; read from ``start`` too, to be lenient.
        headers = _extra_headers(obj.get("extra_headers", start.get("extra_headers")))
        media_format = _PLIVO_FORMAT
        if "mediaFormat" in start:
            fmt = obj_field(start, "mediaFormat", "start.mediaFormat")
            channels = opt_int(fmt, "channels", "start.mediaFormat.channels")  # not documented
            media_format = MediaFormat(
                str_field(fmt, "encoding", "start.mediaFormat.encoding"),
                int_field(fmt, "sampleRate", "start.mediaFormat.sampleRate"),
                1 if channels is None else channels,
            )
        parameters = {k: v for k, v in headers.items() if k not in self.hidden_parameters}
        content_type = self.content_type or media_format.encoding
        rate = self.sample_rate or media_format.sample_rate
        self._media_prefix = (
            '{"event":"playAudio","streamId":'
            + dumps(stream_id)
            + ',"media":{"contentType":'
            + dumps(content_type)
            + ',"sampleRate":'
            + str(rate)
            + ',"payload":"'
        )
        self.media_format = media_format
        self.call_id = call_id
        self.account_id = account_id
        self.stream_id = stream_id  # last: this publishes the stream to the encoding threads
        return Started(stream_id, call_id, media_format, parameters, tuple(tracks))

    # -- outbound ------------------------------------------------------------------------------

    def encode(self, message: Message) -> Sequence[Frame]:
        """The frames for one outbound message, after any held ones; none while held.

        Raises ``UnsupportedMessage`` for what Plivo cannot carry, ``ValueError`` for a
        ``Dtmf`` with keys other than 0-9, ``*``, ``#`` and A-D.
        """
        if not isinstance(message, Binary | Mark | Clear | Dtmf):
            raise UnsupportedMessage(self.session_id, self.provider, type(message).__name__)
        if isinstance(message, Dtmf) and not _DTMF.fullmatch(message.digit):
            raise ValueError(f"Plivo cannot send DTMF {message.digit[:16]!r}")
        sid = self.stream_id  # read once: the reader thread may publish it at any moment
        if sid is None:
            self._hold(message)
            return ()
        frames = self._drain(sid) if self._held else []
        frames.append(self._frame(message, sid))
        return frames

    def flush(self) -> Sequence[Frame]:
        """Return (and forget) the held frames once the stream has started; else nothing."""
        sid = self.stream_id
        if sid is None or not self._held:
            return ()
        return self._drain(sid)

    def _frame(self, message: Message, sid: str) -> str:
        if isinstance(message, Binary):
            return self._media_prefix + b64(message.data) + '"}}'
        if isinstance(message, Mark):
            return dumps({"event": "checkpoint", "streamId": sid, "name": message.name})
        if isinstance(message, Dtmf):
            return dumps({"event": "sendDTMF", "dtmf": message.digit.upper()})
        return dumps({"event": "clearAudio", "streamId": sid})

    def _drain(self, sid: str) -> list[Frame]:
        frames: list[Frame] = [self._frame(message, sid) for message in self._take_held()]
        return frames


# -- Plivo's side ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfOut:
    """The application asked Plivo to play DTMF keys into the call."""

    digits: str


PlivoAppEvent = MediaOut | MarkOut | ClearOut | DtmfOut


class PlivoStream:
    """Plivo's side of one audio stream: the frames Plivo sends, and parsing what comes back.

    ``sequence`` is the next ``sequenceNumber`` (``start`` is 1); ``chunks`` the next
    ``media.chunk`` per track, from 1; ``epoch_ms`` the Unix time of the stream's start, which
    media timestamps count from.
    """

    def __init__(
        self,
        stream_id: str,
        call_id: str,
        account_id: str,
        *,
        extra_headers: Mapping[str, str] = _EMPTY,
        tracks: Sequence[str] = ("inbound",),
        media_format: MediaFormat = _PLIVO_FORMAT,
        epoch_ms: int = 1_705_312_200_000,
    ) -> None:
        self.stream_id = stream_id
        self.call_id = call_id
        self.account_id = account_id
        self.extra_headers = dict(extra_headers)
        self.tracks = tuple(tracks)
        self.media_format = media_format
        self.epoch_ms = epoch_ms
        self.sequence = 1
        self.chunks: dict[str, int] = {}

    def _next(self) -> int:
        number = self.sequence
        self.sequence = number + 1
        return number

    def start(self) -> str:
        """The first frame: ids, tracks, media format and the extra headers."""
        fmt = self.media_format
        frame: dict[str, object] = {
            "event": "start",
            "sequenceNumber": self._next(),
            "start": {
                "callId": self.call_id,
                "streamId": self.stream_id,
                "accountId": self.account_id,
                "tracks": list(self.tracks),
                "mediaFormat": {"encoding": fmt.encoding, "sampleRate": fmt.sample_rate},
            },
        }
        if self.extra_headers:
            frame["extra_headers"] = ";".join(f"{k}={v}" for k, v in self.extra_headers.items())
        return dumps(frame)

    def media(self, payload: bytes, timestamp_ms: int, track: str = "inbound") -> str:
        """One chunk of audio on ``track``, ``timestamp_ms`` after the stream started."""
        chunk = self.chunks.get(track, 1)
        self.chunks[track] = chunk + 1
        media = {
            "track": track,
            "timestamp": str(self.epoch_ms + timestamp_ms),
            "chunk": chunk,
            "payload": b64(payload),
        }
        return dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "streamId": self.stream_id,
                "media": media,
            }
        )

    def dtmf(self, digit: str, track: str = "inbound") -> str:
        """A key pressed on the caller's keypad."""
        dtmf = {"track": track, "digit": digit}
        return dumps({"event": "dtmf", "sequenceNumber": self._next(), "dtmf": dtmf})

    def played(self, name: str, event: str = "playedStream") -> str:
        """A checkpoint reached: the audio sent before it has played (``event="played"`` for
        the other documented spelling)."""
        return dumps(
            {
                "event": event,
                "sequenceNumber": self._next(),
                "streamId": self.stream_id,
                "name": name,
            }
        )

    def cleared(self) -> str:
        """The answer to ``clearAudio``: the buffered audio is gone."""
        return dumps(
            {"event": "clearedAudio", "sequenceNumber": self._next(), "streamId": self.stream_id}
        )

    def parse(self, frame: Frame) -> PlivoAppEvent:
        """What one frame from the application asks for.

        Raises ``ValueError`` naming the problem: a binary frame, not JSON, not an object, an
        unknown event, a missing or ill-typed field, bad base64, a content type or rate Plivo
        does not play, or another stream's streamId (``checkpoint`` and ``clearAudio`` must
        name it; on ``playAudio`` and ``sendDTMF`` it is optional).
        """
        try:
            obj = parse_object(frame)
            event = obj.get("event")
            if event not in ("playAudio", "checkpoint", "clearAudio", "sendDTMF"):
                raise Malformed(
                    f"unknown event {label(event)} "
                    "(expected playAudio, checkpoint, clearAudio or sendDTMF)"
                )
            required = event in ("checkpoint", "clearAudio")
            sid = obj.get("streamId", None if required else self.stream_id)
            if sid != self.stream_id:
                raise Malformed(f"streamId {sid!r}, expected {self.stream_id!r}")
            if event == "playAudio":
                media = obj_field(obj, "media", "media")
                content_type = str_field(media, "contentType", "media.contentType")
                rate = int_field(media, "sampleRate", "media.sampleRate")
                if rate not in _PLAYABLE.get(content_type, ()):
                    raise Malformed(f"Plivo does not play {label(content_type)} at {rate} Hz")
                return MediaOut(unb64(str_field(media, "payload", "media.payload"), "payload"))
            if event == "checkpoint":
                return MarkOut(str_field(obj, "name", "name"))
            if event == "sendDTMF":
                digits = str_field(obj, "dtmf", "dtmf")
                if not _DTMF.fullmatch(digits):
                    raise Malformed(f"dtmf {digits[:16]!r} is not DTMF keys")
                return DtmfOut(digits)
        except Malformed as problem:
            raise ValueError(f"Plivo stream: {problem}") from None
        return ClearOut()
