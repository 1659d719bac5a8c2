"""The one module that imports the ``websockets`` package; the rest of ``actors`` imports it
from here, so a change of that library's API is absorbed in one place."""

from __future__ import annotations

import asyncio
import logging
import struct
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

try:  # websockets' C unmasking, where it is built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without its C extension
    from websockets.utils import apply_mask

from ..redaction import MASK, is_secret_key

__all__ = [
    "WIRE_LOGGER",
    "ClientConnection",
    "ConnectionClosed",
    "Headers",
    "InvalidHandshake",
    "InvalidURI",
    "Message",
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


#: A whole text or binary message, as the relay passes it on: ``str`` for text.
Message = str | bytes

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING
_HEADERS_END = b"\r\n\r\n"
_TEXT_FIN, _BINARY_FIN = 0x81, 0x82  # first header byte of a whole (unfragmented) message
_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack


class MeteredConnection(ServerConnection):
    """A server connection with what the gateway needs beyond ``websockets``' public API:
    a write that never waits, a wait for the write buffer to drain, a per-connection frame
    limit, a relay hook for whole messages, and the hooks of the transport's life
    (``on_made`` / ``on_data`` / ``on_lost``, overridden by the gateway's subclass).
    Everything here runs on the server's loop.

    **The relay's fast path.** Every message of a call goes through the gateway twice a
    frame time, and websockets' way (a generator-based parser, a queue, a future and a
    coroutine wake per message, a frame object per send) was most of the gateway's CPU. So,
    once the handshake is over, the input is cut into whole frames here: a whole text or
    binary message that arrives while a handler is set (:meth:`relay_messages`) and nothing
    waits in websockets' queue goes straight to the handler, unmasked (and, for text, checked
    UTF-8 by decoding it); every other frame (control frames, fragments, a frame over the
    size limit, one that breaks the protocol) is handed whole to websockets, which deals with
    it as before. websockets' parser thus only ever sees whole frames, and its checks, limits
    and close handshake stay its own. :meth:`write_nowait` likewise frames a message itself.
    Neither fast path runs with extensions negotiated or with websockets' debug log on.
    """

    _handshake: bytearray | None = None  # the input until the handshake is over
    _framing = False  # the input is cut into whole frames here (see the class docstring)
    _partial = b""  # the start of a frame not whole yet (bounded by the message limit)
    _on_message: Callable[[Message], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._handshake = bytearray()
        self.on_made()

    def data_received(self, data: bytes) -> None:
        if not self.on_data(len(data)):
            return
        if self._framing:
            self._frames_in(data)
            return
        handshake = self._handshake
        if handshake is not None:
            if self.protocol.state is _CONNECTING:
                handshake += data  # bounded: on_data caps what may come before authenticating
                super().data_received(data)
                return
            self._handshake = None
            # Frames start right after the request's headers: cut them here only if nothing
            # came after those (a client may not send frames before the 101; if one did,
            # websockets has them, maybe half a frame, and keeps the whole input).
            end = handshake.find(_HEADERS_END)
            if end >= 0 and end + len(_HEADERS_END) == len(handshake) and self._fast():
                self._framing = True
                self._frames_in(data)
                return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._partial:  # half a frame, then the end: websockets says what that means
            partial, self._partial = self._partial, b""
            super().data_received(partial)
        super().eof_received()

    def _fast(self) -> bool:
        protocol = self.protocol
        return not protocol.extensions and not protocol.debug

    def _frames_in(self, data: bytes) -> None:
        """Cut the input into whole frames: messages to the handler, the rest to websockets."""
        buf = self._partial + data if self._partial else data
        self._partial = b""
        size, pos = len(buf), 0
        protocol = self.protocol
        queued = self.recv_messages.frames
        while size - pos >= 6:  # the shortest masked frame's header and key
            first, second = buf[pos], buf[pos + 1]
            length = second & 0x7F
            if length < 126:
                key = pos + 2
            elif length == 126:
                if size - pos < 8:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                key = pos + 4
            else:
                if size - pos < 14:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                key = pos + 10
            limit = protocol.max_message_size
            if not second & 0x80 or (limit is not None and length > limit):
                # Unmasked, or too big: websockets fails the connection; what follows is
                # its own from now on (it would not wait for the end of a frame that big).
                self._framing = False
                super().data_received(buf[pos:])
                return
            end = key + 4 + length
            if end > size:
                break
            handler = self._on_message
            if (
                handler is not None
                and first in (_TEXT_FIN, _BINARY_FIN)
                and protocol.state is _OPEN
                and protocol.current_size is None  # not inside a fragmented message
                and not queued  # nothing before it still waits for recv(): keep the order
            ):
                payload = apply_mask(buf[key + 4 : end], buf[key : key + 4])
                if first == _BINARY_FIN:
                    handler(payload)
                    pos = end
                    continue
                try:
                    text: str | None = payload.decode()
                except UnicodeDecodeError:
                    text = None  # websockets fails the connection (1007), below
                if text is not None:
                    handler(text)
                    pos = end
                    continue
            super().data_received(buf[pos:end])
            pos = end
        if pos < size:
            self._partial = buf[pos:]

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

    def relay_messages(self, handler: Callable[[Message], None] | None) -> None:
        """From now on, pass whole messages to ``handler`` as they arrive (on the loop,
        in order), instead of queueing them for :meth:`recv`; ``None``: no longer.

        Messages that waited already, and fragmented ones, still come through :meth:`recv`
        (or ``async for``), in order with those passed to the handler: the caller keeps
        reading, and treats both alike; ``recv`` also still reports the connection's end.
        """
        self._on_message = handler

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
        protocol = self.protocol
        if self.paused or protocol.state is not _OPEN or self.send_in_progress:
            return False
        try:
            if protocol.extensions or protocol.debug or protocol.expect_continuation_frame:
                if isinstance(frame, str):
                    protocol.send_text(frame.encode())
                else:
                    protocol.send_binary(frame)
                self.send_data()
            else:
                # A server's frame is its header and the payload, unmasked: one write.
                if isinstance(frame, str):
                    data, first = frame.encode(), _TEXT_FIN
                else:
                    data, first = frame, _BINARY_FIN
                size = len(data)
                if size < 126:
                    head = bytes((first, size))
                elif size < 65536:
                    head = _pack_16(first, 126, size)
                else:
                    head = _pack_64(first, 127, size)
                self.transport.write(head + data)
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
