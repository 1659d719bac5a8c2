"""The one module that imports the ``websockets`` package; the rest of ``actors`` imports it
from here, so a change of that library's API is absorbed in one place."""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.http11 import Request, Response

__all__ = [
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
    "serve",
]
