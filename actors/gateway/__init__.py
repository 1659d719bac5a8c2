"""WebSocket servers: the package's only user of the ``websockets`` library (through ``_ws``).

:class:`~actors.gateway.loopback.ServerThread` is an asyncio WebSocket server run on a thread
of its own (so that a synchronous program can host one), with the echo peer the demo and tests
talk to. The media gateway runs on one: :mod:`~actors.gateway.server` accepts and
authenticates, :mod:`~actors.gateway.admission` bounds what comes before authentication,
:mod:`~actors.gateway.streams` says how each provider's stream names its call,
:mod:`~actors.gateway.inbound` where a stream that names none (Exotel's applet) is offered,
:mod:`~actors.gateway.pairing` and :mod:`~actors.gateway.calls` keep the calls (sans-I/O), and
:mod:`~actors.gateway.relay` relays their frames.
"""

from .loopback import ServerConnection, ServerThread, echo

__all__ = ["ServerConnection", "ServerThread", "echo"]
