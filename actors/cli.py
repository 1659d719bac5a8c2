"""The ``transport-actors`` command.

::

    transport-actors [--log-level LEVEL] [--log-format text|json] COMMAND ...
    transport-actors demo    [-c FILE] [--provider NAME] [--sessions N] [--seconds S]
                             [--frame-ms MS] [--no-progress]
    transport-actors call    [-c FILE] [--provider NAME] --to NUMBER [--from NUMBER]
                             [--play IN.wav] [--record OUT.wav] [--seconds S]
    transport-actors gateway -c FILE
    transport-actors emulator [-c FILE]
    transport-actors check   -c FILE
    transport-actors --version

``demo`` places N calls through a :class:`~actors.TransportService` and streams 20 ms mu-law
frames (a 440 Hz tone) both ways at real time for S seconds. With the default ``twilio``
provider each call is real end to end on loopback: the Twilio connector creates it on the
embedded emulator's REST API, the emulator dials the embedded media gateway as Twilio would,
plays what the session sends and echoes it back, with a mark every second. With
``--provider websocket`` the sessions go straight to a local echo server instead. It checks
that every frame (and mark) came back in order, prints the round trip, and exits 0 only if
nothing was lost and nothing went wrong.

``call`` places one call, plays a WAV file into it at real time (converted to the provider's
format: 8 kHz mu-law for Twilio, resampled with soxr), records what the other side sends to a
WAV file, and hangs up once the file has played (after a final mark comes back, so that the
tail is recorded), after ``--seconds``, or on Ctrl-C or SIGTERM; then prints a summary. With
the embedded default configuration it calls the local emulator, which echoes what it hears.

``gateway`` runs the media gateway standalone (and serves ``/metrics`` for it when
``metrics.listen`` is set); ``emulator`` runs the Twilio emulator standalone (its REST API URL
and account are printed).

``--log-format json`` writes one JSON object per log line (``time``, ``level``, ``logger``,
``message``, ``session_id`` when the line is about a session); secrets are masked either way.

``check`` validates a config file and prints it with every secret masked.

Exit codes: 0 success, 1 the demo saw errors or lost frames, the call did not play out (or a
transport error), 2 a usage or configuration error, 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM) during ``demo`` or ``call`` (``gateway`` and ``emulator`` exit 0 on either: stopping
is how they end). Every session is ended before the command exits, whatever stopped it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import secrets
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .audio import (
    dominant_frequency,
    frame_bytes,
    frames,
    from_provider_audio,
    pcm16_to_ulaw,
    read_wav,
    rms_dbfs,
    to_provider_audio,
    tone,
    write_wav,
)
from .config import (
    DailyProviderConfig,
    TransportConfig,
    TwilioProviderConfig,
    default_config,
    load_config,
)
from .errors import ConfigError, ReadTimeout, SessionClosed, TransportError
from .gateway import ServerThread, echo
from .logs import JsonFormatter, TextFormatter
from .messages import Binary, Close, Mark, MediaFormat, Started, Stopped
from .service import TransportService

if TYPE_CHECKING:
    from .gateway.server import MediaGateway

__all__ = ["main"]

logger = logging.getLogger(__name__)

PROG = "transport-actors"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")
_BYTES_PER_MS = 8  # 8 kHz mu-law: one byte per sample
_HEADER = struct.Struct(">IQ")  # sequence number, perf_counter_ns at send: 12 bytes
_READ_POLL_S = 0.05  # how often a reader looks up from its inbox to check whether to stop
_DRAIN_S = 2.0  # how long to wait for echoes still in flight once sending has stopped
_PROGRESS_S = 0.25  # progress line refresh period
_JOIN_S = 5.0  # bound on joining one of our threads
_START_S = 10.0  # how long calls may take to start streaming
_MARK_EVERY = 50  # frames between marks (1 s at 20 ms)
_DEMO_TO, _DEMO_FROM = "+15550100", "+15550199"
_READY = "ready; Ctrl-C or SIGTERM stops it"


# -- signals ----------------------------------------------------------------------------------


class _Signals:
    """While active, SIGINT (Ctrl-C) and SIGTERM set ``stop`` and are remembered instead of
    raising ``KeyboardInterrupt`` at whatever line runs, or killing the process: the command
    notices at its next check and ends every session on its way out. Python runs signal
    handlers in the main thread only; elsewhere (a command run from another thread) this
    does nothing."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: int | None = None  # the first signal
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
        self.stop.set()

    @property
    def interrupted(self) -> bool:
        return self.received == signal.SIGINT

    @property
    def terminated(self) -> bool:
        return self.received == signal.SIGTERM


# -- the demo ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Lane:
    """One session's traffic. ``sent`` is written only by the sender thread; the rest only by
    the session's reader thread (the main thread merely reads them for the progress line)."""

    session_id: str
    sent: int = 0
    received: int = 0
    expected: int = 0  # the next sequence number due
    rtts_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    writable: bool = True
    marks_sent: int = 0
    marks_back: int = 0
    started: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _DemoOptions:
    config: TransportConfig
    provider: str
    sessions: int
    seconds: float
    frame_ms: int
    progress: bool


class _Demo:
    def __init__(self, options: _DemoOptions, out: TextIO, err: TextIO) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.frame_bytes = options.frame_ms * _BYTES_PER_MS
        # A 440 Hz tone after the header: what a listener on the call would hear.
        audio = pcm16_to_ulaw(tone(440.0, 1.0, 8000, 0.3))
        self.filler = audio[: self.frame_bytes - _HEADER.size]
        self.calls = isinstance(options.config.provider(options.provider), TwilioProviderConfig)
        self.lanes: list[_Lane] = []
        self.create_ns: list[int] = []
        self.other_errors: list[str] = []
        self.sending_done = threading.Event()
        self.abort = threading.Event()
        self.threads: list[threading.Thread] = []
        self.ticks = 0  # frame periods sent (written by the sender thread)
        self.server_url = ""
        self.interrupted = False
        self.terminated = False
        self._progress_shown = False

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        # Ctrl-C and SIGTERM set `abort`: sending stops, then every session is ended.
        with _Signals(self.abort) as signals:
            self._run()
        self.interrupted = self.interrupted or signals.interrupted
        self.terminated = signals.terminated
        self._print_summary()
        if self.terminated:
            self.err.write("terminated\n")
            return EXIT_TERMINATED
        if self.interrupted:
            self.err.write("interrupted\n")
            return EXIT_INTERRUPTED
        return EXIT_OK if self.errors == 0 and self.lost == 0 else EXIT_FAILED

    def _run(self) -> None:
        opts = self.options
        server = ServerThread(echo, name="demo-echo-server")
        service: TransportService | None = None
        try:
            service = TransportService(opts.config)
            if service.metrics_url is not None:
                print(f"{PROG} demo: metrics at {service.metrics_url}", file=self.out, flush=True)
            if not self.calls:
                server.start()
                self.server_url = server.url
            for _ in range(opts.sessions):
                if self.abort.is_set():
                    break
                t0 = time.perf_counter_ns()
                if self.calls:
                    info = service.create_session(
                        provider=opts.provider, to=_DEMO_TO, from_=_DEMO_FROM
                    )
                else:
                    info = service.create_session(provider=opts.provider, url=server.url)
                self.create_ns.append(time.perf_counter_ns() - t0)
                self.lanes.append(_Lane(info.session_id))
            if self.calls:
                self.server_url = self._describe_path(service)
            if not self.abort.is_set():
                print(
                    f"{PROG} demo: {len(self.lanes)} sessions streaming; Ctrl-C or SIGTERM "
                    "stops it",
                    file=self.out,
                    flush=True,
                )
                self._stream(service)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._clear_progress()
            self._shut_down(service, server)

    @staticmethod
    def _describe_path(service: TransportService) -> str:
        running = service.infrastructure.running
        parts = [f"{name} {getattr(thing, 'url', '')}" for name, thing in running.items()]
        return ", ".join(parts) or "a standalone gateway"

    def _stream(self, service: TransportService) -> None:
        for lane in self.lanes:
            reader = threading.Thread(
                target=self._read, args=(service, lane), name=f"demo-reader-{lane.session_id[:6]}"
            )
            self.threads.append(reader)
            reader.start()
        sender = threading.Thread(target=self._send, args=(service,), name="demo-sender")
        self.threads.append(sender)
        started = time.perf_counter()
        sender.start()
        last_at, last_in = started, 0
        while sender.is_alive():
            sender.join(_PROGRESS_S)
            if self.options.progress:
                now = time.perf_counter()
                received = self.received
                rate = (received - last_in) / max(now - last_at, 1e-9)
                self._show_progress(now - started, rate)
                last_at, last_in = now, received
        # Sending has stopped: give the echoes still in flight a bounded time to come back.
        self.sending_done.set()
        deadline = time.monotonic() + _DRAIN_S
        for thread in self.threads:
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(min(_PROGRESS_S, max(0.0, deadline - time.monotonic())))

    def _send(self, service: TransportService) -> None:
        try:
            self._send_frames(service)
        except Exception as exc:  # counted, never an unhandled thread exception
            logger.exception("the sender crashed")
            self.other_errors.append(f"the sender crashed: {exc!r}")

    def _send_frames(self, service: TransportService) -> None:
        """Every ``frame_ms``, one frame to every session, paced by absolute deadlines."""
        period = self.options.frame_ms / 1000.0
        ticks = max(1, round(self.options.seconds / period))
        if self.calls:
            # A call streams once the phone side has answered: time from there, not from the
            # writes held until then.
            deadline = time.monotonic() + _START_S
            for lane in self.lanes:
                while not lane.started.wait(min(_READ_POLL_S, deadline - time.monotonic())):
                    if self.abort.is_set():
                        return
                    if time.monotonic() >= deadline:
                        self.other_errors.append(f"session {lane.session_id}: never started")
                        lane.writable = False
                        break
        start = time.perf_counter()
        for k in range(ticks):
            delay = start + k * period - time.perf_counter()
            if (delay > 0 and self.abort.wait(delay)) or self.abort.is_set():
                return
            for lane in self.lanes:
                if not lane.writable:
                    continue
                header = _HEADER.pack(k & 0xFFFFFFFF, time.perf_counter_ns())
                try:
                    service.write_websocket_message(lane.session_id, Binary(header + self.filler))
                except TransportError as exc:
                    lane.writable = False  # one error per session, not one per tick
                    self.other_errors.append(f"session {lane.session_id}: write failed: {exc}")
                    continue
                lane.sent += 1
                if self.calls and (k + 1) % _MARK_EVERY == 0:
                    with contextlib.suppress(TransportError):
                        service.write_websocket_message(lane.session_id, Mark(f"m{k + 1}"))
                        lane.marks_sent += 1
            self.ticks = k + 1

    def _read(self, service: TransportService, lane: _Lane) -> None:
        try:
            self._read_echoes(service, lane)
        except Exception as exc:  # counted, never an unhandled thread exception
            logger.exception("session %s: the reader crashed", lane.session_id)
            lane.errors.append(f"the reader crashed: {exc!r}")

    def _read_echoes(self, service: TransportService, lane: _Lane) -> None:
        """Read the session's echoes, check their order and content, and time them."""
        sid = lane.session_id
        while not self.abort.is_set():
            if (
                self.sending_done.is_set()
                and lane.received >= lane.sent
                and lane.marks_back >= lane.marks_sent
            ):
                return
            try:
                message = service.read_websocket_message(sid, timeout=_READ_POLL_S)
            except ReadTimeout:
                continue
            except TransportError as exc:
                lane.errors.append(f"read failed: {exc}")
                return
            now = time.perf_counter_ns()
            if message is None:
                lane.errors.append("the session ended while echoes were due")
                return
            if isinstance(message, Started):
                lane.started.set()
                continue
            if isinstance(message, Mark):
                lane.marks_back += 1
                continue
            if not isinstance(message, Binary):
                lane.errors.append(f"unexpected {type(message).__name__}: {message!r}")
                continue
            data = message.data
            if len(data) != self.frame_bytes or data[_HEADER.size :] != self.filler:
                lane.errors.append(f"corrupt frame of {len(data)} bytes")
                continue
            seq, sent_ns = _HEADER.unpack_from(data)
            lane.received += 1
            lane.rtts_ns.append(now - sent_ns)
            if seq != lane.expected:
                what = "missing" if seq > lane.expected else "out of order"
                lane.errors.append(f"{what}: got frame {seq}, expected {lane.expected}")
            lane.expected = seq + 1

    def _shut_down(self, service: TransportService | None, server: ServerThread) -> None:
        """Stop our threads, end every session, close the service, stop the server.

        Every step runs even if an earlier one fails, and a second Ctrl-C does not cut the
        clean-up short (each step is bounded by its own timeouts).
        """
        self.abort.set()
        steps: list[Callable[[], None]] = [self._join_threads]
        if service is not None:
            steps.extend(partial(self._end, service, lane) for lane in self.lanes)
            steps.append(service.close)
        steps.append(server.stop)
        for step in steps:
            while True:
                try:
                    step()
                    break
                except KeyboardInterrupt:
                    self.interrupted = True  # finish this step (they are idempotent), then go on
                except Exception as exc:
                    logger.exception("clean-up step %r failed", step)
                    self.other_errors.append(f"clean-up failed: {exc}")
                    break

    def _join_threads(self) -> None:
        for thread in self.threads:
            thread.join(_JOIN_S)
            if thread.is_alive():
                self.other_errors.append(f"thread {thread.name} did not stop")

    def _end(self, service: TransportService, lane: _Lane) -> None:
        try:
            service.end_session(lane.session_id)
        except TransportError as exc:
            self.other_errors.append(f"session {lane.session_id}: end failed: {exc}")

    # -- numbers -----------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        return sum(lane.sent for lane in self.lanes)

    @property
    def received(self) -> int:
        return sum(lane.received for lane in self.lanes)

    @property
    def lost(self) -> int:
        marks = sum(max(0, lane.marks_sent - lane.marks_back) for lane in self.lanes)
        return max(0, self.sent - self.received) + marks

    @property
    def errors(self) -> int:
        return len(self.other_errors) + sum(len(lane.errors) for lane in self.lanes)

    def _recent_p99_ms(self) -> float:
        window = max(1, 1000 // self.options.frame_ms)  # about the last second of each session
        recent: list[int] = []
        for lane in self.lanes:
            recent.extend(lane.rtts_ns[-window:])
        return _percentile(recent, 99) / 1e6

    # -- output ------------------------------------------------------------------------------

    def _show_progress(self, elapsed: float, rate: float) -> None:
        line = (
            f"{elapsed:6.1f} s  {len(self.lanes)} sessions  out {self.sent}  in {self.received}"
            f"  {rate:7.0f} frames/s  p99 {self._recent_p99_ms():6.2f} ms"
        )
        self.err.write(f"\r{line}\x1b[K")
        self.err.flush()
        self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._progress_shown = False

    def _print_summary(self) -> None:
        rtts = sorted(rtt for lane in self.lanes for rtt in lane.rtts_ns)
        creates = sorted(self.create_ns)
        opts = self.options
        rows: list[tuple[str, str]] = [
            ("sessions", str(len(self.lanes))),
            ("seconds", f"{self.ticks * opts.frame_ms / 1000:.2f}"),
            ("frames sent", str(self.sent)),
            ("frames received", str(self.received)),
            ("lost", str(self.lost)),
            *self._mark_rows(),
            ("errors", str(self.errors)),
            ("round trip p50 ms", _ms(_percentile(rtts, 50, presorted=True), bool(rtts))),
            ("round trip p99 ms", _ms(_percentile(rtts, 99, presorted=True), bool(rtts))),
            ("round trip max ms", _ms(rtts[-1] if rtts else 0, bool(rtts))),
            ("create_session p50 ms", _ms(_percentile(creates, 50, presorted=True), bool(creates))),
            ("create_session p99 ms", _ms(_percentile(creates, 99, presorted=True), bool(creates))),
        ]
        width = max(len(name) for name, _ in rows)
        print(
            f"{PROG} demo: {opts.sessions} sessions x {opts.seconds:g} s, one "
            f"{self.frame_bytes}-byte frame every {opts.frame_ms} ms, "
            + ("calls via " if self.calls else "echo at ")
            + (self.server_url or "(not started)"),
            file=self.out,
        )
        for name, value in rows:
            print(f"  {name:<{width}}  {value:>10}", file=self.out)
        if self.calls:
            print(
                "  (a call's round trip includes the phone playing each frame at real time:"
                f" up to {opts.frame_ms} ms)",
                file=self.out,
            )
        problems = list(self.other_errors)
        for lane in self.lanes:
            problems.extend(f"session {lane.session_id}: {e}" for e in lane.errors)
        for problem in problems[:10]:
            print(f"error: {problem}", file=self.err)
        if len(problems) > 10:
            print(f"error: ... and {len(problems) - 10} more", file=self.err)
        if self.terminated:
            verdict = "TERMINATED"
        elif self.interrupted:
            verdict = "INTERRUPTED"
        elif self.errors == 0 and self.lost == 0:
            verdict = "OK"
        else:
            verdict = "FAILED"
        print(f"result: {verdict}", file=self.out)
        self.out.flush()

    def _mark_rows(self) -> list[tuple[str, str]]:
        if not self.calls:
            return []
        sent = sum(lane.marks_sent for lane in self.lanes)
        back = sum(lane.marks_back for lane in self.lanes)
        return [("marks sent", str(sent)), ("marks played back", str(back))]


def _percentile(values: Sequence[int], pct: float, *, presorted: bool = False) -> int:
    """The nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0
    ordered = values if presorted else sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _ms(ns: int, present: bool) -> str:
    return f"{ns / 1e6:.3f}" if present else "-"


# -- a call -----------------------------------------------------------------------------------

_FRAME_MS = 20  # what Twilio plays best, and what Daily's microphone takes
_FINAL_MARK = "end"  # written after the last frame: back once everything has played
_MARK_BACK_S = 5.0  # how long the final mark may take to come back after the last frame
_MAX_GAP_MS = 10_000  # a larger jump in inbound timestamps is appended as is, not padded
_SILENT_DBFS = -60.0  # quieter than this: no dominant frequency is reported
_SILENCE_BYTE = {"audio/x-mulaw": b"\xff", "audio/x-alaw": b"\xd5"}  # else PCM16: b"\x00"


@dataclass(frozen=True, slots=True)
class _CallOptions:
    config: TransportConfig
    provider: str
    to: str
    from_: str | None
    play: str | None
    audio: tuple[bytes, int] | None  # the --play file as PCM16, and its rate
    record: str | None
    seconds: float | None
    emulated: bool  # the provider's REST API is the embedded emulator


class _Call:
    """One call: play a WAV into it at real time, record what comes back, hang up.

    The main thread places the call and sends, paced by absolute deadlines (frame k leaves at
    start + k x 20 ms, so nothing drifts); a reader thread records what arrives. ``halt`` is
    set by Ctrl-C or SIGTERM and when the call ends on the far side: sending stops, the call
    is hung up, and what was recorded so far is written.
    """

    def __init__(self, options: _CallOptions, out: TextIO, err: TextIO) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.halt = threading.Event()
        self.started = threading.Event()
        self.final_mark = threading.Event()
        self.hanging_up = threading.Event()
        self.read_all = threading.Event()  # the reader has read the session to its end
        self.signals: _Signals | None = None
        self.media_format: MediaFormat | None = None
        self.session_id = ""
        self.call_id: str | None = None
        self.sent = 0  # frames written (main thread)
        self.marks_sent = 0
        self.received = 0  # audio frames read (reader thread), and what follows
        self.marks_back = 0
        self.recording = bytearray()  # in the provider's encoding
        self.ended_by: str | None = None  # the far side ended the call: how
        self.errors: list[str] = []
        self.usage_error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._first_timestamp: int | None = None
        self._bytes_per_ms = 0.0
        self._width = 1

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        with _Signals(self.halt) as signals:
            self.signals = signals
            service: TransportService | None = None
            reader: threading.Thread | None = None
            try:
                service = TransportService(self.options.config)
                if service.metrics_url is not None:
                    print(
                        f"{PROG} call: metrics at {service.metrics_url}", file=self.out, flush=True
                    )
                reader = self._place(service)
                if reader is not None:
                    self._talk(service)
            finally:
                self._hang_up(service, reader)
        if self.usage_error is not None:
            print(f"error: {self.usage_error}", file=self.err)
            return EXIT_USAGE
        self._save()
        self._print_summary()
        if signals.terminated:
            return EXIT_TERMINATED
        if signals.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.errors or self.ended_by else EXIT_OK

    def _place(self, service: TransportService) -> threading.Thread | None:
        opts = self.options
        where = " (the local emulator)" if opts.emulated else ""
        print(
            f"{PROG} call: calling {opts.to} via {opts.provider}{where}", file=self.out, flush=True
        )
        try:
            info = service.create_session(provider=opts.provider, to=opts.to, from_=opts.from_)
        except (ValueError, TypeError) as exc:  # the provider's checks of to and from_
            self.usage_error = str(exc)
            return None
        self.session_id, self.call_id = info.session_id, info.call_id
        reader = threading.Thread(
            target=self._read, args=(service,), name=f"call-reader-{info.session_id[:6]}"
        )
        reader.start()
        return reader

    def _talk(self, service: TransportService) -> None:
        opts = self.options
        sid = self.session_id
        deadline = time.monotonic() + _START_S
        while not self.started.wait(_READ_POLL_S):
            if self.halt.is_set():
                return
            if time.monotonic() >= deadline:
                self.errors.append(f"the call did not start streaming within {_START_S:g} s")
                return
        print(
            f"{PROG} call: call {self.call_id or '-'}, session {sid}: streaming; "
            "Ctrl-C or SIGTERM hangs up",
            file=self.out,
            flush=True,
        )
        chunks = self._frames()
        period = _FRAME_MS / 1000.0
        count = len(chunks)
        if opts.seconds is not None:
            count = min(count, math.ceil(opts.seconds / period - 1e-9))
        start = self.started_at = time.monotonic()
        try:
            for k in range(count):
                delay = start + k * period - time.monotonic()
                if (delay > 0 and self.halt.wait(delay)) or self.halt.is_set():
                    break
                service.write_websocket_message(sid, Binary(chunks[k]))
                self.sent += 1
                if self.sent % _MARK_EVERY == 0 and self.sent < count:
                    service.write_websocket_message(sid, Mark(f"{self.sent * _FRAME_MS // 1000}s"))
                    self.marks_sent += 1
            if self.sent and not self.halt.is_set():
                # Back once everything before it has played: the tail has been recorded.
                service.write_websocket_message(sid, Mark(_FINAL_MARK))
                self.marks_sent += 1
                self._wait(self.final_mark, start + count * period + _MARK_BACK_S)
                if not self.final_mark.is_set() and not self.halt.is_set():
                    self.errors.append(
                        f"the final mark did not come back within {_MARK_BACK_S:g} s of the "
                        "last frame"
                    )
        except SessionClosed:
            # The call ended under us; the reader is about to read how (Stopped, Close).
            self.read_all.wait(_JOIN_S)
            self.ended_by = self.ended_by or "the session ended"
            return
        except TransportError as exc:
            self.errors.append(f"write failed: {exc}")
            return
        if opts.seconds is not None:
            self._wait(self.halt, start + opts.seconds)

    def _wait(self, event: threading.Event, until: float) -> None:
        """Wait for ``event`` (or ``halt``) until the monotonic time ``until``."""
        while not event.is_set() and not self.halt.is_set():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            event.wait(min(remaining, _READ_POLL_S))

    def _frames(self) -> list[bytes]:
        """The --play file in the stream's format, in 20 ms frames (the last one padded)."""
        fmt = self.media_format or MediaFormat()
        if self.options.audio is None:
            return []
        pcm, rate = self.options.audio
        data = to_provider_audio(pcm, rate, fmt.encoding, fmt.sample_rate)
        size = frame_bytes(fmt.encoding, fmt.sample_rate, _FRAME_MS)
        return frames(data, size, _SILENCE_BYTE.get(fmt.encoding.lower(), b"\x00"))

    def _hang_up(self, service: TransportService | None, reader: threading.Thread | None) -> None:
        """End the session (hanging the call up), stop the reader, close the service. Signals
        that arrive meanwhile only set ``halt``: nothing cuts this short."""
        self.hanging_up.set()
        self.finished_at = time.monotonic()
        if service is None:
            return
        try:
            if self.session_id:
                try:
                    service.end_session(self.session_id)
                except TransportError as exc:
                    self.errors.append(f"hanging up failed: {exc}")
            if reader is not None:
                reader.join(_JOIN_S)
                if reader.is_alive():
                    self.errors.append(f"thread {reader.name} did not stop")
        finally:
            service.close()

    # -- the reader thread -----------------------------------------------------------------

    def _read(self, service: TransportService) -> None:
        try:
            self._read_messages(service)
        except Exception as exc:  # counted, never an unhandled thread exception
            logger.exception("session %s: the call's reader crashed", self.session_id)
            self.errors.append(f"the reader crashed: {exc!r}")
        finally:
            self.read_all.set()
            self.halt.set()

    def _read_messages(self, service: TransportService) -> None:
        sid = self.session_id
        while True:
            try:
                message = service.read_websocket_message(sid, timeout=_READ_POLL_S)
            except ReadTimeout:
                continue
            except TransportError as exc:
                if not self.hanging_up.is_set():
                    self.errors.append(f"read failed: {exc}")
                return
            if message is None:  # the session has ended
                if not self.hanging_up.is_set() and self.ended_by is None:
                    self.ended_by = "the session ended"
                return
            if isinstance(message, Binary):
                self.received += 1
                self._record(message)
            elif isinstance(message, Started):
                self._on_started(message.media_format)
            elif isinstance(message, Mark):
                self.marks_back += 1
                if message.name == _FINAL_MARK:
                    self.final_mark.set()
            elif isinstance(message, Stopped):
                if not self.hanging_up.is_set():
                    self.ended_by = "the other side hung up"
            elif isinstance(message, Close) and not self.hanging_up.is_set():
                self.ended_by = self.ended_by or f"the call ended ({message.code} {message.reason})"

    def _on_started(self, fmt: MediaFormat) -> None:
        size = frame_bytes(fmt.encoding, fmt.sample_rate, _FRAME_MS)
        self._bytes_per_ms = size / _FRAME_MS
        self._width = size // (fmt.sample_rate * _FRAME_MS // 1000)
        self.media_format = fmt
        self.started.set()

    def _record(self, message: Binary) -> None:
        """Keep the audio where its timestamp puts it: a gap of half a frame or more (the
        other side sent nothing for a while) becomes silence, as it sounded."""
        fmt = self.media_format
        timestamp: int | None = getattr(message, "timestamp", None)
        if timestamp is not None and fmt is not None:
            if self._first_timestamp is None:
                self._first_timestamp = timestamp
            at = round((timestamp - self._first_timestamp) * self._bytes_per_ms / self._width)
            gap = at * self._width - len(self.recording)
            frame = _FRAME_MS * self._bytes_per_ms
            if frame / 2 <= gap <= _MAX_GAP_MS * self._bytes_per_ms:
                self.recording += _SILENCE_BYTE.get(fmt.encoding.lower(), b"\x00") * gap
        self.recording += message.data

    # -- output ----------------------------------------------------------------------------

    def _recorded_pcm(self) -> tuple[bytes, int]:
        fmt = self.media_format or MediaFormat()
        data = bytes(self.recording)
        data = data[: len(data) - len(data) % self._width]
        return from_provider_audio(data, fmt.encoding, fmt.sample_rate, fmt.sample_rate), (
            fmt.sample_rate
        )

    def _save(self) -> None:
        if self.options.record is None:
            return
        pcm, rate = self._recorded_pcm()
        try:
            write_wav(self.options.record, pcm, rate)
        except OSError as exc:
            self.errors.append(f"cannot write {self.options.record}: {exc.strerror or exc}")

    def _print_summary(self) -> None:
        opts = self.options
        pcm, rate = self._recorded_pcm()
        samples = len(pcm) // 2
        hz = "-"
        if samples >= rate // 10 and rms_dbfs(pcm) > _SILENT_DBFS:
            hz = f"{dominant_frequency(pcm, rate):.1f}"
        call_s = "-"
        if self.started_at is not None and self.finished_at is not None:
            call_s = f"{self.finished_at - self.started_at:.2f}"
        rows: list[tuple[str, str]] = [
            ("call", self.call_id or "-"),
            ("session", self.session_id or "-"),
            ("frames sent", str(self.sent)),
            ("frames received", str(self.received)),
            ("marks sent", str(self.marks_sent)),
            ("marks played back", str(self.marks_back)),
            ("seconds played", f"{self.sent * _FRAME_MS / 1000:.2f}"),
            ("seconds recorded", f"{samples / rate:.2f}"),
            ("seconds streaming", call_s),
            ("dominant Hz", hz),
        ]
        width = max(len(name) for name, _ in rows)
        played = opts.play or "nothing"
        recorded = opts.record or "nowhere (no --record)"
        print(
            f"{PROG} call: {opts.to} via {opts.provider}: played {played}, recorded to {recorded}",
            file=self.out,
        )
        for name, value in rows:
            print(f"  {name:<{width}}  {value:>10}", file=self.out)
        if self.ended_by is not None:
            print(f"note: {self.ended_by}", file=self.out)
        for problem in self.errors:
            print(f"error: {problem}", file=self.err)
        signals = self.signals
        if signals is not None and signals.terminated:
            verdict = "TERMINATED"
        elif signals is not None and signals.interrupted:
            verdict = "INTERRUPTED"
        elif self.errors:
            verdict = "FAILED"
        elif self.ended_by is not None:
            verdict = "ENDED EARLY"
        else:
            verdict = "OK"
        print(f"result: {verdict}", file=self.out)
        self.out.flush()


# -- commands ---------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    config = _config(args)
    calls = isinstance(config.provider(args.provider), TwilioProviderConfig)
    if calls and args.frame_ms != 20:
        print("error: --frame-ms must be 20 for calls (Twilio plays 20 ms frames)", file=sys.stderr)
        return EXIT_USAGE
    options = _DemoOptions(
        config=config,
        provider=args.provider,
        sessions=args.sessions,
        seconds=args.seconds,
        frame_ms=args.frame_ms,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    return _Demo(options, sys.stdout, sys.stderr).run()


def _cmd_call(args: argparse.Namespace) -> int:
    config = _config(args)
    provider = config.provider(args.provider)
    if not isinstance(provider, TwilioProviderConfig | DailyProviderConfig):
        print(
            f"error: --provider {args.provider}: a call needs a twilio or daily provider, "
            f"not {provider.type}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.play is None and args.seconds is None:
        print("error: nothing to do: give --play FILE, --seconds S, or both", file=sys.stderr)
        return EXIT_USAGE
    audio: tuple[bytes, int] | None = None
    if args.play is not None:
        try:
            audio = read_wav(args.play)
        except OSError as exc:
            print(f"error: cannot read {args.play}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.record is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.record))):
        print(f"error: --record {args.record}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    emulated = provider.api_base_url == "emulator"
    from_: str | None = args.from_
    if from_ is None and isinstance(provider, TwilioProviderConfig):
        from_ = provider.from_number or (_DEMO_FROM if emulated else None)
    options = _CallOptions(
        config=config,
        provider=args.provider,
        to=args.to,
        from_=from_,
        play=args.play,
        audio=audio,
        record=args.record,
        seconds=args.seconds,
        emulated=emulated,
    )
    return _Call(options, sys.stdout, sys.stderr).run()


def _config(args: argparse.Namespace) -> TransportConfig:
    """The config named by ``-c``, else the embedded default; ``ConfigError`` reaches main()."""
    path: str | None = args.config
    return load_config(path) if path is not None else default_config()


def _wait_for(stop: threading.Event) -> None:
    """Block until ``stop`` is set (by Ctrl-C or SIGTERM, through :class:`_Signals`)."""
    try:
        while not stop.wait(0.5):  # short waits: a signal's handler runs between them
            pass
    except KeyboardInterrupt:  # run outside the main thread, Ctrl-C still raises
        pass


def _cmd_gateway(args: argparse.Namespace) -> int:
    from .gateway.server import MediaGateway  # noqa: PLC0415

    config = _config(args)
    if not config.gateway.secret:
        print(
            f"error: {args.config}: gateway.secret: required for a standalone gateway (the "
            "services that dial it use the same secret)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    gateway = MediaGateway(config.gateway)
    stop = threading.Event()
    # Installed before the gateway says it is ready, so that a SIGTERM sent on seeing "ready"
    # is never the default (abrupt) one; a signal during the start-up stops it right after.
    with _Signals(stop):
        try:
            gateway.start()
        except OSError as exc:
            print(
                f"error: cannot listen on {config.gateway.listen}: {exc.strerror}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        return _serve_gateway(gateway, config, stop)


def _serve_gateway(gateway: MediaGateway, config: TransportConfig, stop: threading.Event) -> int:
    from .metrics import GatewayMetrics, MetricsServer  # noqa: PLC0415

    metrics: MetricsServer | None = None
    try:
        if config.metrics.listen is not None:
            try:
                metrics = GatewayMetrics(gateway.stats).serve(config.metrics.listen)
            except OSError as exc:
                print(
                    f"error: metrics.listen: cannot listen on {config.metrics.listen}: "
                    f"{exc.strerror}",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            print(f"media gateway: metrics at {metrics.url}", flush=True)
        print(f"media gateway: sessions dial {gateway.url}/sessions/<id>", flush=True)
        print(f"media gateway: providers dial {gateway.public_url}/twilio", flush=True)
        print(_READY, flush=True)
        _wait_for(stop)
    finally:
        gateway.stop()
        if metrics is not None:
            metrics.stop()
        print(f"media gateway stopped: {gateway.stats()}", flush=True)
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .embedded import EMULATOR_ACCOUNT_SID  # noqa: PLC0415
    from .emulator.phone import TwilioEmulator  # noqa: PLC0415

    config = _config(args)
    account, token, shown = EMULATOR_ACCOUNT_SID, "", False
    for provider in config.providers.values():
        if (
            isinstance(provider, TwilioProviderConfig)
            and provider.account_sid
            and provider.auth_token
        ):
            account, token = provider.account_sid, provider.auth_token
            break
    if not token:
        # A made-up account for this run only: print the token so that a client can use it.
        token, shown = secrets.token_urlsafe(16), True
    emulator = TwilioEmulator(config.emulator, {account: token})
    stop = threading.Event()
    with _Signals(stop):  # before "ready", as for the gateway
        try:
            emulator.start()
        except OSError as exc:
            print(
                f"error: cannot listen on {config.emulator.listen}: {exc.strerror}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        try:
            print(f"Twilio emulator: api_base_url {emulator.url}", flush=True)
            print(f"Twilio emulator: account {account}", flush=True)
            if shown:
                print(f"Twilio emulator: auth token {token} (made up for this run)", flush=True)
            print(_READY, flush=True)
            _wait_for(stop)
        finally:
            emulator.stop()
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"OK: {args.config}")
    print(json.dumps(config.redacted(), indent=2))
    for warning in config.gateway.security_warnings():  # valid, but unsafe to expose
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


# -- argument parsing -------------------------------------------------------------------------


def _positive(kind: Callable[[str], float], minimum: float = 0.0) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value <= minimum:
            raise argparse.ArgumentTypeError(f"must be > {minimum:g}, got {text}")
        return value

    return parse


def _frame_ms(text: str) -> int:
    value = int(_positive(int)(text))
    if value * _BYTES_PER_MS < _HEADER.size:
        raise argparse.ArgumentTypeError(
            f"must be at least 2 ms (a frame carries a {_HEADER.size}-byte header), got {text}"
        )
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="One pykka actor per WebSocket voice session, behind a synchronous facade.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LOG_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help=f"log to stderr at this level: {', '.join(_LOG_LEVELS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=_LOG_FORMATS,
        default="text",
        help=(
            "text lines, or one JSON object per line (time, level, logger, message, "
            "session_id when known); secrets are masked either way (default: %(default)s)"
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="place N emulated calls and stream a tone through them both ways",
        description=(
            "Place N calls (by default emulated Twilio calls through the embedded gateway; "
            "with --provider websocket, sessions to a local echo server), send one frame per "
            "session every --frame-ms for --seconds, check every echo came back in order, and "
            "print the round-trip latency. Exit status 0 only if no frame was lost and no "
            "error occurred."
        ),
    )
    demo.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file (default: the embedded default configuration)",
    )
    demo.add_argument(
        "--provider",
        default="twilio",
        metavar="NAME",
        help=(
            "the configured provider to use: a twilio one (calls through the gateway) or a "
            "websocket one (straight to a local echo server) (default: %(default)s)"
        ),
    )
    demo.add_argument(
        "--sessions",
        type=_positive(int),
        default=10,
        metavar="N",
        help="number of concurrent sessions (default: %(default)s)",
    )
    demo.add_argument(
        "--seconds",
        type=_positive(float),
        default=3.0,
        metavar="S",
        help="how long to stream (default: %(default)s)",
    )
    demo.add_argument(
        "--frame-ms",
        type=_frame_ms,
        default=20,
        metavar="MS",
        help="frame period; a frame is MS x 8 bytes of 8 kHz mu-law (default: %(default)s)",
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="no live progress line on stderr (it is shown only when stderr is a terminal)",
    )
    demo.set_defaults(func=_cmd_demo)

    call = commands.add_parser(
        "call",
        help="place a call, play a WAV file into it and record the other side",
        description=(
            "Place one call, play --play (a PCM WAV file, any rate: converted to the "
            "provider's format) into it at real time in 20 ms frames, record what the other "
            "side sends to --record (a WAV file at the call's rate), and hang up once the file "
            "has played and a final mark has come back (so the tail is recorded), after "
            "--seconds, or on Ctrl-C or SIGTERM; then print a summary. With the embedded "
            "default configuration the call goes to the local emulator, which echoes what it "
            "hears. Exit status: 0 played out, 1 a problem (or the other side hung up first), "
            "2 usage, 130 Ctrl-C, 143 SIGTERM; the call is hung up and the recording written "
            "in every case."
        ),
    )
    call.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file (default: the embedded default configuration: the emulator)",
    )
    call.add_argument(
        "--provider",
        default="twilio",
        metavar="NAME",
        help="the configured twilio or daily provider to call through (default: %(default)s)",
    )
    call.add_argument("--to", required=True, metavar="NUMBER", help="the number to call (E.164)")
    call.add_argument(
        "--from",
        dest="from_",
        metavar="NUMBER",
        help="the caller id (default: the provider's from_number; +15550199 on the emulator)",
    )
    call.add_argument("--play", metavar="IN.wav", help="the WAV file to play into the call")
    call.add_argument(
        "--record", metavar="OUT.wav", help="where to write what the other side sends"
    )
    call.add_argument(
        "--seconds",
        type=_positive(float),
        metavar="S",
        help=(
            "how long the call lasts: the file is cut off at S seconds, and recording goes on "
            "until S seconds even if the file is shorter (default: the file's length)"
        ),
    )
    call.set_defaults(func=_cmd_call)

    gateway = commands.add_parser(
        "gateway",
        help="run the media gateway standalone",
        description=(
            "Run the media gateway configured under `gateway:` until Ctrl-C or SIGTERM. "
            "gateway.secret must be set: the services that dial this gateway share it."
        ),
    )
    gateway.add_argument("-c", "--config", metavar="FILE", required=True, help="YAML config file")
    gateway.set_defaults(func=_cmd_gateway)

    emulator = commands.add_parser(
        "emulator",
        help="run the local Twilio emulator standalone",
        description=(
            "Run the Twilio emulator configured under `emulator:` until Ctrl-C or SIGTERM. It "
            "accepts the account of the config's twilio provider, or a made-up one it prints."
        ),
    )
    emulator.add_argument("-c", "--config", metavar="FILE", help="YAML config file")
    emulator.set_defaults(func=_cmd_emulator)

    check = commands.add_parser(
        "check",
        help="validate a config file and print it with secrets masked",
        description=(
            "Load and validate a YAML config file. On success print 'OK: FILE' and the config "
            "as JSON with every secret masked; on error print the problem and exit 2."
        ),
    )
    check.add_argument("-c", "--config", metavar="FILE", required=True, help="YAML config file")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``transport-actors`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    args = _build_parser().parse_args(argv)
    stop_logging = _start_logging(args.log_level, args.log_format)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TransportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop_logging()


def _start_logging(level: str, log_format: str) -> Callable[[], None]:
    """Log to stderr at ``level`` in ``log_format``; returns what undoes it (``main`` may run
    more than once in a process: the tests call it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)

    def stop() -> None:
        handler.flush()
        root.removeHandler(handler)
        root.setLevel(previous)

    return stop


if __name__ == "__main__":
    sys.exit(main())
