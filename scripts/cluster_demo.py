"""The cluster on one machine, with a live progress line: nodes, gateways, calls, takeovers.

    .venv/bin/python scripts/cluster_demo.py [--calls 12] [--seconds 20]

Starts a redis-server of its own (a free loopback port, never 6379), two media gateways
(``transport-actors gateway``), three runtime nodes (``scripts/cluster_node.py``, each
accepting calls and echoing them) and the Twilio emulator, and places ``--calls`` inbound
calls, which the cluster spreads over the nodes. A third of the way through, the busiest node
is SIGKILLed (and a new one started): its calls are taken over. Two thirds of the way, a
gateway is SIGKILLed: its calls are streamed again through the other. Each second a line
shows the nodes (and their calls), the gateways alive, the calls with audio in the last
second, and the takeovers seen.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import nodes as harness  # noqa: E402


def progress(c: harness.Cluster, calls: list[str], started: float, takeovers: int) -> str:
    now = time.monotonic()
    per_node = []
    flowing = 0
    for node in c.nodes:
        if not node.running:
            continue
        mine = [c.owner_of(call) for call in calls]
        sids = [o[1] for o in mine if o is not None and o[0] is node]
        flowing += sum(1 for sid in sids if (f := node.frames(sid)) and now - f[-1].t < 1.0)
        per_node.append(f"{node.node_id}={len(sids)}")
    gateways = sum(1 for g in c.gateways if g.running)
    return (
        f"t={now - started:4.0f}s  nodes {len(per_node)} ({' '.join(per_node)})  "
        f"gateways {gateways}  calls with audio {flowing}/{len(calls)}  takeovers {takeovers}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        harness.Cluster(Path(tmp), nodes=3, gateways=2, capacity=args.calls) as c,
    ):
        calls = [c.dial_in() for _ in range(args.calls)]
        started = time.monotonic()
        node_killed = gateway_killed = False
        takeovers = 0
        while time.monotonic() - started < args.seconds:
            elapsed = time.monotonic() - started
            if not node_killed and elapsed > args.seconds / 3:
                node_killed = True
                owners = [c.owner_of(call) for call in calls]
                victim = max(c.nodes, key=lambda n: sum(1 for o in owners if o and o[0] is n))
                takeovers += sum(1 for o in owners if o and o[0] is victim)
                victim.kill()
                print(f"\n-- SIGKILL {victim.node_id}; starting node-new", flush=True)
                c.nodes.append(c.start_node("node-new", args.calls))
            if not gateway_killed and elapsed > 2 * args.seconds / 3:
                gateway_killed = True
                c.gateways[0].kill()
                print(f"\n-- SIGKILL gateway {c.gateways[0].member_id}", flush=True)
            sys.stdout.write("\r" + progress(c, calls, started, takeovers).ljust(110))
            sys.stdout.flush()
            time.sleep(1.0)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
