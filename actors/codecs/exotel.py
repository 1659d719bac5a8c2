"""Exotel AgentStream (the Voicebot applet's bidirectional stream), both sides, sans-I/O.

Provenance (every field below was checked against these; no code was copied):

- Exotel, "WebSocket protocol" (developer.exotel.com/docs/agentstream/websocket-protocol) and
  "Working with the Stream and Voicebot Applet" (developer.exotel.com and
  support.exotel.com article 3000108630): snake_case JSON text frames ``connected``, ``start``
  (``stream_sid``, ``call_sid``, ``account_sid``, ``from``, ``to``, ``custom_parameters``,
  ``media_format`` with ``encoding`` ``"audio/x-raw"``, ``sample_rate`` and ``bit_rate`` as
  *strings*), ``media`` (``chunk``, ``timestamp``, ``payload``: base64 of 16-bit mono
  little-endian PCM), ``dtmf`` (``digit``, ``duration``), ``mark`` (``name``) and ``stop``
  (``call_sid``, ``account_sid``, ``reason``), each with a string ``sequence_number``; and the
  frames a Voicebot may send, ``media``, ``mark`` and ``clear`` with ``stream_sid``. Outbound
  chunks: "Minimum chunk size: 3.2k [100ms data]. Maximum chunk size: 100k. Chunk size should
  always be in multiple of 320 bytes". Sample rates 8000 (default), 16000 and 24000, chosen
  with ``?sample-rate=`` on the applet's URL.
- The AsyncAPI description of AgentStream (api-evangelist/exotel, exotel-asyncapi.yml): the
  same shapes; ``stop.reason`` is ``stopped`` or ``callended``.
- Pipecat's ``ExotelFrameSerializer`` (read for facts only): it reads ``media.payload`` and
  ``dtmf.digit`` as above, but *sends* ``streamSid`` (camelCase) on ``media`` and ``clear``.

Where sources disagree: Exotel's documents say ``stream_sid`` on the frames we send, Pipecat
sends ``streamSid``; we send ``stream_sid`` and :class:`ExotelStream` accepts either. "100k" is
not said to be 1000- or 1024-based: the largest chunk sent is 99 840 bytes, under both.
"3.2k [100ms data]" does not add up at the documented 8 kHz (100 ms of 16-bit PCM is 1600
bytes there; 3200 bytes is 100 ms at 16 kHz): the minimum here is both, the larger of 3200
bytes and ``min_chunk_ms`` (100 ms) of audio: 3200 bytes (200 ms) at 8 kHz, 3200 at 16 kHz,
4800 at 24 kHz.
"""

from __future__ import annotations

import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..messages import Audio, Binary, Clear, Close, Dtmf, Mark, Message, Started, Stopped
from . import Frame
from ._frames import Malformed as _Malformed
from ._frames import ProviderCodec
from ._frames import app_event as _app_event
from ._frames import dtmf_digit as _dtmf_digit
from ._frames import dumps as _dumps
from ._frames import int_field as _int
from ._frames import label as _label
from ._frames import mark_name as _mark_name
from ._frames import media_payload as _media_payload
from ._frames import obj_field as _object
from ._frames import opt_int as _opt_int
from ._frames import opt_str as _opt_str
from ._frames import param_text as _text
from ._frames import str_field as _string
from .pcm import FRAME_MS, AudioFormat, AudioPolicy, Converter, FrameBuffer
from .twilio import ClearOut, MarkOut, MediaOut

__all__ = ["CHUNK_UNIT", "MAX_CHUNK", "MIN_CHUNK", "ExotelCodec", "ExotelStream"]

logger = logging.getLogger(__name__)

_NO_CONVERSION: Final = AudioPolicy()  # the application reads and writes the wire's format

#: Exotel's outbound chunk rules, in bytes.
CHUNK_UNIT: Final = 320
MIN_CHUNK: Final = 3200
MAX_CHUNK: Final = 100_000 - 100_000 % CHUNK_UNIT  # 99 840
_RATES: Final = (8000, 16000, 24000)
_b2a = binascii.b2a_base64


def _wire_format(start: Mapping[str, Any]) -> AudioFormat:
    if "media_format" not in start:
        return AudioFormat("pcm16", 8000)  # the applet's default
    fmt = _object(start, "media_format", "start.media_format")
    rate = _int(fmt, "sample_rate", "start.media_format.sample_rate")
    if rate not in _RATES:
        raise _Malformed(f"start.media_format.sample_rate {rate} is not 8000, 16000 or 24000")
    bits = _opt_int(fmt, "bit_rate", "start.media_format.bit_rate")
    encoding = fmt.get("encoding", "audio/x-raw")
    # ExoML's StartStream defaults to audio/x-mulaw;rate=8000: accepted, though AgentStream's
    # documented encoding is raw 16-bit PCM.
    if isinstance(encoding, str) and encoding.lower().startswith("audio/x-mulaw"):
        return AudioFormat("audio/x-mulaw", 8000)
    if encoding not in ("audio/x-raw", "raw", "slin") or bits not in (None, 16):
        raise _Malformed(f"start.media_format is not 16-bit raw PCM: {_label(encoding)}/{bits}")
    return AudioFormat("pcm16", rate)


class ExotelCodec(ProviderCodec):
    """The session side of an Exotel Voicebot stream (a :class:`~actors.codecs.Codec`).

    Inbound: ``connected`` yields nothing; ``start`` yields :class:`Started` (custom parameters,
    less ``hidden_parameters``, as its parameters; ``from``, ``to``, ``account_sid`` kept as
    attributes); ``media`` yields :class:`Audio` in the application's format cut into 20 ms
    frames (``timestamp`` from Exotel's, ``sequence`` its ``sequence_number``, ``chunk`` its
    ``chunk``); ``dtmf`` :class:`Dtmf`; ``mark`` :class:`Mark`; ``stop`` :class:`Stopped`
    (``stop_reason`` kept). Malformed frames are counted in ``malformed``, unknown events in
    ``unknown``; ``decode`` never raises.

    Outbound: ``Binary`` writes are converted to the wire format and gathered; as soon as
    ``min_chunk`` bytes wait (3200, or 100 ms of audio if that is more), they go out as one
    ``media`` frame: the largest multiple of 320 bytes held, at most :data:`MAX_CHUNK` (a
    longer write becomes several frames), the remainder held. A ``Mark`` is a boundary: what
    is held (and the resampler's tail) goes out first, padded with silence to a multiple of 320
    and to ``min_chunk`` (at 8 kHz, a mark after 20 ms of audio adds 180 ms of silence), then
    the ``mark``. A ``Clear`` drops what is held and
    sends ``clear``. Messages written before ``start`` are held, as on Twilio.

    :meth:`flush` contract: the connector calls it on its timer tick (100 ms suits). Held
    messages go out once started; gathered audio is padded and sent only if no ``Binary`` was
    encoded since the previous ``flush`` (the stream went idle for a whole tick), so a stream
    written at real time is never padded, and a tail written without a mark waits at most two
    ticks. There are no clocks here.
    """

    provider = "exotel"
    _name = "Exotel"
    _logger = logger
    outbound_types: frozenset[type[Message]] = frozenset({Binary, Mark, Clear, Close})
    frame_ms: Final = FRAME_MS
    #: The connector calls :meth:`flush` this often (seconds): an idle stream's tail waits
    #: at most two of these.
    flush_interval_s: Final = 0.1

    def __init__(
        self,
        *,
        audio: AudioPolicy = _NO_CONVERSION,
        min_chunk_ms: int = 100,
        max_held: int = 10_000,
        session_id: str = "-",
        hidden_parameters: frozenset[str] = frozenset(),
    ) -> None:
        if not 100 <= min_chunk_ms <= 1000 or min_chunk_ms % FRAME_MS:
            raise ValueError(
                f"min_chunk_ms must be a multiple of 20 in 100..1000, not {min_chunk_ms}"
            )
        self.audio = audio
        self.min_chunk_ms = min_chunk_ms
        super().__init__(
            max_held=max_held, session_id=session_id, hidden_parameters=hidden_parameters
        )
        self.stream_sid: str | None = None  # set by start; publishes the stream
        self.call_sid: str | None = None
        self.account_sid: str | None = None
        self.from_: str | None = None
        self.to: str | None = None
        self.stop_reason: str | None = None
        self.wire: AudioFormat | None = None
        self.app: AudioFormat | None = None
        self.min_chunk = 0  # bytes, known once started
        self._in: Converter | None = None
        self._in_frames: FrameBuffer | None = None
        self._out: Converter | None = None
        self._out_buffer: FrameBuffer | None = None
        self._wrote = False
        self._pending = False
        self._prefix = ""

    # -- inbound -------------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Sequence[Message]:
        """The messages one frame from Exotel carries (see the class docstring)."""
        if not isinstance(frame, str):
            return self._reject(None, "binary frame (Exotel sends text frames)")
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError):
            return self._reject(None, "not JSON")
        if type(obj) is not dict:
            return self._reject(None, "not a JSON object")
        event = obj.get("event")
        try:
            if event == "media":
                return self._media(obj)
            if event == "start":
                return (self._start(obj),)
            if event == "dtmf":
                return (Dtmf(_dtmf_digit(obj)),)
            if event == "mark":
                return (Mark(_mark_name(obj)),)
            if event == "stop":
                stop = obj.get("stop")
                reason = stop.get("reason") if type(stop) is dict else None
                self.stop_reason = reason if type(reason) is str else None
                return (Stopped(),)
            if event == "connected":
                return ()
        except _Malformed as problem:
            return self._reject(event, str(problem))
        return self._ignore(event)

    def _start(self, obj: dict[str, Any]) -> Started:
        if self.stream_sid is not None:
            raise _Malformed("a second start")
        start = _object(obj, "start", "start")
        stream_sid = start.get("stream_sid", obj.get("stream_sid"))
        if type(stream_sid) is not str or not stream_sid:
            raise _Malformed("start.stream_sid is missing or not a string")
        call_sid = _string(start, "call_sid", "start.call_sid")
        params = start.get("custom_parameters", {})
        if type(params) is not dict:
            raise _Malformed("start.custom_parameters is not an object")
        wire = _wire_format(start)
        self.account_sid = _opt_str(start, "account_sid", "start.account_sid")
        self.from_ = _opt_str(start, "from", "start.from")
        self.to = _opt_str(start, "to", "start.to")
        app = self.audio.resolve(wire)
        parameters = {k: _text(v) for k, v in params.items() if k not in self.hidden_parameters}
        self._in = Converter(wire, app, self.audio.quality)
        self._in_frames = FrameBuffer(app.frame_bytes, app.silence)
        self.app = app
        chunk = wire.frame_bytes * self.min_chunk_ms // FRAME_MS
        self.min_chunk = max(MIN_CHUNK, chunk + -chunk % CHUNK_UNIT)
        self.wire = wire
        self.call_sid = call_sid
        self.stream_sid = stream_sid  # last: this publishes the stream to the encoding thread
        return Started(stream_sid, call_sid, app.media_format(), parameters, ())

    def _media(self, obj: dict[str, Any]) -> Sequence[Message]:
        converter, frames, app = self._in, self._in_frames, self.app
        if converter is None or frames is None or app is None:
            raise _Malformed("media before start")
        media = _object(obj, "media", "media")
        try:
            data = binascii.a2b_base64(_string(media, "payload", "media.payload"), strict_mode=True)
        except ValueError:
            raise _Malformed("media.payload is not base64") from None
        if converter.source.encoding == "pcm16" and len(data) % 2:
            raise _Malformed(f"media.payload of {len(data)} bytes is not PCM16")
        timestamp = _opt_int(media, "timestamp", "media.timestamp")
        sequence = _opt_int(obj, "sequence_number", "sequence_number")
        chunk = _opt_int(media, "chunk", "media.chunk")
        if timestamp is not None:  # the first frame out may begin with audio held from before
            timestamp -= len(frames) * FRAME_MS // frames.unit
        frames.add(converter.convert(data))
        out: list[Message] = []
        for index, piece in enumerate(frames.frames()):
            at = None if timestamp is None else timestamp + index * FRAME_MS
            out.append(Audio(piece, at, sequence, None, chunk))
        return out

    # -- outbound ------------------------------------------------------------------------------

    def encode(self, message: Message) -> Sequence[Frame]:
        """The frames for one outbound message, after any held ones; none while held or while
        less than ``min_chunk`` of audio waits. Raises ``TypeError`` for a type Exotel does
        not carry."""
        if not isinstance(message, Binary | Mark | Clear):
            raise TypeError(f"{type(message).__name__} is not carried by the exotel provider")
        sid = self.stream_sid  # read once: the reader thread may publish it at any moment
        if sid is None:
            self._hold(message)
            return ()
        frames: list[Frame] = self._drain(sid) if self._held else []
        frames.extend(self._frames(message, sid))
        return frames

    def flush(self) -> Sequence[Frame]:
        """Held messages once started; an idle stream's gathered audio (see the class doc)."""
        sid = self.stream_sid
        if sid is None:
            return ()
        frames: list[Frame] = self._drain(sid) if self._held else []
        if self._pending and not self._wrote:
            frames.extend(self._boundary(sid))
        self._wrote = False
        return frames

    @property
    def gathered(self) -> int:
        """Bytes of wire audio gathered but not yet sent."""
        return len(self._out_buffer) if self._out_buffer is not None else 0

    def _frames(self, message: Message, sid: str) -> list[Frame]:
        out, buffer = self._converter(sid)
        if isinstance(message, Binary):
            self._wrote = self._pending = True
            buffer.add(out.convert(message.data))
            return self._chunks(buffer, self.min_chunk)
        if isinstance(message, Mark):
            frames = self._boundary(sid)
            mark = {"event": "mark", "stream_sid": sid, "mark": {"name": message.name}}
            frames.append(_dumps(mark))
            return frames
        buffer.clear()
        out.reset()
        self._pending = False
        return [_dumps({"event": "clear", "stream_sid": sid})]

    def _chunks(self, buffer: FrameBuffer, at_least: int) -> list[Frame]:
        frames: list[Frame] = []
        while len(buffer) >= at_least:
            size = min(len(buffer) - len(buffer) % CHUNK_UNIT, MAX_CHUNK)
            # The base64 alphabet needs no JSON escaping: concatenation, not json.dumps.
            payload = _b2a(buffer.take(size), newline=False).decode("ascii")
            frames.append(self._prefix + payload + '"}}')
        return frames

    def _boundary(self, sid: str) -> list[Frame]:
        out, buffer = self._converter(sid)
        buffer.add(out.drain())
        buffer.pad(CHUNK_UNIT)
        if 0 < len(buffer) < self.min_chunk:
            buffer.add(buffer.silence * (self.min_chunk - len(buffer)))
        self._pending = False
        return self._chunks(buffer, 1)

    def _converter(self, sid: str) -> tuple[Converter, FrameBuffer]:
        if self._out is None or self._out_buffer is None:
            wire = self.wire
            assert wire is not None  # published before stream_sid
            self._out = Converter(self.audio.resolve(wire), wire, self.audio.quality)
            self._out_buffer = FrameBuffer(CHUNK_UNIT, wire.silence)
            self._prefix = f'{{"event":"media","stream_sid":{json.dumps(sid)},"media":{{"payload":"'
        return self._out, self._out_buffer

    def _drain(self, sid: str) -> list[Frame]:
        frames: list[Frame] = []
        for message in self._take_held():
            frames.extend(self._frames(message, sid))
        return frames


# -- Exotel's side -----------------------------------------------------------------------------

ExotelEvent = MediaOut | MarkOut | ClearOut


class ExotelStream:
    """Exotel's side of one Voicebot stream: the frames Exotel sends, and parsing the replies.

    ``sequence`` is the next ``sequence_number`` (``start`` is 1; ``connected`` carries none),
    ``chunk`` the next ``media.chunk`` (from 1). Numbers are sent as strings, as Exotel does.
    ``strict`` makes :meth:`parse` refuse media chunks outside Exotel's size rules.
    """

    def __init__(
        self,
        stream_sid: str,
        call_sid: str,
        account_sid: str,
        *,
        from_: str = "",
        to: str = "",
        custom_parameters: Mapping[str, str] | None = None,
        sample_rate: int = 8000,
        strict: bool = True,
    ) -> None:
        if sample_rate not in _RATES:
            raise ValueError(f"sample_rate must be 8000, 16000 or 24000, not {sample_rate}")
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.from_ = from_
        self.to = to
        self.custom_parameters = dict(custom_parameters or {})
        self.sample_rate = sample_rate
        self.strict = strict
        self.sequence = 1
        self.chunk = 1

    def _next(self) -> str:
        number = self.sequence
        self.sequence = number + 1
        return str(number)

    def _event(self, event: str, **fields: object) -> str:
        head = {"event": event, "sequence_number": self._next(), "stream_sid": self.stream_sid}
        return _dumps({**head, **fields})

    def connected(self) -> str:
        """The first frame of every stream."""
        return _dumps({"event": "connected"})

    def start(self) -> str:
        """The stream's metadata: sids, numbers, custom parameters and media format."""
        fmt = {"encoding": "audio/x-raw", "sample_rate": str(self.sample_rate), "bit_rate": "16"}
        start = {"stream_sid": self.stream_sid, "call_sid": self.call_sid}
        start.update(account_sid=self.account_sid, to=self.to, **{"from": self.from_})
        return self._event(
            "start",
            start={**start, "custom_parameters": self.custom_parameters, "media_format": fmt},
        )

    def media(self, pcm: bytes, timestamp_ms: int) -> str:
        """One chunk of the caller's audio (PCM16), ``timestamp_ms`` into the stream."""
        chunk = self.chunk
        self.chunk = chunk + 1
        payload = _b2a(pcm, newline=False).decode("ascii")
        media = {"chunk": str(chunk), "timestamp": str(timestamp_ms), "payload": payload}
        return self._event("media", media=media)

    def dtmf(self, digit: str, duration_ms: int = 100) -> str:
        """A key pressed on the caller's keypad."""
        return self._event("dtmf", dtmf={"digit": digit, "duration": str(duration_ms)})

    def mark(self, name: str) -> str:
        """The echo of the application's mark: the audio sent before it has played."""
        return self._event("mark", mark={"name": name})

    def stop(self, reason: str = "callended") -> str:
        """The last frame: the stream has stopped (``stopped`` or ``callended``)."""
        stop = {"call_sid": self.call_sid, "account_sid": self.account_sid, "reason": reason}
        return self._event("stop", stop=stop)

    def parse(self, frame: Frame) -> ExotelEvent:
        """What one frame from the application asks for.

        Raises ``ValueError`` naming the problem: a binary frame, not a JSON object, an unknown
        event, another stream's sid, a missing field, bad base64, or (``strict``) a media chunk
        under 3200 bytes, over :data:`MAX_CHUNK` or not a multiple of 320.
        """
        obj, event = _app_event(frame, "Exotel streams")
        sid = obj.get("stream_sid", obj.get("streamSid"))  # see the module docstring
        if sid != self.stream_sid:
            raise ValueError(f"{event} frame has stream_sid {sid!r}, expected {self.stream_sid!r}")
        try:
            if event == "media":
                data = _media_payload(obj)
                size = len(data)
                if self.strict and not (MIN_CHUNK <= size <= MAX_CHUNK and size % CHUNK_UNIT == 0):
                    raise _Malformed(
                        f"a chunk of {size} bytes breaks Exotel's rules "
                        f"({MIN_CHUNK}..{MAX_CHUNK} bytes, a multiple of {CHUNK_UNIT})"
                    )
                return MediaOut(data)
            if event == "mark":
                return MarkOut(_mark_name(obj))
        except _Malformed as problem:
            raise ValueError(f"{event} frame: {problem}") from None
        return ClearOut()
