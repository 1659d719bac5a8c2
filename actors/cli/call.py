"""``transport-actors call``: one call, a WAV file played into it at real time, the other side
recorded to a WAV file (the command is described in :mod:`actors.cli`)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

from ..audio import (
    dominant_frequency,
    frame_bytes,
    frames,
    from_provider_audio,
    read_wav,
    rms_dbfs,
    to_provider_audio,
    write_wav,
)
from ..config import DailyProviderConfig, TransportConfig, TwilioProviderConfig
from ..errors import ReadTimeout, SessionClosed, TransportError
from ..messages import Binary, Close, Mark, MediaFormat, Started, Stopped
from ..service import TransportService
from ._common import (
    _DEMO_FROM,
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
    _Signals,
)

logger = logging.getLogger(__name__)

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
