"""One session's media for ``call`` and ``answer``: a WAV file played into it at real time,
what the other side sends recorded, and the hang-up; shared so that a placed call and an
answered one play and record the same way."""

from __future__ import annotations

import logging
import math
import threading
import time

from ..audio import (
    dominant_frequency,
    frame_bytes,
    frames,
    from_provider_audio,
    rms_dbfs,
    to_provider_audio,
    write_wav,
)
from ..errors import ReadTimeout, SessionClosed, TransportError
from ..messages import Binary, Close, Mark, MediaFormat, Started, Stopped
from ..service import TransportService
from ._common import _JOIN_S, _MARK_EVERY, _READ_POLL_S, _START_S

logger = logging.getLogger(__name__)

_FRAME_MS = 20  # what Twilio plays best, and what Daily's microphone takes
_FINAL_MARK = "end"  # written after the last frame: back once everything has played
_MARK_BACK_S = 5.0  # how long the final mark may take to come back after the last frame
_MAX_GAP_MS = 10_000  # a larger jump in inbound timestamps is appended as is, not padded
_SILENT_DBFS = -60.0  # quieter than this: no dominant frequency is reported
_SILENCE_BYTE = {"audio/x-mulaw": b"\xff", "audio/x-alaw": b"\xd5"}  # else PCM16: b"\x00"


class _Leg:
    """One session: play ``audio`` into it at real time, record what comes back, hang up.

    The caller's thread sends (:meth:`play`), paced by absolute deadlines (frame k leaves at
    start + k x 20 ms, so nothing drifts); a reader thread (:meth:`start_reader`) records what
    arrives. ``halt`` is set from outside (Ctrl-C, SIGTERM) and by the reader when the session
    ends on the far side: sending stops, and :meth:`hang_up` ends the session.
    """

    def __init__(
        self, audio: tuple[bytes, int] | None, seconds: float | None, halt: threading.Event
    ) -> None:
        self.audio = audio  # PCM16 and its rate
        self.seconds = seconds
        self.halt = halt
        self.started = threading.Event()
        self.final_mark = threading.Event()
        self.hanging_up = threading.Event()
        self.read_all = threading.Event()  # the reader has read the session to its end
        self.media_format: MediaFormat | None = None
        self.session_id = ""
        self.call_id: str | None = None
        self.sent = 0  # frames written (the playing thread)
        self.marks_sent = 0
        self.received = 0  # audio frames read (reader thread), and what follows
        self.marks_back = 0
        self.recording = bytearray()  # in the provider's encoding
        self.ended_by: str | None = None  # the far side ended the call: how
        self.errors: list[str] = []
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.reader: threading.Thread | None = None
        self._first_timestamp: int | None = None
        self._bytes_per_ms = 0.0
        self._width = 1

    # -- playing ---------------------------------------------------------------------------

    def start_reader(self, service: TransportService, session_id: str, call_id: str | None) -> None:
        self.session_id, self.call_id = session_id, call_id
        self.reader = threading.Thread(
            target=self._read, args=(service,), name=f"leg-reader-{session_id[:6]}"
        )
        self.reader.start()

    def wait_started(self) -> bool:
        """Wait for the stream to start (``Started``); False if halted or it never did."""
        deadline = time.monotonic() + _START_S
        while not self.started.wait(_READ_POLL_S):
            if self.halt.is_set():
                return False
            if time.monotonic() >= deadline:
                self.errors.append(f"the call did not start streaming within {_START_S:g} s")
                return False
        return True

    def play(self, service: TransportService) -> None:
        """Send the audio at real time, then wait for the final mark (and ``seconds``)."""
        sid = self.session_id
        chunks = self._frames()
        period = _FRAME_MS / 1000.0
        count = len(chunks)
        if self.seconds is not None:
            count = min(count, math.ceil(self.seconds / period - 1e-9))
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
        if self.seconds is not None:
            self._wait(self.halt, start + self.seconds)
        elif self.audio is None:
            self._wait(self.halt, math.inf)  # nothing to play: record until the far side ends

    def _wait(self, event: threading.Event, until: float) -> None:
        """Wait for ``event`` (or ``halt``) until the monotonic time ``until``."""
        while not event.is_set() and not self.halt.is_set():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            event.wait(min(remaining, _READ_POLL_S))

    def _frames(self) -> list[bytes]:
        """The audio in the stream's format, in 20 ms frames (the last one padded)."""
        fmt = self.media_format or MediaFormat()
        if self.audio is None:
            return []
        pcm, rate = self.audio
        data = to_provider_audio(pcm, rate, fmt.encoding, fmt.sample_rate)
        size = frame_bytes(fmt.encoding, fmt.sample_rate, _FRAME_MS)
        return frames(data, size, _SILENCE_BYTE.get(fmt.encoding.lower(), b"\x00"))

    def hang_up(self, service: TransportService) -> None:
        """End the session (hanging the call up) and stop the reader. Signals that arrive
        meanwhile only set ``halt``: nothing cuts this short."""
        self.hanging_up.set()
        self.finished_at = time.monotonic()
        if self.session_id:
            try:
                service.end_session(self.session_id)
            except TransportError as exc:
                self.errors.append(f"hanging up failed: {exc}")
        if self.reader is not None:
            self.reader.join(_JOIN_S)
            if self.reader.is_alive():
                self.errors.append(f"thread {self.reader.name} did not stop")

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

    # -- results ---------------------------------------------------------------------------

    def recorded_pcm(self) -> tuple[bytes, int]:
        fmt = self.media_format or MediaFormat()
        data = bytes(self.recording)
        data = data[: len(data) - len(data) % self._width]
        return from_provider_audio(data, fmt.encoding, fmt.sample_rate, fmt.sample_rate), (
            fmt.sample_rate
        )

    def save(self, path: str) -> None:
        pcm, rate = self.recorded_pcm()
        try:
            write_wav(path, pcm, rate)
        except OSError as exc:
            self.errors.append(f"cannot write {path}: {exc.strerror or exc}")

    def rows(self) -> list[tuple[str, str]]:
        """The summary's rows for this session."""
        pcm, rate = self.recorded_pcm()
        samples = len(pcm) // 2
        hz = "-"
        if samples >= rate // 10 and rms_dbfs(pcm) > _SILENT_DBFS:
            hz = f"{dominant_frequency(pcm, rate):.1f}"
        call_s = "-"
        if self.started_at is not None and self.finished_at is not None:
            call_s = f"{self.finished_at - self.started_at:.2f}"
        return [
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
