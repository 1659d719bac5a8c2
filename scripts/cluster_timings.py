"""Timings of the cluster's engine layer on one machine, against a redis-server of its own.

    .venv/bin/python scripts/cluster_timings.py [--kills 5] [--sessions 4] [--fast]

- takeover: a node process holding ``--sessions`` leases is SIGKILLed (``--kills`` times);
  the time from the kill to each lease reaching another node's ``on_orphan`` (detection +
  scan + claim), p50/p99/max;
- claim: ``claim_inbound`` round trips, and from the claim to the chosen node's ``on_offer``;
- renew: the lease renewal round trip of a node holding 100 sessions.

``--fast`` uses the test suite's periods (lease 0.5 s); otherwise ClusterConfig's defaults.
Needs ``redis-server`` on PATH; uses a free loopback port, never 6379. Bounded: about
``kills * (lease_s + 1)`` seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.cluster import ClusterMember, Lease  # noqa: E402
from actors.config import ClusterConfig  # noqa: E402

_NODE = """
import sys
from actors.cluster import ClusterMember
from actors.config import ClusterConfig
import dataclasses, json
config = ClusterConfig(**json.loads(sys.argv[1]))
member = ClusterMember(config).start()
for i in range(int(sys.argv[2])):
    member.register_session(f"{config.node_id}-s{i}", {"i": str(i)})
    member.save_state(f"{config.node_id}-s{i}", b"state")
assert member.flush(5)
print("ready", flush=True)
sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    top = ordered[-1] * 1000
    return f"n={len(ordered)} p50={at(0.5):.1f} ms p99={at(0.99):.1f} ms max={top:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args()
    port = free_port()
    workdir = tempfile.TemporaryDirectory()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir.name],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        run(port, args)
    finally:
        server.kill()
        server.wait(5)
        workdir.cleanup()


def run(port: int, args: argparse.Namespace) -> None:
    fast = {"heartbeat_s": 0.1, "ttl_s": 0.5, "lease_s": 0.5, "lease_renew_s": 0.1}
    base = ClusterConfig(
        redis_url=f"redis://127.0.0.1:{port}/0", key_prefix=f"ta:{{{uuid.uuid4().hex[:6]}}}"
    )
    if args.fast:
        base = dataclasses.replace(base, **fast)  # type: ignore[arg-type]
    pause = threading.Event()
    deadline = time.monotonic() + 10
    while True:  # until redis-server answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            pause.wait(0.01)
    arrivals: dict[str, float] = {}
    lock = threading.Lock()

    def on_lease(lease: Lease) -> None:
        with lock:
            arrivals[lease.session_id] = time.monotonic()

    takers = [
        ClusterMember(
            dataclasses.replace(base, node_id=f"taker{i}"), on_orphan=on_lease, on_offer=on_lease
        )
        for i in range(2)
    ]
    for taker in takers:
        taker.start()
    try:
        takeover: list[float] = []
        for kill in range(args.kills):
            fields = dataclasses.asdict(base)
            fields["node_id"] = f"doomed{kill}"
            child = subprocess.Popen(
                [sys.executable, "-c", _NODE, json.dumps(fields), str(args.sessions)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
            )  # fmt: skip
            assert child.stdout is not None and child.stdout.readline().startswith(b"ready")
            child.kill()
            killed = time.monotonic()
            child.wait(5)
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()
            wanted = [f"doomed{kill}-s{i}" for i in range(args.sessions)]
            limit = time.monotonic() + base.lease_s + 5
            while time.monotonic() < limit:
                with lock:
                    if all(s in arrivals for s in wanted):
                        break
                pause.wait(0.005)
            with lock:
                takeover.extend(arrivals[s] - killed for s in wanted if s in arrivals)
        print(f"lease_s={base.lease_s} renew_s={base.renew_s} heartbeat_s={base.heartbeat_s}")
        print(f"takeover (SIGKILL -> on_orphan): {quantiles(takeover)}")
        claims: list[float] = []
        offers: list[float] = []
        for i in range(200):
            started = time.monotonic()
            claim = takers[0].claim_inbound(f"CA{i}", {"i": str(i)})
            claims.append(time.monotonic() - started)
            assert claim is not None
            while True:
                with lock:
                    if claim.session_id in arrivals:
                        offers.append(arrivals[claim.session_id] - started)
                        break
                pause.wait(0.0005)
            (takers[0] if claim.node_id == takers[0].node_id else takers[1]).release(
                claim.session_id
            )
        print(f"claim_inbound round trip: {quantiles(claims)}")
        print(f"claim -> on_offer on the chosen node: {quantiles(offers)}")
        with ClusterMember(dataclasses.replace(base, node_id="renewer")) as renewer:
            for i in range(100):
                renewer.register_session(f"held{i}", {})
            renewer.flush(5)
            limit = time.monotonic() + 30 * base.renew_s + 2
            while renewer.status()["renew_ms"]["count"] < 30 and time.monotonic() < limit:
                pause.wait(0.05)
            print(f"lease renewal of 100 sessions (ms): {renewer.status()['renew_ms']}")
    finally:
        for taker in takers:
            taker.stop()


if __name__ == "__main__":
    main()
