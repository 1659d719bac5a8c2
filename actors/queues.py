"""The two queues a session owns: its inbox (inbound messages) and its outbox (outbound frames).

Both belong to the session record, not to a connector, so they outlive a connector that crashes
and is restarted: nothing already read off the wire, and nothing written but not yet sent, is
lost in a restart.

Both are bounded, and only **audio** is ever dropped: on overflow the inbox drops the oldest
(or, by policy, the newest) ``Binary`` message, and the outbox the oldest audio frame (for live
audio, old frames are the least valuable). Everything else (``Text``, marks, ``Clear``,
``Started``, ``Close``...) is too small and too meaningful to lose, so it is admitted past the
bound. Every drop is counted, so that ``delivered + dropped == received`` always holds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .messages import Binary, Close, Message

__all__ = ["Empty", "Inbox", "Keep", "Outbox", "WakeChain"]

T = TypeVar("T")


class Empty(Exception):
    """``Inbox.get`` timed out (internal; the facade turns it into ``ReadTimeout``)."""


class _BoundedQueue(Generic[T]):
    __slots__ = ("_dropped", "_items", "_lock", "_maxsize")

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._dropped = 0  # written under the lock only

    def __len__(self) -> int:
        return len(self._items)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def dropped(self) -> int:
        """Items dropped on overflow so far (only ever grows)."""
        return self._dropped


def _drop_first(items: deque[Any], droppable: Callable[[Any], bool]) -> bool:
    """Remove the oldest droppable item; whether there was one. Usually the first is."""
    for i, item in enumerate(items):
        if droppable(item):
            del items[i]
            return True
    return False


def _is_audio(message: Message) -> bool:
    return isinstance(message, Binary)


class Keep:
    """An outbound frame that is never dropped on overflow (a mark, a clear, a text)."""

    __slots__ = ("frame",)

    def __init__(self, frame: str | bytes) -> None:
        self.frame = frame


def _is_droppable_frame(item: object) -> bool:
    return type(item) is not Keep


_delivering = threading.local()  # .chain: the WakeChain of the batch this thread delivers


class WakeChain:
    """Readers woken one after another, not all at once, when a batch is delivered.

    The I/O loop delivers every frame that arrived on every socket in one go. Notifying each
    inbox as it is filled woke a hundred application threads together; all of them queued for
    the GIL, and every system call one of them made (its ``send``) handed the GIL to another
    and waited to get it back. Inside :meth:`delivering`, a put into an inbox whose reader
    waits only joins the chain; after the batch the loop calls :meth:`kick`, which wakes the
    first reader, and each reader, as it wakes, kicks the next. So about two threads want the
    GIL at a time, and a reader that then computes for long delays nobody: the next one is
    woken before its reader returns to the application.

    Whoever is woken always kicks once (a reader in :meth:`Inbox.get`, the loop after each
    batch), and a kick skips inboxes whose reader has left (timed out, or served by another
    reader), so the chain never stalls with a reader waiting.
    """

    __slots__ = ("_inboxes", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: deque[Inbox] = deque()

    def delivering(self) -> _Delivering:
        """A context in which this thread's puts into waited-on inboxes join the chain."""
        return _Delivering(self)

    def defer(self, inbox: Inbox) -> None:
        """Queue ``inbox``, whose reader waits, to be woken in its turn."""
        with self._lock:
            self._inboxes.append(inbox)

    def __len__(self) -> int:
        """Inboxes waiting for their turn (some may have no reader any more)."""
        return len(self._inboxes)

    def kick(self) -> None:
        """Wake the reader of the next inbox in the chain that still has one waiting."""
        while True:
            with self._lock:
                if not self._inboxes:
                    return
                inbox = self._inboxes.popleft()
            if inbox.wake_waiting():
                return


class _Delivering:
    __slots__ = ("_chain",)

    def __init__(self, chain: WakeChain) -> None:
        self._chain = chain

    def __enter__(self) -> None:
        _delivering.chain = self._chain

    def __exit__(self, *exc: object) -> None:
        _delivering.chain = None


class Inbox(_BoundedQueue[Message]):
    """Inbound messages of one session, read by any number of application threads.

    ``close()`` marks the end of the stream: readers get what is queued, then ``None``.
    A ``Close`` message is never dropped on overflow (the reader must learn why it ended).
    """

    __slots__ = ("_chain", "_closed", "_cond", "_drop_newest", "_waiting")

    def __init__(self, maxsize: int, overflow: str = "drop_oldest") -> None:
        super().__init__(maxsize)
        self._cond = threading.Condition(self._lock)  # readers wait on it
        self._closed = False
        self._drop_newest = overflow == "drop_newest"
        self._waiting = 0  # readers inside wait(), under the lock
        self._chain: WakeChain | None = None  # the last chain a put joined: readers kick it

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, message: Message) -> None:
        with self._cond:
            if self._closed:
                self._dropped += 1
                return
            items = self._items
            if len(items) >= self._maxsize and isinstance(message, Binary):
                self._dropped += 1
                if self._drop_newest or not _drop_first(items, _is_audio):
                    return  # the newcomer is the one dropped
            items.append(message)
            if self._waiting:
                chain: WakeChain | None = getattr(_delivering, "chain", None)
                if chain is not None:
                    self._chain = chain
                    chain.defer(self)  # its reader is woken in turn (WakeChain)
                    return
                self._cond.notify()

    def wake_waiting(self) -> bool:
        """Wake one reader if one waits and there is something to read; whether it did."""
        with self._cond:
            if self._waiting and self._items:
                self._cond.notify()
                return True
            return False

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
        chain: WakeChain | None = None
        try:
            with self._cond:
                if not self._items and not self._closed:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    while not self._items and not self._closed:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise Empty
                        self._waiting += 1
                        try:
                            self._cond.wait(remaining)
                        finally:
                            self._waiting -= 1
                        chain = self._chain
                if self._items:
                    return self._items.popleft()
                return None
        finally:
            # Woken (or timed out): wake the chain's next reader, outside our lock (a kick
            # takes other inboxes' locks, whose readers may be kicking towards ours).
            if chain is not None:
                chain.kick()

    def discard(self) -> int:
        """Drop everything queued (the application ended the session); return how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._closed = True
            self._cond.notify_all()
            return n


class Outbox(_BoundedQueue[T]):
    """Outbound frames of one session, in the order written, sent by its open connection.

    One drain protocol, whatever the connection. The connection attaches a ``ready``
    callback (:meth:`attach`), which the outbox calls at once and then after every put
    (outside its lock, on the thread that put). On that call the connection takes everything
    queued (:meth:`take`: never blocks, one lock round-trip per batch, not per frame), puts
    back what it took but could not send (:meth:`requeue_front`), and detaches when it ends
    (:meth:`detach`). A WebSocket connection sends from ``ready`` itself, without blocking,
    on the thread that wrote; a Daily call's writer thread, which blocks in Daily's microphone,
    is only woken by it. The outbox outlives its connections: what one leaves, the next sends.

    Frames put with ``droppable=False`` are queued wrapped in :class:`Keep` (the connection
    unwraps them). With ``overflow="raise"`` nothing is ever dropped here: the session record
    refuses writes to a full queue instead.
    """

    __slots__ = ("_drops", "_ready")

    def __init__(self, maxsize: int, overflow: str = "drop_oldest") -> None:
        super().__init__(maxsize)
        self._drops = overflow == "drop_oldest"
        self._ready: Callable[[], None] | None = None

    @property
    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    def attach(self, ready: Callable[[], None]) -> None:
        """Make ``ready`` the callback of the connection that sends from now on (it replaces
        one that has not detached yet), and call it once for what is already queued."""
        self._ready = ready
        ready()

    def detach(self, ready: Callable[[], None]) -> None:
        """The connection that attached ``ready`` ends: no more calls (if it is still the one
        attached; a newer one stays)."""
        if self._ready == ready:
            self._ready = None

    def put_many(self, items: Iterable[T], *, droppable: bool = True) -> None:
        with self._lock:
            queue = self._items
            for item in items:
                if len(queue) >= self._maxsize and self._drops:
                    if _drop_first(queue, _is_droppable_frame):
                        self._dropped += 1
                    elif droppable:  # only frames that must stay are queued: drop the newcomer
                        self._dropped += 1
                        continue
                queue.append(item if droppable else Keep(item))  # type: ignore[arg-type]
        ready = self._ready
        if ready is not None:
            ready()

    def take(self) -> list[T]:
        """Everything queued, oldest first (``[]`` if nothing is); never blocks."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def requeue_front(self, items: list[T]) -> None:
        """Put back frames that were taken but not sent, ahead of everything newer."""
        if not items:
            return
        with self._lock:
            queue = self._items
            queue.extendleft(reversed(items))
            while self._drops and len(queue) > self._maxsize:
                if not _drop_first(queue, _is_droppable_frame):
                    break
                self._dropped += 1
