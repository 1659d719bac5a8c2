"""What ``transport-actors demo`` counts and how it shows it: the frame format that lets each
echo be checked and timed, one session's traffic (a lane), the totals over every lane, the
live progress line and the summary table. Shared by the outbound demo
(:mod:`~actors.cli.demo`) and the inbound one (:mod:`~actors.cli.demo_inbound`), so that
both measure a round trip the same way."""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

_BYTES_PER_MS = 8  # 8 kHz mu-law: one byte per sample
_HEADER = struct.Struct(">IQ")  # sequence number, perf_counter_ns at send: 12 bytes
_DRAIN_S = 2.0  # how long to wait for echoes still in flight once sending has stopped
_PROGRESS_S = 0.25  # progress line refresh period


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


class _Traffic:
    """The lanes of a demo and the errors outside them: totals, progress line, table."""

    def __init__(self, frame_ms: int, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.lanes: list[_Lane] = []
        self.other_errors: list[str] = []
        self._window = max(1, 1000 // frame_ms)  # frames in about the last second of a session
        self._progress_shown = False

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
        recent: list[int] = []
        for lane in self.lanes:
            recent.extend(lane.rtts_ns[-self._window :])
        return _percentile(recent, 99) / 1e6

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

    def _traffic_rows(self, marks: bool) -> list[tuple[str, str]]:
        """Frames, marks (when the path carries them), errors and the round trip."""
        rtts = sorted(rtt for lane in self.lanes for rtt in lane.rtts_ns)
        rows = [
            ("frames sent", str(self.sent)),
            ("frames received", str(self.received)),
            ("lost", str(self.lost)),
        ]
        if marks:
            rows.append(("marks sent", str(sum(lane.marks_sent for lane in self.lanes))))
            rows.append(("marks played back", str(sum(lane.marks_back for lane in self.lanes))))
        rows.append(("errors", str(self.errors)))
        rows.extend(_latency_rows("round trip", rtts))
        rows.append(("round trip max ms", _ms(rtts[-1] if rtts else 0, bool(rtts))))
        return rows

    def _print_table(self, rows: Sequence[tuple[str, str]]) -> None:
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value:>10}", file=self.out)

    def _print_problems(self) -> None:
        problems = list(self.other_errors)
        for lane in self.lanes:
            problems.extend(f"session {lane.session_id}: {e}" for e in lane.errors)
        for problem in problems[:10]:
            print(f"error: {problem}", file=self.err)
        if len(problems) > 10:
            print(f"error: ... and {len(problems) - 10} more", file=self.err)


def _latency_rows(what: str, values_ns: Sequence[int]) -> list[tuple[str, str]]:
    """``what p50 ms`` and ``what p99 ms`` rows of ``values_ns`` ("-" when there are none)."""
    ordered = sorted(values_ns)
    return [
        (f"{what} p{pct} ms", _ms(_percentile(ordered, pct, presorted=True), bool(ordered)))
        for pct in (50, 99)
    ]


def _percentile(values: Sequence[int], pct: float, *, presorted: bool = False) -> int:
    """The nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0
    ordered = values if presorted else sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _ms(ns: int, present: bool) -> str:
    return f"{ns / 1e6:.3f}" if present else "-"
