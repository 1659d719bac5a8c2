"""Issue 17's targets, each judged from the figures of one run of ``scripts/bench.py``.

The run's sections (outbound sweep, inbound calls beside Pipecat, cluster mode, throughput,
set-up, idle sessions) measure; this module only reads their rows and says, per target, the
figure and whether it is met. A section the run skipped (``--quick``, ``--no-pipecat``,
``--no-cluster``) is reported as not measured, never as met.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from _peer import pct
from _rows import PeerRow, ratio, row_holds

TARGET_CALLS = 250
TARGET_CPU_RATIO = 0.3
TARGET_RSS_MB = 0.5
TARGET_IDLE = 1_000
TARGET_CREATE_MS = 5.0


@dataclass(frozen=True)
class Outbound:
    """One step of the outbound sweep (ours), reduced to what the targets read."""

    sessions: int
    p99_ms: float
    lost: int
    errors: int
    rss_per_session_mb: float

    @property
    def holds(self) -> bool:
        return self.lost == 0 and not self.errors and self.p99_ms <= 20.0


@dataclass(frozen=True)
class RunFigures:
    """What one run measured; ``None`` where it skipped that section."""

    outbound: Sequence[Outbound]
    inbound: Sequence[PeerRow] | None  # ours, inbound calls from the dial-in peer
    pipecat: Sequence[tuple[PeerRow, PeerRow]] | None  # (ours inbound, Pipecat) per N
    cluster: Sequence[tuple[PeerRow, PeerRow]] | None  # (one runtime, two) per N
    cluster_skipped_why: str
    pipecat_skipped_why: str
    throughput: tuple[float, float]  # ours, raw websocket-client, msg/s
    create_ms: Sequence[float]  # create_session of a plain WebSocket session
    idle: tuple[int, float, int]  # sessions held, RSS MB per session, threads


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else "**met**" if met else "**not met**"


def _p99(row: PeerRow) -> float:
    return pct(row.rtts_ms, 0.99)


def _largest(rows: Sequence[PeerRow]) -> int:
    return max((row.sessions for row in rows if row_holds(row)), default=0)


def _calls_target(figures: RunFigures) -> tuple[bool, str]:
    parts: list[str] = []
    met = False
    inbound = figures.inbound or []
    if inbound:
        parts.append(f"inbound calls (dial-in peer) held up to **{_largest(inbound)}**")
        at = [row for row in inbound if row.sessions >= TARGET_CALLS]
        for row in at[:1]:
            met = met or row_holds(row)
            parts.append(
                f"at {row.sessions}: p99 {_p99(row):.1f} ms, {row.lost} of {row.sent} lost"
            )
    held = max((step.sessions for step in figures.outbound if step.holds), default=0)
    parts.append(f"outbound calls held up to **{held}**")
    for step in [s for s in figures.outbound if s.sessions >= TARGET_CALLS][:1]:
        met = met or step.holds
        parts.append(f"at {step.sessions}: p99 {step.p99_ms:.1f} ms, {step.lost} lost")
    if not any(s.sessions >= TARGET_CALLS for s in figures.outbound) and not any(
        row.sessions >= TARGET_CALLS for row in inbound
    ):
        parts.append(f"this run did not load {TARGET_CALLS} calls")
    return met, "; ".join(parts)


def _cpu_target(figures: RunFigures) -> tuple[bool | None, str]:
    if figures.pipecat is None:
        return None, f"not measured in this run ({figures.pipecat_skipped_why})"
    both = [(o, p) for o, p in figures.pipecat if row_holds(o) and row_holds(p)]
    if both:
        ours, pipecat = max(both, key=lambda pair: pair[0].sessions)
        value = ours.cpu_per_call / pipecat.cpu_per_call if pipecat.cpu_per_call else 0.0
        return value <= TARGET_CPU_RATIO, (
            f"largest N both hold: {ours.sessions}; ours {ours.cpu_per_call:.2f} ms/s per "
            f"call, Pipecat {pipecat.cpu_per_call:.2f}: **{value:.2f}x**"
        )
    text = (
        f"no N is held by both (ours up to {_largest([o for o, _ in figures.pipecat])}, "
        f"Pipecat up to {_largest([p for _, p in figures.pipecat])})"
    )
    lossless = [
        (o, p)
        for o, p in figures.pipecat
        if o.lost == 0 == p.lost and not o.errors and not p.errors
    ]
    if lossless:
        ours, pipecat = max(lossless, key=lambda pair: pair[0].sessions)
        text += (
            f"; at the largest N both echo every frame ({ours.sessions}): "
            f"{ratio(ours.cpu_per_call, pipecat.cpu_per_call)}"
        )
    else:
        ours, pipecat = figures.pipecat[0]
        text += (
            f"; at {ours.sessions} (Pipecat lost {pipecat.lost} of {pipecat.sent}): "
            f"ours {ours.cpu_per_call:.2f} ms/s per call, Pipecat {pipecat.cpu_per_call:.2f}, "
            f"{ratio(ours.cpu_per_call, pipecat.cpu_per_call)}"
        )
    return False, text


def _cluster_target(figures: RunFigures) -> tuple[bool | None, str]:
    if figures.cluster is None:
        return None, f"not measured in this run ({figures.cluster_skipped_why})"
    one = _largest([one for one, _ in figures.cluster])
    two = _largest([two for _, two in figures.cluster])
    text = f"held: one runtime up to **{one}** calls, two up to **{two}** ({two - one:+d})"
    # Where neither holds, losing less is what "holds more" can still show.
    for one_row, two_row in figures.cluster:
        if one_row.lost != two_row.lost:
            text += (
                f"; at {one_row.sessions}: one lost {one_row.lost}, two lost {two_row.lost} "
                f"(p99 {_p99(one_row):.0f} against {_p99(two_row):.0f} ms)"
            )
            break
    _, busiest = figures.cluster[-1]
    text += (
        f"; not twice: at {busiest.sessions} the processes the two runtimes share took "
        + ", ".join(f"{name} {value:.0f} %" for name, value in busiest.cpu_pct.items())
        + f", peer {busiest.peer_pct:.0f} % (of the machine's 200 %)"
    )
    return two > one, text


def _profile(figures: RunFigures) -> list[str]:
    """This run's own account of where the CPU went: at the largest inbound N it loaded, and
    what carrying the target's calls would cost at the per-frame costs it measured."""
    rows = figures.inbound or []
    if not rows:
        return []
    row = max(rows, key=lambda r: r.sessions)
    total = row.cpu_total + row.peer_pct
    lines = [
        f"- **Why (this run)**: at {row.sessions} inbound calls "
        f"({row.sessions * 50:,} frames a second each way) the processes of the path took "
        + ", ".join(f"{name} {value:.0f} %" for name, value in row.cpu_pct.items())
        + f" and the dial-in peer {row.peer_pct:.0f} %: {total:.0f} % of the machine's "
        "200 %. The py-spy profile and the changes tried are in the notes below ('Why not "
        "250', 'Profile and changes')."
    ]
    # CPU per echoed frame where every frame came back (a step that lost frames did not do
    # all its work, so its cost per frame reads low).
    whole = [r for r in rows if r.lost == 0 and r.cpu_until_drained_s] or rows
    costs = max(whole, key=lambda r: r.sessions)
    echoed = max(1, len(costs.rtts_ms))
    per_frame = {name: 1e6 * s / echoed for name, s in costs.cpu_until_drained_s.items()}
    if per_frame:
        need = TARGET_CALLS * 50 * sum(per_frame.values()) / 1e4  # % of one core
        text = (
            f"- **The floor**: CPU per echoed frame at {costs.sessions} calls (every frame "
            "back), from the load's start to the last echo: "
            + ", ".join(f"{name} {us:.0f} us" for name, us in per_frame.items())
            + f". At those costs, {TARGET_CALLS} calls ({TARGET_CALLS * 50:,} round trips a "
            f"second) need {need:.0f} % of one core of the machine's 200 %"
        )
        if "runtime" in per_frame:
            runtime = TARGET_CALLS * 50 * per_frame["runtime"] / 1e4
            text += (
                f", {runtime:.0f} % of it in the runtime, whose Python runs under one GIL "
                "(one process cannot pass 100 %)"
            )
        if need >= 200:
            text += f": {need / 200:.1f}x what the machine has, before any headroom."
        else:
            text += (
                ": close to saturation, where queues, and so latency, grow fast."
                if need >= 150
                else "."
            )
        held = [r for r in rows if row_holds(r)]
        if held:
            top = max(held, key=lambda r: r.sessions)
            text += (
                f" Real time held up to {top.sessions} inbound calls in this run, where the "
                f"path took {top.cpu_total + top.peer_pct:.0f} % (runtime "
                f"{top.cpu_pct.get('runtime', 0.0):.0f} %)."
            )
        lines.append(text)
    return lines


def targets_report(figures: RunFigures) -> list[str]:
    """The targets' table for the report's head, each with this run's figure."""
    calls_met, calls = _calls_target(figures)
    cpu_met, cpu = _cpu_target(figures)
    cluster_met, cluster = _cluster_target(figures)
    ours_tp, raw_tp = figures.throughput
    tp = ours_tp / raw_tp if raw_tp else 0.0
    rss = max((step.rss_per_session_mb for step in figures.outbound), default=float("nan"))
    idle_n, idle_rss, idle_threads = figures.idle
    rss_all = max(rss, idle_rss) if idle_n else rss
    create = pct(list(figures.create_ms), 0.5)
    inbound_rss = ""
    if figures.inbound:
        worst = max(row.rss_per_call_mb for row in figures.inbound)
        inbound_rss = f"; inbound rows, runtime and gateway together: up to {worst:.3f} MB per call"
    rows: list[tuple[str, bool | None, str]] = [
        (
            f"{TARGET_CALLS} calls through the whole path at p99 <= 20 ms, zero loss",
            calls_met,
            calls,
        ),
        (
            f"CPU per call (runtime + gateway) <= {TARGET_CPU_RATIO}x Pipecat's at the "
            "largest N both hold",
            cpu_met,
            cpu,
        ),
        (
            "cluster mode: two runtime processes behind one gateway hold more than one",
            cluster_met,
            cluster,
        ),
        (
            "single-session pipelined throughput >= raw websocket-client",
            tp >= 1.0,
            f"ours {ours_tp:,.0f} msg/s, raw {raw_tp:,.0f}: **{tp:.2f}x**",
        ),
        (
            f"<= {TARGET_RSS_MB} MB RSS per session",
            rss_all <= TARGET_RSS_MB,
            f"runtime, outbound sweep and idle sessions: up to {rss_all:.3f} MB{inbound_rss}",
        ),
        (
            f"{TARGET_IDLE:,} idle sessions held",
            idle_n >= TARGET_IDLE,
            f"{idle_n:,} held, {idle_rss:.3f} MB RSS each, {idle_threads:,} threads",
        ),
        (
            f"create_session p50 <= {TARGET_CREATE_MS:g} ms for a WebSocket session",
            create <= TARGET_CREATE_MS,
            f"p50 {create:.2f} ms, p99 {pct(list(figures.create_ms), 0.99):.2f} ms",
        ),
    ]
    lines = [
        "## Targets (issue 17), from this run",
        "",
        "| target | this run | |",
        "|---|---|---|",
    ]
    lines += [f"| {target} | {text} | {_verdict(met)} |" for target, met, text in rows]
    lines += ["", *_profile(figures)]
    return lines
