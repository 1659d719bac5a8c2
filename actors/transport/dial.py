"""The opening handshake (RFC 6455 section 4), by websocket-client: its only user.

websocket-client does the handshake and nothing after it: once the server's ``101`` is read,
the socket is handed to the I/O loop and :class:`~actors.wire.ClientProtocol` speaks the
protocol (websocket-client's own parser and builder cost ten times as much per frame: they
are written for a blocking socket, a read per field). Its reconnect (``WebSocketApp``) is not
used either: redialling is the supervisor's call.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import websocket as wsc

from ..connection import DialOptions
from ..exits import Exit, ExitKind
from ..redaction import redact_url
from ..wire.constants import RESUME_FROM_HEADER, SENT_HEADER

__all__ = ["Handshake", "Opened", "describe", "dial"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    """A handshake that succeeded: the socket (blocking still), the subprotocol the server
    chose, and its response headers (names lowercased, as websocket-client hands them)."""

    sock: socket.socket
    subprotocol: str | None
    headers: Mapping[str, str]


class Handshake:
    """One client handshake, bounded as a whole; :meth:`interrupt` (from another thread) cuts
    it short."""

    def __init__(self) -> None:
        # skip_utf8_validation: websocket-client only dials; its validator (which walks text
        # frames byte by byte in Python) would never see a frame anyway. The protocol decodes
        # each text message with Python's strict UTF-8 decoder, in C, and fails invalid UTF-8
        # with 1007, as RFC 6455 asks.
        self._ws = wsc.WebSocket(skip_utf8_validation=True)
        self._lock = threading.Lock()
        self._over = False  # done, or failed: the deadline no longer matters
        #: The deadline passed before the handshake was done (what :meth:`run` raised is why).
        self.timed_out = False

    def run(
        self,
        url: str,
        *,
        timeout: float,
        headers: Sequence[str],
        subprotocols: Sequence[str],
        name: str = "ws-dial-deadline",
    ) -> Opened:
        """Dial ``url`` and complete the handshake within ``timeout`` (blocks); the socket
        comes back non-blocking, for the I/O loop. Raises what websocket-client or the socket
        raised (see :func:`describe`); :attr:`timed_out` says whether the deadline cut it.

        The whole handshake has a deadline (a timer thread called ``name``), not only each
        read: a peer that drips its answer a byte at a time would otherwise hold the dial
        (and the session) for ever.
        """
        ws = self._ws
        deadline = threading.Timer(timeout, self._expired)
        deadline.name, deadline.daemon = name, True
        deadline.start()
        try:
            try:
                ws.connect(
                    url,
                    timeout=timeout,
                    header=list(headers),
                    subprotocols=list(subprotocols) or None,
                )
            finally:
                with self._lock:
                    self._over = True
                    timed_out = self.timed_out
            if timed_out:  # the deadline passed as the handshake completed
                raise TimeoutError
        finally:
            deadline.cancel()
            deadline.join()
        sock = ws.sock
        assert sock is not None
        # From here the loop reads it and writers never wait on it: the loop's ticks, not a
        # socket timeout, detect a silent peer.
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # small frames, sent as soon as they are written
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Opened(sock, ws.getsubprotocol(), ws.getheaders() or {})

    def _expired(self) -> None:
        with self._lock:
            if self._over:  # too late to matter
                return
            self.timed_out = True
        self.interrupt()  # cuts the handshake short: wakes the dialer

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


def dial(
    options: DialOptions,
    handshake: Handshake,
    *,
    session_id: str,
    stopping: threading.Event,
    resume_from: int | None = None,
    sent: int | None = None,
) -> Opened | Exit:
    """Dial ``options.url`` with ``handshake`` (blocks, within ``connect_timeout_s``): the
    open connection, or the exit that says why not (``stopping`` set: we stopped it). With
    ``resume_from``, the handshake asks the gateway to resume after that many frames."""
    header = [f"{k}: {v}" for k, v in options.headers.items()]
    if resume_from is not None:
        header.append(f"{RESUME_FROM_HEADER}: {resume_from}")
    if sent:  # a gateway the call was redirected to numbers on from there (a cluster's)
        header.append(f"{SENT_HEADER}: {sent}")
    try:
        return handshake.run(
            options.url,
            timeout=options.connect_timeout_s,
            headers=header,
            subprotocols=options.subprotocols,
            name=f"ws-dial-deadline-{session_id}",
        )
    except Exception as exc:  # every dependency error becomes a reason, never leaks
        reason = describe(exc)
        if handshake.timed_out:
            reason = f"handshake not done within {options.connect_timeout_s:g} s"
        if stopping.is_set():
            return Exit(ExitKind.NORMAL, None, "stopped while dialling")
        logger.info(
            "session %s: dialling %s failed: %s", session_id, redact_url(options.url), reason
        )
        return Exit(ExitKind.HANDSHAKE_FAILED, None, reason)


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
