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

from ..redaction import MASK, is_secret_key

__all__ = [
    "WIRE_LOGGER",
    "ClientConnection",
    "ConnectionClosed",
    "Headers",
    "InvalidHandshake",
    "InvalidURI",
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


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on a new event loop on this thread: uvloop's where it is installed."""
    with asyncio.Runner(loop_factory=_LOOP_FACTORY) as runner:
        runner.run(main)
