"""What both emulated phones stand on (:class:`~actors.emulator.media.MediaDialer`, mu-law in
Twilio's and Telnyx's and Plivo's frames; :class:`~actors.emulator.pcm_phone.PcmDialer`,
PCM16 for Vonage and Exotel): one asyncio loop on one thread running every call as a task,
with a record of the latest calls' media (:class:`PhoneLoop`); the phone's websocket to a
stream URL (:func:`dial_stream`); the 20 ms clock a call plays to (:func:`play_clock`); and
the playout queue's draining (:func:`play_out`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ..gateway._ws import WIRE_LOGGER, ClientConnection, ConnectionClosed, connect
from ..wire.constants import CloseCode
from .loop_thread import LoopThread

__all__ = ["FRAME_MS", "PhoneLoop", "dial_stream", "play_clock", "play_out"]

FRAME_MS = 20
_KEPT = 1_000  # calls whose media (and recording) is remembered
_LATE_S = 0.2  # behind the clock by more than this: skip ahead instead of bursting


class _LiveCall(Protocol):
    hang_up: asyncio.Event  # set: the phone ends the call


CallT = TypeVar("CallT", bound=_LiveCall)
MediaT = TypeVar("MediaT")
MarkT = TypeVar("MarkT")


class PhoneLoop(LoopThread, Generic[CallT, MediaT]):
    """Runs a phone's calls on one event loop thread (``{name}-media``): ``start()`` starts it,
    ``stop()`` hangs every call up and joins it. A subclass keeps its live calls in
    ``_calls`` (loop thread only), records each call's media with :meth:`_keep` and starts
    its task with :meth:`_spawn`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name}-media", f"{name} media loop")
        self.name = name
        self._calls: dict[str, CallT] = {}
        self._media: OrderedDict[str, MediaT] = OrderedDict()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def media(self, call_id: str) -> MediaT | None:
        with self._lock:
            return self._media.get(call_id)

    def _keep(self, call_id: str, media: MediaT) -> None:
        with self._lock:
            self._media[call_id] = media
            while len(self._media) > _KEPT:  # a long-running emulator forgets old calls
                self._media.popitem(last=False)

    # -- the loop -------------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        for call in list(self._calls.values()):
            call.hang_up.set()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, call: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``call()`` as a task of the loop (on the loop thread), awaited by ``stop``."""
        task = asyncio.get_running_loop().create_task(call())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def dial_stream(url: str, headers: Mapping[str, str]) -> connect:
    """The phone's websocket to a stream URL (``async with``), uncompressed as the providers'
    media streams are."""
    return connect(
        url,
        additional_headers=headers,
        open_timeout=5.0,
        close_timeout=1.0,
        logger=WIRE_LOGGER,
        compression=None,
    )


async def play_clock(
    hang_up: asyncio.Event,
    ws: ClientConnection,
    receiver: asyncio.Task[None],
    max_call_s: float,
    *,
    step: Callable[[int, int], Awaitable[None]],
    ending: Callable[[], Sequence[str | bytes]],
) -> None:
    """A call's life once its stream is open, on a 20 ms clock: ``step(n, elapsed_ms)`` every
    :data:`FRAME_MS` (the n-th step, from 0, and the milliseconds since the clock started; a
    loop starved of CPU for more than 0.2 s skips the clock ahead rather than burst to catch
    up), until the ``receiver`` task ends (the peer closed). Hung up, or past ``max_call_s``,
    the phone ends it: it sends the frames ``ending()`` gives and closes. A connection that
    closes meanwhile ends it quietly."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + max_call_s
    tick = 0
    try:
        while not receiver.done():
            now = loop.time()
            if hang_up.is_set() or now >= deadline:
                for frame in ending():
                    await ws.send(frame)
                await ws.close(CloseCode.NORMAL_CLOSURE, "call ended")
                break
            await step(tick, int((now - started) * 1000))
            tick += 1
            next_tick = started + tick * FRAME_MS / 1000
            if loop.time() - next_tick > _LATE_S:  # starved of CPU: do not burst to catch up
                started = loop.time() - tick * FRAME_MS / 1000
                next_tick = loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                    await hang_up.wait()
    except ConnectionClosed:
        pass


def play_out(queue: deque[bytes | MarkT], budget: int) -> tuple[bytearray, list[MarkT]]:
    """Play up to ``budget`` bytes from the front of a playout queue (audio with marks between
    it): the audio played, and the marks reached on the way (everything queued before each
    has now played)."""
    played = bytearray()
    marks: list[MarkT] = []
    while queue and (budget > 0 or not isinstance(queue[0], bytes)):
        item = queue[0]
        if not isinstance(item, bytes):
            marks.append(item)
            queue.popleft()
            continue
        take = item[:budget]
        played += take
        budget -= len(take)
        if len(take) == len(item):
            queue.popleft()
        else:
            queue[0] = item[len(take) :]
    return played, marks
