"""An asyncio ``websockets`` server on its own thread and event loop, with bounded start/stop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Self

from ..startable import Startable
from ._ws import WIRE_LOGGER, ConnectionClosed, Server, ServerConnection, run, serve

__all__ = ["ServerConnection", "ServerThread", "echo"]

logger = logging.getLogger(__name__)

Handler = Callable[[ServerConnection], Awaitable[None]]


async def echo(connection: ServerConnection) -> None:
    """Send every message back as it came: text as text, binary as binary, in order."""
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass


class ServerThread(Startable):
    """Serve ``handler`` on ``host:port`` (port 0: any free port) from a dedicated thread.

    ``start()`` returns once the socket listens (or raises what binding raised); ``stop()``
    closes the server and every connection, then joins the thread, within ``timeout``.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_size: int | None = 1 << 20,
        name: str = "ws-server",
        **serve_options: Any,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._max_size = max_size
        self._serve_options = serve_options  # passed to websockets' serve(): subprotocols...
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host  # an IPv6 literal
        return f"ws://{host}:{self.port}"

    def start(self, timeout: float = 5.0) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"server on {self._host}:{self._port} not ready in {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.ident is None:  # never started: nothing to stop
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed in between
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning(
                "server thread %s still running after %.1f s", self._thread.name, timeout
            )

    @property
    def connections(self) -> set[ServerConnection]:
        """The connections open right now (read on the server's loop for exactness)."""
        server = self._server
        return set(server.connections) if server is not None else set()

    def _run(self) -> None:
        try:
            run(self._serve())
        except BaseException as exc:  # reported to start(), or logged if it happens later
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                logger.exception("server thread %s crashed", self._thread.name)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handler,
            self._host,
            self._port,
            max_size=self._max_size,
            close_timeout=1.0,
            logger=WIRE_LOGGER,
            # No permessage-deflate: audio frames gain nothing from it, and compressing every
            # 300-byte frame was the largest cost of relaying them.
            compression=None,
            **self._serve_options,
        ) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close(close_connections=True)
            await server.wait_closed()
