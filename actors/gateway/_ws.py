"""The one module that imports the ``websockets`` package; the rest of ``actors`` imports it
from here, so a change of that library's API is absorbed in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

try:  # libuv's event loop: the same asyncio, at a fraction of the CPU per message
    import uvloop

    _LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
except ImportError:  # pragma: no cover - not on this platform
    _LOOP_FACTORY = None

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.http11 import Request, Response
from websockets.protocol import State

from ..redaction import MASK, is_secret_key

__all__ = [
    "WIRE_LOGGER",
    "ClientConnection",
    "ConnectionClosed",
    "Headers",
    "InvalidHandshake",
    "InvalidURI",
    "MeteredConnection",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "connect",
    "run",
    "serve",
]


class _RedactHeaders(logging.Filter):
    """websockets logs every handshake header at DEBUG; secret ones (``Authorization``
    carries a session token, ``X-Twilio-Signature``...) are masked before they are written."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            record.msg in ("< %s: %s", "> %s: %s")
            and isinstance(args, tuple)
            and len(args) == 2
            and is_secret_key(str(args[0]))
        ):
            record.args = (args[0], MASK)
        return True


#: The logger to give websockets' servers and clients (``logger=``): its own records, with
#: secret headers masked. DEBUG on it shows the wire; nothing secret.
WIRE_LOGGER = logging.getLogger("actors.gateway.wire")
WIRE_LOGGER.addFilter(_RedactHeaders())


class MeteredConnection(ServerConnection):
    """A server connection with what the gateway needs beyond ``websockets``' public API:
    a write that never waits, a wait for the write buffer to drain, a per-connection frame
    limit, and the hooks of the transport's life (``on_made`` / ``on_data`` / ``on_lost``,
    overridden by the gateway's subclass). Everything here runs on the server's loop."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.on_made()

    def data_received(self, data: bytes) -> None:
        if self.on_data(len(data)):
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.on_lost()

    def on_made(self) -> None:
        """The TCP connection is accepted (the handshake has not begun)."""

    def on_data(self, size: int) -> bool:
        """``size`` bytes arrived; False drops them (the hook has aborted the connection)."""
        return True

    def on_lost(self) -> None:
        """The TCP connection is gone, whatever happened before: called exactly once."""

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close frame."""
        self.transport.abort()

    def limit_messages(self, max_bytes: int) -> None:
        """Refuse (close 1009) any incoming message larger than ``max_bytes`` from now on."""
        self.protocol.max_message_size = max_bytes

    @property
    def write_paused(self) -> bool:
        """Whether the write buffer is above its high-water mark (the peer is not reading)."""
        return self.paused

    def write_nowait(self, frame: str | bytes) -> bool:
        """Put ``frame`` in the write buffer without waiting: False when the connection is
        not open, or the buffer is above its high-water mark (then await :meth:`writable`)."""
        if self.paused or self.protocol.state is not State.OPEN or self.send_in_progress:
            return False
        try:
            if isinstance(frame, str):
                self.protocol.send_text(frame.encode())
            else:
                self.protocol.send_binary(frame)
            self.send_data()
        except Exception as exc:  # an OSError of the transport: the connection is over
            self.set_connection_exc(exc)
            self.transport.abort()
            return False
        return True

    async def writable(self) -> None:
        """Return once the write buffer is below its low-water mark (or the connection is
        gone: the next write says which)."""
        if self.paused and not self.transport.is_closing():
            try:
                await self.drain()
            except Exception:  # the connection broke while paused: the next write says so
                return


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on a new event loop on this thread: uvloop's where it is installed."""
    with asyncio.Runner(loop_factory=_LOOP_FACTORY) as runner:
        runner.run(main)
