"""The opening handshake (RFC 6455 section 4), by websocket-client: its only user.

websocket-client does the handshake and nothing after it: once the server's ``101`` is read,
the socket is handed to the I/O loop and :class:`~actors.wire.ClientProtocol` speaks the
protocol (websocket-client's own parser and builder cost ten times as much per frame: they
are written for a blocking socket, a read per field). Its reconnect (``WebSocketApp``) is not
used either: redialling is the supervisor's call.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import websocket as wsc

__all__ = ["Handshake", "Opened", "describe"]


@dataclass(frozen=True, slots=True)
class Opened:
    """A handshake that succeeded: the socket (blocking still), the subprotocol the server
    chose, and its response headers (names lowercased, as websocket-client hands them)."""

    sock: socket.socket
    subprotocol: str | None
    headers: Mapping[str, str]


class Handshake:
    """One client handshake; :meth:`interrupt` (from another thread) cuts it short."""

    def __init__(self) -> None:
        # skip_utf8_validation: websocket-client only dials; its validator (which walks text
        # frames byte by byte in Python) would never see a frame anyway. The protocol decodes
        # each text message with Python's strict UTF-8 decoder, in C, and fails invalid UTF-8
        # with 1007, as RFC 6455 asks.
        self._ws = wsc.WebSocket(skip_utf8_validation=True)

    def run(
        self,
        url: str,
        *,
        timeout: float,
        headers: Sequence[str],
        subprotocols: Sequence[str],
    ) -> Opened:
        """Dial ``url`` and complete the handshake (blocks, each read bounded by
        ``timeout``); raises what websocket-client or the socket raised (see :func:`describe`)."""
        ws = self._ws
        ws.connect(
            url, timeout=timeout, header=list(headers), subprotocols=list(subprotocols) or None
        )
        sock = ws.sock
        assert sock is not None
        return Opened(sock, ws.getsubprotocol(), ws.getheaders() or {})

    def interrupt(self) -> None:
        """Shut the socket down under a handshake in progress: wakes the thread blocked in
        :meth:`run` (which then raises). Harmless before or after it."""
        sock = self._ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the socket's file descriptor, if websocket-client still holds one."""
        self._ws.shutdown()


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a dependency's exception."""
    if isinstance(exc, wsc.WebSocketBadStatusException):
        return f"HTTP {exc.status_code} instead of 101 Switching Protocols"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | wsc.WebSocketTimeoutException | TimeoutError):
        return "timed out"
    if isinstance(exc, wsc.WebSocketAddressException):
        return "address not found"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
