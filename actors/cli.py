"""The ``transport-actors`` command.

::

    transport-actors demo    [-c FILE] [--provider NAME] [--sessions N] [--seconds S]
                             [--frame-ms MS] [--no-progress]
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

``gateway`` runs the media gateway standalone; ``emulator`` runs the Twilio emulator
standalone (its REST API URL and account are printed).

``check`` validates a config file and prints it with every secret masked.

Exit codes: 0 success, 1 the demo saw errors or lost frames (or a transport error), 2 a usage
or configuration error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import secrets
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TextIO

from . import __version__
from .audio import pcm16_to_ulaw, tone
from .config import TransportConfig, TwilioProviderConfig, default_config, load_config
from .errors import ConfigError, ReadTimeout, TransportError
from .gateway import ServerThread, echo
from .messages import Binary, Mark, Started
from .service import TransportService

__all__ = ["main"]

logger = logging.getLogger(__name__)

PROG = "transport-actors"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
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
        self._progress_shown = False

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        opts = self.options
        server = ServerThread(echo, name="demo-echo-server")
        service: TransportService | None = None
        try:
            service = TransportService(opts.config)
            if not self.calls:
                server.start()
                self.server_url = server.url
            for _ in range(opts.sessions):
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
            self._stream(service)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._clear_progress()
            self._shut_down(service, server)
        self._print_summary()
        if self.interrupted:
            self.err.write("interrupted\n")
            return EXIT_INTERRUPTED
        return EXIT_OK if self.errors == 0 and self.lost == 0 else EXIT_FAILED

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
                if not lane.started.wait(max(0.0, deadline - time.monotonic())):
                    self.other_errors.append(f"session {lane.session_id}: never started")
                    lane.writable = False
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
        if self.interrupted:
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


def _config(args: argparse.Namespace) -> TransportConfig:
    """The config named by ``-c``, else the embedded default; ``ConfigError`` reaches main()."""
    path: str | None = args.config
    return load_config(path) if path is not None else default_config()


def _stop_on_sigterm() -> threading.Event:
    """An event set by SIGTERM; installed before a server says it is ready, so that a
    SIGTERM sent on seeing "ready" is never the default (abrupt) one."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    return stop


def _wait_for(stop: threading.Event) -> None:
    """Block until ``stop`` is set (SIGTERM) or Ctrl-C."""
    try:
        while not stop.wait(0.5):  # short waits: Ctrl-C is delivered between them
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
    stop = _stop_on_sigterm()
    try:
        gateway.start()
    except OSError as exc:
        print(f"error: cannot listen on {config.gateway.listen}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    print(f"media gateway: sessions dial {gateway.url}/sessions/<id>", flush=True)
    print(f"media gateway: providers dial {gateway.public_url}/twilio", flush=True)
    print(_READY, flush=True)
    try:
        _wait_for(stop)
    finally:
        gateway.stop()
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
    stop = _stop_on_sigterm()
    try:
        emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {config.emulator.listen}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Twilio emulator: api_base_url {emulator.url}", flush=True)
    print(f"Twilio emulator: account {account}", flush=True)
    if shown:
        print(f"Twilio emulator: auth token {token} (made up for this run)", flush=True)
    print(_READY, flush=True)
    try:
        _wait_for(stop)
    finally:
        emulator.stop()
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"OK: {args.config}")
    print(json.dumps(config.redacted(), indent=2))
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
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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


if __name__ == "__main__":
    sys.exit(main())
