"""RFC 6455 frames (section 5): opcodes, the client's masked frames, close payloads.

Pure functions over bytes: what :class:`~actors.wire.protocol.ClientProtocol` puts on the
wire and how it reads a close frame. Nothing here keeps state but the masking-key pool.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable, Iterator

from .constants import CloseCode, is_sendable
from .exceptions import InvalidUTF8, ProtocolError

__all__ = [
    "KeySource",
    "Opcode",
    "build_frame",
    "close_payload",
    "parse_close",
    "random_mask_keys",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2); 3-7 and 11-15 are reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: Where a client's masking keys come from: each call returns 4 fresh bytes.
KeySource = Callable[[], bytes]

#: The most a control frame may carry (RFC 6455 5.5); a close frame's reason gets 123 bytes.
MAX_CONTROL_PAYLOAD = 125


def random_mask_keys(pool_bytes: int = 1024) -> KeySource:
    """A source of masking keys from ``os.urandom``, as RFC 6455 5.3 asks (unpredictable).

    Drawn ``pool_bytes`` at a time: one system call per key was the writer's largest cost
    after the send itself (each call lets the GIL go, and getting it back is a wait behind
    every other thread). A generator's ``__next__`` is the cheapest callable that keeps a
    position; it is not thread-safe, so each protocol gets a source of its own.
    """
    if pool_bytes <= 0 or pool_bytes % 4:
        raise ValueError("pool_bytes must be a positive multiple of 4")

    def keys() -> Iterator[bytes]:
        while True:
            pool = os.urandom(pool_bytes)
            for pos in range(0, pool_bytes, 4):
                yield pool[pos : pos + 4]

    return keys().__next__


_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_from_bytes = int.from_bytes
# size -> (the 32-bit key repeated over the payload's words, as a multiplier; the payload's
# bits): a key times the first is the key repeated, ANDed with the second it is cut to the
# payload. Far cheaper than repeating and slicing the key as bytes. A few sizes recur (audio
# frames have one), so the table stays small; sizes above 64 KiB are not kept.
_REPEAT: dict[int, tuple[int, int]] = {}


def _repeat(size: int) -> tuple[int, int]:
    words = (size + 3) >> 2
    entry = (((1 << (32 * words)) - 1) // 0xFFFFFFFF, (1 << (8 * size)) - 1)
    if size < 65536:
        _REPEAT[size] = entry
    return entry


def build_frame(opcode: int, payload: bytes, key: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455 5.2-5.3): header, the 4-byte ``key``, the payload
    XORed with the key repeated.

    The XOR is done on the payload as one integer: a pure-Python loop per byte would cost a
    hundred times more, and this runs for every frame sent.
    """
    size = len(payload)
    first = opcode | 0x80 if fin else opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = _pack_16(first, 0xFE, size)
    else:
        head = _pack_64(first, 0xFF, size)
    if not size:
        return head + key
    repeat, cut = _REPEAT.get(size) or _repeat(size)
    masked = _from_bytes(payload, "little") ^ ((_from_bytes(key, "little") * repeat) & cut)
    return b"".join((head, key, masked.to_bytes(size, "little")))


def close_payload(code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
    """A close frame's payload: the code, then the reason cut to 123 bytes of UTF-8
    without splitting a character (a control frame carries at most 125 bytes).

    ``code=None`` is a close frame without a code (and so without a reason). A code that
    may not be sent (:func:`~actors.wire.constants.is_sendable`) is a ``ValueError``.
    """
    if code is None:
        if reason:
            raise ValueError("a close frame without a code cannot carry a reason")
        return b""
    if not is_sendable(code):
        raise ValueError(f"close code {code} may not be sent (RFC 6455 7.4)")
    text = reason.encode()[: MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore").encode()
    return code.to_bytes(2, "big") + text


def parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a received close frame's payload (RFC 6455 5.5.1, 7.1.5).

    An empty payload is :data:`~CloseCode.NO_STATUS` with no reason; a 1-byte payload, or a
    code that may not be sent, is a :class:`ProtocolError`; a reason that is not UTF-8 is
    :class:`InvalidUTF8`.
    """
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolError("a close frame with a 1-byte payload")
    code = _from_bytes(payload[:2], "big")
    if not is_sendable(code):
        raise ProtocolError(f"close code {code} is not allowed on the wire")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUTF8("invalid UTF-8 in a close frame's reason") from None
    return code, reason
