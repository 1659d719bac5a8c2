"""The emulated phone of providers whose wire audio is 16-bit PCM (Vonage, Exotel).

Each call dials its stream URL and speaks the provider's side of the wire through a
:class:`PhoneWire` (the provider's own framing: :mod:`actors.emulator.vonage`,
:mod:`actors.emulator.exotel`, built on the codecs' provider sides). Every 20 ms the phone:

- plays up to 20 ms of what it received, at real time (recorded as PCM16 at the wire rate);
  a mark (Vonage's ``notify``, Exotel's ``mark``) is answered once the audio before it has
  played; a ``clear`` empties the queue (and is acknowledged where the provider does so);
- sends 20 ms of its own: in ``echo`` mode what it has just played, in ``tone`` mode a tone
  (``emulator.tone_hz``), in ``silence`` mode zeros; the wire may gather several into one
  frame (Exotel sends ~100 ms per ``media``);
- sends the DTMF digits pressed (:meth:`PcmDialer.send_dtmf`).

What arrives faster than real time waits in the queue, at most ``max_queued_ms`` of it (Vonage
buffers 1024 frames, about 20 s); past that the newest audio is dropped and counted in
:attr:`PcmCallMedia.overflowed`. Hanging up (:meth:`PcmDialer.hang_up`, ``max_call_s``) sends
the wire's closing frames (Exotel's ``stop``) and closes.

``reflect`` (for benchmarks) is none of that: the audio of every ``media`` frame goes straight
back in the wire's own framing (Vonage's 20 ms frames; Exotel's 100 ms chunks, so up to 80 ms
of it waits for the rest of its chunk), every mark is answered at once; no clock, nothing of
its own.

All calls run as tasks on one asyncio loop on one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..audio import tone
from ..codecs import Frame
from ..codecs.twilio import ClearOut, MediaOut
from ..config import EmulatorConfig
from ..gateway._ws import ClientConnection, ConnectionClosed, InvalidHandshake
from .media import reflect_until_hung_up
from .phone_loop import FRAME_MS, PhoneLoop, dial_stream, play_clock, play_out

__all__ = ["PcmCallMedia", "PcmDialer", "PhoneWire"]

logger = logging.getLogger(__name__)


class PhoneWire(Protocol):
    """One call's provider side of the wire (a new one per call)."""

    rate: int  # the wire's sample rate

    def opening(self) -> list[Frame]:
        """The frames a stream starts with (Vonage's ``websocket:connected``; Exotel's
        ``connected`` and ``start``)."""
        ...

    def audio(self, pcm: bytes, timestamp_ms: int) -> list[Frame]:
        """Frames for the next 20 ms of the phone's audio (none while a chunk gathers)."""
        ...

    def parse(self, frame: Frame) -> object:
        """What a frame from the application asks: ``MediaOut``, ``ClearOut``, or a mark
        (anything else); ``ValueError`` naming what is wrong."""
        ...

    def mark_name(self, event: object) -> str:
        """The name of a mark event, for the record."""
        ...

    def played(self, event: object) -> Frame:
        """The answer once the audio before the mark ``event`` has played."""
        ...

    def cleared(self) -> list[Frame]:
        """The frames that acknowledge a clear (Vonage's ``websocket:cleared``)."""
        ...

    def dtmf(self, digit: str) -> Frame: ...

    def closing(self) -> list[Frame]:
        """The frames sent before the phone closes the stream (Exotel's ``stop``)."""
        ...


@dataclass(slots=True)
class PcmCallMedia:
    """One call's media, as the phone saw it (read it after ``ended`` is set)."""

    call_id: str
    mode: str = "echo"
    frames_sent: int = 0  # wire frames
    frames_received: int = 0  # media frames from the application
    received_sizes: Counter[int] = field(default_factory=Counter)  # bytes of audio per frame
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    dtmf_sent: int = 0
    overflowed: int = 0  # bytes of received audio dropped: the playout queue was full
    peak_queued_ms: int = 0  # the most audio that waited in the playout queue (sent ahead)
    first_audio_at: float | None = None  # time.monotonic() of the first media frame received
    last_audio_at: float | None = None  # ... and of the last one
    recording: bytearray = field(default_factory=bytearray)  # PCM16 as played
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    started: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    on_end: Callable[[], None] | None = None  # runs on the media loop when the stream ends
    hung_up: bool = False  # the phone ended the stream (a hang-up, max_call_s)


class _Call:
    def __init__(self, media: PcmCallMedia, wire: PhoneWire, own: bytes, frame: int) -> None:
        self.media = media
        self.wire = wire
        self.own = own  # what it plays in tone/silence mode, looped
        self.position = 0
        self.frame = frame  # bytes in 20 ms
        self.queue: deque[bytes | object] = deque()  # audio to play, and marks between it
        self.queued = 0  # bytes of audio in the queue
        self.hang_up = asyncio.Event()
        self.dtmf: deque[str] = deque()
        self.reflecting = bytearray()  # reflect: received audio short of a 20 ms frame
        self.reflected_ms = 0  # reflect: the timestamp of the next frame sent back

    def next_own(self) -> bytes:
        if not self.own:
            return bytes(self.frame)
        if self.position >= len(self.own):
            self.position = 0
        chunk = self.own[self.position : self.position + self.frame]
        self.position += self.frame
        return chunk.ljust(self.frame, b"\0")


class PcmDialer(PhoneLoop[_Call, PcmCallMedia]):
    """Runs the media of one provider's emulated calls on one event loop thread."""

    def __init__(self, config: EmulatorConfig, *, name: str, max_queued_ms: int) -> None:
        super().__init__(name)
        self.config = config
        self.max_queued_ms = max_queued_ms

    def dial(
        self,
        call_id: str,
        url: str,
        wire: PhoneWire,
        *,
        to: str,
        headers: Mapping[str, str] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> PcmCallMedia:
        """Dial ``url`` for call ``call_id`` and stream until hung up; then ``on_end()``."""
        media = PcmCallMedia(call_id=call_id, mode=self.config.media_for(to), on_end=on_end)
        self._keep(call_id, media)
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"the {self.name} media dialer is not running")
        call = functools.partial(self._call, media, url, wire, dict(headers or {}))
        loop.call_soon_threadsafe(self._spawn, call)
        return media

    def hang_up(self, call_id: str) -> None:
        """End a call's stream (a call already over is left alone)."""
        self._soon(lambda: self._calls[call_id].hang_up.set() if call_id in self._calls else None)

    def send_dtmf(self, call_id: str, digits: str) -> None:
        """Press keys on the phone of call ``call_id``."""
        self._soon(
            lambda: self._calls[call_id].dtmf.extend(digits) if call_id in self._calls else None
        )

    async def _call(
        self, media: PcmCallMedia, url: str, wire: PhoneWire, headers: dict[str, str]
    ) -> None:
        frame = wire.rate * 2 * FRAME_MS // 1000
        own = tone(self.config.tone_hz, 1.0, wire.rate, 0.5) if media.mode == "tone" else b""
        call = _Call(media, wire, own, frame)
        self._calls[media.call_id] = call
        try:
            async with dial_stream(url, headers) as ws:
                try:
                    for opening in wire.opening():
                        await ws.send(opening)
                except ConnectionClosed:  # refused at once (the gateway closed it): say how
                    await ws.wait_closed()
                else:
                    media.started.set()
                    await self._stream(call, ws)
                media.close_code = ws.close_code
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            media.errors.append(f"dialling the stream failed: {exc}")
            logger.warning("%s emulator: call %s could not dial: %s", self.name, media.call_id, exc)
        except Exception as exc:
            media.errors.append(f"{type(exc).__name__}: {exc}")
            logger.exception("%s emulator: call %s failed", self.name, media.call_id)
        finally:
            self._calls.pop(media.call_id, None)
            if media.on_end is not None:
                try:
                    media.on_end()
                except Exception:
                    logger.exception(
                        "%s emulator: call %s: end callback failed", self.name, media.call_id
                    )
            media.ended.set()

    async def _stream(self, call: _Call, ws: ClientConnection) -> None:
        receiver = asyncio.create_task(self._receive(call, ws))
        if call.media.mode == "reflect":
            limit, last = self.config.max_call_s, call.wire.closing
            call.media.hung_up = await reflect_until_hung_up(
                call.hang_up, ws, receiver, limit, last
            )
            return

        def ending() -> list[Frame]:
            call.media.hung_up = True
            return call.wire.closing()

        async def step(tick: int, _: int) -> None:
            await self._tick(call, ws, tick * FRAME_MS)

        try:
            limit = self.config.max_call_s
            await play_clock(call.hang_up, ws, receiver, limit, step=step, ending=ending)
        finally:
            receiver.cancel()
            # A stream closed with an error code (a gateway's refusal) ends the call: said
            # by close_code, not a failure of the phone.
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await receiver

    async def _tick(self, call: _Call, ws: ClientConnection, timestamp: int) -> None:
        """One 20 ms step: play up to 20 ms of the queue, then send 20 ms of our own."""
        media = call.media
        played, marks = play_out(call.queue, call.frame)
        call.queued -= len(played)
        media.recording += played
        if media.mode == "echo":
            outgoing = bytes(played).ljust(call.frame, b"\0") if played else b""
        else:
            outgoing = call.next_own()
        if outgoing:
            for frame in call.wire.audio(outgoing, timestamp):
                await ws.send(frame)
                media.frames_sent += 1
        for event in marks:
            await ws.send(call.wire.played(event))
            media.marks_echoed.append(call.wire.mark_name(event))
        while call.dtmf:
            await ws.send(call.wire.dtmf(call.dtmf.popleft()))
            media.dtmf_sent += 1

    async def _receive(self, call: _Call, ws: ClientConnection) -> None:
        media, wire, queue = call.media, call.wire, call.queue
        limit = self.max_queued_ms * call.frame // FRAME_MS
        reflect = media.mode == "reflect"
        async for frame in ws:
            try:
                event = wire.parse(frame)
            except ValueError as exc:
                media.errors.append(str(exc))
                logger.warning("%s emulator: call %s: %s", self.name, media.call_id, exc)
                continue
            if reflect and not isinstance(event, ClearOut):
                await self._reflect(call, ws, event)
            elif isinstance(event, MediaOut):
                media.last_audio_at = time.monotonic()
                if media.first_audio_at is None:
                    media.first_audio_at = media.last_audio_at
                media.frames_received += 1
                media.received_sizes[len(event.payload)] += 1
                room = limit - call.queued
                if len(event.payload) > room:
                    media.overflowed += len(event.payload) - max(room, 0)
                payload = event.payload[: max(room, 0)]
                if payload:
                    queue.append(payload)
                    call.queued += len(payload)
                    queued_ms = call.queued * FRAME_MS // call.frame
                    media.peak_queued_ms = max(media.peak_queued_ms, queued_ms)
            elif isinstance(event, ClearOut):
                media.clears += 1
                pending = [item for item in queue if not isinstance(item, bytes)]
                queue.clear()
                call.queued = 0
                for ack in wire.cleared():
                    await ws.send(ack)
                for mark in pending:  # the marks a clear dropped are answered, as Twilio does
                    await ws.send(wire.played(mark))
                    media.marks_echoed.append(wire.mark_name(mark))
            else:
                queue.append(event)

    async def _reflect(self, call: _Call, ws: ClientConnection, event: object) -> None:
        """``reflect``: a media frame's audio straight back, 20 ms at a time through the wire
        (which frames it as the provider does); a mark answered at once."""
        media, wire = call.media, call.wire
        if not isinstance(event, MediaOut):
            await ws.send(wire.played(event))
            media.marks_echoed.append(wire.mark_name(event))
            return
        media.frames_received += 1
        media.received_sizes[len(event.payload)] += 1
        held = call.reflecting
        held += event.payload
        whole = len(held) - len(held) % call.frame
        for start in range(0, whole, call.frame):
            for frame in wire.audio(bytes(held[start : start + call.frame]), call.reflected_ms):
                await ws.send(frame)
                media.frames_sent += 1
            call.reflected_ms += FRAME_MS
        del held[:whole]
