#!/usr/bin/env python3
"""Parse and build cost per WebSocket frame: the sans-I/O wire layer (actors.wire) against the
parser and builder that actors/websocket.py had before it, in the same run.

The old side is a copy of that code (``_frame_at``/``_handle`` and ``_wire`` with its
thread-local key pool, as of the commit that added actors.wire), kept here as the yardstick so
the comparison still runs once websocket.py drives actors.wire instead.

Frames are 160-byte binary (20 ms of 8 kHz mu-law) and 300-byte text (the same audio in
Twilio's JSON). Parsing is measured two ways: 200 frames per read (a busy socket: one read
holds many frames) and one frame per read (a quiet one); both sides hand each message to a
callback, as the connection does (``on_frame``). Building is one masked client frame. Prints
microseconds per frame, the best of several repeats. Runs in a few seconds.
"""

from __future__ import annotations

import argparse
import os
import struct
import threading
import timeit
from collections.abc import Callable

from actors.wire.frames import build_frame, random_mask_keys
from actors.wire.protocol import ClientProtocol

BATCH = 200
Frame = str | bytes


# -- the old code, as it was in actors/websocket.py -----------------------------------------


class _OldProtocolError(Exception):
    pass


class _OldTooBig(Exception):
    pass


class OldParser:
    """websocket.py's ``_parse``, ``_frame_at`` and ``_handle`` (data and pong paths)."""

    def __init__(self, on_frame: Callable[[Frame], None], max_message_bytes: int) -> None:
        self._on_frame = on_frame
        self.max_message_bytes = max_message_bytes
        self._rbuf = b""
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._first_opcode = 0
        self.frames_in = self.bytes_in = 0

    def _parse(self, buf: bytes) -> None:
        size = len(buf)
        pos = 0
        while (found := self._frame_at(buf, pos, size)) is not None:
            fin, opcode, start, pos = found
            self._handle(fin, opcode, buf[start:pos])
        self._rbuf = buf[pos:] if pos < size else b""

    def _frame_at(self, buf: bytes, pos: int, size: int) -> tuple[int, int, int, int] | None:
        if size - pos < 2:
            return None
        b1, b2 = buf[pos], buf[pos + 1]
        if b2 & 0x80:
            raise _OldProtocolError("a masked frame from the server")
        if b1 & 0x70:
            raise _OldProtocolError("reserved bits set")
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
                raise _OldProtocolError("an invalid control frame")
        elif self._parts_size + length > self.max_message_bytes:
            raise _OldTooBig(self._parts_size + length)
        end = pos + head + length
        return None if end > size else (fin, opcode, pos + head, end)

    def _handle(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (0, 1, 2):
            parts = self._parts
            if opcode == 0:
                if not parts:
                    raise _OldProtocolError("continuation without a start")
            elif parts:
                raise _OldProtocolError("new message inside a fragmented one")
            else:
                self._first_opcode = opcode
            if not fin or parts:
                parts.append(payload)
                self._parts_size += len(payload)
                if not fin:
                    return
                payload = b"".join(parts)
                parts.clear()
                self._parts_size = 0
            self.frames_in += 1
            self.bytes_in += len(payload)
            self._on_frame(payload.decode("utf-8") if self._first_opcode == 1 else payload)
        elif opcode != 10:
            raise _OldProtocolError(f"opcode {opcode} is not measured here")


class _MaskKeys(threading.local):
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


def old_wire(data: str | bytes, opcode: int) -> bytes:
    """websocket.py's ``_wire``."""
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


# -- the measurements -----------------------------------------------------------------------


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame (what the client parses)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload


def best(
    old: Callable[[], object], new: Callable[[], object], number: int, repeat: int
) -> tuple[float, float]:
    """Microseconds per call of each, best of ``repeat``; the two take turns, so a busy
    machine slows both alike."""
    old_times, new_times = [], []
    for _ in range(repeat):
        old_times.append(timeit.timeit(old, number=number))
        new_times.append(timeit.timeit(new, number=number))
    return min(old_times) / number * 1e6, min(new_times) / number * 1e6


def bench_parse(payload: bytes, opcode: int, per_read: int, repeat: int) -> tuple[float, float]:
    buf = server_frame(opcode, payload) * per_read
    received: list[Frame] = []
    sink = received.append
    old = OldParser(sink, 1 << 20)
    new = ClientProtocol()

    def run_old() -> None:
        old._parse(buf)
        received.clear()

    def run_new() -> None:
        new.receive_data(buf)
        for event in new.events_received():
            sink(event)  # type: ignore[arg-type]  # data frames only: str | bytes
        received.clear()

    old_us, new_us = best(run_old, run_new, max(1, 20000 // per_read), repeat)
    return old_us / per_read, new_us / per_read


def bench_build(payload: bytes, repeat: int) -> tuple[float, float, float]:
    protocol = ClientProtocol()
    keys = random_mask_keys()

    def run_protocol() -> bytes:
        protocol.send_binary(payload)
        return protocol.data_to_send()

    def run_old() -> bytes:
        return old_wire(payload, 2)

    old_us, raw_us = best(run_old, lambda: build_frame(2, payload, keys()), 20000, repeat)
    _, via_us = best(run_old, run_protocol, 20000, repeat)
    return old_us, raw_us, via_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="repeats; the best is kept")
    args = parser.parse_args()
    audio = os.urandom(160)
    text = ('{"event":"media","media":{"payload":"' + "A" * 248 + '"}}').encode()
    print(f"{'us per frame':50} {'old':>7} {'new':>7}")
    for label, payload, opcode in (("binary 160 B", audio, 2), ("text 300 B", text, 1)):
        for per_read in (BATCH, 1):
            old, new = bench_parse(payload, opcode, per_read, args.repeat)
            name = f"parse {label}, {per_read} frame{'s' * (per_read > 1)} per read"
            print(f"{name:50} {old:7.2f} {new:7.2f}")
    old, raw, via = bench_build(audio, args.repeat)
    print(f"{'build binary 160 B (build_frame)':50} {old:7.2f} {raw:7.2f}")
    print(f"{'build binary 160 B (send_binary + data_to_send)':50} {old:7.2f} {via:7.2f}")


if __name__ == "__main__":
    main()
