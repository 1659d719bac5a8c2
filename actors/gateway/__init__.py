"""WebSocket servers: the package's only user of the ``websockets`` library.

For now this holds :class:`~actors.gateway.loopback.ServerThread`, an asyncio WebSocket server
run on a thread of its own (so that a synchronous program can host one), and the echo peer the
demo and tests talk to. The media gateway of DESIGN §6 will be built on the same thread.
"""

from .loopback import ServerConnection, ServerThread, echo

__all__ = ["ServerConnection", "ServerThread", "echo"]
