"""Telnyx Media Streaming over WebSocket, both sides of the wire, sans-I/O.

:class:`TelnyxCodec` is the session side: Telnyx's JSON text frames (``connected``, ``start``,
``media``, ``dtmf``, ``mark``, ``error``, ``stop``) become messages, and ``Binary``/``Mark``/
``Clear`` the frames a bidirectional (``stream_bidirectional_mode: rtp``) stream accepts.
:class:`TelnyxStream` is Telnyx's side of one stream, for the emulator and benchmarks.

Provenance (read 2026-12-01 through the search tool; nothing copied):

- developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket (the AsyncAPI
  page): the frame list, the ``connected`` and ``start`` examples (top-level ``stream_id``,
  ``start.call_control_id``, ``client_state``, ``custom_parameters``, ``media_format`` with
  ``"encoding": "PCMU"``), "media frame order is not guaranteed" (order by ``media.chunk``),
  client RTP media of 20 ms to 30 s, marks echoed once the audio before them has played (at
  once if none is queued; ``clear`` returns the queued marks).
- developers.telnyx.com/api/call-control/start-call-streaming (the same text is in Telnyx's
  SDK docs generated from its OpenAPI): ``start`` with ``"encoding": "audio/x-mulaw"``, the
  ``media`` example (``track``, ``chunk``, ``timestamp`` as strings), ``stop``, the ``error``
  frame and codes 100002 unknown_error, 100003 malformed_frame, 100004 invalid_media, 100005
  rate_limit_reached.
- Pipecat's ``TelnyxFrameSerializer`` (facts only): it sends ``{"event": "media", "media":
  {"payload": ...}}`` and ``{"event": "clear"}`` with no ``stream_id``, and reads
  ``dtmf.digit``.

Where the sources disagree, both are accepted (see ``_ENCODINGS`` and ``_error``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
    mark_name,
    nonempty_str,
    obj_field,
    opt_int,
    opt_str,
    parse_object,
    should_log,
    str_field,
    str_map,
    unb64,
)
from .twilio import AppEvent, ClearOut, MarkOut, MediaOut

__all__ = ["TelnyxCodec", "TelnyxStream"]

logger = logging.getLogger(__name__)

# The AsyncAPI page spells the encoding as the codec ("PCMU"); the Call Control page's example
# says "audio/x-mulaw". Both are read, and the application sees the MIME spelling Twilio uses.
_ENCODINGS: Final = {"PCMU": "audio/x-mulaw", "PCMA": "audio/x-alaw", "L16": "audio/l16"}
_TELNYX_NAMES: Final = {mime: name for name, mime in _ENCODINGS.items()}
# Bytes per sample and the silence byte, for the encodings whose payload length is a duration.
_LINEAR: Final = {
    "audio/x-mulaw": (1, b"\xff"),
    "audio/x-alaw": (1, b"\xd5"),
    "audio/l16": (2, b"\0"),
}
# media.track is "inbound"/"outbound" in the examples; stream_track names them with "_track".
_CALLER_TRACKS: Final = frozenset({"inbound", "inbound_track"})
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_TELNYX_FORMAT: Final = MediaFormat("audio/x-mulaw", 8000, 1)


class TelnyxCodec(ProviderCodec):
    """The session side of a Telnyx media stream (a :class:`~actors.codecs.Codec`).

    Inbound: ``connected`` yields nothing (its ``version`` is kept); ``start`` yields
    :class:`Started` (``stream_id``, ``call_control_id``, the media format, the custom
    parameters and, as ``"client_state"`` unless a custom parameter has that name, the
    ``client_state``); ``media`` on a caller track yields :class:`Audio`; ``dtmf`` yields
    :class:`Dtmf`, ``mark`` :class:`Mark`, ``stop`` :class:`Stopped`; ``error`` (Telnyx refusing
    something we sent) is counted in ``errors``, kept in ``last_error`` and logged.

    Telnyx does not guarantee frame order, so audio is released in ``media.chunk`` order: a
    chunk that arrives early waits for the missing ones, at most ``reorder_window`` frames, after
    which the gap is given up (counted in ``skipped``); a chunk that arrives after its place
    has passed, or twice, is dropped and counted in ``late``. In order, nothing waits. Audio on
    another track (``outbound`` with ``both_tracks``: that is not the caller) is counted in
    ``other_track`` and dropped. ``stop`` releases what still waits before :class:`Stopped`.
    A malformed frame is counted in ``malformed``, an unknown event in ``unknown``; ``decode``
    never raises.

    Outbound: until ``start`` has told the format, messages are held (at most ``max_held``; past
    that the oldest held audio goes, counted in ``dropped_held``). Telnyx takes RTP media of
    20 ms to 30 s, so for G.711 and L16 shorter writes are joined until they make 20 ms (a
    ``Mark`` pads the remainder with silence first, a ``Clear`` drops it) and longer ones are
    split. ``outbound_format`` is the ``stream_bidirectional_codec``/sampling rate when they
    differ from the streamed format.

    Threads: ``decode`` runs on the connection's reader thread, ``encode``/``flush`` on writing
    threads under the session's lock; they share only ``stream_id`` (published last, after the
    format) and what ``start`` set before it.
    """

    provider = "telnyx"
    _name = "Telnyx"
    _logger = logger
    # Close is the connector's business (it closes the WebSocket), so it is accepted here too.
    outbound_types: frozenset[type[Message]] = frozenset({Binary, Mark, Clear, Close})

    def __init__(
        self,
        *,
        reorder_window: int = 3,
        caller_tracks: frozenset[str] = _CALLER_TRACKS,
        outbound_format: MediaFormat | None = None,
        max_held: int = 10_000,
        session_id: str = "-",
        hidden_parameters: frozenset[str] = frozenset(),
    ) -> None:
        if reorder_window < 0:
            raise ValueError(f"reorder_window must be >= 0, not {reorder_window}")
        super().__init__(
            max_held=max_held, session_id=session_id, hidden_parameters=hidden_parameters
        )
        self.reorder_window = reorder_window
        self.caller_tracks = caller_tracks
        self.outbound_format = outbound_format
        self.stream_id: str | None = None
        self.call_control_id: str | None = None
        self.client_state: str | None = None
        self.version: str | None = None
        self.media_format: MediaFormat | None = None
        self.late = 0
        self.skipped = 0
        self.other_track = 0
        self.errors = 0
        self.last_error: tuple[str, str] | None = None  # (code, title) of the last error frame
        self._waiting: dict[int, Audio] = {}  # early chunks, by chunk number
        self._next_chunk: int | None = None  # the chunk the caller's audio continues with
        self._resuming = False  # taken over mid-stream: the first chunk is the next one
        self._short = bytearray()  # outbound audio shorter than 20 ms, waiting for more
        self._sizes: tuple[int, int, bytes] | None = None  # (min, max, silence) bytes; None: as is

    # -- inbound -------------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Sequence[Message]:
        """The messages one frame from Telnyx carries: none, one, or released audio."""
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
            if event == "mark":
                return (Mark(mark_name(obj)),)
            if event == "stop":
                released = self._release(everything=True)
                released.append(Stopped())
                return released
            if event == "error":
                self._error(obj)
                return ()
            if event == "connected":
                self.version = obj.get("version") if type(obj.get("version")) is str else None
                return ()
        except Malformed as problem:
            return self._reject(event, str(problem))
        return self._ignore(event)

    def _media(self, obj: dict[str, Any]) -> Sequence[Message]:
        media = obj_field(obj, "media", "media")
        data = unb64(str_field(media, "payload", "media.payload"), "media.payload")
        track = opt_str(media, "track", "media.track")
        chunk = opt_int(media, "chunk", "media.chunk")
        audio = Audio(
            data,
            opt_int(media, "timestamp", "media.timestamp"),
            opt_int(obj, "sequence_number", "sequence_number"),
            track,
            chunk,
        )
        if track is not None and track not in self.caller_tracks:
            self.other_track += 1
            return ()
        if chunk is None:  # nothing to order it by
            return (audio,)
        expected = self._next_chunk
        if expected is None:  # the first audio: chunks count from 1, wait for 1 if 2 came first
            expected = self._next_chunk = chunk if self._resuming else min(chunk, 1)
        if chunk == expected and not self._waiting:  # in order: the common case, no waiting
            self._next_chunk = chunk + 1
            return (audio,)
        if chunk < expected or chunk in self._waiting:
            self.late += 1
            if should_log(self.late):
                logger.warning(
                    "session %s: dropped Telnyx audio chunk %d, late by more than %d frames "
                    "(%d so far)",
                    self.session_id,
                    chunk,
                    self.reorder_window,
                    self.late,
                )
            return ()
        self._waiting[chunk] = audio
        return self._release(everything=False)

    def resume_at(self, frames_in: int) -> None:
        """This codec carries on a stream another node's codec started (a cluster's takeover,
        after :attr:`~actors.session.SessionRecord.opening` was decoded again): its audio goes
        on at whichever chunk comes first, rather than waiting for chunk 1."""
        self._resuming = frames_in > 0

    def _release(self, *, everything: bool) -> list[Message]:
        """Audio that may go now, in chunk order: the consecutive run from the next chunk, and
        past a gap whenever more than ``reorder_window`` frames wait (all of it if
        ``everything``)."""
        waiting = self._waiting
        out: list[Message] = []
        while waiting:
            expected = self._next_chunk
            assert expected is not None  # set by the first chunked audio
            if expected not in waiting:
                if not everything and len(waiting) <= self.reorder_window:
                    break
                first = min(waiting)
                self.skipped += first - expected
                expected = first
            out.append(waiting.pop(expected))
            self._next_chunk = expected + 1
        return out

    def _start(self, obj: dict[str, Any]) -> Started:
        start = obj_field(obj, "start", "start")
        # Documented at the top level; some integrations look in ``start``, so that is a fallback.
        stream_id = nonempty_str(obj.get("stream_id", start.get("stream_id")), "stream_id")
        call_control_id = str_field(start, "call_control_id", "start.call_control_id")
        params = str_map(start.get("custom_parameters", {}), "start.custom_parameters")
        client_state = opt_str(start, "client_state", "start.client_state")
        media_format = _TELNYX_FORMAT
        if "media_format" in start:
            fmt = obj_field(start, "media_format", "start.media_format")
            encoding = str_field(fmt, "encoding", "start.media_format.encoding")
            channels = opt_int(fmt, "channels", "start.media_format.channels")
            media_format = MediaFormat(
                _ENCODINGS.get(encoding.upper(), encoding),
                int_field(fmt, "sample_rate", "start.media_format.sample_rate"),
                1 if channels is None else channels,
            )
        parameters = {k: v for k, v in params.items() if k not in self.hidden_parameters}
        if client_state is not None and "client_state" not in params:
            parameters["client_state"] = client_state
        out = self.outbound_format or media_format
        linear = _LINEAR.get(out.encoding)
        if linear is not None and out.sample_rate > 0:
            width, silence = linear
            per_ms = width * out.sample_rate * out.channels / 1000
            self._sizes = (max(1, round(20 * per_ms)), round(30_000 * per_ms), silence)
        self.media_format = media_format
        self.call_control_id = call_control_id
        self.client_state = client_state
        self.stream_id = stream_id  # last: this publishes the stream to the encoding threads
        return Started(stream_id, call_control_id, media_format, parameters, ())

    def _error(self, obj: dict[str, Any]) -> None:
        # The brief and the AsyncAPI's frame list say ``payload``; the Call Control page's
        # example nests the same fields in ``error``. Either is read.
        body = obj.get("payload", obj.get("error"))
        if type(body) is not dict:
            raise Malformed("payload is missing or not an object")
        code, title = body.get("code"), body.get("title")
        code_text = str(code) if type(code) in (str, int) else "?"
        title_text = title if type(title) is str else ""
        self.errors += 1
        self.last_error = (code_text[:16], title_text[:64])
        if should_log(self.errors):
            logger.warning(
                "session %s: Telnyx reported stream error %s %s (%d so far)",
                self.session_id,
                label(code_text),
                label(title_text),
                self.errors,
            )

    # -- outbound ------------------------------------------------------------------------------

    def encode(self, message: Message) -> Sequence[Frame]:
        """The frames for one outbound message, after any held ones; none while held or while
        audio waits to make 20 ms. Raises ``UnsupportedMessage`` for what Telnyx cannot carry."""
        if not isinstance(message, Binary | Mark | Clear):
            raise UnsupportedMessage(self.session_id, self.provider, type(message).__name__)
        if self.stream_id is None:
            self._hold(message)
            return ()
        frames = self._drain()
        self._frames(message, frames)
        return frames

    def flush(self) -> Sequence[Frame]:
        """Return (and forget) the held frames once the stream has started; else nothing."""
        if self.stream_id is None or not self._held:
            return ()
        return self._drain()

    @property
    def short(self) -> int:
        """Bytes of outbound audio waiting to make 20 ms."""
        return len(self._short)

    def _drain(self) -> list[Frame]:
        frames: list[Frame] = []
        while self._held:
            self._frames(self._held.popleft(), frames)
        return frames

    def _frames(self, message: Message, out: list[Frame]) -> None:
        short, sizes = self._short, self._sizes
        if isinstance(message, Binary):
            if sizes is None:  # a compressed codec: each write is one payload, as written
                out.append(_media_frame(message.data))
                return
            smallest, largest, _ = sizes
            data = message.data
            if short:
                short += data
                data = bytes(short)
                short.clear()
            start = 0
            while len(data) - start > largest:
                out.append(_media_frame(data[start : start + largest]))
                start += largest
            if len(data) - start >= smallest:
                out.append(_media_frame(data[start:]))
            else:
                short += data[start:]
        elif isinstance(message, Mark):
            if short and sizes is not None:
                short += sizes[2] * (sizes[0] - len(short))
                out.append(_media_frame(bytes(short)))
                short.clear()
            out.append(dumps({"event": "mark", "mark": {"name": message.name}}))
        else:
            short.clear()  # not played yet, and clear drops what is not played
            out.append('{"event":"clear"}')


def _media_frame(data: bytes) -> str:
    # The base64 alphabet needs no JSON escaping. Client frames carry no stream_id (none in
    # Telnyx's examples, none in Pipecat's): one WebSocket is one stream.
    return '{"event":"media","media":{"payload":"' + b64(data) + '"}}'


# -- Telnyx's side -----------------------------------------------------------------------------


class TelnyxStream:
    """Telnyx's side of one media stream: the frames Telnyx sends, and parsing what comes back.

    ``sequence`` is the next ``sequence_number`` (``start`` is 1, ``connected`` has none);
    ``chunks`` the next ``media.chunk`` per track, from 1. Counters are strings, as in the
    documented examples.
    """

    def __init__(
        self,
        stream_id: str,
        call_control_id: str,
        *,
        custom_parameters: Mapping[str, str] = _EMPTY,
        client_state: str | None = None,
        media_format: MediaFormat = _TELNYX_FORMAT,
        from_: str = "",
        to: str = "",
    ) -> None:
        self.stream_id = stream_id
        self.call_control_id = call_control_id
        self.custom_parameters = dict(custom_parameters)
        self.client_state = client_state
        self.media_format = media_format
        self.from_ = from_
        self.to = to
        self.sequence = 1
        self.chunks: dict[str, int] = {}

    def _frame(self, event: str, **fields: object) -> str:
        number = self.sequence
        self.sequence = number + 1
        return dumps(
            {"event": event, "sequence_number": str(number), **fields, "stream_id": self.stream_id}
        )

    def connected(self) -> str:
        """The first frame of every stream."""
        return dumps({"event": "connected", "version": "1.0.0"})

    def start(self) -> str:
        """The stream's metadata: ids, custom parameters, client state and media format."""
        fmt = self.media_format
        start: dict[str, object] = {
            "call_control_id": self.call_control_id,
            "from": self.from_,
            "to": self.to,
            "custom_parameters": self.custom_parameters,
            "media_format": {
                "encoding": _TELNYX_NAMES.get(fmt.encoding, fmt.encoding),
                "sample_rate": fmt.sample_rate,
                "channels": fmt.channels,
            },
        }
        if self.client_state is not None:
            start["client_state"] = self.client_state
        return self._frame("start", start=start)

    def media(
        self, payload: bytes, timestamp_ms: int, track: str = "inbound", chunk: int | None = None
    ) -> str:
        """One RTP payload on ``track``; ``chunk`` defaults to the track's next number (pass one
        to build frames out of order)."""
        if chunk is None:
            chunk = self.chunks.get(track, 1)
        self.chunks[track] = chunk + 1
        media = {
            "track": track,
            "chunk": str(chunk),
            "timestamp": str(timestamp_ms),
            "payload": b64(payload),
        }
        return self._frame("media", media=media)

    def dtmf(self, digit: str) -> str:
        """A key pressed on the caller's keypad."""
        return self._frame("dtmf", dtmf={"digit": digit})

    def mark(self, name: str) -> str:
        """The echo of the application's mark: the audio sent before it has played."""
        return self._frame("mark", mark={"name": name})

    def error(self, code: str, title: str, detail: str = "") -> str:
        """Telnyx refusing something the application sent (e.g. ``"100003"``, malformed_frame)."""
        return self._frame("error", payload={"code": code, "title": title, "detail": detail})

    def stop(self) -> str:
        """The last frame: the stream has stopped."""
        return self._frame("stop", stop={"call_control_id": self.call_control_id})

    def parse(self, frame: Frame) -> AppEvent:
        """What one frame from the application asks for: ``media``, ``mark`` or ``clear``.

        Raises ``ValueError`` naming the problem: a binary frame, not JSON, not an object, an
        unknown event, a missing or ill-typed field, bad base64, or another stream's stream_id.
        """
        try:
            obj = parse_object(frame)
            event = obj.get("event")
            if event not in ("media", "mark", "clear"):
                raise Malformed(f"unknown event {label(event)} (expected media, mark or clear)")
            sid = obj.get("stream_id", self.stream_id)  # optional: one socket is one stream
            if sid != self.stream_id:
                raise Malformed(f"stream_id {sid!r}, expected {self.stream_id!r}")
            if event == "media":
                media = obj_field(obj, "media", "media")
                return MediaOut(unb64(str_field(media, "payload", "media.payload"), "payload"))
            if event == "mark":
                return MarkOut(mark_name(obj))
        except Malformed as problem:
            raise ValueError(f"Telnyx stream: {problem}") from None
        return ClearOut()
