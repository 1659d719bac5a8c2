"""Cluster mode on one machine (issue 17): one runtime process against two, behind one gateway.

Processes, each its own: a ``redis-server`` on a free loopback port (never the machine's 6379;
nothing persisted), one media gateway registered in the cluster as a gateway, one or two
runtime nodes (a ``TransportService`` with a ``cluster:`` section, and application threads
that take calls with ``accept_session`` and write back every ``Binary`` they read, as the
inbound row does in one process), the Twilio emulator's REST API (where a session's end hangs
its call up), and the dial-in peer (:func:`_peer.serve_dialer`). Per N the peer places N
inbound calls, posting their voice webhooks to the nodes in turn (as a round-robin balancer
would; the cluster then claims each call for the least-loaded node with room), dials the
``<Connect><Stream>`` each answers at the gateway, and sends every call a tagged 20 ms mu-law
frame every 20 ms. The nodes are started afresh for each N and each size, so that no step
inherits another's sessions.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from multiprocessing.connection import Connection

from _peer import CallSpec, DialResult, Helper, cpu_s, report_cpu_until_stopped, rss_mb
from _providers import emulator_helper
from _rows import PEER_HEADER, PeerRow, peer_row, row_from_dial, row_holds

from actors import Binary, TransportService
from actors.config import (
    ClusterConfig,
    GatewayConfig,
    InboundConfig,
    RuntimeConfig,
    TransportConfig,
    TwilioProviderConfig,
)
from actors.errors import AcceptTimeout

ACCOUNT = "AC" + "be" * 16  # the dial-in peer signs as this account (scripts/_peer.py)
AUTH = "bench-auth-token"
TO, FROM = "+15550100", "+15550177"
CAPACITY = 1_000  # per node: the bench finds the limit, not the config
CLUSTER_BEGIN = "<!-- cluster: begin (written by bench.py --cluster) -->"
CLUSTER_END = "<!-- cluster: end -->"


# -- Redis -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    """``redis-server`` on a free loopback port, persisting nothing; :meth:`stop` reaps it."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", self._dir.name, "--loglevel", "warning"]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.pid = self._proc.pid
        deadline = time.monotonic() + 10
        pause = threading.Event()
        while not _ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            pause.wait(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._dir.cleanup()


# -- the gateway and the nodes, each a process -------------------------------------------------


def _cluster(redis_url: str, prefix: str, member_id: str) -> ClusterConfig:
    return ClusterConfig(
        redis_url=redis_url, node_id=member_id, key_prefix=prefix, capacity=CAPACITY
    )


def serve_gateway(redis_url: str, prefix: str, secret: str, conn: Connection) -> None:
    """:class:`Helper` target: the media gateway, registered in the cluster as ``gw0``."""
    from actors.cluster import ClusterMember  # noqa: PLC0415
    from actors.gateway.server import MediaGateway  # noqa: PLC0415

    config = _cluster(redis_url, prefix, "gw0")
    gateway = MediaGateway(GatewayConfig(embedded=False, secret=secret), gateway_id="gw0")
    gateway.start()
    member = ClusterMember(
        config,
        kind="gateway",
        urls={"public": gateway.public_url, "session": gateway.url},
        load=lambda: gateway.calls_active,
    ).start()
    conn.send(gateway.url)
    report_cpu_until_stopped(conn)
    member.stop()
    gateway.stop()


def serve_node(
    node_id: str, redis_url: str, prefix: str, secret: str, rest_url: str, conn: Connection
) -> None:
    """:class:`Helper` target: a runtime node that echoes every call it accepts; sends its
    voice URL once registered; answers ``"cpu"`` and ``"report"`` (calls accepted, errors)."""
    config = TransportConfig(
        runtime=RuntimeConfig(ping_interval_s=10.0, ping_timeout_s=10.0),
        providers={
            "twilio": TwilioProviderConfig(
                name="twilio", account_sid=ACCOUNT, auth_token=AUTH, api_base_url=rest_url
            )
        },
        # The node takes its gateway from the cluster's registry; this one is never dialled.
        gateway=GatewayConfig(embedded=False, url="ws://127.0.0.1:9", secret=secret),
        inbound=InboundConfig(max_sessions=CAPACITY, max_connections=64),
        cluster=_cluster(redis_url, prefix, node_id),
    )
    stop = threading.Event()
    errors: list[str] = []
    accepted = [0]
    echoes: list[threading.Thread] = []
    with TransportService(config) as service:
        read, write = service.read_websocket_message, service.write_websocket_message

        def echo(sid: str) -> None:
            try:
                while (message := read(sid, timeout=60)) is not None:
                    if isinstance(message, Binary):
                        write(sid, message)
            except Exception as exc:
                if not stop.is_set():
                    errors.append(f"{node_id} {sid}: {type(exc).__name__}: {exc}")

        def accept() -> None:
            while not stop.is_set():
                try:
                    sid = service.accept_session(timeout=0.5).session_id
                except AcceptTimeout:
                    continue
                except Exception as exc:
                    if not stop.is_set():
                        errors.append(f"{node_id} accept: {type(exc).__name__}: {exc}")
                    continue
                accepted[0] += 1
                thread = threading.Thread(target=echo, args=(sid,), name="bench-echo")
                echoes.append(thread)
                thread.start()

        acceptors = [threading.Thread(target=accept, name="bench-accept") for _ in range(4)]
        for thread in acceptors:
            thread.start()
        conn.send(service.voice_url)
        while (message := conn.recv()) != "stop":
            if message == "cpu":
                conn.send(cpu_s())
            else:
                conn.send({"accepted": accepted[0], "errors": list(errors)})
        stop.set()
        for thread in acceptors:
            thread.join(5)
    for thread in echoes:  # the service closed: every session has ended
        thread.join(5)


# -- one load step and the sweep ---------------------------------------------------------------


class ClusterBench:
    """Redis, the gateway, the REST emulator and the dial-in peer, for a whole sweep."""

    def __init__(self, secret: str) -> None:
        from _peer import serve_dialer  # noqa: PLC0415

        self.secret = secret
        self.prefix = f"ta:{{bench{uuid.uuid4().hex[:8]}}}"
        self.redis = Redis()
        self._helpers: list[Helper] = []
        try:
            self.gateway = Helper(
                functools.partial(serve_gateway, self.redis.url, self.prefix, secret)
            )
            self._helpers.append(self.gateway)
            self.rest = emulator_helper("twilio")
            self._helpers.append(self.rest)
            self.dialer = Helper(serve_dialer)
            self._helpers.append(self.dialer)
        except BaseException:
            self.stop()
            raise

    def step(self, nodes: int, n: int, seconds: float) -> PeerRow:
        """N inbound calls over ``nodes`` fresh runtime nodes."""
        started = [
            Helper(
                functools.partial(
                    serve_node,
                    f"node{i}",
                    self.redis.url,
                    self.prefix,
                    self.secret,
                    self.rest.url,
                )
            )
            for i in range(nodes)
        ]
        try:
            pids = {"gateway": self.gateway.pid, "redis": self.redis.pid}
            pids.update({f"node{i}": node.pid for i, node in enumerate(started)})
            idle_rss = {name: rss_mb(pid) for name, pid in pids.items()}
            specs = [
                CallSpec("", voice_url=started[i % nodes].url, auth_token=AUTH, to=TO, from_=FROM)
                for i in range(n)
            ]
            result: DialResult = self.dialer.request(("load", specs, seconds, pids))
            reports = [node.request("report") for node in started]
        finally:
            for node in started:
                node.stop()
        for report in reports:
            result.errors.extend(report["errors"])
        label = "1 runtime" if nodes == 1 else f"{nodes} runtimes"
        accepted = "/".join(str(report["accepted"]) for report in reports)
        return row_from_dial(f"{label} ({accepted})", n, result, idle_rss)

    def stop(self) -> None:
        for helper in reversed(self._helpers):
            with contextlib.suppress(Exception):
                helper.stop()
        self.redis.stop()


def cluster_sweep(sweep: list[int], seconds: float, secret: str) -> list[tuple[PeerRow, PeerRow]]:
    """Per N: one runtime node, then two, behind the same gateway, from the same peer."""
    bench = ClusterBench(secret)
    rows: list[tuple[PeerRow, PeerRow]] = []
    try:
        for index, n in enumerate(sweep):
            # Which size goes first alternates, so that a load that drifts (the machine is
            # shared) does not always favour the same one.
            sizes = (1, 2) if index % 2 == 0 else (2, 1)
            measured = {}
            for size in sizes:
                measured[size] = bench.step(size, n, seconds)
                print(peer_row(measured[size]), file=sys.stderr, flush=True)
            rows.append((measured[1], measured[2]))
    finally:
        bench.stop()
    return rows


def cluster_report(
    rows: list[tuple[PeerRow, PeerRow]], seconds: float, command: str, date: str, load: str
) -> str:
    """The cluster's section of BENCHMARKS.md, between its markers (``load``: how busy the
    machine was, :func:`_rows.load_line`)."""
    one_held = max((one.sessions for one, _ in rows if row_holds(one)), default=0)
    two_held = max((two.sessions for _, two in rows if row_holds(two)), default=0)
    lines = list(PEER_HEADER)
    for one, two in rows:
        lines += [peer_row(one), peer_row(two)]
    busiest = [
        f"N={two.sessions}: two runtimes "
        + ", ".join(f"{name} {value:.0f}" for name, value in two.cpu_pct.items())
        + f", peer {two.peer_pct:.0f} (total {two.cpu_total + two.peer_pct:.0f} % of 200 %)"
        for _, two in rows[-2:]
    ]
    more = two_held - one_held
    return "\n".join(
        [
            CLUSTER_BEGIN,
            "## Cluster mode on one machine: one runtime process against two (issue 17)",
            "",
            f"Command: `{command}`  ",
            f"Date: {date}  ",
            load,
            "",
            f"Per N, {seconds:g} s of load, one 20 ms mu-law frame every 20 ms per call, each "
            "echoed by the application. Every process is its own: `redis-server` (a free "
            "loopback port, nothing persisted), one media gateway (a cluster member), one or "
            "two runtime nodes (`TransportService` with a `cluster:` section; application "
            "threads take calls with `accept_session` and write back every `Binary`), the "
            "Twilio emulator's REST API, and the dial-in peer, which posts each call's voice "
            "webhook to the nodes in turn (as a round-robin balancer would), dials the stream "
            "each answers at the gateway and times every echo. The impl column gives the calls "
            "each node accepted. CPU % by process is of one core (the peer's own is *peer %*, "
            "not in CPU %); nodes start afresh for each step, and which size runs first "
            "alternates from one N to the next.",
            "",
            *lines,
            "",
            f"- real time held (p99 <= 20 ms, nothing lost): one runtime up to **{one_held}** "
            f"calls, two runtimes up to **{two_held}** ({more:+d})",
            "- where the CPU went at the two largest N: " + "; ".join(busiest),
            CLUSTER_END,
        ]
    )
