"""Real-time pacing of outbound audio frames, sans-I/O: time in, frames out.

A provider that plays what it receives from a buffer of its own, and drops what overflows it
(Vonage: "only 1024 messages", about 20 s), must not be sent audio much faster than real time.
The application may still write faster than real time (a whole prompt at once): a
:class:`Pacer` takes every outbound frame in order and lets audio go at most ``lead_frames``
ahead of the far end's playout, which it models as a clock: each audio frame released plays
``frame_s`` after the one before it, starting no earlier than its release. What is past the lead
waits in the pacer's backlog until time has moved on (its owner calls :meth:`Pacer.release`
with the time on every write and on a timer tick).

Text frames (a Vonage ``notify``) take their place in the same queue: they go out right after
the audio before them, never ahead of it, so a mark still comes back once that audio has
played. :meth:`Pacer.clear` drops the backlog's audio (the far end's buffer is being cleared
too) and hands back its text frames, to be sent at once.

There are no clocks, sockets or threads here; the owner serialises the calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from . import Frame

__all__ = ["Pacer"]


class Pacer:
    """One stream's outbound frames, released at most ``lead_frames`` ahead of real time.

    ``frame_s`` is the play time of one audio (``bytes``) frame; ``str`` frames take no time.
    Times are seconds on any monotonic clock, the same for every call.
    """

    __slots__ = ("_audio", "_frame_s", "_lead_s", "_queue", "_until", "dropped", "lead_frames")

    def __init__(self, frame_s: float, lead_frames: int) -> None:
        if frame_s <= 0:
            raise ValueError(f"frame_s must be > 0, not {frame_s!r}")
        if lead_frames < 1:
            raise ValueError(f"lead_frames must be >= 1, not {lead_frames!r}")
        self._frame_s = frame_s
        self.lead_frames = lead_frames
        # Half a frame of slack: a release that lands a hair early still lets the frame go.
        self._lead_s = (lead_frames - 0.5) * frame_s
        self._queue: deque[Frame] = deque()
        self._audio = 0  # audio frames in the queue
        self._until = float("-inf")  # when the far end will have played what was released
        #: Audio frames dropped from the backlog by :meth:`drop_oldest` (overflow, counted).
        self.dropped = 0

    @property
    def backlog(self) -> int:
        """Frames waiting (audio and text)."""
        return len(self._queue)

    @property
    def backlog_audio(self) -> int:
        """Audio frames waiting."""
        return self._audio

    def ahead_s(self, now: float) -> float:
        """How much released audio the far end has yet to play at ``now`` (seconds)."""
        return max(0.0, self._until - now)

    def push(self, frames: Sequence[Frame]) -> None:
        """Queue ``frames`` behind the backlog, in order (:meth:`release` lets them go)."""
        queue = self._queue
        for frame in frames:
            queue.append(frame)
            if isinstance(frame, bytes):
                self._audio += 1

    def release(self, now: float) -> list[Frame]:
        """The frames that may go at ``now``: audio up to the lead, and the text between it."""
        queue = self._queue
        if not queue:
            return []
        until = max(self._until, now)
        limit = now + self._lead_s
        out: list[Frame] = []
        while queue:
            frame = queue[0]
            if isinstance(frame, bytes):
                if until > limit:
                    break
                until += self._frame_s
                self._audio -= 1
            out.append(queue.popleft())
        self._until = until
        return out

    def clear(self) -> tuple[list[Frame], int]:
        """Drop the backlog's audio (the far end's buffer is cleared with it) and restart the
        playout clock at the next release: the text frames that waited (to send now, in
        order), and how many audio frames were dropped."""
        kept: list[Frame] = [frame for frame in self._queue if not isinstance(frame, bytes)]
        dropped = self._audio
        self._queue.clear()
        self._audio = 0
        self._until = float("-inf")
        return kept, dropped

    def drop_oldest(self, n: int) -> int:
        """Drop up to ``n`` of the oldest audio frames waiting (an overflow); how many were.
        Text frames stay."""
        if n <= 0 or not self._audio:
            return 0
        kept: deque[Frame] = deque()
        dropped = 0
        for frame in self._queue:
            if dropped < n and isinstance(frame, bytes):
                dropped += 1
            else:
                kept.append(frame)
        self._queue = kept
        self._audio -= dropped
        self.dropped += dropped
        return dropped

    def discard(self) -> int:
        """Drop everything waiting (the stream is over); how many frames that was."""
        n = len(self._queue)
        self._queue.clear()
        self._audio = 0
        return n
