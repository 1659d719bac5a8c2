"""What the benchmark's tables share: a row measured with CPU by process, its table, and the
blocks of BENCHMARKS.md's notes that a run of one section rewrites in place.

``scripts/bench.py`` (the Pipecat and inbound rows), ``scripts/_providers.py`` (one row per
provider) and ``scripts/_cluster.py`` (one runtime against two) build their rows on these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from _peer import DialResult, pct

NOTES_MARKER = "<!-- notes: kept across runs -->"


@dataclass
class PeerRow:
    """One implementation at one N, with the CPU of every process it runs in."""

    impl: str
    sessions: int
    sent: int
    rtts_ms: list[float]
    late: int
    errors: list[str]
    cpu_pct: dict[str, float]  # by process, % of one core over the window
    rss_mb: float  # of those processes, at the window's end
    rss_per_call_mb: float  # their growth from idle, per call
    peer_pct: float
    setup_ms: list[float] = field(default_factory=list)
    cpu_until_drained_s: dict[str, float] = field(default_factory=dict)  # see DialResult

    @property
    def lost(self) -> int:
        return self.sent - len(self.rtts_ms)

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_pct.values())

    @property
    def cpu_per_call(self) -> float:
        """CPU time per second of call, in ms (10x the % of a core, over N)."""
        return 10 * self.cpu_total / self.sessions


def row_from_dial(impl: str, n: int, result: DialResult, idle_rss: dict[str, float]) -> PeerRow:
    """A dial-in peer's load step as a row; ``idle_rss`` is each process's RSS when idle."""
    return PeerRow(
        impl,
        n,
        result.sent,
        result.rtts_ms,
        result.late,
        result.errors + [f"{n - result.ready} calls never ready"] * (result.ready < n),
        result.cpu_pct,
        sum(result.rss_mb.values()),
        sum(result.rss_mb[name] - idle_rss[name] for name in result.rss_mb) / n,
        result.peer_pct,
        result.setup_ms,
        result.cpu_until_drained_s,
    )


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


PEER_HEADER = [
    "| N | impl | p50 ms | p99 ms | p99.9 ms | sent | lost | late | errors "
    "| CPU % by process | CPU % | CPU ms/s per call | RSS MB | RSS MB/call | peer % |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
]


def peer_row(r: PeerRow) -> str:
    by_process = ", ".join(f"{name} {value:.0f}" for name, value in r.cpu_pct.items())
    return (
        f"| {r.sessions} | {r.impl} | {pct(r.rtts_ms, 0.5):.2f} | "
        f"{pct(r.rtts_ms, 0.99):.2f} | {pct(r.rtts_ms, 0.999):.2f} | {r.sent} | "
        f"{r.lost} | {r.late} | {len(r.errors)} | {by_process} | {r.cpu_total:.0f} | "
        f"{r.cpu_per_call:.2f} | {r.rss_mb:.0f} | {r.rss_per_call_mb:.3f} | "
        f"{r.peer_pct:.0f} |"
    )


def row_holds(row: PeerRow) -> bool:
    """Real time held: nothing lost, no error, p99 <= 20 ms."""
    return row.lost == 0 and not row.errors and pct(row.rtts_ms, 0.99) <= 20.0


def with_block(notes: str, block: str, begin: str, end: str) -> str:
    """The notes with the block between ``begin`` and ``end`` replaced in place (or added at
    their end)."""
    if begin in notes and end in notes:
        head, rest = notes.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    if not notes.startswith(NOTES_MARKER):
        notes = NOTES_MARKER + "\n" + notes
    return notes.rstrip("\n") + "\n\n" + block + "\n"


def load_line(before: tuple[float, float, float]) -> str:
    """How busy the machine was (``os.getloadavg()`` at the run's start, and now): the
    benchmark shares it with whatever else runs."""
    after = os.getloadavg()
    return (
        f"Machine load: 1-minute load average {before[0]:.1f} at the start, {after[0]:.1f} at "
        f"the end ({after[2]:.1f} over 15 minutes), on {os.cpu_count()} cores  "
    )
