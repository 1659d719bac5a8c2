"""A Daily session's frames, sans-I/O: between :class:`~actors.dailycall.DailyConnection` and
the session's inbox and outbox.

Daily carries audio over WebRTC through its SDK, not over a WebSocket, so the frames here are
our own, made by the connection from the SDK's callbacks and read back by it:

- inbound ``bytes``: one participant's audio, ``[n][n bytes: participant id, UTF-8][PCM16]``
  (mono, little-endian, at the session's ``sample_rate``; :func:`audio_frame` builds one);
- inbound ``str``: an event, a JSON object (:func:`event_frame`): ``started`` (the first remote
  participant is in the room), ``stopped`` (the last one left), ``mark`` (everything written
  before the mark has gone into the room);
- outbound ``bytes``: PCM16 for the virtual microphone, one frame per ``Binary`` written;
- outbound ``str``: a command, ``{"mark": name}``.

:class:`DailyCodec` turns those into messages and back: inbound audio becomes :class:`Audio`
(``track`` is the participant's id) in the application's encoding, ``Binary`` writes become
microphone frames, a ``Mark`` comes back once the audio before it has been played into the room.
As on Twilio, writes made before the call has started wait for it (``flush``).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..audio import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
from ..messages import (
    Audio,
    Binary,
    Close,
    Mark,
    MediaFormat,
    Message,
    Started,
    Stopped,
)
from . import Frame

__all__ = ["DailyCodec", "audio_frame", "event_frame"]

logger = logging.getLogger(__name__)

_LOG_FIRST: Final = 3
_LOG_EVERY: Final = 100
_PCM16: Final = frozenset({"pcm16", "audio/l16"})


def audio_frame(participant_id: str, pcm: bytes) -> bytes:
    """The inbound frame of ``pcm`` (PCM16) heard from ``participant_id``."""
    label = participant_id.encode()[:255]
    return bytes((len(label),)) + label + pcm


def event_frame(event: str, **fields: Any) -> str:
    """The inbound frame of an event (``started``, ``stopped``, ``mark``)."""
    return json.dumps({"event": event, **fields})


class DailyCodec:
    """The session side of a Daily call (a :class:`~actors.codecs.Codec`).

    ``encoding`` (``pcm16``/``audio/l16``, ``audio/x-mulaw``, ``audio/x-alaw``) and
    ``sample_rate`` are what the application writes and reads; Daily's devices work in PCM16
    at the same rate, so only G.711 is converted here (the SDK resamples). ``room`` and
    ``call_id`` (the dial-out's session id, if any) name the call in :class:`Started`, which
    also carries ``parameters``.

    Threads: ``decode`` runs on the connection's thread; ``encode`` and ``flush`` on writing
    threads, under the session's lock. They share only ``started``, set by ``decode`` with one
    assignment. ``decode`` never raises; a frame it cannot use is counted in ``malformed``.
    """

    provider = "daily"
    # Close is the connector's business (it leaves the call), so it is accepted here too.
    outbound_types: frozenset[type[Message]] = frozenset({Binary, Mark, Close})

    def __init__(
        self,
        *,
        room: str,
        call_id: str | None = None,
        encoding: str = "pcm16",
        sample_rate: int = 16000,
        parameters: Mapping[str, str] | None = None,
        max_held: int = 10_000,
        session_id: str = "-",
    ) -> None:
        if encoding not in _PCM16 and encoding not in ("audio/x-mulaw", "audio/x-alaw"):
            raise ValueError(f"unknown audio encoding {encoding!r}")
        if sample_rate <= 0 or sample_rate % 50:
            raise ValueError(f"sample_rate must be a positive multiple of 50 Hz, not {sample_rate}")
        self.room = room
        self.call_id = call_id
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.parameters = dict(parameters or {})
        self.max_held = max_held
        self.session_id = session_id
        self.started = False
        self.malformed = 0
        self.dropped_held = 0
        self._sequences: dict[str, int] = {}
        self._held: deque[Message] = deque()

    # -- inbound -------------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Sequence[Message]:
        if isinstance(frame, bytes):
            return self._audio(frame)
        try:
            event = json.loads(frame)
        except (ValueError, RecursionError):
            return self._reject("not JSON")
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "started":
            if self.started:
                return ()  # a rejoin after a restart: the application has its Started
            track = event.get("participant")
            self.started = True
            return (
                Started(
                    stream_id=self.room,
                    call_id=self.call_id or self.room,
                    media_format=MediaFormat(self.encoding, self.sample_rate, 1),
                    parameters=self.parameters,
                    tracks=(track,) if isinstance(track, str) else (),
                ),
            )
        if kind == "stopped":
            return (Stopped(),)
        if kind == "mark" and isinstance(event.get("name"), str):
            return (Mark(event["name"]),)
        return self._reject(f"unknown event {str(kind)[:32]!r}")

    def _audio(self, frame: bytes) -> Sequence[Message]:
        size = frame[0] if frame else 0
        pcm = frame[1 + size :]
        if not frame or len(frame) < 1 + size or len(pcm) % 2:
            return self._reject("truncated audio frame")
        try:
            track = frame[1 : 1 + size].decode()
        except UnicodeDecodeError:
            return self._reject("participant id is not UTF-8")
        sequence = self._sequences.get(track, 0) + 1
        self._sequences[track] = sequence
        if self.encoding == "audio/x-mulaw":
            data = pcm16_to_ulaw(pcm)
        elif self.encoding == "audio/x-alaw":
            data = pcm16_to_alaw(pcm)
        else:
            data = pcm
        return (Audio(data, None, sequence, track),)

    def _reject(self, why: str) -> Sequence[Message]:
        self.malformed += 1
        if self.malformed <= _LOG_FIRST or self.malformed % _LOG_EVERY == 0:
            logger.warning(
                "session %s: unusable frame from the Daily call (%s); %d so far",
                self.session_id,
                why,
                self.malformed,
            )
        return ()

    # -- outbound ------------------------------------------------------------------------------

    def encode(self, message: Message) -> Sequence[Frame]:
        if not self.started:
            self._hold(message)
            return ()
        if self._held:
            return [*self.flush(), *self._frames(message)]
        return self._frames(message)

    def flush(self) -> Sequence[Frame]:
        if not self.started:
            return ()
        held, self._held = list(self._held), deque()
        frames: list[Frame] = []
        for message in held:
            frames.extend(self._frames(message))
        return frames

    def _hold(self, message: Message) -> None:
        if isinstance(message, Binary):
            self._frames(message)  # refuse bad audio now, not once the call has started
        held = self._held
        if len(held) >= self.max_held:
            for i, old in enumerate(held):
                if isinstance(old, Binary):
                    del held[i]
                    self.dropped_held += 1
                    break
        held.append(message)

    def _frames(self, message: Message) -> Sequence[Frame]:
        if isinstance(message, Mark):
            return (json.dumps({"mark": message.name}),)
        if not isinstance(message, Binary):
            raise TypeError(f"{type(message).__name__} is not carried by the daily provider")
        data = message.data
        if self.encoding == "audio/x-mulaw":
            pcm = ulaw_to_pcm16(data)
        elif self.encoding == "audio/x-alaw":
            pcm = alaw_to_pcm16(data)
        elif len(data) % 2:
            raise ValueError(f"PCM16 audio needs an even number of bytes, not {len(data)}")
        else:
            pcm = data
        # One frame per write, so that the outbox can drop it whole on overflow; the writer
        # plays it into the microphone 20 ms at a time.
        return (pcm,)
