"""What a connector owns: one live connection of its session, whatever carries the media.

:class:`~actors.websocket.WebSocketConnection` is the connection of every WebSocket session
(``websocket`` and ``twilio``); :class:`~actors.dailycall.DailyConnection` is a Daily call. Both
have the shape of :class:`Connection`, and a provider that needs something other than a WebSocket
says how to make it with a :class:`ConnectionFactory` in its
:class:`~actors.providers.SessionPlan` (``None`` there means a WebSocket).

The contract, as the connector relies on it:

- ``start()`` returns at once; the connection's own threads do the blocking work (dialling,
  joining) and report through the callbacks it was made with: ``on_open`` once it is up,
  ``on_frame`` for each inbound frame (decoded by the connector with the session's codec, on the
  connection's thread), ``on_exit`` exactly once, however it ended.
- Outbound frames are drained from the session's outbox by the connection's writer.
- ``request_close`` starts a graceful close and returns; ``close`` closes within its timeout;
  ``abort`` stops now; ``join`` waits (bounded) for the threads. All work from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .codecs import Frame
from .exits import Exit
from .messages import NORMAL_CLOSURE
from .queues import Keep, Outbox
from .websocket import DialOptions, SentLog, Traffic, Watchdog

__all__ = ["Connection", "ConnectionFactory"]


class Connection(Protocol):
    """One connection of one session (see the module docstring for the contract)."""

    connected: bool

    def start(self) -> None: ...

    def request_close(
        self,
        code: int = NORMAL_CLOSURE,
        reason: str = "",
        exit: Exit | None = None,
        *,
        flush: bool = True,
    ) -> None: ...

    def close(
        self,
        code: int = NORMAL_CLOSURE,
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

    def check_alive(self, now: float) -> None: ...


class ConnectionFactory(Protocol):
    """Makes a session's connection; called by each connector (incarnation) of the session
    with the arguments :class:`~actors.websocket.WebSocketConnection` takes."""

    def __call__(
        self,
        options: DialOptions,
        *,
        session_id: str,
        outbox: Outbox[Frame | Keep],
        traffic: Traffic,
        on_open: Callable[[str | None], None],
        on_frame: Callable[[Frame], None],
        on_exit: Callable[[Exit], None],
        watchdog: Watchdog | None = None,
        dial_delay_s: float = 0.0,
        sent_log: SentLog | None = None,
    ) -> Connection: ...
