#!/usr/bin/env python3
"""Parse and build cost per WebSocket frame: the sans-I/O wire layer (actors.wire) against the
parser and builder inside actors.websocket, in the same run.

Frames are 160-byte binary (20 ms of 8 kHz mu-law) and 300-byte text (the same audio in
Twilio's JSON). Parsing is measured two ways: 200 frames per read (a busy socket: one read
holds many frames) and one frame per read (a quiet one); the new side includes delivering
each event to a callback, as the old parser calls ``on_frame``. Building is one masked client
frame. Prints microseconds per frame, the best of several repeats. Runs in a few seconds.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable

from actors.codecs import Frame
from actors.queues import Outbox
from actors.websocket import _BINARY, DialOptions, SentLog, Traffic, WebSocketConnection, _wire
from actors.wire.frames import build_frame, random_mask_keys
from actors.wire.protocol import ClientProtocol

BATCH = 200


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame (what the client parses)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload


def old_parser(sink: Callable[[Frame], None]) -> WebSocketConnection:
    # Never started: no thread, no socket; only its parser is used.
    return WebSocketConnection(
        DialOptions("ws://127.0.0.1:9/"),
        session_id="bench",
        outbox=Outbox(10),
        traffic=Traffic(),
        on_open=lambda _: None,
        on_frame=sink,
        on_exit=lambda _: None,
        sent_log=SentLog(1),
    )


def best(call: Callable[[], object], number: int, repeat: int) -> float:
    """Microseconds per call, best of ``repeat``."""
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def bench_parse(payload: bytes, opcode: int, per_read: int, repeat: int) -> tuple[float, float]:
    frame = server_frame(opcode, payload)
    buf = frame * per_read
    received: list[Frame] = []
    sink = received.append
    old = old_parser(sink)
    new = ClientProtocol()

    def run_old() -> None:
        old._parse(buf)
        received.clear()

    def run_new() -> None:
        new.receive_data(buf)
        for event in new.events_received():
            sink(event)  # type: ignore[arg-type]  # data frames only: str | bytes
        received.clear()

    number = max(1, 20000 // per_read)
    return (
        best(run_old, number, repeat) / per_read,
        best(run_new, number, repeat) / per_read,
    )


def bench_build(payload: bytes, repeat: int) -> tuple[float, float, float]:
    protocol = ClientProtocol()
    keys = random_mask_keys()

    def run_protocol() -> bytes:
        protocol.send_binary(payload)
        return protocol.data_to_send()

    number = 50000
    return (
        best(lambda: _wire(payload, _BINARY), number, repeat),
        best(lambda: build_frame(_BINARY, payload, keys()), number, repeat),
        best(run_protocol, number, repeat),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repeats; the best is kept")
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
