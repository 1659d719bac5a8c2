"""One dial of one session's WebSocket: the socket, the dial, the locks, the timers.

:class:`WebSocketConnection` keeps the I/O; :class:`~actors.wire.ClientProtocol` speaks RFC 6455
(bytes in -> messages, messages -> bytes) and keeps the close handshake's state. Threads:

- a short-lived thread, named with the session id, **dials** (:mod:`.dial`; the connector's
  actor thread never blocks on the network) and hands the open socket to the service's
  :class:`~.ioloop.IoLoop`;
- the loop's thread **reads** the socket, feeds the protocol and passes each message to
  ``on_frame``, which decodes it straight into the session's inbox. The protocol answers pings
  and close frames; the connection reports how it ended through ``on_exit``: exactly once,
  whatever ended it;
- whoever **writes** sends: the session's outbox calls :meth:`WebSocketConnection.pump` after
  every put, which frames what is queued and writes it to the socket without blocking. What
  the socket does not take waits in the connection until the loop finds it writable again, so
  a slow peer backs up into the (bounded) outbox, never into the application's thread.

The protocol is one thread's at a time: whoever holds the send lock (a writer, or the loop
while it feeds in what it read).

Every tick the loop lets the connection keep time: keepalive pings, a peer silent (no frame, no
pong) for ``ping_interval_s + ping_timeout_s`` is aborted, and so is one that did not answer
our close frame within ``close_timeout_s``. Any frame counts as a sign of life, not just pongs:
a busy peer answers a ping only after the data queued ahead of it. A connection that dies
without a close handshake counts what it had in flight (:mod:`.inflight`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import ssl
import threading
import time

from ..connection import BoundedClose, ConnectionContext, SharedIo
from ..exits import Exit, ExitKind
from ..redaction import redact_url
from ..wire import ClientProtocol, CloseCode, State
from .dial import Handshake, describe, dial
from .inflight import drain, plan_resend, settle_lost
from .ioloop import IoLoop
from .outgoing import Outgoing

__all__ = ["WebSocketConnection"]

logger = logging.getLogger(__name__)

_NORMAL_CLOSURE = int(CloseCode.NORMAL_CLOSURE)
_ABNORMAL = int(CloseCode.ABNORMAL)
_INTERNAL_ERROR = int(CloseCode.INTERNAL_ERROR)
_READ_SIZE = 65536
_BLOCKED = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Phase(enum.Enum):
    """Where the connection stands (the close handshake's states are the protocol's)."""

    DIALLING = "dialling"  # made, maybe started: the dialer works (or waits out a backoff)
    OPEN = "open"  # the handshake is done; the loop is yet to take the socket
    ATTACHED = "attached"  # on the loop: from now on only the loop's thread ends it
    ENDED = "ended"  # wound down (or winding down): on_exit is reported once


def _shared_loop(shared: SharedIo) -> IoLoop:
    return shared.get(IoLoop, lambda: IoLoop(shared.tick_s))


class WebSocketConnection(BoundedClose):
    """One dial of one session's WebSocket (see the module docstring for who does what).

    Made by the connection factory :func:`actors.transport.websocket_connection` from a
    :class:`~actors.connection.ConnectionContext`; exactly one ``on_exit`` reports how it ended.
    """

    def __init__(self, context: ConnectionContext) -> None:
        self.options = options = context.dial
        self.session_id = context.session_id
        self.safe_url = redact_url(options.url)
        self._outbox = context.outbox
        self._traffic = context.traffic
        self._on_open = context.on_open
        self._on_frame = context.on_frame
        self._on_exit = context.on_exit
        self._dial_delay_s = context.dial_delay_s
        self._sent_log = context.sent_log
        self._tick = context.tick  # the codec's timer (Vonage, Exotel), on the loop's tick
        self._tick_interval_s = context.tick_interval_s
        self._next_codec_tick = 0.0
        # A connection made outside a service makes a loop of its own when it starts.
        self._own_loop = context.shared is None
        self._loop = None if context.shared is None else _shared_loop(context.shared)
        self._phase = Phase.DIALLING
        self._lock = threading.Lock()  # guards _phase, _exit and the close request
        self._stopping = threading.Event()  # set once: the connection winds down
        self._exit: Exit | None = None  # the first cause recorded wins
        self._done = threading.Event()
        self._handshake: Handshake | None = None
        self._sock: socket.socket | None = None
        # The rest is the send lock holder's.
        self._send_lock = threading.Lock()  # one writer at a time: frames stay whole, in order
        self._protocol = protocol = ClientProtocol(max_message_bytes=options.max_message_bytes)
        self._outgoing = Outgoing(
            protocol, self._outbox, self._traffic, self._sent_log, options.close_timeout_s
        )
        self._wbuf = bytearray()  # wire bytes taken off the outbox, not yet in the socket
        self._watching_writable = False
        self._next_ping = 0.0
        self.last_heard = time.monotonic()
        self._dialer = threading.Thread(
            target=self._run_dialer, name=f"ws-dial-{self.session_id}", daemon=True
        )

    # -- control, from any thread -------------------------------------------------------------

    def start(self) -> None:
        if self._own_loop:
            self._loop = IoLoop()
        self._dialer.start()

    @property
    def connected(self) -> bool:
        """Whether the handshake is done and the connection has not ended."""
        return self._phase is Phase.OPEN or self._phase is Phase.ATTACHED

    def request_close(
        self,
        code: int = _NORMAL_CLOSURE,
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
            self._outgoing.request_close(code, reason, flush)
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
            phase = self._phase
        if phase is Phase.ATTACHED:
            assert self._loop is not None
            self._loop.call_soon(self._finish_aborted)
        elif phase is not Phase.ENDED:
            self._shutdown_socket()  # wakes a dialer blocked in the handshake

    def join(self, timeout: float) -> bool:
        """Wait for the connection to end; return whether it did."""
        deadline = time.monotonic() + timeout
        dialer = self._dialer
        if dialer.ident is not None and dialer is not threading.current_thread():
            dialer.join(max(0.0, deadline - time.monotonic()))
        loop = self._loop
        if dialer.ident is not None and not (loop is not None and loop.in_loop()):
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

    def pump(self) -> None:
        """Send what is queued, as far as the socket takes it without blocking. Called by the
        outbox after every put (on the writer's thread), and by the loop when the socket
        becomes writable again."""
        while self._send_lock.acquire(blocking=False):
            try:
                again = self._write_some()
            except Exception as exc:  # a bug, or a frame that cannot be framed: end, reported
                logger.exception("session %s: sending failed", self.session_id)
                self.abort(Exit(ExitKind.CRASH, _INTERNAL_ERROR, describe(exc)))
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
            handshake = self._handshake = Handshake()
            log = self._sent_log
            # Everything received so far went into the inbox: the gateway resumes after it.
            resume_from = None if log is None else self._traffic.frames_in
            opened = dial(
                self.options,
                handshake,
                session_id=self.session_id,
                stopping=self._stopping,
                resume_from=resume_from,
                sent=None if log is None else log.count,
            )
            if isinstance(opened, Exit):
                exit = opened
                return
            with self._lock:
                self._sock = opened.sock
            if log is not None:
                self._outgoing.resend = plan_resend(
                    log, self._traffic, opened.headers, self.session_id, self.safe_url
                )
            if self._stopping.is_set():
                exit = Exit(ExitKind.NORMAL, None, "stopped while dialling")
                return
            now = time.monotonic()
            self.last_heard = now
            self._next_ping = now + self.options.ping_interval_s
            with self._lock:
                if self._phase is Phase.DIALLING:
                    self._phase = Phase.OPEN
            assert self._loop is not None
            self._loop.call_soon(self._attach)
            logger.debug("session %s: connected to %s", self.session_id, self.safe_url)
            self._on_open(opened.subprotocol)
        except Exception as exc:
            logger.exception("session %s: dialler crashed", self.session_id)
            exit = Exit(ExitKind.CRASH, _INTERNAL_ERROR, describe(exc))
        finally:
            if exit is not None:
                self._finish(exit)

    # -- writing, on whichever thread holds the send lock --------------------------------------

    def _write_some(self) -> bool:
        """Move what is due onto the wire; whether more was queued meanwhile and may go now."""
        sock = self._sock
        if sock is None or self._phase is not Phase.ATTACHED:
            return False
        if self._wbuf and not self._flush(sock):
            return False
        outgoing = self._outgoing
        data = outgoing.take()
        if not data:
            return False
        self._wbuf += data
        flushed = self._flush(sock)
        inflight = outgoing.inflight
        if inflight.trim_due():
            inflight.trim(sock, len(self._wbuf))
        return flushed and outgoing.more_may_go()

    def _flush(self, sock: socket.socket) -> bool:
        """Write as much of the pending bytes as the socket takes now; whether all went."""
        try:
            sent = sock.send(self._wbuf)
        except _BLOCKED:
            sent = 0
        except OSError as exc:
            self.abort(Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, describe(exc)))
            return False
        if sent:
            del self._wbuf[:sent]
        if self._wbuf:
            if not self._watching_writable:
                self._watching_writable = True
                loop = self._loop
                assert loop is not None
                loop.call_soon(lambda: loop.watch(self, sock))
            return False
        return True

    # -- the loop's side (actors.transport.ioloop.LoopClient), on the loop's thread -----------

    def _attach(self) -> None:
        sock, loop = self._sock, self._loop
        assert loop is not None
        if self._stopping.is_set() or sock is None:
            self._finish_aborted()
            return
        loop.add(self, sock)
        if self._tick is not None:
            loop.tick_at_most(self._tick_interval_s)
        with self._lock:
            ended = self._phase is Phase.ENDED
            if not ended:
                self._phase = Phase.ATTACHED
        if ended:  # the dialer ended it meanwhile (it did not know the loop had it)
            loop.remove(self, sock)
            return
        self._outbox.attach(self.pump)  # calls it at once: what waited goes first

    def wants_writable(self) -> bool:
        return bool(self._wbuf)

    def on_writable(self) -> None:
        self.pump()
        sock = self._sock
        if not self._wbuf and sock is not None and self._watching_writable:
            self._watching_writable = False
            assert self._loop is not None
            self._loop.watch(self, sock)

    def on_readable(self) -> bytes | None:
        """What the socket has for us (``None``: nothing, or the connection ended)."""
        sock = self._sock
        if sock is None or self._phase is Phase.ENDED:
            return None
        try:
            data = sock.recv(_READ_SIZE)
            if isinstance(sock, ssl.SSLSocket):
                while pending := sock.pending():  # decrypted already: epoll cannot tell
                    data += sock.recv(pending)
        except _BLOCKED:
            return None
        except OSError as exc:
            self._finish(self._lost(describe(exc)))
            return None
        if not data:
            self._finish(self._lost("connection closed without a close frame"))
            return None
        self.last_heard = time.monotonic()
        return data

    def on_data(self, data: bytes) -> None:
        """Handle what was read: the protocol parses it; each whole message goes to
        ``on_frame``; what the protocol answers (pongs, a close frame) is sent; a close
        handshake done, or a peer that broke the protocol, ends the connection."""
        if self._phase is Phase.ENDED:
            return
        protocol = self._protocol
        with self._send_lock:  # the protocol is not thread-safe: writers hold this lock
            protocol.receive_data(data)
            events = protocol.events_received()
        traffic = self._traffic
        on_frame = self._on_frame
        control = False
        for event in events:
            if isinstance(event, bytes):
                traffic.bytes_in += len(event)
            elif isinstance(event, str):
                traffic.bytes_in += len(event) if event.isascii() else len(event.encode())
            else:  # a ping (answered already), a pong (any read is a sign of life), a close
                control = True
                continue
            traffic.frames_in += 1
            on_frame(event)
        closed = protocol.state is State.CLOSED
        # Pongs and close frames to send; and frames a writer put while we held the lock
        # (its pump left them to the holder, and we did not take them): they go now.
        if control or closed or len(self._outbox):
            self.pump()
        if closed:
            self._finish(self._closed_exit())

    def on_tick(self, now: float) -> None:
        opts = self.options
        if self.connected and opts.ping_interval_s > 0:
            silent = now - self.last_heard
            if silent > opts.ping_interval_s + opts.ping_timeout_s:
                self.abort(Exit(ExitKind.PING_TIMEOUT, None, f"peer silent for {silent:.1f} s"))
                return
            if now >= self._next_ping:
                self._next_ping = now + opts.ping_interval_s
                self._outgoing.ping_due = True
                self.pump()
        if now > self._outgoing.close_deadline:
            self.abort()  # the peer never answered our close frame
            return
        tick = self._tick
        if tick is not None and now >= self._next_codec_tick and self._phase is Phase.ATTACHED:
            self._next_codec_tick = now + self._tick_interval_s
            tick()  # queues what the codec lets go now; the outbox pumps it

    def on_crash(self, exc: Exception) -> None:
        logger.exception("session %s: I/O handler crashed", self.session_id, exc_info=exc)
        self._finish(Exit(ExitKind.CRASH, _INTERNAL_ERROR, describe(exc)))

    def on_loop_stopped(self) -> None:
        self._finish(Exit(ExitKind.NORMAL, None, "I/O loop stopped"))

    # -- the end -------------------------------------------------------------------------------

    def _lost(self, reason: str) -> Exit:
        if self._stopping.is_set():
            return Exit(ExitKind.NORMAL, None, "aborted")
        return Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, reason)

    def _closed_exit(self) -> Exit:
        """How a connection whose protocol is ``CLOSED`` ended (never by the end of the
        stream: :meth:`on_readable` reports that)."""
        protocol = self._protocol
        failure = protocol.failure
        if failure is not None:
            return Exit(ExitKind.PROTOCOL_ERROR, int(failure.code), str(failure))
        close = protocol.close_rcvd
        assert close is not None
        kind = ExitKind.PEER_CLOSED if protocol.close_rcvd_then_sent else ExitKind.NORMAL
        return Exit(kind, int(close.code), close.reason)

    def _finish_aborted(self) -> None:
        self._finish(Exit(ExitKind.NORMAL, None, "aborted"))

    def _record_exit(self, exit: Exit) -> None:
        # Caller holds self._lock.
        if self._exit is None:
            self._exit = exit

    def _shutdown_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        elif self._handshake is not None:
            self._handshake.interrupt()

    def _finish(self, exit: Exit) -> None:
        """Wind down and report the exit, exactly once (on the loop thread once attached)."""
        with self._lock:
            if self._phase is Phase.ENDED:
                return
            attached = self._phase is Phase.ATTACHED
            self._phase = Phase.ENDED
            self._record_exit(exit)
            final = self._exit
            self._stopping.set()
        assert final is not None
        self._outbox.detach(self.pump)
        sock = self._sock
        if sock is not None and attached and self._loop is not None:
            self._loop.remove(self, sock)
        with self._send_lock:  # no writer is using the socket while it closes
            # First, while the kernel still has the socket's send queue: what is lost. Not
            # after a close handshake (the peer read up to its close; what crossed it is the
            # peer's to read or not), nor after our close for a protocol error (it must reach
            # the peer): every other end is a death, and what it had in flight is lost.
            peer_closed = self._protocol.close_rcvd is not None
            if not peer_closed and final.kind is not ExitKind.PROTOCOL_ERROR:
                lost = self._outgoing.inflight.count_lost(sock, len(self._wbuf))
                settle_lost(self._traffic, self._sent_log is not None, lost, self.session_id)
            if sock is not None:
                drain(sock)
            self._shutdown_socket()
            if self._handshake is not None:
                self._handshake.close()  # closes the file descriptor
            self._sock = None
        self._done.set()
        if self._own_loop and self._loop is not None:
            self._loop.stop()
        logger.info("session %s: connection to %s ended: %s", self.session_id, self.safe_url, final)
        self._on_exit(final)
