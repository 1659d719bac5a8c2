"""Vonage Voice API WebSockets, both sides of the wire, sans-I/O.

Provenance (every field below was checked against these; no code was copied):

- Vonage, "WebSockets" guide (developer.vonage.com/en/voice/voice-api/concepts/websockets, and
  its source in Vonage's nexmo-developer repository): the first frame is a text frame
  ``{"event": "websocket:connected", "content-type": "audio/l16;rate=16000", ...}`` with the
  NCCO's ``headers`` flattened to the top level; then binary frames of 16-bit signed
  little-endian mono PCM, 20 ms each: 320 bytes at 8 kHz, 640 at 16 kHz, in both directions
  ("it is important that each message is 320 or 640 bytes"); DTMF as
  ``{"event": "websocket:dtmf", "digit": "5", "duration": 260}``; audio sent faster than real
  time is buffered, "only 1024 messages ... around 20 seconds".
- Vonage's newer guide and its AsyncAPI description (asyncapi.apis.io, Vonage Voice WebSocket
  API): the ``{"action": "clear"}`` command acknowledged by ``websocket:cleared``, and
  ``{"action": "notify", "payload": {...}}`` answered by ``websocket:notify`` carrying the same
  ``payload`` once the audio queued before it has played.
- Pipecat's ``VonageFrameSerializer`` (read for facts only): the same event names; it reads the
  DTMF digit at the top level *or* nested as ``dtmf.digit``, so both are accepted here.

Where sources disagree: Vonage's guide names only 8000 and 16000 Hz; several third-party
integrations use ``audio/l16;rate=24000`` (960-byte frames), so 24000 is accepted too. The
WebSockets guide gives a buffer of 1024 frames ("around 20 seconds"); Vonage's own "play audio
into a WebSocket" tutorial says 3072 ("around 60 seconds"): the lower is kept in
:attr:`VonageCodec.max_buffered_frames`, and the pacer's lead stays far under it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..messages import Audio, Binary, Clear, Close, Dtmf, Mark, Message, Started
from . import Frame
from ._frames import Malformed, ProviderCodec, app_object, dumps, parse_object
from ._frames import label as _label
from ._frames import param_text as _text
from .pacing import Pacer
from .pcm import FRAME_MS, AudioFormat, AudioPolicy, Converter, FrameBuffer
from .twilio import ClearOut, MediaOut

__all__ = ["ClearOut", "MediaOut", "NotifyOut", "VonageCodec", "VonageSocket", "content_type"]

logger = logging.getLogger(__name__)

_NO_CONVERSION: Final = AudioPolicy()  # the application reads and writes the wire's format

_RATES: Final = (8000, 16000, 24000)
_CONTENT_TYPE = re.compile(r"\s*audio/l16\s*;\s*rate\s*=\s*(\d+)\s*", re.IGNORECASE)
_CLEAR: Final = '{"action":"clear"}'
#: The key of our notify payload that carries the mark's name.
MARK_KEY: Final = "name"


def content_type(rate: int) -> str:
    """The NCCO ``content-type`` of a stream at ``rate`` Hz: ``audio/l16;rate=16000``."""
    return f"audio/l16;rate={rate}"


def _rate(value: object) -> int:
    match = _CONTENT_TYPE.fullmatch(value) if isinstance(value, str) else None
    rate = int(match.group(1)) if match else 0
    if rate not in _RATES:
        raise ValueError(f"content-type {_label(value)} is not audio/l16 at 8000, 16000 or 24000")
    return rate


class VonageCodec(ProviderCodec):
    """The session side of a Vonage WebSocket (a :class:`~actors.codecs.Codec`).

    Inbound: ``websocket:connected`` yields :class:`Started` (every flattened header but those
    in ``hidden_parameters`` becomes a parameter; ``call_id`` is the first header named in
    ``call_id_keys``, else ``""``; ``stream_id`` is ours, Vonage names no stream); binary frames
    yield :class:`Audio` in the application's format, 20 ms each, whose ``sequence`` is the
    number of the frame that brought it (Vonage numbers none; every frame received counts);
    ``websocket:dtmf`` yields :class:`Dtmf`; ``websocket:notify`` whose payload names one of
    our marks yields :class:`Mark`; ``websocket:cleared`` yields nothing (counted in
    ``cleared``). Malformed frames are counted in ``malformed``, unknown events in
    ``unknown``; ``decode`` never raises. Vonage ends a stream by closing the socket: there is
    no ``Stopped``. A ``websocket:connected`` again at the same rate (a cluster connected the
    call to another gateway) yields nothing and is counted in ``reconnected``.

    Outbound: ``Binary`` is converted to the wire format and cut into frames of exactly
    :attr:`frame_bytes`; a remainder shorter than a frame is held for the next write.
    A ``Mark`` is a boundary: the resampler's tail and the held remainder go out first, the
    last frame padded with silence (at most 20 ms), then the ``notify``, so the mark comes back
    after every sample written before it. A ``Clear`` drops the held remainder and the
    resampler's tail (they are exactly what a clear discards), then sends ``clear``.
    Until ``websocket:connected`` has given the rate, messages are held as on Twilio.

    :meth:`flush` contract (no clocks here): the connector calls it on its timer tick. Held
    messages go out once the stream has started; a remainder is padded and sent only if no
    ``Binary`` was encoded since the previous ``flush`` (the stream went idle for a whole tick),
    so continuous audio is never cut by padding and a tail written without a mark waits at most
    two ticks.

    Pacing (``lead_frames``): Vonage plays what it buffers and drops what is past
    :attr:`max_buffered_frames`. With ``lead_frames`` set, every outbound frame goes through
    :attr:`pacer` (:class:`~actors.codecs.pacing.Pacer`) instead of being returned: ``encode``
    and ``flush`` return only what needs no pacing (a ``clear`` and the marks it overtook), and
    the session record, which owns the time, takes what may go with ``pacer.release(now)``
    after each call: audio at most ``lead_frames`` ahead of real time, a ``notify`` right after
    the audio before it. A ``Clear`` drops the pacer's audio too (counted in
    ``cleared_frames``). Without ``lead_frames`` (the default) frames are returned as encoded.
    """

    provider = "vonage"
    _name = "Vonage"
    _logger = logger
    outbound_types: frozenset[type[Message]] = frozenset({Binary, Mark, Clear, Close})
    frame_ms: Final = FRAME_MS
    #: The connector calls :meth:`flush` this often (seconds): an idle stream's tail waits
    #: at most two of these.
    flush_interval_s: Final = 0.1
    max_buffered_frames: Final = 1024

    def __init__(
        self,
        *,
        audio: AudioPolicy = _NO_CONVERSION,
        stream_id: str | None = None,
        call_id_keys: Sequence[str] = ("call_uuid", "uuid"),
        max_held: int = 10_000,
        session_id: str = "-",
        hidden_parameters: frozenset[str] = frozenset(),
        lead_frames: int | None = None,
    ) -> None:
        if lead_frames is not None and not 0 < lead_frames < self.max_buffered_frames:
            raise ValueError(
                f"lead_frames must be between 1 and {self.max_buffered_frames - 1}, "
                f"not {lead_frames!r}"
            )
        self.audio = audio
        self.stream_id = stream_id or "VS" + secrets.token_hex(16)
        self.call_id_keys = tuple(call_id_keys)
        super().__init__(
            max_held=max_held, session_id=session_id, hidden_parameters=hidden_parameters
        )
        self.wire: AudioFormat | None = None  # set by websocket:connected; publishes the stream
        self.app: AudioFormat | None = None
        self.call_id: str | None = None
        self.irregular = 0  # binary frames of a size other than 20 ms (accepted)
        self.cleared = 0
        self.reconnected = 0  # websocket:connected again (a cluster's gateway failover)
        # Frames received (text and binary): Vonage numbers none, so an Audio's ``sequence``
        # is the number of the frame that brought it, as the gateway counts provider frames.
        self.frames = 0
        self._in: Converter | None = None
        self._in_frames: FrameBuffer | None = None
        self._out: Converter | None = None
        self._out_frames: FrameBuffer | None = None
        self._wrote = False  # a Binary was encoded since the last flush()
        self._pending = False  # audio was encoded since the last boundary
        #: Paces outbound frames (``lead_frames``); ``None``: frames are returned as encoded.
        self.pacer = Pacer(FRAME_MS / 1000, lead_frames) if lead_frames else None
        self.cleared_frames = 0  # paced audio a Clear dropped before it was sent

    @property
    def frame_bytes(self) -> int:
        """Bytes in one wire frame (0 until the stream has started)."""
        wire = self.wire
        return wire.frame_bytes if wire is not None else 0

    # -- inbound -------------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Sequence[Message]:
        """The messages one frame from Vonage carries (see the class docstring)."""
        self.frames += 1
        if isinstance(frame, bytes):
            return self._audio(frame)
        try:
            obj = parse_object(frame)
        except Malformed as problem:
            return self._reject(None, str(problem))
        event = obj.get("event")
        try:
            if event == "websocket:dtmf":
                digit = obj.get("digit")
                nested = obj.get("dtmf")
                if digit is None and type(nested) is dict:
                    digit = nested.get("digit")
                if type(digit) is not str or not digit:
                    raise ValueError("digit is missing or not a string")
                return (Dtmf(digit),)
            if event == "websocket:notify":
                payload = obj.get("payload")
                if type(payload) is not dict:
                    raise ValueError("payload is missing or not an object")
                name = payload.get(MARK_KEY)
                if type(name) is str:
                    return (Mark(name),)
                self.unknown += 1  # a notify that is not one of our marks
                return ()
            if event == "websocket:cleared":
                self.cleared += 1
                return ()
            if event == "websocket:connected":
                started = self._connected(obj)
                return () if started is None else (started,)
        except ValueError as problem:
            return self._reject(event, str(problem))
        return self._ignore(event)

    def _connected(self, obj: dict[str, Any]) -> Started | None:
        if self.wire is not None:
            # The call's websocket again, at the same rate: its gateway died and a cluster
            # connected the call to another (the same session goes on; counted, not shown).
            if _rate(obj.get("content-type")) != self.wire.sample_rate:
                raise ValueError("a second websocket:connected at another rate")
            self.reconnected += 1
            return None
        wire = AudioFormat("pcm16", _rate(obj.get("content-type")))
        app = self.audio.resolve(wire)
        headers = {
            key: _text(value)
            for key, value in obj.items()
            if key not in ("event", "content-type") and key not in self.hidden_parameters
        }
        call_id = next((headers[k] for k in self.call_id_keys if k in headers), "")
        self._in = Converter(wire, app, self.audio.quality)
        self._in_frames = FrameBuffer(app.frame_bytes, app.silence)
        self.app = app
        self.call_id = call_id
        self.wire = wire  # last: this publishes the stream to the encoding thread
        return Started(self.stream_id, call_id, app.media_format(), headers, ())

    def _audio(self, data: bytes) -> Sequence[Message]:
        converter, frames, wire = self._in, self._in_frames, self.wire
        if converter is None or frames is None or wire is None:
            return self._reject(None, "audio before websocket:connected")
        if not data or len(data) % 2:
            return self._reject(None, f"binary frame of {len(data)} bytes is not PCM16")
        if len(data) != wire.frame_bytes:
            self.irregular += 1
        if converter.identity and not len(frames) and len(data) == frames.unit:
            return (Audio(data, None, self.frames),)  # the common case: as it came
        frames.add(converter.convert(data))
        return [Audio(chunk, None, self.frames) for chunk in frames.frames()]

    def resume_at(self, frames_in: int) -> None:
        """This codec carries on a stream of which ``frames_in`` frames were received by
        another node's codec (a cluster's takeover): number on from there."""
        self.frames = frames_in

    # -- outbound ------------------------------------------------------------------------------

    def encode(self, message: Message) -> Sequence[Frame]:
        """The frames for one outbound message, after any held ones; none while held or while
        less than a frame of audio waits. Raises ``TypeError`` for a type Vonage does not carry.
        """
        if not isinstance(message, Binary | Mark | Clear):
            raise TypeError(f"{type(message).__name__} is not carried by the vonage provider")
        wire = self.wire  # read once: the reader thread may publish it at any moment
        if wire is None:
            self._hold(message)
            return ()
        frames: list[Frame] = self._drain(wire) if self._held else []
        frames.extend(self._frames(message, wire))
        return self._paced(frames, clear=isinstance(message, Clear))

    def flush(self) -> Sequence[Frame]:
        """Held messages once started; an idle stream's remainder (see the class docstring)."""
        wire = self.wire
        if wire is None:
            return ()
        frames: list[Frame] = self._drain(wire) if self._held else []
        if self._pending and not self._wrote:
            frames.extend(self._boundary(wire))
        self._wrote = False
        return self._paced(frames, clear=False)

    def _paced(self, frames: list[Frame], *, clear: bool) -> list[Frame]:
        """``frames`` as returned to the caller: all of them, unpaced; with a pacer, none but
        a clear (which is last: what it drops of the pacer's audio was before it) and the
        marks it overtook, which Vonage answers at once."""
        pacer = self.pacer
        if pacer is None:
            return frames
        if not clear:
            pacer.push(frames)
            return []
        pacer.push(frames[:-1])
        kept, dropped = pacer.clear()
        self.cleared_frames += dropped
        return [frames[-1], *kept]

    def _frames(self, message: Message, wire: AudioFormat) -> list[Frame]:
        out, buffer = self._converter(wire)
        if isinstance(message, Binary):
            self._wrote = self._pending = True
            data = message.data
            if out.identity and not len(buffer) and len(data) == buffer.unit:
                return [data]
            buffer.add(out.convert(data))
            return list(buffer.frames())
        if isinstance(message, Mark):
            frames = self._boundary(wire)
            payload = {"action": "notify", "payload": {MARK_KEY: message.name}}
            frames.append(dumps(payload))
            return frames
        buffer.clear()
        out.reset()
        self._pending = False
        return [_CLEAR]

    def _boundary(self, wire: AudioFormat) -> list[Frame]:
        out, buffer = self._converter(wire)
        buffer.add(out.drain())
        buffer.pad(buffer.unit)
        self._pending = False
        return list(buffer.frames())

    def _converter(self, wire: AudioFormat) -> tuple[Converter, FrameBuffer]:
        if self._out is None or self._out_frames is None:
            self._out = Converter(self.audio.resolve(wire), wire, self.audio.quality)
            self._out_frames = FrameBuffer(wire.frame_bytes, wire.silence)
        return self._out, self._out_frames

    def _drain(self, wire: AudioFormat) -> list[Frame]:
        frames: list[Frame] = []
        for message in self._take_held():
            frames.extend(self._frames(message, wire))
        return frames


# -- Vonage's side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotifyOut:
    """The application sent a ``notify``: echo ``payload`` once the audio before it has played."""

    payload: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        """The mark's name, when the notify is one of :class:`VonageCodec`'s marks."""
        name = self.payload.get(MARK_KEY)
        return name if isinstance(name, str) else None


VonageEvent = MediaOut | ClearOut | NotifyOut


class VonageSocket:
    """Vonage's side of one WebSocket: the frames Vonage sends, and parsing what comes back.

    ``headers`` are the NCCO endpoint's ``headers``, flattened into ``websocket:connected``.
    """

    def __init__(self, rate: int = 16000, headers: Mapping[str, Any] | None = None) -> None:
        _rate(content_type(rate))  # checks the rate
        self.rate = rate
        self.headers = dict(headers or {})
        self.frame_bytes = AudioFormat("pcm16", rate).frame_bytes

    def connected(self) -> str:
        """The first frame of every stream."""
        return json.dumps(
            {
                "event": "websocket:connected",
                "content-type": content_type(self.rate),
                **self.headers,
            }
        )

    def audio(self, pcm: bytes) -> bytes:
        """One 20 ms frame of the call's audio; raises ``ValueError`` for any other size."""
        if len(pcm) != self.frame_bytes:
            raise ValueError(f"a Vonage frame at {self.rate} Hz is {self.frame_bytes} bytes")
        return bytes(pcm)

    def dtmf(self, digit: str, duration_ms: int = 260) -> str:
        """A key pressed on a phone of the call."""
        return json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": duration_ms})

    def cleared(self) -> str:
        """The acknowledgement of the application's ``clear``."""
        return json.dumps({"event": "websocket:cleared"})

    def notify(self, payload: Mapping[str, Any]) -> str:
        """The audio queued before the application's ``notify`` has played: its payload back."""
        return json.dumps({"event": "websocket:notify", "payload": dict(payload)})

    def parse(self, frame: Frame) -> VonageEvent:
        """What one frame from the application asks for.

        Raises ``ValueError`` naming the problem: a binary frame that is not exactly 20 ms,
        text that is not a JSON object, an unknown action, a notify without an object payload.
        """
        if isinstance(frame, bytes):
            return MediaOut(self.audio(frame))
        obj = app_object(frame)
        action = obj.get("action")
        if action == "clear":
            return ClearOut()
        if action == "notify":
            payload = obj.get("payload")
            if not isinstance(payload, dict):
                raise ValueError("notify frame: payload is missing or not an object")
            return NotifyOut(payload)
        raise ValueError(f"unknown action {_label(action)} (expected clear or notify)")
