"""``transport-actors answer``: answer inbound calls; play a WAV file into each at real time,
record each caller to a WAV file of its own, hang up at the end of the file (the command is
described in :mod:`actors.cli`).

The main thread accepts calls (``accept_session``) until ``--max-calls`` or a signal; each
accepted call gets a thread that plays and records it (a :class:`~actors.cli._leg._Leg`, as
``call`` does) and prints its summary once it has hung up. ``--dial-in N`` has the embedded
emulator place N calls to the command's own webhook, so that all of it runs with no account.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import TextIO

from ..audio import read_wav
from ..config import TransportConfig
from ..errors import AcceptTimeout, TransportError
from ..messages import SessionInfo
from ..redaction import redact_url
from ..service import TransportService
from ._common import (
    _JOIN_S,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    _config,
    _Signals,
)
from ._leg import _Leg

logger = logging.getLogger(__name__)

_ACCEPT_POLL_S = 0.25  # how often the accepting loop looks up to check whether to stop
_DIAL_IN_TO, _DIAL_IN_FROM = "+15550100", "+15550177"  # what --dial-in's callers dial, from
_WAIT_S = 0.25  # the main thread's wait between checks while calls finish


@dataclass(frozen=True, slots=True)
class _AnswerOptions:
    config: TransportConfig
    provider: str | None  # accept only this provider's calls (None: any)
    wav: str | None
    audio: tuple[bytes, int] | None  # the --wav file as PCM16, and its rate
    record: str | None  # a directory: one <call sid>.wav per call
    seconds: float | None
    max_calls: int | None
    dial_in: int
    applet_url_file: str | None = None  # exotel: where the applet's whole URL is written


@dataclass(slots=True)
class _Answered:
    info: SessionInfo
    leg: _Leg
    thread: threading.Thread
    path: str | None = None  # where its recording went


class _Answer:
    """Accept calls and hand each to a thread that plays, records and hangs it up."""

    def __init__(self, options: _AnswerOptions, out: TextIO, err: TextIO) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.stop = threading.Event()
        self.calls: list[_Answered] = []
        self.errors: list[str] = []
        self._print_lock = threading.Lock()
        self.signals: _Signals | None = None

    def run(self) -> int:
        with _Signals(self.stop) as signals:
            self.signals = signals
            service: TransportService | None = None
            try:
                service = TransportService(self.options.config)
                self._answer(service)
            finally:
                self._finish(service)
        failed = [call for call in self.calls if call.leg.errors]
        print(
            f"{PROG} answer: {len(self.calls)} calls answered, {len(failed)} with errors",
            file=self.out,
        )
        for problem in self.errors:
            print(f"error: {problem}", file=self.err)
        if signals.terminated:
            verdict, code = "TERMINATED", EXIT_TERMINATED
        elif signals.interrupted:
            verdict, code = "INTERRUPTED", EXIT_INTERRUPTED
        elif failed or self.errors:
            verdict, code = "FAILED", EXIT_FAILED
        else:
            verdict, code = "OK", EXIT_OK
        print(f"result: {verdict}", file=self.out, flush=True)
        return code

    def _answer(self, service: TransportService) -> None:
        opts = self.options
        kind = opts.config.provider(opts.provider).type if opts.provider else "twilio"
        if kind == "exotel":  # no voice webhook: the number's applet dials the gateway
            assert opts.provider is not None
            url = service.infrastructure.exotel_applet_url(opts.provider)
            self._applet_url(url)
        else:
            print(
                f"{PROG} answer: voice URL {service.voice_url} (the number's 'a call comes "
                "in' webhook, HTTP POST)",
                file=self.out,
                flush=True,
            )
        for _ in range(opts.dial_in):
            if kind == "twilio":
                sid = service.infrastructure.dial_in(to=_DIAL_IN_TO, from_=_DIAL_IN_FROM)
            else:  # that provider's emulator places the call, as that provider would
                assert opts.provider is not None
                sid = service.infrastructure.place_inbound(
                    opts.provider, to=_DIAL_IN_TO, from_=_DIAL_IN_FROM
                )
            self._say(f"{PROG} answer: emulated call {sid} dials in from {_DIAL_IN_FROM}")
        self._say(f"{PROG} answer: answering; Ctrl-C or SIGTERM hangs up and stops")
        while not self.stop.is_set():
            if opts.max_calls is not None and len(self.calls) >= opts.max_calls:
                break
            try:
                info = service.accept_session(timeout=_ACCEPT_POLL_S, provider=opts.provider)
            except AcceptTimeout:
                continue
            except TransportError as exc:  # the call could not be answered: say so, go on
                self.errors.append(f"accept_session failed: {exc}")
                continue
            self._take(service, info)
        # Done accepting (or told to stop): the calls in progress play out (or are halted).
        while not self.stop.is_set() and any(call.thread.is_alive() for call in self.calls):
            self.stop.wait(_WAIT_S)

    def _applet_url(self, url: str) -> None:
        """Say where Exotel's Voicebot applet must point; the URL itself is a credential
        (Basic password, inbound token): printed masked, written whole only to
        ``--applet-url-file`` (created owner-only)."""
        where = self.options.applet_url_file
        if where is not None:
            fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(url + "\n")
        note = f"the whole URL is in {where}" if where else "--applet-url-file FILE writes it whole"
        self._say(
            f"{PROG} answer: Voicebot applet URL {redact_url(url)} (the number's flow "
            f"streams to it; {note})"
        )

    def _take(self, service: TransportService, info: SessionInfo) -> None:
        leg = _Leg(self.options.audio, self.options.seconds, threading.Event())
        leg.start_reader(service, info.session_id, info.call_id)
        thread = threading.Thread(
            target=self._handle, args=(service, leg), name=f"answer-{info.session_id[:6]}"
        )
        call = _Answered(info, leg, thread)
        if self.options.record is not None:
            call.path = os.path.join(self.options.record, f"{info.call_id or info.session_id}.wav")
        self.calls.append(call)  # before it runs: whatever happens next, it is hung up
        if self.stop.is_set():
            leg.halt.set()
        self._say(
            f"{PROG} answer: call {info.call_id or '-'} from {info.from_ or '-'} to "
            f"{info.to or '-'}: session {info.session_id}"
        )
        thread.start()

    def _handle(self, service: TransportService, leg: _Leg) -> None:
        try:
            if leg.wait_started():
                leg.play(service)
        except Exception as exc:  # counted, never an unhandled thread exception
            logger.exception("session %s: answering crashed", leg.session_id)
            leg.errors.append(f"answering crashed: {exc!r}")
        finally:
            leg.hang_up(service)
            call = next(call for call in self.calls if call.leg is leg)
            if call.path is not None:
                leg.save(call.path)
            self._print_call(call)

    def _finish(self, service: TransportService | None) -> None:
        """Halt every call, wait for each to hang up, close the service. A second signal
        meanwhile only sets ``stop``: nothing cuts this short."""
        for call in self.calls:
            call.leg.halt.set()
        for call in self.calls:
            call.thread.join(2 * _JOIN_S)
            if call.thread.is_alive():
                self.errors.append(f"thread {call.thread.name} did not stop")
        if service is not None:
            service.close()

    # -- output ----------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        with self._print_lock:
            print(line, file=self.out, flush=True)

    def _print_call(self, call: _Answered) -> None:
        leg = call.leg
        rows = [("from", call.info.from_ or "-"), *leg.rows()]
        width = max(len(name) for name, _ in rows)
        if leg.errors:
            verdict = "FAILED"
        elif self.stop.is_set():
            verdict = "HUNG UP (stopping)"
        elif leg.ended_by is not None:
            verdict = "CALLER HUNG UP"
        else:
            verdict = "OK"
        with self._print_lock:
            print(
                f"{PROG} answer: call {leg.call_id or '-'}: played {self.options.wav or 'nothing'}"
                f", recorded to {call.path or 'nowhere (no --record)'}",
                file=self.out,
            )
            for name, value in rows:
                print(f"  {name:<{width}}  {value:>10}", file=self.out)
            if leg.ended_by is not None:
                print(f"  note: {leg.ended_by}", file=self.out)
            for problem in leg.errors:
                print(f"error: call {leg.call_id or leg.session_id}: {problem}", file=self.err)
            print(f"  call result: {verdict}", file=self.out, flush=True)


def _cmd_answer(args: argparse.Namespace) -> int:
    config = _config(args)
    if not config.inbound.enabled:
        print("error: inbound.enabled is false: there is no webhook to answer", file=sys.stderr)
        return EXIT_USAGE
    if args.dial_in > config.inbound.max_sessions:
        print(
            f"error: --dial-in {args.dial_in} is more than inbound.max_sessions "
            f"({config.inbound.max_sessions})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.provider is not None:
        config.provider(args.provider)  # an unknown one: ConfigError, exit 2
    audio: tuple[bytes, int] | None = None
    if args.wav is not None:
        try:
            audio = read_wav(args.wav)
        except OSError as exc:
            print(f"error: cannot read {args.wav}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.record is not None and not os.path.isdir(args.record):
        print(f"error: --record {args.record}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    options = _AnswerOptions(
        config=config,
        provider=args.provider,
        wav=args.wav,
        audio=audio,
        record=args.record,
        seconds=args.seconds,
        max_calls=args.max_calls,
        dial_in=args.dial_in,
        applet_url_file=args.applet_url_file,
    )
    return _Answer(options, sys.stdout, sys.stderr).run()
