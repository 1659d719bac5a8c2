"""The I/O loop: one thread that does the socket work of every open connection of a service.

It waits on all their sockets at once (epoll), reads what arrives and hands it to each
connection; it writes what an application thread could not write at once (a full socket
buffer); and every ``tick_s`` it lets each connection keep its time (keepalive pings, a peer
gone silent, a close never answered).

Why one loop and not a reader and a writer thread per socket: with hundreds of calls each
sending fifty frames a second, a thread wake per frame is what costs (each wake is a GIL
hand-over); the loop serves every frame that has arrived on every socket per wake, and a write
costs no wake at all. The application threads that a batch's frames are for are woken one after
another, not all at once (:class:`~actors.queues.WakeChain`).

The loop and a connection meet at a small interface and nowhere else: the loop drives a
:class:`LoopClient` (its ``on_*`` methods, on the loop's thread); a connection uses the loop's
public methods (:meth:`IoLoop.call_soon` from any thread; :meth:`~IoLoop.add`,
:meth:`~IoLoop.remove` and :meth:`~IoLoop.watch` on the loop's thread).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..queues import WakeChain

__all__ = ["IoLoop", "LoopClient"]

logger = logging.getLogger(__name__)


class LoopClient(Protocol):
    """What the loop drives: one connection's socket work. Every method runs on the loop's
    thread; an exception from one (a bug) is handed to :meth:`on_crash` of that client only."""

    def on_readable(self) -> bytes | None:
        """Read the socket: what it had (``None``: nothing, or the connection ended)."""
        ...

    def on_data(self, data: bytes) -> None:
        """Handle what :meth:`on_readable` returned (after every ready socket was read)."""
        ...

    def on_writable(self) -> None:
        """The socket takes bytes again: write what waited."""
        ...

    def wants_writable(self) -> bool:
        """Whether bytes wait for the socket to become writable."""
        ...

    def on_tick(self, now: float) -> None:
        """Keep time (``now`` is ``time.monotonic()``): keepalive and deadlines."""
        ...

    def on_crash(self, exc: Exception) -> None:
        """One of the methods above raised: end the connection, reported."""
        ...

    def on_loop_stopped(self) -> None:
        """The loop is stopping with the connection still on it: end it."""
        ...


class IoLoop:
    """The loop's thread, its selector, and what other threads ask it to run.

    Against one reader thread per socket this saves a thread wake per inbound frame: a wake
    serves every frame that has arrived, on every socket, since the last one.
    """

    def __init__(self, tick_s: float = 0.1) -> None:
        self._tick_s = tick_s
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._calls: deque[Callable[[], None]] = deque()
        self._woken = False
        self._stopping = False
        self._clients: set[LoopClient] = set()  # the loop thread's alone
        self._wakes = WakeChain()
        self._thread = threading.Thread(target=self._run, name="ws-io", daemon=True)
        self._thread.start()

    # -- from any thread -------------------------------------------------------------------

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the loop's thread, soon."""
        with self._lock:
            self._calls.append(call)
            if self._woken:
                return
            self._woken = True
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def tick_at_most(self, interval_s: float) -> None:
        """Tick at least every ``interval_s`` from now on (a client whose ``on_tick`` does
        periodic work needs it that often; the loop never ticks less often again)."""
        with self._lock:
            self._tick_s = min(self._tick_s, max(0.01, interval_s))

    def in_loop(self) -> bool:
        """Whether the caller is the loop's thread."""
        return threading.current_thread() is self._thread

    def stop(self, timeout: float = 2.0) -> None:
        """End the loop (its clients get :meth:`LoopClient.on_loop_stopped`); wait for it."""
        with self._lock:
            self._stopping = True
        self.call_soon(lambda: None)
        if not self.in_loop():
            self._thread.join(timeout)

    # -- on the loop's thread --------------------------------------------------------------

    def add(self, client: LoopClient, sock: socket.socket) -> None:
        """Watch ``sock`` for reads on behalf of ``client``."""
        self._selector.register(sock, selectors.EVENT_READ, client)
        self._clients.add(client)

    def watch(self, client: LoopClient, sock: socket.socket) -> None:
        """Watch ``sock`` for writability too, or no longer, as ``client`` wants now."""
        if client in self._clients:
            events = selectors.EVENT_READ
            if client.wants_writable():
                events |= selectors.EVENT_WRITE
            self._selector.modify(sock, events, client)

    def remove(self, client: LoopClient, sock: socket.socket) -> None:
        """Stop watching ``sock`` (``client`` is left to close it)."""
        if client in self._clients:
            self._clients.discard(client)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick_s
        wakes = self._wakes
        try:
            while True:
                timeout = max(0.0, next_tick - time.monotonic())
                # Read every ready socket first, then parse and deliver: the readers woken by
                # the deliveries then find the GIL free (we go back to epoll), instead of
                # taking it from us at each of our recv calls and handing it back after.
                received: list[tuple[LoopClient, bytes]] = []
                for key, events in self._selector.select(timeout):
                    client: LoopClient | None = key.data
                    if client is None:
                        with contextlib.suppress(BlockingIOError, OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    try:
                        if events & selectors.EVENT_READ:
                            data = client.on_readable()
                            if data:
                                received.append((client, data))
                        if events & selectors.EVENT_WRITE:
                            client.on_writable()
                    except Exception as exc:  # a bug: that connection only
                        client.on_crash(exc)
                with wakes.delivering():  # the readers are woken in turn (WakeChain)
                    for client, data in received:
                        try:
                            client.on_data(data)
                        except Exception as exc:  # a bug (or a codec's): that connection only
                            client.on_crash(exc)
                wakes.kick()
                with self._lock:
                    calls, self._calls = self._calls, deque()
                    self._woken = False
                    stopping = self._stopping
                for call in calls:
                    try:
                        call()
                    except Exception:
                        logger.exception("I/O loop: a scheduled call failed")
                if stopping:
                    return
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + self._tick_s
                    for client in list(self._clients):
                        try:
                            client.on_tick(now)
                        except Exception as exc:  # a bug: end that connection, reported
                            client.on_crash(exc)
        finally:
            for client in list(self._clients):
                client.on_loop_stopped()
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
