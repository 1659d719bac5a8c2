"""The WebSocket I/O: sockets, the opening handshake, one I/O loop for all of a service's sockets.

The layer between the contract (:mod:`actors.connection`) and the sans-I/O protocol
(:mod:`actors.wire`). Providers name :func:`websocket_connection` as their sessions'
:class:`~actors.connection.ConnectionFactory`; nothing above this package imports its modules:

- :mod:`~actors.transport.websocket`: :class:`WebSocketConnection`, one dial of one session:
  the socket, the locks, the timers; it drives :class:`~actors.wire.ClientProtocol`
- :mod:`~actors.transport.ioloop`: :class:`~actors.transport.ioloop.IoLoop`, the thread that
  reads (and, when a socket is full, writes) every socket of a service, and keeps their time
- :mod:`~actors.transport.dial`: the opening handshake: the only user of websocket-client
- :mod:`~actors.transport.outgoing`: what goes on the wire next, in order, as bytes
- :mod:`~actors.transport.inflight`: what a dead connection had in flight, and who settles it
"""

from __future__ import annotations

from ..connection import Connection, ConnectionContext
from .websocket import WebSocketConnection

__all__ = ["WebSocketConnection", "websocket_connection"]


def websocket_connection(context: ConnectionContext, /) -> Connection:
    """The :class:`~actors.connection.ConnectionFactory` of every WebSocket session (the
    ``websocket`` provider's, and Twilio's through the media gateway): one dial to
    ``context.dial.url``, on the service's I/O loop."""
    return WebSocketConnection(context)
