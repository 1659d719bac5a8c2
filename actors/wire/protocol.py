"""The client side of RFC 6455 without I/O: bytes in, events out; messages in, bytes out.

:class:`ClientProtocol` is a state machine in the shape of python-websockets' sans-I/O
protocol: the I/O module feeds it what the socket read (``receive_data``, ``receive_eof``),
takes the events parsed from it (``events_received``) and writes what it has to send
(``data_to_send``): the messages asked for (``send_*``), and what the protocol answers by
itself: a pong per ping, the echo of the peer's close frame, the close frame that fails a
connection whose peer broke the protocol. No socket, thread or clock: every byte of it is
tested without a network. The opening handshake (websocket-client dials), the socket, the
locks, keepalive timing and the close timeout stay in the I/O module; the protocol starts
``OPEN``.

**States.** ``OPEN``: anything may be sent. ``CLOSING``: we sent a close frame and wait for
the peer's; messages still arriving are delivered, nothing but pings (and pongs) is sent.
``CLOSED``: the close handshake is over (both close frames passed), or the connection failed
(``failure``), or the stream ended (``receive_eof``); the I/O module writes ``data_to_send()``
and may close the socket (when: its call; RFC 6455 7.1.1 lets the server close TCP first).
Input after ``CLOSED`` is ignored, except after the end of the stream: there it is a bug.

**Events.** A text message arrives as ``str``, a binary one as ``bytes`` (the convention of
:mod:`actors.codecs`, where the type is the opcode), reassembled from its fragments: no
wrapper object is made for the frames that carry the traffic. Control frames arrive as
:class:`Ping`, :class:`Pong` and :class:`Close`.

**Failures.** A peer that breaks the protocol does not raise: the protocol records the
:class:`~actors.wire.exceptions.ProtocolError` in ``failure``, queues the close frame that
tells the peer (1002, 1007 or 1009), goes ``CLOSED`` and ignores the rest of the input;
events parsed before the fault are still delivered. ``InvalidState`` is raised for calls the
state forbids.

**Threads.** None of its own, and not thread-safe: calls must not overlap (the I/O module
holds its send lock around them).
"""

from __future__ import annotations

import codecs
import enum
from dataclasses import dataclass
from typing import Final

from .constants import CloseCode
from .exceptions import InvalidState, InvalidUTF8, PayloadTooBig, ProtocolError
from .frames import (
    MAX_CONTROL_PAYLOAD,
    KeySource,
    Opcode,
    build_frame,
    close_payload,
    parse_close,
    random_mask_keys,
)

__all__ = ["ClientProtocol", "Close", "Event", "Ping", "Pong", "State"]


class State(enum.Enum):
    """Where the connection stands in its close handshake (RFC 6455 section 7)."""

    OPEN = "open"
    CLOSING = "closing"  # our close frame is sent; the peer's has not come back yet
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Ping:
    """The peer pinged; the protocol has queued the pong already."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer answered a ping (or sent a pong of its own accord, RFC 6455 5.5.3)."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame (received, or sent): its code and reason.

    Not :class:`actors.messages.Close`, which is what an application reads: this one is the
    frame. ``code`` is :data:`~CloseCode.NO_STATUS` for a close frame without a code.
    """

    code: int = CloseCode.NORMAL_CLOSURE
    reason: str = ""


#: What :meth:`ClientProtocol.events_received` returns: messages (``str`` for text, ``bytes``
#: for binary) and control frames.
Event = str | bytes | Ping | Pong | Close

_TEXT: Final = Opcode.TEXT.value
_BINARY: Final = Opcode.BINARY.value
_CLOSE: Final = Opcode.CLOSE.value
_PING: Final = Opcode.PING.value
_PONG: Final = Opcode.PONG.value
_NO_LIMIT: Final = 1 << 64  # more than a 63-bit frame length can say
_utf8_decoder = codecs.getincrementaldecoder("utf-8")
# By opcode: whether a frame of it with FIN set is a whole message (text or binary); the
# header of every other frame gets the full checks.
_WHOLE: Final = tuple(opcode in (_TEXT, _BINARY) for opcode in range(16))


def _bad_bits(b1: int, b2: int) -> None:
    if b2 & 0x80:
        raise ProtocolError("a masked frame from the server")
    raise ProtocolError("reserved bits set, and no extension was negotiated")


class ClientProtocol:
    """The client end of one WebSocket connection, from the end of the opening handshake.

    ``max_message_bytes`` bounds a message (all its fragments; ``None``: no bound): a frame
    that would cross it fails the connection with 1009 as soon as its header is read, before
    its payload is buffered. ``mask_keys`` supplies the 4-byte masking key of each frame
    sent (default: :func:`~actors.wire.frames.random_mask_keys`); tests pass a fixed one.
    """

    __slots__ = (
        "_decoder",
        "_eof",
        "_events",
        "_ignoring",
        "_keys",
        "_limit",
        "_message",
        "_need",
        "_out",
        "_parts",
        "_parts_size",
        "_pending",
        "_pending_size",
        "_text_parts",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "failure",
        "max_message_bytes",
        "state",
    )

    def __init__(
        self, *, max_message_bytes: int | None = 1 << 20, mask_keys: KeySource | None = None
    ) -> None:
        self.state = State.OPEN
        self.max_message_bytes = max_message_bytes
        #: Why the connection failed, if the peer broke the protocol.
        self.failure: ProtocolError | None = None
        #: The close frame received, and the one sent (``None`` until then).
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        #: Who closed first, once both close frames passed: ``True`` if the peer did.
        self.close_rcvd_then_sent: bool | None = None
        self._limit = _NO_LIMIT if max_message_bytes is None else max_message_bytes
        self._keys = mask_keys if mask_keys is not None else random_mask_keys()
        self._out: list[bytes] = []  # frames built, not yet taken by data_to_send()
        self._events: list[Event] = []
        self._pending: list[bytes] = []  # received, not parsed: a frame still arriving
        self._pending_size = 0
        self._need = 2  # bytes the pending frame needs before parsing it gets further
        self._message = 0  # opcode of the fragmented message in progress (0: none)
        self._parts: list[bytes] = []  # its fragments so far (binary)
        self._text_parts: list[str] = []  # or its text so far, decoded fragment by fragment
        self._parts_size = 0
        self._decoder = _utf8_decoder()
        self._eof = False
        self._ignoring = False  # CLOSED before the end of the stream: input is dropped

    # -- what the I/O module feeds in ------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Parse bytes read from the socket: whole messages and control frames become
        events; a frame still arriving is kept for the next call."""
        if self._eof:
            raise InvalidState("data received after the end of the stream")
        if self._ignoring or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)  # payloads are sliced from it: events must be bytes
        if self._pending:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._need:
                return  # not worth parsing yet: a byte-by-byte feed stays linear
            data = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
        try:
            self._parse(data)
        except ProtocolError as exc:
            self._fail(exc)
        except UnicodeDecodeError:
            self._fail(InvalidUTF8("invalid UTF-8 in a text frame"))

    def receive_eof(self) -> None:
        """The stream ended (the peer closed TCP). Without a close handshake before it,
        the connection closed abnormally (1006: :attr:`close_rcvd` stays ``None``)."""
        if self._eof:
            raise InvalidState("the end of the stream was received already")
        self._eof = True
        self._drop_input()
        self.state = State.CLOSED

    def events_received(self) -> list[Event]:
        """The events parsed since the last call, oldest first."""
        events = self._events
        if not events:
            return events
        self._events = []
        return events

    # -- what the application sends --------------------------------------------------------

    def send_text(self, data: str | bytes) -> None:
        """Queue a text message (one frame). ``bytes`` are sent as they are: the caller that
        encoded the text already (to count its bytes) vouches that they are UTF-8."""
        if self.state is not State.OPEN:
            raise InvalidState(f"cannot send a text message: the connection is {self.state.value}")
        payload = data.encode() if isinstance(data, str) else data
        self._out.append(build_frame(_TEXT, payload, self._keys()))

    def send_binary(self, data: bytes) -> None:
        """Queue a binary message (one frame)."""
        if self.state is not State.OPEN:
            raise InvalidState(
                f"cannot send a binary message: the connection is {self.state.value}"
            )
        self._out.append(build_frame(_BINARY, data, self._keys()))

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a ping (allowed while ``CLOSING`` too: it is not a data frame)."""
        if self.state is State.CLOSED:
            raise InvalidState("cannot send a ping: the connection is closed")
        if len(data) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"a ping carries at most {MAX_CONTROL_PAYLOAD} bytes")
        self._out.append(build_frame(_PING, data, self._keys()))

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the close handshake: queue a close frame and go ``CLOSING``; the peer's
        close frame will end it. ``reason`` is cut to 123 bytes of UTF-8; ``code=None``
        sends a close frame without a code. A code that may not be sent is a ValueError."""
        if self.state is not State.OPEN:
            raise InvalidState(f"cannot send a close frame: the connection is {self.state.value}")
        payload = close_payload(code, reason)
        self._out.append(build_frame(_CLOSE, payload, self._keys()))
        sent_code = CloseCode.NO_STATUS if code is None else code
        self.close_sent = Close(sent_code, payload[2:].decode())
        self.state = State.CLOSING

    def data_to_send(self) -> bytes:
        """The bytes to write to the socket, in order, since the last call (``b""``: none)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return b"".join(out)

    # -- parsing ----------------------------------------------------------------------------

    def _parse(self, buf: bytes) -> None:
        """Handle every whole frame in ``buf``; keep the start of one still arriving.

        Server frames, RFC 6455 section 5. Every check that the header alone can make is made
        from the header, before the payload is waited for.
        """
        size = len(buf)
        pos = 0
        events = self._events
        limit = self._limit
        while True:
            avail = size - pos
            if avail < 2:
                need = 2
                break
            b1 = buf[pos]
            b2 = buf[pos + 1]
            if b1 & 0x70 or b2 & 0x80:
                _bad_bits(b1, b2)
            opcode = b1 & 0x0F
            fin = b1 & 0x80
            length = b2 & 0x7F
            head = 2
            if length > 125:
                head = 4 if length == 126 else 10
                if avail < head:
                    need = head
                    break
                length = int.from_bytes(buf[pos + 2 : pos + head], "big")
                if length >> 63:
                    raise ProtocolError("a frame length with its most significant bit set")
            if not fin or self._message or length > limit or not _WHOLE[opcode]:
                self._check(opcode, fin, length)  # all but a whole message that fits
            end = pos + head + length
            if end > size:
                need = end - pos
                break
            payload = buf[pos + head : end]
            pos = end
            if opcode == _BINARY and fin:
                events.append(payload)
            elif opcode == _TEXT and fin:
                events.append(payload.decode())
            elif opcode < 8:
                self._fragment(opcode, fin, payload)
            elif self._control(opcode, payload):
                return  # a close frame: the end of the input
        if pos < size:
            self._pending = [buf[pos:]]
            self._pending_size = size - pos
        self._need = need

    def _check(self, opcode: int, fin: int, length: int) -> None:
        """Refuse a frame from its header: reserved opcodes, fragments out of order,
        invalid control frames, a message over the limit."""
        if opcode < 8:
            if opcode == 0:
                if not self._message:
                    raise ProtocolError("a continuation frame without a message to continue")
            elif opcode > 2:
                raise ProtocolError(f"reserved opcode {opcode}")
            elif self._message:
                raise ProtocolError("a new message inside a fragmented one")
            if self._parts_size + length > self._limit:
                raise PayloadTooBig(self._parts_size + length, self._limit)
        elif opcode > 10:
            raise ProtocolError(f"reserved opcode {opcode}")
        elif length > MAX_CONTROL_PAYLOAD or not fin:
            raise ProtocolError("a control frame fragmented or over 125 bytes")

    def _control(self, opcode: int, payload: bytes) -> bool:
        """A ping (answered), a pong or a close frame; whether it was the close."""
        if opcode == _PING:
            self._events.append(Ping(payload))
            self._out.append(build_frame(_PONG, payload, self._keys()))
        elif opcode == _PONG:
            self._events.append(Pong(payload))
        else:
            self._closed_by_peer(payload)
            return True
        return False

    def _fragment(self, opcode: int, fin: int, payload: bytes) -> None:
        """One frame of a fragmented message (the first, a middle one or the last)."""
        if opcode:  # the first: the message's type
            self._message = opcode
            self._parts_size = 0
            if opcode == _TEXT:
                self._decoder.reset()
        self._parts_size += len(payload)
        if self._message == _TEXT:
            # Decoded as it comes: invalid UTF-8 fails at the fragment that holds it, and a
            # character split between two fragments is held until its end arrives.
            self._text_parts.append(self._decoder.decode(payload, bool(fin)))
            if fin:
                self._events.append("".join(self._text_parts))
                self._text_parts.clear()
                self._message = 0
        else:
            self._parts.append(payload)
            if fin:
                self._events.append(b"".join(self._parts))
                self._parts.clear()
                self._message = 0

    def _closed_by_peer(self, payload: bytes) -> None:
        code, reason = parse_close(payload)
        close = Close(code, reason)
        self.close_rcvd = close
        self._events.append(close)
        if self.state is State.OPEN:
            # Echo the close frame (RFC 6455 5.5.1), at once: nothing more goes out after it.
            echo = CloseCode.NORMAL_CLOSURE if code == CloseCode.NO_STATUS else code
            self._out.append(build_frame(_CLOSE, close_payload(echo), self._keys()))
            self.close_sent = Close(echo)
            self.close_rcvd_then_sent = True
        else:
            self.close_rcvd_then_sent = False
        self.state = State.CLOSED
        self._drop_input()

    def _fail(self, exc: ProtocolError) -> None:
        """Fail the connection (RFC 6455 7.1.7): tell the peer why, unless our close frame
        went already, and take nothing more from it."""
        self.failure = exc
        if self.state is State.OPEN:
            payload = close_payload(exc.code, exc.close_reason)
            self._out.append(build_frame(_CLOSE, payload, self._keys()))
            self.close_sent = Close(exc.code, exc.close_reason)
        self.state = State.CLOSED
        self._drop_input()

    def _drop_input(self) -> None:
        self._ignoring = True
        self._pending = []
        self._pending_size = 0
        self._parts.clear()
        self._text_parts.clear()
        self._message = 0
