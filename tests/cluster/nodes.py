"""A whole cluster on loopback for the tests (and the figures): a Redis of its own, standalone
gateways (``transport-actors gateway -c FILE``), runtime nodes (``scripts/cluster_node.py``) and
the Twilio emulator, in this process, that places the calls (and, with ``provider=``, that
provider's emulator too: :mod:`tests.cluster.telephony`).

:class:`NodeProcess` reads its node's stdout on a thread of its own into :class:`NodeLog`
(sessions, audio frames by session, ends), and waits on it by condition, never by sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from actors.config import EmulatorConfig
from actors.emulator.phone import TwilioEmulator

from ..processes import ROOT, _Child
from .redis_server import RedisServer
from .telephony import Telephony, entry_yaml, telephony

SECRET = "cluster-node-process-secret-0123"
ACCOUNT = "AC" + "5" * 32
TOKEN = "cluster-emulator-auth-token"
FAST = {
    "heartbeat_s": 0.1,
    "ttl_s": 0.5,
    "lease_s": 0.5,
    "lease_renew_s": 0.1,
    "redis_timeout_s": 0.3,
}
NODE_SCRIPT = ROOT / "scripts" / "cluster_node.py"


def _on_host(netns: str | None) -> list[str]:
    """The argv prefix that runs a command in a network namespace (another host's), if any:
    ``ip netns exec`` execs the command, so its pid is the command's own."""
    return ["ip", "netns", "exec", netns] if netns else []


@dataclass
class Frame:
    seq: int
    t: float


@dataclass
class NodeLog:
    """What one node said, as parsed from its stdout."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    frames: dict[str, list[Frame]] = field(default_factory=dict)
    ends: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class NodeProcess(_Child):
    """``scripts/cluster_node.py -c FILE``, its stdout parsed on a thread of its own."""

    def __init__(self, path: Path, node_id: str, *, netns: str | None = None) -> None:
        self.node_id = node_id
        argv = [*_on_host(netns), sys.executable, str(NODE_SCRIPT), "-c", str(path)]
        super().__init__(argv, stdin=True)
        self.log = NodeLog()
        self.changed = threading.Condition()
        self._reader: threading.Thread | None = None
        self.voice_url = self.listen_url = ""

    def start(self) -> None:
        self.log = NodeLog()
        super().start()
        ready = json.loads(self.ready_line.split(" ", 1)[1])
        self.voice_url, self.listen_url = ready["voice_url"], ready["listen"]
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: Any) -> None:
        fd = proc.stdout.fileno()
        buffer = b""
        while True:
            try:
                readable, _, _ = select.select([fd], [], [], 0.2)
                chunk = os.read(fd, 65536) if readable else b""
            except (OSError, ValueError):
                return
            if readable and not chunk:
                return
            buffer += chunk
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            with self.changed:
                for raw in lines:
                    self._parse(raw.decode(errors="replace"))
                self.changed.notify_all()

    def _parse(self, line: str) -> None:
        log = self.log
        if line.startswith("a "):
            _, sid, seq, t = line.split()
            log.frames.setdefault(sid, []).append(Frame(int(seq), float(t)))
            return
        try:
            found = json.loads(line)
        except ValueError:
            return
        log.events.append(found)
        kind = found.get("e")
        if kind == "session":
            log.sessions[found["sid"]] = found
        elif kind == "end":
            log.ends[found["sid"]] = found
        elif kind == "error":
            log.errors.append(found)

    def command(self, line: str) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.write((line + "\n").encode())
        proc.stdin.flush()

    def wait_for(self, check: Callable[[NodeLog], bool], timeout: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not check(self.log):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"node {self.node_id}: not {what} in {timeout} s")
                self.changed.wait(min(left, 0.2))

    def frames(self, sid: str) -> list[Frame]:
        with self.changed:
            return list(self.log.frames.get(sid, ()))

    def kill(self) -> None:
        super().kill()
        if self._reader is not None:
            self._reader.join(5)

    def _ask_to_stop(self, proc: Any) -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(b"quit\n")
            proc.stdin.close()

    def stop(self) -> None:
        super().stop()
        if self._reader is not None:
            self._reader.join(5)


class Balancer:
    """A load balancer in front of the nodes' webhooks (every node's ``inbound.public_url``):
    each request goes to the next node that answers, round robin, as a provider's would reach
    whichever node is up. Forwards the method, the body and the headers (the providers'
    signatures among them); the answer back, with its content type."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes
        self.only: NodeProcess | None = None  # set: every request goes to that node
        self._next = 0
        self._lock = threading.Lock()
        self.voice_requests: list[tuple[str, dict[str, str], bytes]] = []  # for replay
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, kind, answer = balancer.forward(
                    self.command, self.path, dict(self.headers.items()), body
                )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.voice_url = self.url + "/twilio/voice"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.start()

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        keep = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        if path == "/twilio/voice":
            with self._lock:
                self.voice_requests.append((path, keep, body))
        for _ in range(2 * max(1, len(self.nodes))):
            with self._lock:
                alive = [n for n in self.nodes if n.running and n.listen_url]
                if self.only is not None:
                    alive = [n for n in alive if n is self.only]
                if not alive:
                    break
                node = alive[self._next % len(alive)]
                self._next += 1
            data = body if method != "GET" else None
            request = urllib.request.Request(node.listen_url + path, data, keep, method=method)
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    kind = answer.headers.get("Content-Type", "text/xml")
                    return answer.status, kind, answer.read()
            except urllib.error.HTTPError as exc:
                return exc.code, "text/plain", exc.read()
            except OSError:
                continue  # that node is down: the next
        return 503, "text/plain", b""

    def replay_voice(self, call_sid: str, node: NodeProcess) -> tuple[int, bytes]:
        """Deliver the call's voice webhook again, as sent (signed), to ``node``: Twilio
        retrying it."""
        with self._lock:
            path, headers, body = next(
                r for r in self.voice_requests if f"CallSid={call_sid}".encode() in r[2]
            )
        request = urllib.request.Request(node.listen_url + path, body, headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding"})


class GatewayProcess(_Child):
    """``transport-actors gateway -c FILE`` with a cluster section."""

    def __init__(self, path: Path, member_id: str, *, netns: str | None = None) -> None:
        self.member_id = member_id
        argv = [*_on_host(netns), sys.executable, "-m", "actors.cli", "gateway", "-c", str(path)]
        super().__init__([*argv, "--drain-timeout", "0"], stdin=False)

    def _said(self, prefix: str, suffix: str) -> str:
        line = next(line for line in self.output if line.startswith(prefix))
        return line.removeprefix(prefix).strip().removesuffix(suffix)

    @property
    def session_url(self) -> str:
        """Where sessions dial it (``gateway.url``), as it printed."""
        return self._said("media gateway: sessions dial", "/sessions/<id>")

    @property
    def public_url(self) -> str:
        """Where providers dial it (``gateway.public_url``), as it printed."""
        return self._said("media gateway: providers dial", "/twilio")


def _cluster_yaml(redis: RedisServer, prefix: str, member_id: str, **extra: object) -> str:
    fields = {**FAST, "redis_url": redis.url, "key_prefix": prefix, "node_id": member_id, **extra}
    return ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items())


class Cluster:
    """Redis, ``gateways`` gateways, ``nodes`` nodes and the emulator (see the module doc)."""

    def __init__(
        self,
        workdir: Path,
        *,
        nodes: int = 3,
        gateways: int = 2,
        capacity: int = 4,
        on_redis_down: str = "fail",
        provider: str | None = None,
        configured_gateway: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.redis = RedisServer()
        self.prefix = f"ta:{{n{uuid.uuid4().hex[:8]}}}"
        self.emulator = TwilioEmulator(EmulatorConfig(media="tone"), {ACCOUNT: TOKEN})
        self.telephony: Telephony | None = None if provider is None else telephony(provider)
        self.gateways: list[GatewayProcess] = []
        self.nodes: list[NodeProcess] = []
        self.balancer = Balancer(self.nodes)
        self._sizes = (nodes, gateways, capacity, on_redis_down)
        self._configured = configured_gateway  # the nodes' gateway.url: that gateway's

    def __enter__(self) -> Cluster:
        nodes, gateways, capacity, on_redis_down = self._sizes
        try:
            self.redis.__enter__()
            self.emulator.start()
            if self.telephony is not None:
                self.telephony.start()
            for i in range(gateways):
                self.gateways.append(self._gateway(f"gw{i}"))
            configured = None if self._configured is None else self.gateways[self._configured]
            for i in range(nodes):
                self.nodes.append(
                    self.start_node(f"node{i}", capacity, on_redis_down, configured=configured)
                )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _gateway(self, name: str) -> GatewayProcess:
        path = self.workdir / f"{name}.yaml"
        path.write_text(
            f'gateway: {{listen: "127.0.0.1:0", secret: "{SECRET}", resume_window_s: 10}}\n'
            f"cluster: {{{_cluster_yaml(self.redis, self.prefix, name)}}}\n"
        )
        gateway = GatewayProcess(path, name)
        gateway.start()
        return gateway

    def start_node(
        self,
        name: str,
        capacity: int,
        on_redis_down: str = "fail",
        *,
        configured: GatewayProcess | None = None,
    ) -> NodeProcess:
        """A node; ``configured``: the gateway its config names (``gateway.url``)."""
        path = self.workdir / f"{name}.yaml"
        cluster = _cluster_yaml(
            self.redis, self.prefix, name, capacity=capacity, on_redis_down=on_redis_down
        )
        # The configured gateway is used only without the registry (Redis down, `local`): a
        # dead port otherwise, so that a node that used it by mistake would show it.
        url = public = "ws://127.0.0.1:9"
        if configured is None and on_redis_down == "local" and self.gateways:
            configured = self.gateways[0]
        if configured is not None:
            url, public = configured.session_url, configured.public_url
        path.write_text(
            f'gateway: {{embedded: false, url: "{url}", public_url: "{public}", '
            f'secret: "{SECRET}"}}\n'
            "providers:\n"
            f'  twilio: {{type: twilio, api_base_url: "{self.emulator.url}", '
            f'account_sid: "{ACCOUNT}", auth_token: "{TOKEN}", from_number: "+15550199"}}\n'
            + (
                ""
                if self.telephony is None
                else f"  {self.telephony.name}: {entry_yaml(self.telephony)}\n"
            )
            + f'inbound: {{listen: "127.0.0.1:0", public_url: "{self.balancer.url}", '
            f"max_sessions: {max(32, capacity)}, queue_timeout_s: 3, "
            "answer_timeout_s: 3}\n"
            f"cluster: {{{cluster}}}\n"
        )
        node = NodeProcess(path, name)
        node.start()
        return node

    def dial_in(self, to: str = "+15550100", from_: str = "+15550177") -> str:
        """An inbound call, its webhook sent through the balancer (to any node up)."""
        return self.emulator.place_inbound_call(to, from_, voice_url=self.balancer.voice_url).sid

    def owner_of(self, call_sid: str) -> tuple[NodeProcess, str] | None:
        """The node (alive) that last announced a session for the call, and the session."""
        found = None
        for node in self.nodes:
            if not node.running:
                continue
            with node.changed:
                for sid, info in node.log.sessions.items():
                    if info.get("call") == call_sid and sid not in node.log.ends:
                        found = (node, sid)
        return found

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.stop()
        for gateway in self.gateways:
            gateway.stop()
        self.emulator.stop()
        if self.telephony is not None:
            self.telephony.stop()
        self.balancer.stop()
        self.redis.__exit__(None, None, None)


@contextlib.contextmanager
def cluster(workdir: Path, **sizes: Any) -> Iterator[Cluster]:
    with Cluster(workdir, **sizes) as found:
        yield found


def flowing(sid: str, at_least: int) -> object:
    """A ``wait_for`` condition: at least ``at_least`` frames have come on session ``sid``."""
    return lambda log: len(log.frames.get(sid, ())) >= at_least


def sessions_of(node: NodeProcess) -> dict[str, dict[str, object]]:
    """The sessions ``node`` has reported so far, by id."""
    with node.changed:
        return dict(node.log.sessions)


def wait_owner(c: Cluster, call: str, timeout: float = 10.0) -> tuple[NodeProcess, str]:
    """The node that took ``call`` and its session id there, once one has."""
    node0 = c.nodes[0]
    found: list[tuple[NodeProcess, str]] = []

    def check(_: NodeLog) -> bool:
        owner = c.owner_of(call)
        if owner is not None:
            found.append(owner)
        return owner is not None

    node0.wait_for(check, timeout, f"a session for {call}")
    return found[-1]
