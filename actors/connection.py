"""The connection contract: what a connector owns, whatever carries the media.

Everything here stands below both implementations and imports neither: the WebSocket
connection (:mod:`actors.transport`, sockets driven by one I/O loop) and the Daily call
(:mod:`actors.dailycall`, daily-python's SDK) both have the shape of :class:`Connection`, and
each provider's :class:`~actors.providers.SessionPlan` names the :class:`ConnectionFactory`
that makes its sessions' connections. The connector calls that factory with one
:class:`ConnectionContext` and knows nothing else of the implementation.

The shared pieces:

- :class:`DialOptions`: where a connection goes and within which bounds (one endpoint type;
  the fields only a WebSocket reads keep their defaults elsewhere);
- :class:`Traffic`: a session's frame and byte counters, shared by its successive
  connections; :class:`SentLog`: a resumable session's last sent frames;
- :class:`SharedIo`: what all the connections of one service share (the WebSocket I/O loop),
  made on first use and stopped with the service;
- :class:`BoundedClose`: one ``close()`` policy for every kind of connection.

The contract, as the connector relies on it:

- ``start()`` returns at once; the connection's own threads do the blocking work (dialling,
  joining) and report through the context's callbacks: ``on_open`` once it is up,
  ``on_frame`` for each inbound frame (decoded by the connector with the session's codec, on the
  connection's thread), ``on_exit`` exactly once, however it ended.
- Outbound frames are drained from the session's outbox by the connection's writer.
- ``request_close`` starts a graceful close and returns; ``close`` closes within its timeout;
  ``abort`` stops now; ``join`` waits (bounded) for the threads. All work from any thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from .codecs import Frame
from .errors import ServiceClosed
from .exits import Exit
from .queues import Keep, Outbox
from .wire.constants import CloseCode

__all__ = [
    "BoundedClose",
    "Connection",
    "ConnectionContext",
    "ConnectionFactory",
    "DialOptions",
    "SentLog",
    "SharedIo",
    "Traffic",
]

_NORMAL_CLOSURE = int(CloseCode.NORMAL_CLOSURE)


@dataclass(frozen=True, slots=True)
class DialOptions:
    """Where and how to connect. ``headers`` may carry secrets: they are never logged.

    Every connection reads ``url``, ``connect_timeout_s`` (the whole dial or join) and
    ``close_timeout_s`` (how long the other end may take to finish a graceful close). The
    rest is a WebSocket's: the handshake's ``headers`` and ``subprotocols``, the inbound
    message bound, keepalive pings, and ``resume_frames``; a Daily call leaves them at their
    defaults and its connection ignores them (the SDK keeps the call alive itself).
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    subprotocols: tuple[str, ...] = ()
    connect_timeout_s: float = 5.0
    max_message_bytes: int = 1 << 20
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 5.0
    close_timeout_s: float = 2.0  # how long a peer may take to answer our close frame
    # > 0: the peer is the media gateway, which resumes a session across reconnects; this many
    # sent frames are kept for resending what a dropped connection may not have delivered.
    resume_frames: int = 0


class Traffic:
    """Frame and byte counters of one session, shared by its successive connections.

    Each counter has exactly one writing thread (the reader counts ``*_in``, the writer
    ``*_out``), so plain integers are enough under the GIL.
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "frames_in",
        "frames_lost",
        "frames_out",
        "frames_resent",
        "frames_unsettled",
    )

    def __init__(self) -> None:
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.frames_resent = 0  # sent again after a reconnect, not counted in frames_out
        # Counted in frames_out, never delivered: a connection died with them in flight (in
        # our write buffer or the kernel's unacknowledged send queue), or, on a resumable
        # session, the gateway did not get them and they were no longer kept for resending.
        self.frames_lost = 0
        # A resumable session's frames in flight when its last connection died: the next
        # dial's resume handshake settles them (resent, or lost); zero once settled.
        self.frames_unsettled = 0


class SentLog:
    """The last frames sent on a resumable session, numbered from 0 across its connections.

    Only the writer thread of the session's current connection touches it.
    """

    __slots__ = ("adopt", "count", "frames")

    def __init__(self, size: int) -> None:
        self.frames: deque[Frame] = deque(maxlen=size)
        self.count = 0  # frames sent so far; the next frame's number
        # A session taken over from another runtime node (a cluster's): its first resume
        # adopts the gateway's count of frames received as the number of frames sent.
        self.adopt = False

    def record(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.count += 1

    def since(self, index: int) -> tuple[list[Frame], int]:
        """The frames numbered ``index`` and later, and how many of them are no longer kept."""
        missing = self.count - index
        if missing <= 0:
            return [], 0
        kept = min(missing, len(self.frames))
        frames = list(self.frames)
        return frames[len(frames) - kept :], missing - kept


class _Stoppable(Protocol):
    def stop(self, timeout: float = 2.0) -> None: ...


_S = TypeVar("_S", bound=_Stoppable)


class SharedIo:
    """What the connections of one service share, made by the first factory that needs it
    (the WebSocket I/O loop: one thread for every socket) and stopped by :meth:`close`.

    ``tick_s`` is how often shared timers run, so it bounds how late a deadline (a silent
    peer, an unanswered close) is noticed; the service derives it from its timeouts. The
    service holds one and passes it down to each connector; nothing here knows what it holds.
    """

    def __init__(self, tick_s: float = 0.1) -> None:
        self.tick_s = tick_s
        self._lock = threading.Lock()
        self._made: dict[type, _Stoppable] = {}
        self._closed = False

    def get(self, kind: type[_S], make: Callable[[], _S]) -> _S:
        """The shared ``kind``, made with ``make()`` on first use (from any thread).
        :class:`~actors.errors.ServiceClosed` once :meth:`close` has run."""
        with self._lock:
            if self._closed:
                raise ServiceClosed
            made = self._made.get(kind)
            if made is None:
                made = self._made[kind] = make()
        assert isinstance(made, kind)
        return made

    def close(self, timeout: float = 2.0) -> None:
        """Stop everything made, newest first; later :meth:`get` calls raise."""
        with self._lock:
            self._closed = True
            made, self._made = list(self._made.values()), {}
        for resource in reversed(made):
            resource.stop(timeout)


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """Everything a :class:`ConnectionFactory` is given, by each connector of a session."""

    dial: DialOptions
    session_id: str
    outbox: Outbox[Frame | Keep]  # what to send; the connection's writer drains it
    traffic: Traffic
    on_open: Callable[[str | None], None]  # the subprotocol agreed, if any
    on_frame: Callable[[Frame], None]
    on_exit: Callable[[Exit], None]
    # The service's; None for a connection made outside a service (it makes its own).
    shared: SharedIo | None = None
    dial_delay_s: float = 0.0  # wait this long before dialling (a restart's backoff)
    sent_log: SentLog | None = None  # a resumable session's (DialOptions.resume_frames > 0)
    # Called every ``tick_interval_s`` while the connection is open (a WebSocket's: on the
    # I/O loop's thread): a codec that gathers audio (Vonage, Exotel) lets an idle
    # stream's tail go from it.
    tick: Callable[[], None] | None = None
    tick_interval_s: float = 0.1


class Connection(Protocol):
    """One connection of one session (see the module docstring for the contract)."""

    @property
    def connected(self) -> bool:
        """Whether it is up (dialled, joined) and has not ended."""
        ...

    def start(self) -> None: ...

    def request_close(
        self,
        code: int = _NORMAL_CLOSURE,
        reason: str = "",
        exit: Exit | None = None,
        *,
        flush: bool = True,
    ) -> None: ...

    def close(
        self,
        code: int = _NORMAL_CLOSURE,
        reason: str = "",
        timeout: float = 2.0,
        exit: Exit | None = None,
        *,
        flush: bool = True,
    ) -> None: ...

    def abort(self, exit: Exit | None = None) -> None: ...

    def join(self, timeout: float) -> bool: ...

    @property
    def done(self) -> bool: ...

    @property
    def exit(self) -> Exit | None: ...


class ConnectionFactory(Protocol):
    """Makes a session's connection; called by each connector (incarnation) of the session.
    Named by the provider's :class:`~actors.providers.SessionPlan`: ``actors.transport``'s
    ``websocket_connection``, or a :class:`~actors.dailycall.DailyCall`."""

    def __call__(self, context: ConnectionContext, /) -> Connection: ...


class BoundedClose:
    """``close()`` for a session's connection, whatever carries it: ask for a graceful close,
    give it most of ``timeout``, else abort; then join what is left. One policy for every
    kind of connection (WebSocket, Daily call). The class supplies ``request_close``,
    ``abort``, ``join`` and a ``_done`` event set once it has ended."""

    _done: threading.Event

    if TYPE_CHECKING:  # what the connection class supplies

        def request_close(
            self,
            code: int = _NORMAL_CLOSURE,
            reason: str = "",
            exit: Exit | None = None,
            *,
            flush: bool = True,
        ) -> None: ...

        def abort(self, exit: Exit | None = None) -> None: ...

        def join(self, timeout: float) -> bool: ...

    def close(
        self,
        code: int = _NORMAL_CLOSURE,
        reason: str = "",
        timeout: float = 2.0,
        exit: Exit | None = None,
        *,
        flush: bool = True,
    ) -> None:
        """Close gracefully within ``timeout``: flush, close handshake, else abort; then join."""
        deadline = time.monotonic() + timeout
        self.request_close(code, reason, exit, flush=flush)
        # Leave a share of the deadline for joining after an abort.
        if not self._done.wait(max(0.0, (deadline - time.monotonic()) * 0.75)):
            self.abort()
        self.join(max(0.05, deadline - time.monotonic()))
