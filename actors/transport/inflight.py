"""Loss accounting: what a WebSocket connection had in flight when it died, and who settles it.

A connection that dies without a close handshake counts what it had in flight: the frames in
its write buffer or in the kernel's send queue not yet acknowledged by the peer (Linux
``SIOCOUTQ``), from the wire size of each recent frame, into ``Traffic.frames_lost``; then it
resets the socket, so that none of them can still arrive. A resumable session leaves them to
the resume handshake of its next dial instead (:func:`plan_resend`: resent, or lost if no
longer kept).

:class:`InFlight` is used by whichever thread holds the connection's send lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import ssl
import struct
import sys
from collections import deque
from collections.abc import Mapping

from ..codecs import Frame
from ..connection import SentLog, Traffic
from ..wire.constants import RECEIVED_HEADER

__all__ = ["InFlight", "drain", "plan_resend", "settle_lost", "wire_size"]

logger = logging.getLogger(__name__)

_READ_SIZE = 65536
_RING_MIN = 256  # sent frames remembered before the first trim (see InFlight.trim)
_TLS_RECORD = 16384  # the most plaintext one TLS record carries (RFC 8446 5.1)
# Linux's SIOCOUTQ (== TIOCOUTQ): a TCP socket's bytes not yet acknowledged by the peer.
_SIOCOUTQ: int | None = 0x5411 if sys.platform.startswith("linux") else None
_RECEIVED = RECEIVED_HEADER.lower()  # websocket-client lowercases response header names


def wire_size(payload_size: int) -> int:
    """The bytes a masked client frame of ``payload_size`` takes on the wire (RFC 6455 5.2):
    the header, its extended length, the 4-byte mask, the payload."""
    if payload_size < 126:
        return payload_size + 6
    if payload_size < 65536:
        return payload_size + 8
    return payload_size + 14


class InFlight:
    """Where each recent data frame ends on the wire, to count the undelivered ones.

    ``wire_end`` is the bytes put on the wire so far (control frames too); the ring holds
    ``wire_end`` after each recent data frame. Entries the peer has acknowledged are trimmed
    now and then (:meth:`trim`), so the ring holds about the frames still in flight: an int
    per frame.
    """

    __slots__ = ("_trim_at", "ends", "wire_end")

    def __init__(self) -> None:
        self.wire_end = 0
        self.ends: deque[int] = deque()  # the writer appends ``wire_end`` after each frame
        self._trim_at = _RING_MIN

    def trim_due(self) -> bool:
        return len(self.ends) > self._trim_at

    def trim(self, sock: socket.socket, unsent: int) -> None:
        """Forget the frames the peer has acknowledged (``unsent``: bytes still in our write
        buffer). Run when the ring has doubled since the last trim, so it costs one system
        call per many frames and holds at most about twice the frames in flight (plus
        _RING_MIN)."""
        ends = self.ends
        undelivered = _undelivered_bytes(sock, unsent)
        if undelivered is None:  # no kernel count: only the newest frames are kept
            while len(ends) > _RING_MIN:
                ends.popleft()
        else:
            delivered = self.wire_end - undelivered[0]
            while ends and ends[0] <= delivered:
                ends.popleft()
        self._trim_at = max(_RING_MIN, 2 * len(ends))

    def count_lost(self, sock: socket.socket | None, unsent: int) -> int:
        """At the connection's end: the data frames the peer cannot have received whole.

        A frame is delivered once its last byte is acknowledged; the rest (in our write
        buffer, ``unsent`` bytes, or in the kernel's send queue unacknowledged) is lost with
        the connection. The socket is then set to close with a reset, so that nothing counted
        here can still reach the peer later (the kernel would otherwise keep retransmitting it).
        """
        ends = self.ends
        if not ends:
            return 0
        undelivered = _undelivered_bytes(sock, unsent) if sock is not None else None
        in_kernel = 0
        if undelivered is None:  # only what never left us is known to be lost
            pending = unsent
        else:
            pending, in_kernel = undelivered
        delivered = self.wire_end - pending
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


def settle_lost(traffic: Traffic, resumable: bool, lost: int, session_id: str) -> None:
    """Count ``lost`` frames: lost for good, or (``resumable``) left for the next dial's
    resume handshake to settle."""
    if not lost:
        return
    if not resumable:
        traffic.frames_lost += lost
        logger.warning(
            "session %s: %d sent frames were lost in flight with the connection "
            "(no resume on this provider)",
            session_id,
            lost,
        )
    else:  # the gateway's count on the next dial says what to resend
        traffic.frames_unsettled += lost


def plan_resend(
    log: SentLog, traffic: Traffic, headers: Mapping[str, str], session_id: str, safe_url: str
) -> list[Frame]:
    """After a resumable session's handshake: the frames to send again, from the gateway's
    count of what it received (its answer's ``X-Gateway-Received``). What the last connection
    had in flight is settled here: resent, or lost."""
    unsettled, traffic.frames_unsettled = traffic.frames_unsettled, 0
    try:
        received = int(headers[_RECEIVED])
    except (KeyError, ValueError):
        logger.warning(
            "session %s: %s answered without a valid %s header; not resending",
            session_id,
            safe_url,
            _RECEIVED,
        )
        traffic.frames_lost += unsettled
        return []
    if log.adopt:  # taken over from another node: it sent those; we number on from there
        log.adopt = False
        if received > log.count:
            log.count = received
            return []
    if received > log.count:
        logger.error(
            "session %s: the gateway counts %d frames received, only %d were sent",
            session_id,
            received,
            log.count,
        )
        traffic.frames_lost += unsettled
        return []
    resend, lost = log.since(received)
    traffic.frames_lost += lost
    if lost:
        logger.warning(
            "session %s: %d sent frames were lost with the last connection and are no "
            "longer kept for resending",
            session_id,
            lost,
        )
    if resend:
        logger.info(
            "session %s: resending %d frames the gateway did not receive", session_id, len(resend)
        )
    return resend


def _undelivered_bytes(sock: socket.socket, unsent: int) -> tuple[int, int] | None:
    """``(bytes at the end of what we wrote that the peer may not have, of which in the
    kernel)``; ``None`` if the kernel cannot tell (not Linux, socket gone).

    Linux's ``SIOCOUTQ`` is the socket's send queue not yet acknowledged by the peer's
    TCP (unsent + unacked): whatever it has acknowledged its application can read.
    Over TLS the queue holds records, not our bytes, so this is an estimate, and an
    upper bound: a record costs more bytes than it carries, a partly acknowledged record
    delivers none of its frames (hence one whole record's worth added), and a write
    OpenSSL asked to retry may be both in the write buffer and in the kernel.
    """
    queued = _kernel_unacked(sock)
    if queued is None:
        return None
    if queued > 0 and isinstance(sock, ssl.SSLSocket):
        queued += _TLS_RECORD
    return unsent + queued, queued


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


def drain(sock: socket.socket) -> None:
    """Read and drop what has arrived unread: closing a TCP socket with unread data sends a
    reset, and a reset makes the peer's kernel drop what *it* has not read yet (our last
    frames). Bounded: a peer still streaming at us is not waited for."""
    with contextlib.suppress(OSError, ValueError):
        for _ in range(16):
            if not sock.recv(_READ_SIZE):
                return
