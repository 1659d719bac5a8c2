"""``transport-actors demo``: N sessions streaming a tone both ways, every frame checked for
order and content and timed on its round trip (the command is described in :mod:`actors.cli`).

The main thread creates the sessions and shows progress; one sender thread paces a frame to
every session per period; one reader thread per session checks what comes back.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TextIO

from ..audio import pcm16_to_ulaw, tone
from ..config import (
    ExotelProviderConfig,
    PlivoProviderConfig,
    ProviderConfig,
    TelnyxProviderConfig,
    TransportConfig,
    TwilioProviderConfig,
    VonageProviderConfig,
)
from ..errors import ReadTimeout, TransportError
from ..gateway import ServerThread, echo
from ..messages import Binary, CallStatus, MachineDetected, Mark, Started
from ..service import TransportService
from ._common import (
    _DEMO_FROM,
    _DEMO_TO,
    _JOIN_S,
    _MARK_EVERY,
    _READ_POLL_S,
    _START_S,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    _config,
    _positive,
    _Signals,
)
from ._measure import (
    _BYTES_PER_MS,
    _DRAIN_S,
    _HEADER,
    _PROGRESS_S,
    _Lane,
    _latency_rows,
    _Traffic,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _DemoOptions:
    config: TransportConfig
    provider: str
    sessions: int
    seconds: float
    frame_ms: int
    progress: bool


class _Demo(_Traffic):
    """Sessions streaming stamped frames, echoed back and checked. This class places them
    (``create_session``); :class:`~actors.cli.demo_inbound._InboundDemo` accepts them
    instead: :meth:`_open_sessions`, :meth:`_start_readers` and :meth:`_summary_rows` are
    what differs."""

    def __init__(self, options: _DemoOptions, out: TextIO, err: TextIO) -> None:
        super().__init__(options.frame_ms, out, err)
        self.options = options
        provider = options.config.provider(options.provider)
        self.pcm_rate = _pcm_rate(provider)
        per_ms = _BYTES_PER_MS if self.pcm_rate is None else self.pcm_rate * 2 // 1000
        self.frame_bytes = options.frame_ms * per_ms
        # A 440 Hz tone after the header: what a listener on the call would hear (mu-law, or
        # the provider's own PCM16 for Vonage and Exotel).
        pcm = tone(440.0, 1.0, self.pcm_rate or 8000, 0.3)
        audio = pcm if self.pcm_rate is not None else pcm16_to_ulaw(pcm)
        self.filler = audio[: self.frame_bytes - _HEADER.size]
        self.calls = _is_call(provider)
        self.create_ns: list[int] = []
        self.sending_done = threading.Event()
        self.abort = threading.Event()
        self.threads: list[threading.Thread] = []
        self.ticks = 0  # frame periods sent (written by the sender thread)
        self.server_url = ""
        self.interrupted = False
        self.terminated = False

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
            self._open_sessions(service)
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

    def _open_sessions(self, service: TransportService) -> None:
        """Place the sessions, one lane each (timing ``create_session``)."""
        opts = self.options
        for _ in range(opts.sessions):
            if self.abort.is_set():
                break
            t0 = time.perf_counter_ns()
            if self.calls:
                info = service.create_session(provider=opts.provider, to=_DEMO_TO, from_=_DEMO_FROM)
            else:
                info = service.create_session(provider=opts.provider, url=self.server_url)
            self.create_ns.append(time.perf_counter_ns() - t0)
            self.lanes.append(_Lane(info.session_id))

    def _start_readers(self, service: TransportService) -> None:
        """One reader thread per lane, reading its echoes."""
        for lane in self.lanes:
            reader = threading.Thread(
                target=self._read, args=(service, lane), name=f"demo-reader-{lane.session_id[:6]}"
            )
            self.threads.append(reader)
            reader.start()

    @staticmethod
    def _describe_path(service: TransportService) -> str:
        running = service.infrastructure.running
        parts = [f"{name} {getattr(thing, 'url', '')}" for name, thing in running.items()]
        return ", ".join(parts) or "a standalone gateway"

    def _stream(self, service: TransportService) -> None:
        self._start_readers(service)
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
            if isinstance(message, CallStatus | MachineDetected):  # call progress: not audio
                continue
            if not isinstance(message, Binary):
                lane.errors.append(f"unexpected {type(message).__name__}: {message!r}")
                continue
            data = message.data
            if self.pcm_rate is not None and not any(data):
                continue  # silence a PCM codec or phone padded a partial frame with: not ours
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

    # -- output ------------------------------------------------------------------------------

    def _path_label(self) -> str:
        return "calls via " if self.calls else "echo at "

    def _summary_rows(self) -> list[tuple[str, str]]:
        return _latency_rows("create_session", self.create_ns)

    def _print_summary(self) -> None:
        opts = self.options
        rows: list[tuple[str, str]] = [
            ("sessions", str(len(self.lanes))),
            ("seconds", f"{self.ticks * opts.frame_ms / 1000:.2f}"),
            *self._traffic_rows(marks=self.calls),
            *self._summary_rows(),
        ]
        print(
            f"{PROG} demo: {opts.sessions} sessions x {opts.seconds:g} s, one "
            f"{self.frame_bytes}-byte frame every {opts.frame_ms} ms, "
            + self._path_label()
            + (self.server_url or "(not started)"),
            file=self.out,
        )
        self._print_table(rows)
        if self.calls:
            print(
                "  (a call's round trip includes the phone playing each frame at real time:"
                f" up to {opts.frame_ms} ms)",
                file=self.out,
            )
        self._print_problems()
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


def _is_call(config: ProviderConfig) -> bool:
    """Whether sessions of ``config`` are phone calls through the media gateway."""
    kinds = (
        TwilioProviderConfig,
        TelnyxProviderConfig,
        PlivoProviderConfig,
        VonageProviderConfig,
        ExotelProviderConfig,
    )
    return isinstance(config, kinds)


def _pcm_rate(config: ProviderConfig) -> int | None:
    """The PCM16 rate a Vonage or Exotel call carries (``None``: 8 kHz mu-law, or no call)."""
    if isinstance(config, VonageProviderConfig | ExotelProviderConfig):
        return config.sample_rate
    return None


def _cmd_demo(args: argparse.Namespace) -> int:
    config = _config(args)
    provider = config.provider(args.provider)
    calls = _is_call(provider)
    if calls and args.frame_ms != 20:
        print("error: --frame-ms must be 20 for calls (phones play 20 ms frames)", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(provider, VonageProviderConfig | ExotelProviderConfig) and (
        provider.audio_encoding != "provider"
    ):
        # Converted audio does not come back byte for byte: the echo check needs the wire's.
        print(
            f"error: the demo needs providers.{args.provider}.audio_encoding: provider",
            file=sys.stderr,
        )
        return EXIT_USAGE
    inbound: bool = getattr(args, "inbound", False)
    if inbound:
        # Here, not at the top: demo_inbound builds on this module.
        from .demo_inbound import _inbound_problem, _InboundDemo  # noqa: PLC0415

        problem = _inbound_problem(config, args.provider, args.sessions, calls)
        if problem is not None:
            print(f"error: --inbound: {problem}", file=sys.stderr)
            return EXIT_USAGE
    options = _DemoOptions(
        config=config,
        provider=args.provider,
        sessions=args.sessions,
        seconds=args.seconds,
        frame_ms=args.frame_ms,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if inbound:
        return _InboundDemo(options, sys.stdout, sys.stderr).run()
    return _Demo(options, sys.stdout, sys.stderr).run()


def _frame_ms(text: str) -> int:
    value = int(_positive(int)(text))
    if value * _BYTES_PER_MS < _HEADER.size:
        raise argparse.ArgumentTypeError(
            f"must be at least 2 ms (a frame carries a {_HEADER.size}-byte header), got {text}"
        )
    return value
