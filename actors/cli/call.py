"""``transport-actors call``: one call, a WAV file played into it at real time, the other side
recorded to a WAV file (the command is described in :mod:`actors.cli`)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import dataclass
from typing import TextIO

from ..audio import read_wav
from ..config import DailyProviderConfig, TransportConfig, TwilioProviderConfig
from ..service import TransportService
from ._common import (
    _DEMO_FROM,
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
    """One call: place it, play a WAV into it at real time, record what comes back, hang up
    (the media is a :class:`~actors.cli._leg._Leg`'s).

    The main thread places the call and sends; a reader thread records what arrives.
    ``halt`` is set by Ctrl-C or SIGTERM and when the call ends on the far side: sending
    stops, the call is hung up, and what was recorded so far is written.
    """

    def __init__(self, options: _CallOptions, out: TextIO, err: TextIO) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.halt = threading.Event()
        self.leg = _Leg(options.audio, options.seconds, self.halt)
        self.signals: _Signals | None = None
        self.usage_error: str | None = None

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        leg = self.leg
        with _Signals(self.halt) as signals:
            self.signals = signals
            service: TransportService | None = None
            try:
                service = TransportService(self.options.config)
                if service.metrics_url is not None:
                    print(
                        f"{PROG} call: metrics at {service.metrics_url}", file=self.out, flush=True
                    )
                if self._place(service):
                    self._talk(service)
            finally:
                if service is not None:
                    try:
                        leg.hang_up(service)
                    finally:
                        service.close()
        if self.usage_error is not None:
            print(f"error: {self.usage_error}", file=self.err)
            return EXIT_USAGE
        if self.options.record is not None:
            leg.save(self.options.record)
        self._print_summary()
        if signals.terminated:
            return EXIT_TERMINATED
        if signals.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if leg.errors or leg.ended_by else EXIT_OK

    def _place(self, service: TransportService) -> bool:
        opts = self.options
        where = " (the local emulator)" if opts.emulated else ""
        print(
            f"{PROG} call: calling {opts.to} via {opts.provider}{where}", file=self.out, flush=True
        )
        try:
            info = service.create_session(provider=opts.provider, to=opts.to, from_=opts.from_)
        except (ValueError, TypeError) as exc:  # the provider's checks of to and from_
            self.usage_error = str(exc)
            return False
        self.leg.start_reader(service, info.session_id, info.call_id)
        return True

    def _talk(self, service: TransportService) -> None:
        leg = self.leg
        if not leg.wait_started():
            return
        print(
            f"{PROG} call: call {leg.call_id or '-'}, session {leg.session_id}: streaming; "
            "Ctrl-C or SIGTERM hangs up",
            file=self.out,
            flush=True,
        )
        leg.play(service)

    # -- output ----------------------------------------------------------------------------

    def _print_summary(self) -> None:
        opts = self.options
        leg = self.leg
        rows = leg.rows()
        width = max(len(name) for name, _ in rows)
        played = opts.play or "nothing"
        recorded = opts.record or "nowhere (no --record)"
        print(
            f"{PROG} call: {opts.to} via {opts.provider}: played {played}, recorded to {recorded}",
            file=self.out,
        )
        for name, value in rows:
            print(f"  {name:<{width}}  {value:>10}", file=self.out)
        if leg.ended_by is not None:
            print(f"note: {leg.ended_by}", file=self.out)
        for problem in leg.errors:
            print(f"error: {problem}", file=self.err)
        signals = self.signals
        if signals is not None and signals.terminated:
            verdict = "TERMINATED"
        elif signals is not None and signals.interrupted:
            verdict = "INTERRUPTED"
        elif leg.errors:
            verdict = "FAILED"
        elif leg.ended_by is not None:
            verdict = "ENDED EARLY"
        else:
            verdict = "OK"
        print(f"result: {verdict}", file=self.out)
        self.out.flush()


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
