"""The emulator's media side: each call dials its ``<Stream>`` URL and speaks Media Streams.

What a call does, as Twilio does it:

- dials the stream URL (signing the upgrade with ``X-Twilio-Signature`` under the account's
  auth token), sends ``connected`` then ``start`` with the TwiML's custom parameters and
  ``audio/x-mulaw`` 8000 Hz mono;
- every 20 ms sends one ``media`` frame of its source (a tone, a WAV file, silence), or in
  ``echo`` mode the audio it has just played;
- plays what it receives at real time, 160 bytes per 20 ms: the played audio is recorded, and a
  ``mark`` is echoed once the audio written before it has played; ``clear`` empties the queue
  and echoes the marks that were pending in it;
- on hang-up (the REST API, ``max_call_s``, or the peer closing) sends ``stop`` and closes.

``reflect`` (for benchmarks) is none of that: every ``media`` frame is sent straight back and
every ``mark`` answered at once, with no clock and nothing of its own.

All calls run as tasks on one asyncio loop on one thread, so hundreds of calls cost one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..audio import pcm16_to_ulaw, read_wav, resample, tone
from ..codecs.twilio import ClearOut, MarkOut, MediaOut, TwilioStream, new_sid
from ..config import EmulatorConfig
from ..gateway._ws import ClientConnection, ConnectionClosed, InvalidHandshake
from ..signing import twilio_signature
from ..wire.constants import CloseCode
from .phone_loop import PhoneLoop, dial_stream, play_clock, play_out
from .phones import DtmfIn, PhoneStream, TwilioPhone

__all__ = ["CallMedia", "MediaDialer", "reflect_until_hung_up"]

logger = logging.getLogger(__name__)

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
_SILENCE = b"\xff" * FRAME_BYTES


@dataclass(slots=True)
class CallMedia:
    """One call's media, as the emulator saw it (read it after ``ended`` is set)."""

    call_sid: str
    stream_sid: str = ""
    mode: str = "echo"
    frames_sent: int = 0
    frames_received: int = 0
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    dtmf_sent: int = 0
    recording: bytearray = field(default_factory=bytearray)  # mu-law as played
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    answered: bool = False  # picked up (else it rang out, or was hung up while ringing)
    started: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    on_end: Callable[[], None] | None = None  # runs on the media loop when the stream ends
    on_answer: Callable[[], None] | None = None  # runs on the media loop when picked up
    ring_timeout_s: float | None = None  # the call's Timeout: unanswered by then, it rings out
    answer_after_s: float | None = None  # how long it rings (None: emulator.answer_after_s)
    on_start: Callable[[], None] | None = None  # runs on the media loop once `start` is sent
    hung_up: bool = False  # the emulator ended the stream (a hang-up, max_call_s), not the peer
    dtmf_received: list[str] = field(default_factory=list)  # keys the application sent


class _Call:
    def __init__(self, media: CallMedia, stream: PhoneStream, source: _Source) -> None:
        self.media = media
        self.stream = stream
        self.source = source
        self.queue: deque[bytes | str] = deque()  # audio to play, and mark names between it
        self.hang_up = asyncio.Event()
        self.dtmf: deque[str] = deque()


class _Source:
    """What a call sends every 20 ms: a looped buffer, a once-through buffer, or nothing."""

    def __init__(self, audio: bytes, *, loop: bool) -> None:
        self.audio = audio
        self.loop = loop
        self.position = 0

    def next_frame(self) -> bytes | None:
        if not self.audio:
            return None
        if self.position >= len(self.audio):
            if not self.loop:
                return _SILENCE
            self.position = 0
        frame = self.audio[self.position : self.position + FRAME_BYTES]
        self.position += FRAME_BYTES
        return frame.ljust(FRAME_BYTES, b"\xff")


class MediaDialer(PhoneLoop[_Call, CallMedia]):
    """Runs the media of emulated calls on one event loop thread (``start()`` starts it,
    ``stop()`` hangs every call up and joins it)."""

    def __init__(self, config: EmulatorConfig, accounts: Mapping[str, str]) -> None:
        super().__init__("emulator")
        self.config = config
        self._accounts = dict(accounts)
        self._early: set[str] = set()  # hung up before their task started (loop thread only)
        self._tone = pcm16_to_ulaw(tone(config.tone_hz, 1.0, 8000, 0.5))  # whole cycles: loops
        self._wav: bytes | None = None

    # -- from any thread ------------------------------------------------------------------------

    def dial(
        self,
        *,
        call_sid: str,
        account_sid: str,
        to: str,
        url: str,
        parameters: Mapping[str, str],
        on_end: Callable[[], None] | None = None,
        ring_timeout_s: float | None = None,
        on_answer: Callable[[], None] | None = None,
        answer_after_s: float | None = None,
        on_start: Callable[[], None] | None = None,
        phone: PhoneStream | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CallMedia:
        """Start a call's media: ring ``emulator.answer_after_s`` (giving up, unanswered,
        after ``ring_timeout_s``), then ``on_answer()``, dial ``url`` and stream until hung
        up; then ``on_end()``. ``phone`` speaks another provider's frames (default: Twilio's,
        signed with ``X-Twilio-Signature``), dialling with ``headers``."""
        mode = self.config.media_for(to)
        media = CallMedia(call_sid=call_sid, mode=mode, on_end=on_end)
        media.ring_timeout_s = ring_timeout_s
        media.on_answer = on_answer
        media.answer_after_s = answer_after_s
        media.on_start = on_start
        self._keep(call_sid, media)
        loop = self._loop
        if loop is None:
            raise RuntimeError("the media dialer is not running")
        if phone is None:
            phone = TwilioPhone(
                TwilioStream(new_sid("MZ"), call_sid, account_sid, custom_parameters=parameters)
            )
            headers = {"X-Twilio-Signature": twilio_signature(self._accounts[account_sid], url)}
        call = functools.partial(self._call, media, phone, url, dict(headers or {}))
        loop.call_soon_threadsafe(self._spawn, call)
        return media

    def hang_up(self, call_sid: str) -> None:
        """End a call's media: ``stop``, then close. A call already over is left alone."""
        self._soon(lambda: self._hang_up(call_sid))

    def send_dtmf(self, call_sid: str, digits: str) -> None:
        """Press keys on the phone: each digit becomes a ``dtmf`` event."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._queue_dtmf, call_sid, digits)

    # -- the loop -------------------------------------------------------------------------------

    def _hang_up(self, call_sid: str) -> None:
        call = self._calls.get(call_sid)
        if call is not None:
            call.hang_up.set()
            return
        media = self.media(call_sid)
        if media is not None and not media.ended.is_set():
            self._early.add(call_sid)  # dialled, its task not yet running: it ends on start

    def _queue_dtmf(self, call_sid: str, digits: str) -> None:
        call = self._calls.get(call_sid)
        if call is not None:
            call.dtmf.extend(digits)

    def _source(self, mode: str) -> _Source:
        if mode == "tone":
            return _Source(self._tone, loop=True)
        if mode == "silence":
            return _Source(_SILENCE, loop=True)
        if mode == "wav":
            if self._wav is None:
                if self.config.wav is None:
                    raise ValueError("emulator.media is wav, but emulator.wav names no file")
                pcm, rate = read_wav(self.config.wav)
                self._wav = pcm16_to_ulaw(resample(pcm, rate, 8000))
            return _Source(self._wav, loop=False)
        return _Source(b"", loop=False)  # echo: what it sends is what it played

    async def _call(
        self, media: CallMedia, stream: PhoneStream, url: str, headers: dict[str, str]
    ) -> None:
        media.stream_sid = stream.stream_sid
        call = _Call(media, stream, self._source(media.mode))
        self._calls[media.call_sid] = call
        if media.call_sid in self._early:
            self._early.discard(media.call_sid)
            call.hang_up.set()
        try:
            if not await self._ring(call):
                return
            async with dial_stream(url, headers) as ws:
                for frame in stream.opening():
                    await ws.send(frame)
                media.started.set()
                if media.on_start is not None:
                    media.on_start()
                await self._stream(call, ws)
                media.close_code = ws.close_code
                media.close_reason = ws.close_reason or ""
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            media.errors.append(f"dialling the stream failed: {exc}")
            logger.warning("emulator: call %s could not dial its stream: %s", media.call_sid, exc)
        except Exception as exc:
            media.errors.append(f"{type(exc).__name__}: {exc}")
            logger.exception("emulator: call %s failed", media.call_sid)
        finally:
            self._calls.pop(media.call_sid, None)
            if media.on_end is not None:
                try:
                    media.on_end()
                except Exception:
                    logger.exception("emulator: call %s: end callback failed", media.call_sid)
            media.ended.set()
            logger.info(
                "emulator: call %s ended: %d frames sent, %d received, %d marks echoed",
                media.call_sid,
                media.frames_sent,
                media.frames_received,
                len(media.marks_echoed),
            )

    async def _ring(self, call: _Call) -> bool:
        """Ring until answered (``answer_after_s``): False if the call rang out (its
        ``Timeout`` passed first) or was hung up meanwhile."""
        media = call.media
        ring_s = media.answer_after_s
        if ring_s is None:
            ring_s = self.config.answer_after_s
        limit = media.ring_timeout_s
        if ring_s > 0:
            wait = ring_s if limit is None else min(ring_s, limit)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await call.hang_up.wait()
            if call.hang_up.is_set() or (limit is not None and ring_s > limit):
                logger.info("emulator: call %s was not answered", media.call_sid)
                return False
        media.answered = True
        if media.on_answer is not None:
            media.on_answer()
        return True

    async def _stream(self, call: _Call, ws: ClientConnection) -> None:
        receiver = asyncio.create_task(self._receive(call, ws))
        if call.media.mode == "reflect":
            await self._reflect_until_hung_up(call, ws, receiver)
            return

        def ending() -> list[str]:
            call.media.hung_up = True
            return _stop_frames(call)

        async def step(_: int, elapsed_ms: int) -> None:
            await self._tick(call, ws, elapsed_ms)

        try:
            limit = self.config.max_call_s
            await play_clock(call.hang_up, ws, receiver, limit, step=step, ending=ending)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    async def _tick(self, call: _Call, ws: ClientConnection, timestamp: int) -> None:
        """One 20 ms step: play up to a frame of queued audio, then send one frame."""
        media = call.media
        played, marks = play_out(call.queue, FRAME_BYTES)
        media.recording += played
        outgoing = bytes(played) if media.mode == "echo" else call.source.next_frame()
        if outgoing:
            await ws.send(call.stream.media(outgoing, timestamp))
            media.frames_sent += 1
        for name in marks:
            await ws.send(call.stream.mark(name))
            media.marks_echoed.append(name)
        while call.dtmf:
            await ws.send(call.stream.dtmf(call.dtmf.popleft()))
            media.dtmf_sent += 1

    async def _reflect_until_hung_up(
        self, call: _Call, ws: ClientConnection, receiver: asyncio.Task[None]
    ) -> None:
        """``reflect``: nothing of its own, no playout clock; ``_receive`` sends back."""
        limit = self.config.max_call_s
        call.media.hung_up = await reflect_until_hung_up(
            call.hang_up, ws, receiver, limit, lambda: _stop_frames(call)
        )

    async def _receive(self, call: _Call, ws: ClientConnection) -> None:
        media, stream, queue = call.media, call.stream, call.queue
        reflect = media.mode == "reflect"
        loop = asyncio.get_running_loop()
        started = loop.time()
        async for frame in ws:
            try:
                event = stream.parse(frame)
            except ValueError as exc:
                media.errors.append(str(exc))
                logger.warning("emulator: call %s: %s", media.call_sid, exc)
                continue
            if reflect and isinstance(event, MediaOut | MarkOut):
                # Straight back, as the benchmark's peer: the transport is what is measured.
                if isinstance(event, MediaOut):
                    media.frames_received += 1
                    timestamp = int((loop.time() - started) * 1000)
                    await ws.send(stream.media(event.payload, timestamp))
                    media.frames_sent += 1
                else:
                    await ws.send(stream.mark(event.name))
                    media.marks_echoed.append(event.name)
            elif isinstance(event, MediaOut):
                media.frames_received += 1
                queue.append(event.payload)
            elif isinstance(event, MarkOut):
                queue.append(event.name)
            elif isinstance(event, DtmfIn):
                media.dtmf_received.append(event.digits)
            elif isinstance(event, ClearOut):
                media.clears += 1
                pending = [item for item in queue if isinstance(item, str)]
                queue.clear()
                for answer in stream.cleared(pending):  # Twilio returns the marks it dropped
                    await ws.send(answer)
                if stream.clear_returns_marks:
                    media.marks_echoed.extend(pending)


def _stop_frames(call: _Call) -> list[str]:
    """What the phone sends before it closes the stream: the phone's ``stop``, if it has one."""
    last = call.stream.stop()
    return [] if last is None else [last]


async def reflect_until_hung_up(
    hang_up: asyncio.Event,
    ws: ClientConnection,
    receiver: asyncio.Task[None],
    max_call_s: float,
    closing: Callable[[], Sequence[str | bytes]],
) -> bool:
    """A ``reflect`` call's life once its stream is open (any provider's phone): the
    ``receiver`` task sends every frame back, and this waits until the peer closes, the call is
    hung up, or ``max_call_s`` passes; then sends ``closing()`` and closes. True if the phone
    ended it (the receiver was still running)."""
    hung_up = asyncio.create_task(hang_up.wait())
    try:
        await asyncio.wait(
            (receiver, hung_up), timeout=max_call_s, return_when=asyncio.FIRST_COMPLETED
        )
        if receiver.done():
            return False
        with contextlib.suppress(ConnectionClosed):
            for frame in closing():
                await ws.send(frame)
            await ws.close(CloseCode.NORMAL_CLOSURE, "call ended")
        return True
    finally:
        for task in (receiver, hung_up):
            task.cancel()
        await asyncio.gather(receiver, hung_up, return_exceptions=True)
