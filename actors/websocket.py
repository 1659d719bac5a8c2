"""A thread-driven WebSocket client: the only module that imports ``websocket-client``.

One :class:`WebSocketConnection` is one dial of one session. It runs two threads, both named
with the session id:

- the **reader** dials (so the connector's actor thread never blocks on the network), then reads
  frames, turns them into ``str`` (text) or ``bytes`` (binary) and hands them to ``on_frame``,
  which decodes them straight into the session's inbox. It answers pings and close frames, and
  reports how the connection ended through ``on_exit``: exactly once, whatever ended it.
- the **writer** drains the session's :class:`~actors.queues.Outbox` in batches and sends a
  keepalive ping every ``ping_interval_s``. Sending is the only blocking call on the way out, so
  it has a thread of its own rather than the actor's.

A single :class:`Watchdog` thread per service watches when each connection last heard from its
peer (a pong, or any frame) and aborts one that has been silent for ``ping_interval_s +
ping_timeout_s``. It must be a third party: against a half-open peer the reader blocks in
``recv`` forever and the writer may block in ``send`` once the kernel's buffer is full. Any
frame counts, not just pongs, because a busy peer answers a ping only after the data queued
ahead of it, and a connection carrying traffic is by definition not half-open.

``close()`` works from any thread and is bounded: it asks the writer to flush and send a close
frame, waits for the peer's close frame until the deadline, then aborts the socket
(``shutdown(SHUT_RDWR)`` wakes both threads) and joins them. websocket-client's own reconnect
(``WebSocketApp.run_forever(reconnect=...)``) is not used: redialling is the supervisor's call.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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

__all__ = ["DialOptions", "SentLog", "Traffic", "Watchdog", "WebSocketConnection"]

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

    __slots__ = ("bytes_in", "bytes_out", "frames_in", "frames_out", "frames_resent")

    def __init__(self) -> None:
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.frames_resent = 0  # sent again after a reconnect, not counted in frames_out


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


class WebSocketConnection:
    """One dial of one session's WebSocket, with its reader and writer threads."""

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
        watchdog: Watchdog | None = None,
        dial_delay_s: float = 0.0,
        sent_log: SentLog | None = None,
    ) -> None:
        self.options = options
        self._sent_log = sent_log
        self._resend: list[Frame] = []  # what the gateway says it never received
        self.session_id = session_id
        self.safe_url = redact_url(options.url)
        self._outbox = outbox
        self._traffic = traffic
        self._on_open = on_open
        self._on_frame = on_frame
        self._on_exit = on_exit
        self._watchdog = watchdog
        self._dial_delay_s = dial_delay_s
        self._ws: wsc.WebSocket | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # set once: every thread winds down
        self._close_request: tuple[int, str] | None = None
        self._close_sent = False
        self._exit: Exit | None = None  # the first cause recorded wins
        self._done = threading.Event()
        self.last_heard = time.monotonic()
        self.connected = False
        self._reader = threading.Thread(
            target=self._run_reader, name=f"ws-reader-{session_id}", daemon=True
        )
        self._writer: threading.Thread | None = None

    # -- control, from any thread -------------------------------------------------------------

    def start(self) -> None:
        self._reader.start()

    def request_close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Start a graceful close and return at once: the writer flushes, then sends a close
        frame; the reader ends when the peer's close frame comes back."""
        with self._lock:
            if self._close_request is None:
                self._close_request = (code, reason)
            self._record_exit(Exit(ExitKind.NORMAL, code, reason))
            opened = self._writer is not None
        if not opened:
            # Still dialling or waiting out a restart backoff: no handshake to wait for.
            self.abort()
            return
        self._outbox.wake()

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "", timeout: float = 2.0) -> None:
        """Close gracefully within ``timeout``: flush, close handshake, else abort; then join."""
        deadline = time.monotonic() + timeout
        self.request_close(code, reason)
        # Leave a share of the deadline for joining after an abort.
        if not self._done.wait(max(0.0, (deadline - time.monotonic()) * 0.75)):
            self.abort()
        self.join(max(0.05, deadline - time.monotonic()))

    def abort(self, exit: Exit | None = None) -> None:
        """Stop now: shut the socket down (which wakes both threads) without a handshake."""
        with self._lock:
            if exit is not None:
                self._record_exit(exit)
            self._stopping.set()
        self._shutdown_socket()
        self._outbox.wake()

    def join(self, timeout: float) -> bool:
        """Wait for both threads to end; return whether they did."""
        deadline = time.monotonic() + timeout
        if self._reader.ident is not None and self._reader is not threading.current_thread():
            self._reader.join(max(0.0, deadline - time.monotonic()))
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(max(0.0, deadline - time.monotonic()))
        alive = self._reader.is_alive() or (writer is not None and writer.is_alive())
        if alive:
            logger.warning(
                "session %s: connection threads still running after %.2f s",
                self.session_id,
                timeout,
            )
        return not alive

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def exit(self) -> Exit | None:
        """How the connection ended (or is ending); ``None`` while it runs."""
        return self._exit

    def check_alive(self, now: float) -> None:
        """Called by the watchdog: abort if nothing came within interval + timeout."""
        opts = self.options
        if self.connected and now - self.last_heard > opts.ping_interval_s + opts.ping_timeout_s:
            silent = now - self.last_heard
            self.abort(Exit(ExitKind.PING_TIMEOUT, None, f"peer silent for {silent:.1f} s"))

    # -- internals -----------------------------------------------------------------------------

    def _record_exit(self, exit: Exit) -> None:
        # Caller holds self._lock.
        if self._exit is None:
            self._exit = exit

    def _shutdown_socket(self) -> None:
        ws = self._ws
        sock = ws.sock if ws is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _dial(self) -> wsc.WebSocket:
        opts = self.options
        # skip_utf8_validation=True: websocket-client's validator walks text frames byte by
        # byte in Python (tens of microseconds for a 300-byte Twilio frame). We decode every
        # text frame with bytes.decode("utf-8") instead, which is strict, runs in C, and has
        # to happen anyway; invalid UTF-8 still closes the connection with 1007, as RFC 6455
        # asks. Only close-frame reasons go unvalidated, and they are decoded with replacement.
        ws = wsc.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        self._ws = ws
        limit = opts.max_message_bytes
        buffer = ws.frame_buffer
        read_length = buffer.recv_length

        def recv_length_checked() -> None:
            # Refuse an oversized frame from its header, before its payload is read into memory.
            read_length()
            if buffer.length is not None and buffer.length > limit:
                raise _TooBig(buffer.length, limit)

        buffer.recv_length = recv_length_checked  # type: ignore[method-assign]
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
        ws.settimeout(None)  # the watchdog, not a socket timeout, detects a silent peer
        if log is not None:
            self._plan_resend(log, ws.getheaders() or {})
        return ws

    def _plan_resend(self, log: SentLog, headers: Mapping[str, str]) -> None:
        try:
            received = int(headers[RECEIVED_HEADER])
        except (KeyError, ValueError):
            logger.warning(
                "session %s: %s answered without a valid %s header; not resending",
                self.session_id,
                self.safe_url,
                RECEIVED_HEADER,
            )
            return
        if received > log.count:
            logger.error(
                "session %s: the gateway counts %d frames received, only %d were sent",
                self.session_id,
                received,
                log.count,
            )
            return
        self._resend, lost = log.since(received)
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

    def _run_reader(self) -> None:
        exit = Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, "")
        try:
            if self._dial_delay_s > 0 and self._stopping.wait(self._dial_delay_s):
                exit = Exit(ExitKind.NORMAL, None, "stopped before dialling")
                return
            try:
                ws = self._dial()
            except Exception as exc:  # every dependency error becomes a reason, never leaks
                reason = _describe(exc)
                logger.info(
                    "session %s: dialling %s failed: %s", self.session_id, self.safe_url, reason
                )
                exit = Exit(ExitKind.HANDSHAKE_FAILED, None, reason)
                return
            if self._stopping.is_set():
                exit = Exit(ExitKind.NORMAL, None, "stopped while dialling")
                return
            self.last_heard = time.monotonic()
            self.connected = True
            self._writer = threading.Thread(
                target=self._run_writer, name=f"ws-writer-{self.session_id}", daemon=True
            )
            self._writer.start()
            if self._watchdog is not None:
                self._watchdog.register(self)
            logger.debug("session %s: connected to %s", self.session_id, self.safe_url)
            self._on_open(ws.getsubprotocol())
            exit = self._read_frames(ws)
        except Exception as exc:
            logger.exception("session %s: reader crashed", self.session_id)
            exit = Exit(ExitKind.CRASH, INTERNAL_ERROR, _describe(exc))
        finally:
            self._finish(exit)

    def _read_frames(self, ws: wsc.WebSocket) -> Exit:
        traffic = self._traffic
        on_frame = self._on_frame
        limit = self.options.max_message_bytes
        parts: list[bytes] = []  # fragments of a message in progress
        parts_size = 0
        first_opcode = 0
        try:
            while True:
                frame = ws.recv_frame()
                opcode = frame.opcode
                if opcode in _DATA_OPCODES:
                    if opcode == _CONT:
                        if not parts:
                            raise wsc.WebSocketProtocolException("continuation without a start")
                    elif parts:
                        raise wsc.WebSocketProtocolException("new message inside a fragmented one")
                    else:
                        first_opcode = opcode
                    data: bytes = frame.data
                    if not frame.fin or parts:
                        parts.append(data)
                        parts_size += len(data)
                        if parts_size > limit:
                            raise _TooBig(parts_size, limit)
                        if not frame.fin:
                            continue
                        data = b"".join(parts)
                        parts.clear()
                        parts_size = 0
                    self.last_heard = time.monotonic()
                    traffic.frames_in += 1
                    traffic.bytes_in += len(data)
                    on_frame(data.decode("utf-8") if first_opcode == _TEXT else data)
                elif opcode == _PING:
                    ws.pong(frame.data)
                elif opcode == _PONG:
                    self.last_heard = time.monotonic()
                elif opcode == _CLOSE:
                    return self._closed_by_peer(ws, frame.data)
        except _TooBig as exc:
            self._send_close(ws, MESSAGE_TOO_BIG, "message too big")
            return Exit(ExitKind.PROTOCOL_ERROR, MESSAGE_TOO_BIG, str(exc))
        except UnicodeDecodeError:
            self._send_close(ws, INVALID_PAYLOAD, "invalid UTF-8")
            return Exit(ExitKind.PROTOCOL_ERROR, INVALID_PAYLOAD, "invalid UTF-8 in a text frame")
        except (wsc.WebSocketProtocolException, wsc.WebSocketPayloadException) as exc:
            self._send_close(ws, _PROTOCOL_ERROR, "protocol error")
            return Exit(ExitKind.PROTOCOL_ERROR, _PROTOCOL_ERROR, str(exc))
        except (wsc.WebSocketConnectionClosedException, OSError) as exc:
            if self._stopping.is_set():
                return Exit(ExitKind.NORMAL, None, "aborted")
            reason = "connection closed without a close frame"
            if isinstance(exc, OSError):
                reason = _describe(exc)
            return Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, reason)

    def _closed_by_peer(self, ws: wsc.WebSocket, payload: bytes) -> Exit:
        code, reason = _NO_STATUS, ""
        if len(payload) >= 2:
            code = struct.unpack("!H", payload[:2])[0]
            reason = payload[2:].decode("utf-8", "replace")
        with self._lock:
            we_started = self._close_sent
        if we_started:
            return Exit(ExitKind.NORMAL, code, reason)
        # Echo the close frame (RFC 6455 5.5.1); websocket-client's recv_data would do the same.
        self._send_close(ws, code if code != _NO_STATUS else NORMAL_CLOSURE, "")
        return Exit(ExitKind.PEER_CLOSED, code, reason)

    def _send_close(self, ws: wsc.WebSocket, code: int, reason: str) -> None:
        with self._lock:
            if self._close_sent:
                return
            self._close_sent = True
        # A control frame carries at most 125 bytes: the code, then a reason cut to 123 bytes
        # without splitting a character.
        text = reason.encode()[:123].decode("utf-8", "ignore").encode()
        with contextlib.suppress(Exception):
            ws.send(struct.pack("!H", code) + text, _CLOSE)

    def _run_writer(self) -> None:
        ws = self._ws
        assert ws is not None
        outbox, traffic = self._outbox, self._traffic
        interval = self.options.ping_interval_s
        next_ping = time.monotonic() + interval if interval > 0 else None
        log = self._sent_log
        try:
            for frame in self._resend:  # before anything new, to keep the order
                ws.send(frame, _TEXT if isinstance(frame, str) else _BINARY)
                traffic.frames_resent += 1
            self._resend = []
            while not self._stopping.is_set():
                timeout = None if next_ping is None else max(0.0, next_ping - time.monotonic())
                batch = outbox.take(timeout)
                for i, item in enumerate(batch):
                    if self._stopping.is_set():
                        outbox.requeue_front(batch[i:])
                        return
                    frame = item.frame if isinstance(item, Keep) else item
                    is_text = isinstance(frame, str)
                    data = frame.encode() if isinstance(frame, str) else frame
                    # Counted before the send, so that no echo can be read before its frame
                    # was counted out; taken back if the send fails.
                    traffic.frames_out += 1
                    traffic.bytes_out += len(data)
                    try:
                        ws.send(data, _TEXT if is_text else _BINARY)
                    except Exception as exc:
                        traffic.frames_out -= 1
                        traffic.bytes_out -= len(data)
                        # Not sent: back to the front of the queue for the next connection.
                        outbox.requeue_front(batch[i:])
                        self.abort(Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, _describe(exc)))
                        return
                    if log is not None:
                        log.record(frame)
                if next_ping is not None and time.monotonic() >= next_ping:
                    ws.ping()
                    next_ping += interval
                request = self._close_request
                if request is not None and len(outbox) == 0:
                    self._send_close(ws, *request)
                    # The peer has close_timeout_s to answer with its close frame (which ends
                    # the reader, and sets _stopping); a peer that never does is cut off.
                    if not self._stopping.wait(self.options.close_timeout_s):
                        self.abort()
                    return
        except Exception as exc:
            self.abort(Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, _describe(exc)))

    def _finish(self, exit: Exit) -> None:
        """The reader's last act: wind everything down and report the exit, exactly once."""
        with self._lock:
            self._record_exit(exit)
            final = self._exit
            self._stopping.set()
        assert final is not None
        self.connected = False
        if self._watchdog is not None:
            self._watchdog.unregister(self)
        self._shutdown_socket()
        self._outbox.wake()
        writer = self._writer
        if writer is not None:
            writer.join(self.options.connect_timeout_s)
        if self._ws is not None:
            self._ws.shutdown()  # closes the file descriptor
        self._done.set()
        logger.info("session %s: connection to %s ended: %s", self.session_id, self.safe_url, final)
        self._on_exit(final)


class Watchdog:
    """One thread that aborts every connection whose peer stopped answering pings."""

    def __init__(self, tick_s: float = 0.1) -> None:
        self._tick_s = tick_s
        self._connections: weakref.WeakSet[WebSocketConnection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ws-watchdog", daemon=True)
        self._thread.start()

    def register(self, connection: WebSocketConnection) -> None:
        if connection.options.ping_interval_s > 0:
            with self._lock:
                self._connections.add(connection)

    def unregister(self, connection: WebSocketConnection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            with self._lock:
                connections = list(self._connections)
            now = time.monotonic()
            for connection in connections:
                try:
                    connection.check_alive(now)
                except Exception:
                    logger.exception("watchdog: checking session %s failed", connection.session_id)
