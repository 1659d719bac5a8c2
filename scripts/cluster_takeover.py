"""Takeover figures of a cluster on one machine: node loss and gateway loss, caller's view.

    .venv/bin/python scripts/cluster_takeover.py [--calls 20] [--lease 0.5] [--provider twilio]

Runs a Redis of its own, two gateway processes, three runtime node processes
(``scripts/cluster_node.py``) and the Twilio emulator (tone, 50 frames a second per call), on
loopback. ``--calls`` inbound calls are placed; then, round after round, the node carrying the
most calls is SIGKILLed (and a fresh node started in its place) until ``--calls`` takeovers
were seen. For each: the time from the kill to the first audio frame on the node that took the
call over, and the frames lost (sequence numbers skipped) or delivered twice, from the
frames each node printed, and which nodes took each round's calls (the survivors share
them by free capacity). Then the gateway carrying the most calls is SIGKILLed once: for each
of its calls, the gap in the audio the node received (kill -> the first frame of the stream to
the other gateway); audio is 20 ms a frame, so the gap is the audio lost.

``--provider`` telnyx, plivo or vonage: the calls are that provider's inbound calls, through its
emulator (each gets its way back after a gateway's death: TeXML's or Plivo's ``<Redirect>``,
Vonage's synchronous ``eventUrl``); exotel: outbound calls placed by the nodes (the runtime
answers no Exotel call), and for the gateway's death the time until each session ended (no
Exotel call can be streamed again).

Lease periods are the test suite's (``--lease`` = lease_s; renew every lease_s / 5, heartbeat
every 0.1 s). Bounded: about a minute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import nodes as harness  # noqa: E402


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def place(c: harness.Cluster, provider: str, count: int) -> list[str]:
    """``count`` calls of ``provider``: inbound through the balancer, or (Exotel, whose calls
    the runtime only places) outbound, placed by the nodes in turn; their call ids."""
    if provider == "twilio":
        return [c.dial_in() for _ in range(count)]
    if provider != "exotel":
        assert c.telephony is not None
        return [c.telephony.dial_in(c.balancer.url, "+15550100", "+15550177") for _ in range(count)]
    for i in range(count):
        c.nodes[i % len(c.nodes)].command(f"call +1555019{i % 10} exotel")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sessions = [s for n in c.nodes for s in list(n.log.sessions.values())]
        if len(sessions) >= count:
            return [str(s["call"]) for s in sessions]
        time.sleep(0.05)
    raise SystemExit("the exotel calls were not all placed within 20 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--lease", type=float, default=0.5)
    parser.add_argument(
        "--provider", default="twilio", choices=("twilio", "telnyx", "plivo", "vonage", "exotel")
    )
    args = parser.parse_args()
    other = None if args.provider == "twilio" else args.provider
    harness.FAST.update(lease_s=args.lease, lease_renew_s=args.lease / 5)
    capacity = args.calls  # any node can take every call over
    with (
        tempfile.TemporaryDirectory() as tmp,
        harness.Cluster(Path(tmp), nodes=3, gateways=2, capacity=capacity, provider=other) as c,
    ):
        calls = place(c, args.provider, args.calls)
        deadline = time.monotonic() + 20
        while any(c.owner_of(call) is None for call in calls) and time.monotonic() < deadline:
            time.sleep(0.05)
        takeovers: list[float] = []
        lost: list[int] = []
        twice: list[int] = []
        rounds = 0
        while len(takeovers) < args.calls and rounds < 10:
            rounds += 1
            time.sleep(0.5)  # audio flows everywhere
            owners = {call: c.owner_of(call) for call in calls}
            victim = max(c.nodes, key=lambda n: sum(1 for o in owners.values() if o and o[0] is n))
            theirs = {call: o[1] for call, o in owners.items() if o and o[0] is victim}
            killed_at = time.monotonic()
            victim.kill()
            last = {sid: victim.frames(sid)[-1].seq for sid in theirs.values()}
            c.nodes.remove(victim)
            c.nodes.append(c.start_node(f"node-r{rounds}", capacity, "fail"))
            spread: dict[str, int] = {}
            for call, sid in theirs.items():
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    owner = c.owner_of(call)
                    if owner is not None and owner[0].frames(sid):
                        spread[owner[0].node_id] = spread.get(owner[0].node_id, 0) + 1
                        first = owner[0].frames(sid)[0]
                        takeovers.append(first.t - killed_at)
                        lost.append(max(0, first.seq - last[sid] - 1))
                        twice.append(max(0, last[sid] + 1 - first.seq))
                        break
                    time.sleep(0.01)
                else:
                    print(f"call {call}: not taken over within 10 s")
            print(f"round {rounds}: {victim.node_id}'s {len(theirs)} calls taken by {spread}")
        ms = [t * 1000 for t in takeovers]
        print(
            f"node loss, {len(ms)} takeovers (lease_s {args.lease:g}): audio again after "
            f"p50 {quantile(ms, 0.5):.0f} ms, p99 {quantile(ms, 0.99):.0f} ms, "
            f"max {max(ms):.0f} ms; frames lost per takeover: max {max(lost)} "
            f"(total {sum(lost)}); delivered twice: mean {statistics.mean(twice):.1f}, "
            f"max {max(twice)}"
        )
        time.sleep(0.5)
        owners = {call: c.owner_of(call) for call in calls}

        def calls_on(gateway: harness.GatewayProcess) -> list[str]:
            if c.telephony is not None:
                public = next(x for x in gateway.output if "providers dial" in x)
                base = public.split("providers dial ", 1)[1].rsplit("/", 1)[0]
                return [call for call in calls if c.telephony.streams_to(call).startswith(base)]
            base = gateway.output[2].split()[4].rsplit("/", 1)[0]
            return [call for call in calls if base in c.emulator.api.call(call).documents[-1]]

        gateway = max(c.gateways, key=lambda g: len(calls_on(g)))
        on_it = calls_on(gateway)
        killed_at = time.monotonic()
        gateway.kill()
        time.sleep(3)
        gaps = []
        for call in on_it:
            owner = owners[call]
            if owner is None:
                continue
            if args.provider == "exotel":  # the session ends: when?
                ended = [e for e in owner[0].log.events if e.get("e") == "end"]
                if any(e["sid"] == owner[1] and e.get("reason") == "gateway lost" for e in ended):
                    gaps.append(-1.0)
                continue
            after = [f.t for f in owner[0].frames(owner[1]) if f.t > killed_at]
            before = [f.t for f in owner[0].frames(owner[1]) if f.t <= killed_at]
            if after and before:
                gaps.append((after[0] - before[-1]) * 1000)
        if args.provider == "exotel":
            print(
                f"gateway loss, {len(on_it)} exotel calls: {len(gaps)} sessions ended "
                "'gateway lost' within 3 s (no Exotel call can be streamed again)"
            )
        elif gaps:
            print(
                f"gateway loss, {len(gaps)} calls: audio gap p50 {quantile(gaps, 0.5):.0f} ms, "
                f"max {max(gaps):.0f} ms (~{quantile(gaps, 0.5) / 20:.0f} frames of the "
                f"caller's audio lost at p50)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
