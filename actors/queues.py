"""The two queues a session owns: its inbox (inbound messages) and its outbox (outbound frames).

Both belong to the session record, not to a connector, so they outlive a connector that crashes
and is restarted: nothing already read off the wire, and nothing written but not yet sent, is
lost in a restart. Both are bounded; an overflow drops the *oldest* entry (for live audio, old
frames are the least valuable) and counts it, so that ``delivered + dropped == received`` holds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from .messages import Close, Message

__all__ = ["Empty", "Inbox", "Outbox"]

T = TypeVar("T")


class Empty(Exception):
    """``Inbox.get`` timed out (internal; the facade turns it into ``ReadTimeout``)."""


class _BoundedQueue(Generic[T]):
    __slots__ = ("_cond", "_items", "dropped", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def _append(self, item: T) -> None:
        # Caller holds the lock.
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)


class Inbox(_BoundedQueue[Message]):
    """Inbound messages of one session, read by any number of application threads.

    ``close()`` marks the end of the stream: readers get what is queued, then ``None``.
    A ``Close`` message is never dropped on overflow (the reader must learn why it ended).
    """

    __slots__ = ("_closed",)

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, message: Message) -> None:
        with self._cond:
            if self._closed:
                self.dropped += 1
                return
            items = self._items
            if len(items) >= self.maxsize:
                self.dropped += 1
                if not isinstance(items[0], Close):
                    items.popleft()
                elif len(items) > 1:
                    del items[1]  # keep the Close; drop the oldest message behind it
                else:
                    return  # only the Close fits: the newcomer is the one dropped
            items.append(message)
            self._cond.notify()

    def close(self, final: Close | None = None) -> None:
        """End the stream, optionally with a last ``Close`` the readers must see."""
        with self._cond:
            if self._closed:
                return
            if final is not None:
                self._items.append(final)  # never dropped: it may exceed maxsize by one
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message; ``None`` once closed and drained. Raise ``Empty`` on timeout."""
        with self._cond:
            if not self._items and not self._closed:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not self._items and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise Empty
                    self._cond.wait(remaining)
            if self._items:
                return self._items.popleft()
            return None

    def discard(self) -> int:
        """Drop everything queued (the application ended the session); return how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._closed = True
            self._cond.notify_all()
            return n


class Outbox(_BoundedQueue[T]):
    """Outbound frames of one session, in the order written, drained by one writer thread.

    ``take`` hands the writer everything queued in one go (one lock round-trip per batch, not
    per frame); what the writer could not send goes back to the front with ``requeue_front``.
    """

    __slots__ = ("_woken",)

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._woken = False

    def put_many(self, items: Iterable[T]) -> None:
        with self._cond:
            for item in items:
                self._append(item)
            self._cond.notify()

    def take(self, timeout: float | None) -> list[T]:
        """All queued frames, waiting up to ``timeout`` for one; ``[]`` on timeout or ``wake``."""
        with self._cond:
            if not self._items and not self._woken:
                self._cond.wait(timeout)
            self._woken = False
            items = list(self._items)
            self._items.clear()
            return items

    def requeue_front(self, items: list[T]) -> None:
        """Put back frames that were taken but not sent, ahead of everything newer."""
        if not items:
            return
        with self._cond:
            self._items.extendleft(reversed(items))
            while len(self._items) > self.maxsize:
                self._items.popleft()
                self.dropped += 1

    def wake(self) -> None:
        """Wake a writer blocked in ``take`` (it is stopping, or has a ping to send)."""
        with self._cond:
            # Remembered, so that a wake arriving just before the writer waits is not lost.
            self._woken = True
            self._cond.notify_all()
