"""Admission: every connection to the gateway is counted and capped until it authenticates.

A connection is admitted as its TCP connection is accepted, or dropped at once past a cap:
``max_connections`` in all, ``max_pending`` not yet authenticated, ``max_pending_per_address``
not yet authenticated from one peer address. Until it authenticates (a session hop: its
token; a provider stream: a valid ``start``) it may send at most ``pending_max_bytes``, which
is also its largest frame. Every refusal is counted by reason, with at most one WARNING line
per connection, and at most :data:`WARNINGS_PER_WINDOW` of a kind per window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

from ..config import GatewayConfig
from ._ws import MeteredConnection, ServerConnection
from .pairing import Claim, HopRequest

__all__ = ["WARNINGS_PER_WINDOW", "Admission", "GatewayConnection", "peer"]

logger = logging.getLogger("actors.gateway.server")  # one logger for the whole gateway

#: Warnings of one kind logged per window; past that they are counted and summed up once.
WARNINGS_PER_WINDOW: Final = 20
_WARNING_WINDOW_S: Final = 10.0


class GatewayConnection(MeteredConnection):
    """A connection to the gateway, metered from its first byte to its end. The gateway
    subclasses it once, setting :attr:`admission` and :attr:`released`."""

    admission: Admission
    released: Callable[[GatewayConnection], None]  # the gateway's part once it is gone
    ready: asyncio.Event  # set to wake this connection's sender (new frames, or the end)
    address: str = ""
    admitted = False  # counted in the caps (else it is being refused)
    authenticated = False
    refused = False  # a refusal was counted and logged: say nothing more of it
    received = 0  # bytes received before authentication
    hop_request: HopRequest | None = None  # a session hop's, once its headers are checked
    claim: Claim[GatewayConnection] | None = None

    def on_made(self) -> None:
        self.ready = asyncio.Event()
        self.admission.admit(self)

    def on_data(self, size: int) -> bool:
        return self.authenticated or self.admission.metered(self, size)

    def on_lost(self) -> None:
        self.admission.release(self)
        self.released(self)


class _Warnings:
    """At most ``WARNINGS_PER_WINDOW`` WARNING lines per kind per window, then a count."""

    def __init__(self) -> None:
        self._window: dict[str, tuple[float, int]] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        started, logged = self._window.get(kind, (now, 0))
        if now - started >= _WARNING_WINDOW_S:
            if logged > WARNINGS_PER_WINDOW:
                suppressed = logged - WARNINGS_PER_WINDOW
                logger.warning("gateway: %d more %s refusals not logged", suppressed, kind)
            started, logged = now, 0
        self._window[kind] = (started, logged + 1)
        if logged < WARNINGS_PER_WINDOW:
            logger.warning(message, *args)


class Admission:
    """The caps and counts of connections before authentication (on the gateway's loop)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.open = 0  # connections open right now, both sides
        self.pending_total = 0  # connections not yet authenticated
        self._pending: Counter[str] = Counter()  # the same, by peer address
        self.rejected: dict[str, int] = {}  # refusals by reason
        self._warnings = _Warnings()

    def admit(self, connection: GatewayConnection) -> None:
        """A TCP connection was accepted: count it in the caps, or drop it at once."""
        peername = connection.transport.get_extra_info("peername")
        address = str(peername[0]) if isinstance(peername, tuple) and peername else "unknown"
        connection.address = address
        connection.limit_messages(self.config.pending_max_bytes)
        c = self.config
        if self.open >= c.max_connections:
            reason, why = "connection_cap", f"{c.max_connections} connections open"
        elif self.pending_total >= c.max_pending:
            reason, why = "pending_cap", f"{c.max_pending} not authenticated"
        elif self._pending[address] >= c.max_pending_per_address:
            reason = "address_cap"
            why = f"{c.max_pending_per_address} not authenticated from {address}"
        else:
            connection.admitted = True
            self.open += 1
            self._pending[address] += 1
            self.pending_total += 1
            return
        self.refused(connection, reason, "gateway: dropped a connection from %s: %s", why)
        connection.abort()

    def metered(self, connection: GatewayConnection, size: int) -> bool:
        """``size`` more bytes from a connection not yet authenticated: within the budget?"""
        connection.received += size
        if connection.received <= self.config.pending_max_bytes:
            return True
        if not connection.refused:
            why = f"sent over {self.config.pending_max_bytes} bytes before authenticating"
            self.refused(connection, "pending_bytes", "gateway: dropped %s: %s", why)
        connection.abort()
        return False

    def authenticate(self, connection: GatewayConnection) -> None:
        """The connection proved itself: out of the pre-auth caps, frames up to full size."""
        if connection.authenticated:
            return
        connection.authenticated = True
        if connection.admitted:
            self._unpend(connection.address)
        connection.limit_messages(self.config.max_message_bytes)

    def _unpend(self, address: str) -> None:
        self.pending_total -= 1
        self._pending[address] -= 1
        if self._pending[address] <= 0:
            del self._pending[address]

    def release(self, connection: GatewayConnection) -> None:
        """The connection is gone: out of the counts (a refusal counted if it went unheard)."""
        if connection.admitted:
            connection.admitted = False
            self.open -= 1
            if not connection.authenticated:
                self._unpend(connection.address)
        if not connection.authenticated and not connection.refused:
            # It went without a word from us: a handshake that never came or was refused
            # by websockets itself, or a stream that ended before its `start`.
            response = connection.response
            if response is None:
                reason = "no_handshake"
            elif response.status_code != 101:
                reason = "bad_handshake"
            else:
                reason = "no_start"
            self.count(reason)
            self._warnings.warn(
                reason, "gateway: %s closed before authenticating (%s)", peer(connection), reason
            )

    def refused(self, connection: GatewayConnection, reason: str, message: str, why: str) -> None:
        """Count and log (rate-limited) a refusal of ``connection``: ``message`` has two
        ``%s``, the peer and ``why``."""
        connection.refused = True
        self.count(reason)
        self._warnings.warn(reason, message, peer(connection), why)

    def count(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if address else "peer"
