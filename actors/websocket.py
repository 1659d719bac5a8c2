"""WebSocket connections driven by one I/O thread: the only module that imports websocket-client.

One :class:`WebSocketConnection` is one dial of one session:

- a short-lived thread, named with the session id, **dials** (so the connector's actor thread
  never blocks on the network) and hands the open socket to the service's :class:`IoLoop`;
- the loop's thread **reads** every open socket of the service (epoll), parses the frames
  with websocket-client's parser and passes each to ``on_frame``, which decodes it straight
  into the session's inbox. It answers pings and close frames and reports how the connection
  ended through ``on_exit``: exactly once, whatever ended it;
- whoever **writes** sends: the session's outbox calls :meth:`WebSocketConnection.pump` after
  every put, which frames what is queued and writes it to the socket without blocking. What
  the socket does not take waits in the connection until the loop finds it writable again, so
  a slow peer backs up into the (bounded) outbox, never into the application's thread.

Every ``tick_s`` the loop sends keepalive pings, aborts a connection whose peer has been silent
(no frame, no pong) for ``ping_interval_s + ping_timeout_s``, and one whose peer did not answer
our close frame within ``close_timeout_s``. Any frame counts as a sign of life, not just pongs:
a busy peer answers a ping only after the data queued ahead of it.

A connection that dies without a close handshake counts what it had in flight: the frames in
its write buffer or in the kernel's send queue not yet acknowledged by the peer (Linux
``SIOCOUTQ``), from the wire size of each recent frame, into ``Traffic.frames_lost``; then it
resets the socket, so that none of them can still arrive. A resumable session leaves them to
the resume handshake of its next dial instead (resent, or lost if no longer kept).

Why one loop and not a reader and a writer thread per socket: with hundreds of calls each
sending fifty frames a second, a thread wake per frame is what costs (each wake is a GIL
hand-over); the loop serves every frame that has arrived on every socket per wake, and a write
costs no wake at all. websocket-client's own reconnect (``WebSocketApp``) is not used:
redialling is the supervisor's call.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import selectors
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import websocket as wsc

from .codecs import Frame
from .exits import Exit, ExitKind
from .messages import (
    INTERNAL_ERROR,
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    NORMAL_CLOSURE,
)
from .queues import Keep, Outbox
from .redaction import redact_url

__all__ = [
    "BoundedClose",
    "DialOptions",
    "IoLoop",
    "SentLog",
    "Traffic",
    "Watchdog",
    "WebSocketConnection",
]

logger = logging.getLogger(__name__)

_TEXT = wsc.ABNF.OPCODE_TEXT
_BINARY = wsc.ABNF.OPCODE_BINARY
_CONT = wsc.ABNF.OPCODE_CONT
_CLOSE = wsc.ABNF.OPCODE_CLOSE
_PING = wsc.ABNF.OPCODE_PING
_PONG = wsc.ABNF.OPCODE_PONG
_DATA_OPCODES = frozenset({_TEXT, _BINARY, _CONT})
_PROTOCOL_ERROR = 1002
_NO_STATUS = 1005
_ABNORMAL = 1006


@dataclass(frozen=True, slots=True)
class DialOptions:
    """Where and how to dial. ``headers`` may carry secrets: they are never logged."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    subprotocols: tuple[str, ...] = ()
    connect_timeout_s: float = 5.0
    max_message_bytes: int = 1 << 20
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 5.0
    close_timeout_s: float = 2.0  # how long a peer may take to answer our close frame
    # > 0: the peer is the media gateway, which resumes a session across reconnects; this many
    # sent frames are kept for resending what a dropped connection may not have delivered.
    resume_frames: int = 0


#: Handshake headers of the gateway's resume protocol (see actors.gateway.server).
RESUME_FROM_HEADER = "X-Resume-From"
RECEIVED_HEADER = "x-gateway-received"  # websocket-client lowercases response header names


class Traffic:
    """Frame and byte counters of one session, shared by its successive connections.

    Each counter has exactly one writing thread (the reader counts ``*_in``, the writer
    ``*_out``), so plain integers are enough under the GIL.
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "frames_in",
        "frames_lost",
        "frames_out",
        "frames_resent",
        "frames_unsettled",
    )

    def __init__(self) -> None:
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.frames_resent = 0  # sent again after a reconnect, not counted in frames_out
        # Counted in frames_out, never delivered: a connection died with them in flight (in
        # our write buffer or the kernel's unacknowledged send queue), or, on a resumable
        # session, the gateway did not get them and they were no longer kept for resending.
        self.frames_lost = 0
        # A resumable session's frames in flight when its last connection died: the next
        # dial's resume handshake settles them (resent, or lost); zero once settled.
        self.frames_unsettled = 0


class SentLog:
    """The last frames sent on a resumable session, numbered from 0 across its connections.

    Only the writer thread of the session's current connection touches it.
    """

    __slots__ = ("count", "frames")

    def __init__(self, size: int) -> None:
        self.frames: deque[Frame] = deque(maxlen=size)
        self.count = 0  # frames sent so far; the next frame's number

    def record(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.count += 1

    def since(self, index: int) -> tuple[list[Frame], int]:
        """The frames numbered ``index`` and later, and how many of them are no longer kept."""
        missing = self.count - index
        if missing <= 0:
            return [], 0
        kept = min(missing, len(self.frames))
        frames = list(self.frames)
        return frames[len(frames) - kept :], missing - kept


class _TooBig(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame of {size} bytes exceeds max_message_bytes={limit}")


def _describe(exc: BaseException) -> str:
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


_BLOCKED = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class IoLoop:
    """One thread that does the socket work of every open connection of a service.

    It waits on all their sockets at once (epoll), reads and parses what arrives and hands it
    to each connection's ``on_frame``; it writes what an application thread could not write
    at once (a full socket buffer); and every ``tick_s`` it sends keepalive pings, aborts
    connections whose peer has gone silent, and those whose peer never answered our close.

    Against one reader thread per socket this saves a thread wake per inbound frame: a wake
    serves every frame that has arrived, on every socket, since the last one.
    """

    def __init__(self, tick_s: float = 0.1) -> None:
        self._tick_s = tick_s
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._calls: deque[Callable[[], None]] = deque()
        self._woken = False
        self._stopping = False
        self._connections: set[WebSocketConnection] = set()  # the loop thread's alone
        self._thread = threading.Thread(target=self._run, name="ws-io", daemon=True)
        self._thread.start()

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the loop's thread, soon (from any thread)."""
        with self._lock:
            self._calls.append(call)
            if self._woken:
                return
            self._woken = True
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._stopping = True
        self.call_soon(lambda: None)
        if not self.in_loop():
            self._thread.join(timeout)

    # -- on the loop thread --------------------------------------------------------------------

    def _crashed(self, connection: WebSocketConnection, exc: Exception) -> None:
        logger.exception("session %s: I/O handler crashed", connection.session_id)
        connection._finish(Exit(ExitKind.CRASH, INTERNAL_ERROR, _describe(exc)))

    def _add(self, connection: WebSocketConnection, sock: socket.socket) -> None:
        self._selector.register(sock, selectors.EVENT_READ, connection)
        self._connections.add(connection)

    def _watch_writable(self, connection: WebSocketConnection, sock: socket.socket) -> None:
        if connection in self._connections:
            events = selectors.EVENT_READ
            if connection._wants_writable():
                events |= selectors.EVENT_WRITE
            self._selector.modify(sock, events, connection)

    def _remove(self, connection: WebSocketConnection, sock: socket.socket) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick_s
        try:
            while True:
                timeout = max(0.0, next_tick - time.monotonic())
                # Read every ready socket first, then parse and deliver: the readers woken by
                # the deliveries then find the GIL free (we go back to epoll), instead of
                # taking it from us at each of our recv calls and handing it back after.
                received: list[tuple[WebSocketConnection, bytes]] = []
                for key, events in self._selector.select(timeout):
                    connection: WebSocketConnection | None = key.data
                    if connection is None:
                        with contextlib.suppress(BlockingIOError, OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    try:
                        if events & selectors.EVENT_READ:
                            data = connection._read()
                            if data:
                                received.append((connection, data))
                        if events & selectors.EVENT_WRITE:
                            connection._on_writable()
                    except Exception as exc:  # a bug: that connection only
                        self._crashed(connection, exc)
                for connection, data in received:
                    try:
                        connection._consume(data)
                    except Exception as exc:  # a bug (or a codec's): that connection only
                        self._crashed(connection, exc)
                with self._lock:
                    calls, self._calls = self._calls, deque()
                    self._woken = False
                    stopping = self._stopping
                for call in calls:
                    try:
                        call()
                    except Exception:
                        logger.exception("I/O loop: a scheduled call failed")
                if stopping:
                    return
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + self._tick_s
                    for connection in list(self._connections):
                        try:
                            connection._tick(now)
                        except Exception as exc:  # a bug: end that connection, reported
                            self._crashed(connection, exc)
        finally:
            for connection in list(self._connections):
                connection._finish(Exit(ExitKind.NORMAL, None, "I/O loop stopped"))
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()


#: The older name of the loop, from when it only watched for silent peers.
Watchdog = IoLoop


class _NoLoop(IoLoop):
    """Stands for the loop of a connection that has not started (and may never)."""

    def __init__(self) -> None:  # no thread, no sockets
        pass


_NOT_STARTED: IoLoop = _NoLoop()


class BoundedClose:
    """``close()`` for a session's connection, whatever carries it: ask for a graceful close,
    give it most of ``timeout``, else abort; then join what is left. One policy for every
    kind of connection (WebSocket, Daily call). The class supplies ``request_close``,
    ``abort``, ``join`` and a ``_done`` event set once it has ended."""

    _done: threading.Event

    if TYPE_CHECKING:  # what the connection class supplies

        def request_close(
            self,
            code: int = NORMAL_CLOSURE,
            reason: str = "",
            exit: Exit | None = None,
            *,
            flush: bool = True,
        ) -> None: ...

        def abort(self, exit: Exit | None = None) -> None: ...

        def join(self, timeout: float) -> bool: ...

    def close(
        self,
        code: int = NORMAL_CLOSURE,
        reason: str = "",
        timeout: float = 2.0,
        exit: Exit | None = None,
        *,
        flush: bool = True,
    ) -> None:
        """Close gracefully within ``timeout``: flush, close handshake, else abort; then join."""
        deadline = time.monotonic() + timeout
        self.request_close(code, reason, exit, flush=flush)
        # Leave a share of the deadline for joining after an abort.
        if not self._done.wait(max(0.0, (deadline - time.monotonic()) * 0.75)):
            self.abort()
        self.join(max(0.05, deadline - time.monotonic()))


class WebSocketConnection(BoundedClose):
    """One dial of one session's WebSocket.

    A short-lived thread dials (the connector's actor thread never blocks on the network);
    from then on the service's :class:`IoLoop` reads the socket, and whoever writes sends:
    the session's outbox calls :meth:`pump` after every put, which writes the queued frames
    straight to the socket without blocking (what does not fit waits for the loop to find
    the socket writable). Exactly one ``on_exit`` reports how the connection ended.
    """

    def __init__(
        self,
        options: DialOptions,
        *,
        session_id: str,
        outbox: Outbox[Frame | Keep],
        traffic: Traffic,
        on_open: Callable[[str | None], None],
        on_frame: Callable[[Frame], None],
        on_exit: Callable[[Exit], None],
        watchdog: IoLoop | None = None,
        dial_delay_s: float = 0.0,
        sent_log: SentLog | None = None,
    ) -> None:
        self.options = options
        self.session_id = session_id
        self.safe_url = redact_url(options.url)
        self._outbox = outbox
        self._traffic = traffic
        self._on_open = on_open
        self._on_frame = on_frame
        self._on_exit = on_exit
        self._own_loop = watchdog is None  # a connection made outside a service: its own
        self._loop: IoLoop = watchdog if watchdog is not None else _NOT_STARTED
        self._dial_delay_s = dial_delay_s
        self._sent_log = sent_log
        self._resend: list[Frame] = []  # what the gateway says it never received
        self._ws: wsc.WebSocket | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one writer at a time: frames stay whole, in order
        self._wbuf = bytearray()  # wire bytes taken off the outbox, not yet in the socket
        # For counting what a dead connection loses: bytes put into _wbuf so far (control
        # frames too), and that count after each recent data frame. Entries the peer has
        # acknowledged are trimmed now and then (see _trim_acked), so the ring holds about
        # the frames still in flight: an int per frame.
        self._wire_end = 0
        self._frame_ends: deque[int] = deque()
        self._trim_at = _RING_MIN
        self._watching_writable = False
        self._pongs: deque[bytes] = deque()
        self._ping_due = False
        self._next_ping = 0.0
        self._stopping = threading.Event()  # set once: the connection winds down
        self._close_request: tuple[int, str] | None = None
        self._close_now = False  # close without sending what is still queued
        self._close_sent = False
        self._peer_closed = False  # the peer's close frame came: a close handshake
        self._close_deadline = math.inf
        self._exit: Exit | None = None  # the first cause recorded wins
        self._attached = False  # on the loop; from then on only the loop finishes it
        self._finished = False
        self._done = threading.Event()
        self._rbuf = b""  # read, not yet parsed: the start of a frame still arriving
        self._parts: list[bytes] = []  # fragments of a message in progress
        self._parts_size = 0
        self._first_opcode = 0
        self.last_heard = time.monotonic()
        self.connected = False
        self._dial_timed_out = False
        self._dialer = threading.Thread(
            target=self._run_dialer, name=f"ws-dial-{session_id}", daemon=True
        )

    # -- control, from any thread -------------------------------------------------------------

    def start(self) -> None:
        if self._own_loop:
            self._loop = IoLoop()
        self._dialer.start()

    def request_close(
        self,
        code: int = NORMAL_CLOSURE,
        reason: str = "",
        exit: Exit | None = None,
        *,
        flush: bool = True,
    ) -> None:
        """Start a graceful close and return at once: what is queued is sent (unless
        ``flush`` is false: then it stays queued for the session's next connection), then a
        close frame; the connection ends when the peer's close frame comes back, or
        ``close_timeout_s`` later. ``exit`` is why, when it is not simply ours (a crash of
        the connector over a healthy socket)."""
        with self._lock:
            if exit is not None:
                self._record_exit(exit)
            if self._close_request is None:
                self._close_request = (code, reason)
            if not flush:
                self._close_now = True
            self._record_exit(Exit(ExitKind.NORMAL, code, reason))
            opened = self.connected
        if not opened:
            # Still dialling or waiting out a restart backoff: no handshake to wait for.
            self.abort()
            return
        self.pump()

    def abort(self, exit: Exit | None = None) -> None:
        """Stop now, without a handshake."""
        with self._lock:
            if exit is not None:
                self._record_exit(exit)
            self._stopping.set()
            attached = self._attached
        if attached:
            self._loop.call_soon(self._finish_aborted)
        else:
            self._shutdown_socket()  # wakes a dialer blocked in the handshake

    def join(self, timeout: float) -> bool:
        """Wait for the connection to end; return whether it did."""
        deadline = time.monotonic() + timeout
        dialer = self._dialer
        if dialer.ident is not None and dialer is not threading.current_thread():
            dialer.join(max(0.0, deadline - time.monotonic()))
        if dialer.ident is not None and not self._loop.in_loop():
            self._done.wait(max(0.0, deadline - time.monotonic()))
        ended = not dialer.is_alive() and (dialer.ident is None or self._done.is_set())
        if not ended:
            logger.warning(
                "session %s: connection still running after %.2f s", self.session_id, timeout
            )
        return ended

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def exit(self) -> Exit | None:
        """How the connection ended (or is ending); ``None`` while it runs."""
        return self._exit

    def check_alive(self, now: float) -> None:
        """Keepalive and close deadlines (the loop calls this every tick)."""
        self._tick(now)

    def pump(self) -> None:
        """Send what is queued, as far as the socket takes it without blocking. Called by the
        outbox after every put (on the writer's thread), and by the loop when the socket
        becomes writable again."""
        while self._send_lock.acquire(blocking=False):
            try:
                again = self._write_some()
            except Exception as exc:  # a bug, or a frame that cannot be framed: end, reported
                logger.exception("session %s: sending failed", self.session_id)
                self.abort(Exit(ExitKind.CRASH, INTERNAL_ERROR, _describe(exc)))
                return
            finally:
                self._send_lock.release()
            # A put made while we held the lock left its frames to us: take them too.
            if not again:
                return

    # -- the dialer thread --------------------------------------------------------------------

    def _run_dialer(self) -> None:
        exit: Exit | None = None
        try:
            if self._dial_delay_s > 0 and self._stopping.wait(self._dial_delay_s):
                exit = Exit(ExitKind.NORMAL, None, "stopped before dialling")
                return
            # The whole handshake has a deadline, not only each read: a peer that drips its
            # answer a byte at a time would otherwise hold the dial (and the session) for ever.
            deadline = threading.Timer(self.options.connect_timeout_s, self._dial_expired)
            deadline.name, deadline.daemon = f"ws-dial-deadline-{self.session_id}", True
            deadline.start()
            try:
                ws = self._dial()
            except Exception as exc:  # every dependency error becomes a reason, never leaks
                reason = _describe(exc)
                if self._dial_timed_out:
                    reason = f"handshake not done within {self.options.connect_timeout_s:g} s"
                if self._stopping.is_set():
                    exit = Exit(ExitKind.NORMAL, None, "stopped while dialling")
                else:
                    logger.info(
                        "session %s: dialling %s failed: %s",
                        self.session_id,
                        self.safe_url,
                        reason,
                    )
                    exit = Exit(ExitKind.HANDSHAKE_FAILED, None, reason)
                return
            finally:
                deadline.cancel()
                deadline.join()
            if self._stopping.is_set():
                exit = Exit(ExitKind.NORMAL, None, "stopped while dialling")
                return
            now = time.monotonic()
            self.last_heard = now
            self._next_ping = now + self.options.ping_interval_s
            with self._lock:
                self.connected = True
            self._loop.call_soon(self._attach)
            logger.debug("session %s: connected to %s", self.session_id, self.safe_url)
            self._on_open(ws.getsubprotocol())
        except Exception as exc:
            logger.exception("session %s: dialler crashed", self.session_id)
            exit = Exit(ExitKind.CRASH, INTERNAL_ERROR, _describe(exc))
        finally:
            if exit is not None:
                self._finish(exit)

    def _dial_expired(self) -> None:
        with self._lock:
            if self._sock is not None:  # the handshake is done: too late to matter
                return
            self._dial_timed_out = True
        self._shutdown_socket()  # cuts the handshake short: wakes the dialer

    def _dial(self) -> wsc.WebSocket:
        opts = self.options
        # skip_utf8_validation: websocket-client's validator walks text frames byte by byte
        # in Python. Every text frame is decoded with bytes.decode("utf-8") instead, which is
        # strict, runs in C, and has to happen anyway; invalid UTF-8 still closes the
        # connection with 1007, as RFC 6455 asks.
        ws = wsc.WebSocket(skip_utf8_validation=True)
        self._ws = ws
        header = [f"{k}: {v}" for k, v in opts.headers.items()]
        log = self._sent_log
        if log is not None:
            # Everything received so far went into the inbox: the gateway resumes after it.
            header.append(f"{RESUME_FROM_HEADER}: {self._traffic.frames_in}")
        ws.connect(
            opts.url,
            timeout=opts.connect_timeout_s,
            header=header,
            subprotocols=list(opts.subprotocols) or None,
        )
        sock = ws.sock
        assert sock is not None
        with self._lock:
            if self._dial_timed_out:  # the deadline passed as the handshake completed
                raise TimeoutError
            self._sock = sock
        # From here the loop reads it and writers never wait on it: the watchdog, not a
        # socket timeout, detects a silent peer.
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # small frames, sent as soon as they are written
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if log is not None:
            self._plan_resend(log, ws.getheaders() or {})
        return ws

    def _plan_resend(self, log: SentLog, headers: Mapping[str, str]) -> None:
        traffic = self._traffic
        # What the last connection had in flight is settled here: resent, or lost.
        unsettled, traffic.frames_unsettled = traffic.frames_unsettled, 0
        try:
            received = int(headers[RECEIVED_HEADER])
        except (KeyError, ValueError):
            logger.warning(
                "session %s: %s answered without a valid %s header; not resending",
                self.session_id,
                self.safe_url,
                RECEIVED_HEADER,
            )
            traffic.frames_lost += unsettled
            return
        if received > log.count:
            logger.error(
                "session %s: the gateway counts %d frames received, only %d were sent",
                self.session_id,
                received,
                log.count,
            )
            traffic.frames_lost += unsettled
            return
        self._resend, lost = log.since(received)
        traffic.frames_lost += lost
        if lost:
            logger.warning(
                "session %s: %d sent frames were lost with the last connection and are no "
                "longer kept for resending",
                self.session_id,
                lost,
            )
        if self._resend:
            logger.info(
                "session %s: resending %d frames the gateway did not receive",
                self.session_id,
                len(self._resend),
            )

    # -- writing, on whichever thread holds the send lock --------------------------------------

    def _write_some(self) -> bool:
        """Move what is due onto the wire; whether more was queued meanwhile and may go now."""
        sock = self._sock
        if sock is None or self._finished or not self._attached:
            return False
        if self._wbuf and not self._flush(sock):
            return False
        out: list[bytes] = []
        while self._pongs:
            out.append(_wire(self._pongs.popleft(), _PONG))
        if self._ping_due:
            self._ping_due = False
            out.append(_wire(b"", _PING))
        traffic = self._traffic
        ends = self._frame_ends
        pos = self._wire_end + sum(map(len, out))  # where the data frames start on the wire
        if self._resend:
            for frame in self._resend:  # before anything new, to keep the order
                wire = _wire(frame, _TEXT if isinstance(frame, str) else _BINARY)
                out.append(wire)
                pos += len(wire)
                ends.append(pos)
                traffic.frames_resent += 1
            self._resend = []
        outbox = self._outbox
        if not self._close_now:
            log = self._sent_log
            for item in outbox.take():
                frame = item.frame if isinstance(item, Keep) else item
                if isinstance(frame, str):
                    data = frame.encode()
                    wire = _wire(data, _TEXT)
                else:
                    data = frame
                    wire = _wire(data, _BINARY)
                out.append(wire)
                pos += len(wire)
                ends.append(pos)
                traffic.frames_out += 1
                traffic.bytes_out += len(data)
                if log is not None:
                    log.record(frame)
        request = self._close_request
        if request is not None and not self._close_sent and (self._close_now or len(outbox) == 0):
            wire = _close_frame(*request)
            out.append(wire)
            pos += len(wire)
            self._close_sent = True
            self._close_deadline = time.monotonic() + self.options.close_timeout_s
        if not out:
            return False
        self._wire_end = pos
        self._wbuf += b"".join(out)
        flushed = self._flush(sock)
        if len(ends) > self._trim_at:
            self._trim_acked(sock)
        return flushed and len(outbox) > 0 and not self._close_sent

    def _flush(self, sock: socket.socket) -> bool:
        """Write as much of the pending bytes as the socket takes now; whether all went."""
        try:
            sent = sock.send(self._wbuf)
        except _BLOCKED:
            sent = 0
        except OSError as exc:
            self.abort(Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, _describe(exc)))
            return False
        if sent:
            del self._wbuf[:sent]
        if self._wbuf:
            if not self._watching_writable:
                self._watching_writable = True
                self._loop.call_soon(lambda: self._loop._watch_writable(self, sock))
            return False
        return True

    def _wants_writable(self) -> bool:
        return bool(self._wbuf)

    # -- what is in flight (the send lock's holder) --------------------------------------------

    def _undelivered_bytes(self, sock: socket.socket) -> tuple[int, int] | None:
        """``(bytes at the end of what we wrote that the peer may not have, of which in the
        kernel)``; ``None`` if the kernel cannot tell (not Linux, socket gone).

        Linux's ``SIOCOUTQ`` is the socket's send queue not yet acknowledged by the peer's
        TCP (unsent + unacked): whatever it has acknowledged its application can read.
        Over TLS the queue holds records, not our bytes, so this is an estimate, and an
        upper bound: a record costs more bytes than it carries, a partly acknowledged record
        delivers none of its frames (hence one whole record's worth added), and a write
        OpenSSL asked to retry may be both in ``_wbuf`` and in the kernel.
        """
        queued = _kernel_unacked(sock)
        if queued is None:
            return None
        if queued > 0 and isinstance(sock, ssl.SSLSocket):
            queued += _TLS_RECORD
        return len(self._wbuf) + queued, queued

    def _trim_acked(self, sock: socket.socket) -> None:
        """Forget the frames the peer has acknowledged. Run when the ring has doubled since
        the last trim, so it costs one system call per many frames and holds at most about
        twice the frames in flight (plus _RING_MIN)."""
        ends = self._frame_ends
        undelivered = self._undelivered_bytes(sock)
        if undelivered is None:  # no kernel count: only the newest frames are kept
            while len(ends) > _RING_MIN:
                ends.popleft()
        else:
            delivered = self._wire_end - undelivered[0]
            while ends and ends[0] <= delivered:
                ends.popleft()
        self._trim_at = max(_RING_MIN, 2 * len(ends))

    def _count_lost(self, sock: socket.socket | None) -> int:
        """At the connection's end: the data frames the peer cannot have received whole.

        A frame is delivered once its last byte is acknowledged; the rest (in our write
        buffer, or in the kernel's send queue unacknowledged) is lost with the connection.
        The socket is then closed with a reset, so that nothing counted here can still
        reach the peer later (the kernel would otherwise keep retransmitting it).
        """
        ends = self._frame_ends
        if not ends:
            return 0
        undelivered = self._undelivered_bytes(sock) if sock is not None else None
        in_kernel = 0
        if undelivered is None:  # only what never left us is known to be lost
            unsent = len(self._wbuf)
        else:
            unsent, in_kernel = undelivered
        delivered = self._wire_end - unsent
        lost = 0
        for end in reversed(ends):
            if end <= delivered:
                break
            lost += 1
        if in_kernel and sock is not None:
            with contextlib.suppress(OSError):  # a zero linger: close() resets, discards
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ends.clear()
        return lost

    def _settle_lost(self, lost: int) -> None:
        if not lost:
            return
        traffic = self._traffic
        if self._sent_log is None:
            traffic.frames_lost += lost
            logger.warning(
                "session %s: %d sent frames were lost in flight with the connection "
                "(no resume on this provider)",
                self.session_id,
                lost,
            )
        else:  # the gateway's count on the next dial says what to resend
            traffic.frames_unsettled += lost

    # -- on the loop thread --------------------------------------------------------------------

    def _attach(self) -> None:
        sock = self._sock
        if self._stopping.is_set() or sock is None:
            self._finish_aborted()
            return
        self._loop._add(self, sock)
        with self._lock:
            self._attached = True
        self._outbox.attach(self.pump)  # sends at once what waited for this connection

    def _on_writable(self) -> None:
        self.pump()
        sock = self._sock
        if not self._wbuf and sock is not None and self._watching_writable:
            self._watching_writable = False
            self._loop._watch_writable(self, sock)

    def _read(self) -> bytes | None:
        """What the socket has for us (``None``: nothing, or the connection ended)."""
        sock = self._sock
        if sock is None or self._finished:
            return None
        try:
            data = sock.recv(_READ_SIZE)
            if isinstance(sock, ssl.SSLSocket):
                while pending := sock.pending():  # decrypted already: epoll cannot tell
                    data += sock.recv(pending)
        except _BLOCKED:
            return None
        except OSError as exc:
            self._finish(self._lost(_describe(exc)))
            return None
        if not data:
            self._finish(self._lost("connection closed without a close frame"))
            return None
        self.last_heard = time.monotonic()
        return data

    def _consume(self, data: bytes) -> None:
        """Handle what was read: every whole frame in it, after what was left over."""
        if self._finished:
            return
        if self._rbuf:
            data = self._rbuf + data
        exit = self._parse(data)
        if exit is not None:
            self._finish(exit)

    def _lost(self, reason: str) -> Exit:
        if self._stopping.is_set():
            return Exit(ExitKind.NORMAL, None, "aborted")
        return Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, reason)

    def _parse(self, buf: bytes) -> Exit | None:
        """Handle every whole frame in ``buf`` (keeping the start of one still arriving);
        the exit, if a frame ended the connection.

        A server's frames, RFC 6455 section 5: parsed here rather than by websocket-client,
        whose parser costs ten times as much per frame (it is written for a blocking socket,
        a read per field).
        """
        size = len(buf)
        pos = 0
        try:
            while (found := self._frame_at(buf, pos, size)) is not None:
                fin, opcode, start, pos = found
                exit = self._handle(fin, opcode, buf[start:pos])
                if exit is not None:
                    return exit
        except _TooBig as exc:
            self._send_close(MESSAGE_TOO_BIG, "message too big")
            return Exit(ExitKind.PROTOCOL_ERROR, MESSAGE_TOO_BIG, str(exc))
        except UnicodeDecodeError:
            self._send_close(INVALID_PAYLOAD, "invalid UTF-8")
            return Exit(ExitKind.PROTOCOL_ERROR, INVALID_PAYLOAD, "invalid UTF-8 in a text frame")
        except wsc.WebSocketProtocolException as exc:
            self._send_close(_PROTOCOL_ERROR, "protocol error")
            return Exit(ExitKind.PROTOCOL_ERROR, _PROTOCOL_ERROR, str(exc))
        self._rbuf = buf[pos:] if pos < size else b""
        return None

    def _frame_at(self, buf: bytes, pos: int, size: int) -> tuple[int, int, int, int] | None:
        """``(fin, opcode, payload start, end)`` of the frame at ``pos``, if it is all there."""
        if size - pos < 2:
            return None
        b1, b2 = buf[pos], buf[pos + 1]
        if b2 & 0x80:
            raise wsc.WebSocketProtocolException("a masked frame from the server")
        if b1 & 0x70:
            raise wsc.WebSocketProtocolException("reserved bits set")
        fin, opcode, length, head = b1 & 0x80, b1 & 0x0F, b2 & 0x7F, 2
        if length == 126:
            if size - pos < 4:
                return None
            length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if size - pos < 10:
                return None
            length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        if opcode >= 8:
            if length > 125 or not fin:
                raise wsc.WebSocketProtocolException("an invalid control frame")
        elif self._parts_size + length > self.options.max_message_bytes:
            # Refused from its header, before its payload is buffered.
            raise _TooBig(self._parts_size + length, self.options.max_message_bytes)
        end = pos + head + length
        return None if end > size else (fin, opcode, pos + head, end)

    def _handle(self, fin: int, opcode: int, payload: bytes) -> Exit | None:
        """One frame: data to ``on_frame`` (whole messages), a ping answered, a close."""
        if opcode in _DATA_OPCODES:
            parts = self._parts
            if opcode == _CONT:
                if not parts:
                    raise wsc.WebSocketProtocolException("continuation without a start")
            elif parts:
                raise wsc.WebSocketProtocolException("new message inside a fragmented one")
            else:
                self._first_opcode = opcode
            if not fin or parts:
                parts.append(payload)
                self._parts_size += len(payload)
                if not fin:
                    return None
                payload = b"".join(parts)
                parts.clear()
                self._parts_size = 0
            traffic = self._traffic
            traffic.frames_in += 1
            traffic.bytes_in += len(payload)
            self._on_frame(payload.decode("utf-8") if self._first_opcode == _TEXT else payload)
        elif opcode == _PING:
            self._pongs.append(payload)
            self.pump()
        elif opcode == _CLOSE:
            return self._closed_by_peer(payload)
        elif opcode != _PONG:  # a pong only proves the peer is there (any read does)
            raise wsc.WebSocketProtocolException(f"unknown opcode {opcode}")
        return None

    def _closed_by_peer(self, payload: bytes) -> Exit:
        self._peer_closed = True
        code, reason = _NO_STATUS, ""
        if len(payload) >= 2:
            code = struct.unpack("!H", payload[:2])[0]
            reason = payload[2:].decode("utf-8", "replace")
        if self._close_sent:
            return Exit(ExitKind.NORMAL, code, reason)
        # Echo the close frame (RFC 6455 5.5.1), at once: nothing more goes out.
        self._send_close(code if code != _NO_STATUS else NORMAL_CLOSURE, "")
        return Exit(ExitKind.PEER_CLOSED, code, reason)

    def _send_close(self, code: int, reason: str) -> None:
        with self._lock:
            if self._close_request is None or not self._close_sent:
                self._close_request = (code, reason)
            self._close_now = True
        self.pump()

    def _tick(self, now: float) -> None:
        opts = self.options
        if self.connected and opts.ping_interval_s > 0:
            silent = now - self.last_heard
            if silent > opts.ping_interval_s + opts.ping_timeout_s:
                self.abort(Exit(ExitKind.PING_TIMEOUT, None, f"peer silent for {silent:.1f} s"))
                return
            if now >= self._next_ping:
                self._next_ping = now + opts.ping_interval_s
                self._ping_due = True
                self.pump()
        if now > self._close_deadline:
            self.abort()  # the peer never answered our close frame

    def _finish_aborted(self) -> None:
        self._finish(Exit(ExitKind.NORMAL, None, "aborted"))

    # -- the end -------------------------------------------------------------------------------

    def _record_exit(self, exit: Exit) -> None:
        # Caller holds self._lock.
        if self._exit is None:
            self._exit = exit

    def _shutdown_socket(self) -> None:
        ws = self._ws
        sock = self._sock or (ws.sock if ws is not None else None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _finish(self, exit: Exit) -> None:
        """Wind down and report the exit, exactly once (on the loop thread once attached)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._record_exit(exit)
            final = self._exit
            self._stopping.set()
            self.connected = False
        assert final is not None
        self._outbox.detach(self.pump)
        sock = self._sock
        if sock is not None and self._attached:
            self._loop._remove(self, sock)
        with self._send_lock:  # no writer is using the socket while it closes
            # First, while the kernel still has the socket's send queue: what is lost. Not
            # after a close handshake (the peer read up to its close; what crossed it is the
            # peer's to read or not), nor after our close for a protocol error (it must reach
            # the peer): every other end is a death, and what it had in flight is lost.
            if not self._peer_closed and final.kind is not ExitKind.PROTOCOL_ERROR:
                self._settle_lost(self._count_lost(sock))
            if sock is not None:
                _drain(sock)
            self._shutdown_socket()
            if self._ws is not None:
                self._ws.shutdown()  # closes the file descriptor
            self._sock = None
        self._done.set()
        if self._own_loop and self._loop is not _NOT_STARTED:
            self._loop.stop()
        logger.info("session %s: connection to %s ended: %s", self.session_id, self.safe_url, final)
        self._on_exit(final)


_READ_SIZE = 65536
_RING_MIN = 256  # sent frames remembered before the first trim (see _trim_acked)
_TLS_RECORD = 16384  # the most plaintext one TLS record carries (RFC 8446 5.1)
# Linux's SIOCOUTQ (== TIOCOUTQ): a TCP socket's bytes not yet acknowledged by the peer.
_SIOCOUTQ: int | None = 0x5411 if sys.platform.startswith("linux") else None


def _kernel_unacked(sock: socket.socket) -> int | None:
    """Bytes in ``sock``'s send queue the peer has not acknowledged; ``None``: unknown."""
    if _SIOCOUTQ is None:
        return None
    try:
        answer = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):  # closed meanwhile, or not a TCP socket
        return None
    queued: int = struct.unpack("i", answer)[0]
    return max(0, queued)


def _drain(sock: socket.socket) -> None:
    """Read and drop what has arrived unread: closing a TCP socket with unread data sends a
    reset, and a reset makes the peer's kernel drop what *it* has not read yet (our last
    frames). Bounded: a peer still streaming at us is not waited for."""
    with contextlib.suppress(OSError, ValueError):
        for _ in range(16):
            if not sock.recv(_READ_SIZE):
                return


class _MaskKeys(threading.local):
    """Masking keys from ``os.urandom``, drawn 4 KiB at a time per thread: one system call
    per key was the writer's largest cost after the send itself (each call lets the GIL go,
    and getting it back is a wait behind every other thread)."""

    def __init__(self) -> None:
        self.pool = b""
        self.pos = 0

    def __call__(self) -> bytes:
        pos = self.pos
        if pos >= len(self.pool):
            self.pool, pos = os.urandom(4096), 0
        self.pos = pos + 4
        return self.pool[pos : pos + 4]


_mask_keys = _MaskKeys()


def _wire(data: str | bytes, opcode: int) -> bytes:
    """One masked client frame, ready for the socket (RFC 6455 section 5.2).

    Built here rather than with websocket-client's ``ABNF.format``, at a third of its cost:
    a frame is built for every frame sent. The mask is 4 bytes of ``os.urandom``, as the
    RFC asks (unpredictable; see :class:`_MaskKeys`), and applied as one integer XOR.
    """
    if isinstance(data, str):
        data = data.encode()
    size = len(data)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, size)
    key = _mask_keys()
    if not size:
        return head + key
    mask = (key * ((size + 3) >> 2))[:size]
    masked = int.from_bytes(data, "little") ^ int.from_bytes(mask, "little")
    return head + key + masked.to_bytes(size, "little")


def _close_frame(code: int, reason: str) -> bytes:
    # A control frame carries at most 125 bytes: the code, then a reason cut to 123 bytes
    # without splitting a character.
    text = reason.encode()[:123].decode("utf-8", "ignore").encode()
    return _wire(struct.pack("!H", code) + text, _CLOSE)
