"""Standalone gateways in a cluster, as processes, on a redis-server of the test's own: they
register their URLs and load, a SIGKILLed one is out within one TTL, ``pick_gateway`` picks
the least loaded, a SIGTERM drains a gateway (no new call, its call goes on), and the
``cluster status`` and ``drain`` commands read and mark the registry from outside."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket as wsc
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from actors.cluster import ClusterMember, Member
from actors.cluster.redis import RedisDirectory
from actors.codecs.twilio import TwilioStream, new_sid
from actors.metrics import GatewayMetrics
from actors.signing import hop_token, stream_nonce, stream_token

from ..conftest import eventually
from ..processes import ROOT, _Child, free_port
from .conftest import FAST, ConfigFactory
from .redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

SECRET = "cluster-gateway-process-secret"
ACCOUNT = "AC" + "3" * 32
TTL_S = FAST["ttl_s"]


class ClusterGateway(_Child):
    """``transport-actors gateway -c FILE`` with a cluster section, as member ``member_id``."""

    def __init__(self, path: Path, member_id: str, drain_s: float = 0.0) -> None:
        self.member_id = member_id
        argv = [sys.executable, "-m", "actors.cli", "gateway", "-c", str(path)]
        super().__init__([*argv, "--drain-timeout", str(drain_s)], stdin=False)

    def url(self, side: str) -> str:
        """The base URL it printed for ``side`` (``sessions`` or ``providers``)."""
        for line in self.output:
            if line.startswith(f"media gateway: {side} dial "):
                return line.split()[4].rsplit("/", 2 if side == "sessions" else 1)[0]
        raise AssertionError(f"no {side} URL in {self.output}")

    def wait(self, timeout: float) -> int:
        proc = self._proc
        assert proc is not None
        code = proc.wait(timeout)
        self._reap(proc)
        return code

    def terminate(self) -> None:
        assert self._proc is not None
        self._proc.terminate()

    def __enter__(self) -> ClusterGateway:
        self.start()
        return self


def write_config(
    directory: Path, name: str, redis_url: str, prefix: str, **cluster: object
) -> Path:
    fields = {**FAST, "redis_url": redis_url, "key_prefix": prefix, "node_id": name, **cluster}
    cluster_yaml = ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items())
    path = directory / f"{name}.yaml"
    path.write_text(
        f'gateway: {{listen: "127.0.0.1:0", secret: "{SECRET}"}}\ncluster: {{{cluster_yaml}}}\n'
    )
    return path


@pytest.fixture
def prefix(cluster_config: ConfigFactory) -> str:
    return cluster_config().key_prefix


def gateways(directory: RedisDirectory) -> dict[str, Member]:
    return {m.id: m for m in directory.members("gateway")}


@contextlib.contextmanager
def call(
    public_url: str, session_url: str, sid: str
) -> Iterator[tuple[ClientConnection, wsc.WebSocket]]:
    """One call through a gateway: a Twilio stream and its session hop, relaying."""
    nonce = stream_nonce()
    params = {"session": sid, "token": stream_token(SECRET, sid, nonce), "nonce": nonce}
    stream = TwilioStream(new_sid("MZ"), new_sid("CA"), ACCOUNT, custom_parameters=params)
    with connect(public_url + "/twilio", open_timeout=5) as provider:
        provider.send(stream.connected())
        provider.send(stream.start())
        hop = wsc.WebSocket()
        hop.connect(
            f"{session_url}/sessions/{sid}",
            header=[f"Authorization: Bearer {hop_token(SECRET, sid)}"],
            timeout=5,
        )
        try:
            assert json.loads(hop.recv())["event"] == "connected"
            yield provider, hop
        finally:
            hop.close()


def refused(public_url: str, sid: str) -> tuple[int | None, str]:
    """Offer a new call's stream; how the gateway closed it."""
    params = {"session": sid, "token": stream_token(SECRET, sid)}
    stream = TwilioStream(new_sid("MZ"), new_sid("CA"), ACCOUNT, custom_parameters=params)
    with connect(public_url + "/twilio", open_timeout=5) as ws:
        ws.send(stream.connected())
        ws.send(stream.start())
        with contextlib.suppress(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
        return ws.close_code, ws.close_reason or ""


def test_gateways_register_a_killed_one_leaves_within_a_ttl_and_the_least_loaded_is_picked(
    tmp_path: Path, redis_server: RedisServer, prefix: str, directory: RedisDirectory
) -> None:
    a_path = write_config(tmp_path, "gw-a", redis_server.url, prefix)
    b_path = write_config(tmp_path, "gw-b", redis_server.url, prefix)
    with ClusterGateway(a_path, "gw-a") as a, ClusterGateway(b_path, "gw-b") as b:
        assert eventually(lambda: set(gateways(directory)) == {"gw-a", "gw-b"}, 5)
        found = gateways(directory)
        for process in (a, b):
            urls = found[process.member_id].urls
            assert urls == {"public": process.url("providers"), "session": process.url("sessions")}
        with call(a.url("providers"), a.url("sessions"), "loaded-on-a"):
            assert eventually(lambda: gateways(directory)["gw-a"].load == 1, 5)
            picked = directory.pick_gateway()
            assert picked is not None and picked.id == "gw-b"
        assert eventually(lambda: gateways(directory)["gw-a"].load == 0, 5)
        b.kill()
        killed = time.monotonic()
        assert eventually(lambda: "gw-b" not in gateways(directory), TTL_S + 1)
        gone_after = time.monotonic() - killed
        assert gone_after <= TTL_S + 0.2, gone_after  # within one TTL (and a poll)
        picked = directory.pick_gateway()
        assert picked is not None and picked.id == "gw-a"
    assert gateways(directory) == {}  # a's SIGTERM: deregistered at once, not after its TTL


def test_sigterm_drains_a_gateway_its_call_goes_on_then_it_leaves(
    tmp_path: Path, redis_server: RedisServer, prefix: str, directory: RedisDirectory
) -> None:
    path = write_config(tmp_path, "gw-drain", redis_server.url, prefix)
    with ClusterGateway(path, "gw-drain", drain_s=20.0) as gw:
        public, session = gw.url("providers"), gw.url("sessions")
        assert eventually(lambda: "gw-drain" in gateways(directory), 5)
        with call(public, session, "drain-live") as (provider, hop):
            gw.terminate()
            assert eventually(lambda: gateways(directory)["gw-drain"].draining, 5)
            assert directory.pick_gateway() is None  # draining: never picked
            code, reason = refused(public, "drain-new")
            assert code == 1008 and "draining" in reason
            assert json.loads(hop.recv())["event"] == "start"
            hop.send("still talking")
            assert provider.recv(timeout=5) == "still talking"  # the call goes on
            assert gw.running
        # The session ended the call: the gateway has no call left and stops.
        assert gw.wait(10) == 0
    assert gateways(directory) == {}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cluster_status_lists_nodes_and_gateways(
    tmp_path: Path, redis_server: RedisServer, prefix: str, cluster_config: ConfigFactory
) -> None:
    path = write_config(tmp_path, "gw-s", redis_server.url, prefix)
    node = ClusterMember(
        cluster_config(node_id="node-s", capacity=7), urls={"webhook": "http://n/"}
    )
    with ClusterGateway(path, "gw-s") as gw, node:
        node.register_session("s1", {"provider": "twilio"})
        assert node.flush(5)
        table = run_cli("cluster", "status", "-c", str(path))
        assert table.returncode == 0, table.stderr
        assert table.stdout.startswith("cluster: 1 nodes (1/7 sessions), 1 gateways (0 calls)")
        lines = table.stdout.splitlines()
        assert lines[1].split()[:5] == ["KIND", "ID", "LOAD/CAP", "DRAINING", "BEAT"]
        assert lines[2].split()[:4] == ["node", "node-s", "1/7", "no"]
        assert lines[3].split()[:4] == ["gateway", "gw-s", "0/100", "no"]
        assert f"public={gw.url('providers')}" in lines[3]
        raw = run_cli("cluster", "status", "-c", str(path), "--json")
        assert raw.returncode == 0, raw.stderr
        status = json.loads(raw.stdout)
        [found_node], [found_gateway] = status["nodes"], status["gateways"]
        assert (found_node["id"], found_node["load"], found_node["urls"]) == (
            "node-s",
            1,
            {"webhook": "http://n/"},
        )
        assert found_gateway["id"] == "gw-s" and not found_gateway["draining"]
        assert 0 <= found_gateway["beat_age_s"] <= TTL_S
        assert 0 < found_gateway["expires_in_s"] <= TTL_S


def test_cluster_commands_exit_2_when_redis_is_unreachable(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    path = write_config(tmp_path, "nobody", dead, "ta:{t-dead}")
    for args in (("cluster", "status"), ("drain", "--node", "x")):
        done = run_cli(*args, "-c", str(path))
        assert done.returncode == 2, done
        assert done.stderr.startswith("error: cluster unavailable"), done.stderr
        assert done.stdout == ""
    plain = tmp_path / "plain.yaml"
    plain.write_text(f'gateway: {{secret: "{SECRET}"}}\n')
    done = run_cli("cluster", "status", "-c", str(plain))
    assert done.returncode == 2 and "no cluster section" in done.stderr


def test_drain_marks_a_node_which_honours_it_and_a_gateway_which_refuses_new_calls(
    tmp_path: Path,
    redis_server: RedisServer,
    prefix: str,
    cluster_config: ConfigFactory,
    directory: RedisDirectory,
) -> None:
    path = write_config(tmp_path, "gw-d", redis_server.url, prefix)
    told = threading.Event()
    node = ClusterMember(cluster_config(node_id="node-d"), on_drain=lambda _: told.set())
    other = ClusterMember(cluster_config(node_id="node-other"), on_offer=lambda lease: None)
    with ClusterGateway(path, "gw-d") as gw, node, other:
        done = run_cli("drain", "-c", str(path), "--node", "node-d")
        assert done.returncode == 0, done.stderr
        assert "node-d: draining" in done.stdout
        assert told.wait(5)  # read back at its next heartbeat
        assert node.status()["draining"]
        # Its own heartbeats keep the mark (they do not overwrite it with "not draining").
        assert eventually(lambda: node.status()["draining"] and _draining(directory, "node-d"), 2)
        claim = other.claim_inbound("CA" + "9" * 32, {"provider": "twilio"})
        assert claim is not None and claim.node_id == "node-other"
        done = run_cli("drain", "-c", str(path), "--node", "gw-d", "--wait", "5")
        assert done.returncode == 0, done.stderr
        assert "gw-d: no call left" in done.stdout
        assert eventually(lambda: gateways(directory)["gw-d"].draining, 5)
        code, reason = refused(gw.url("providers"), "after-drain")
        assert code == 1008 and "draining" in reason  # the gateway itself read it back
        missing = run_cli("drain", "-c", str(path), "--node", "nobody")
        assert missing.returncode == 1 and "no healthy node or gateway" in missing.stderr


def _draining(directory: RedisDirectory, node_id: str) -> bool:
    return any(m.id == node_id and m.draining for m in directory.members("node"))


def test_a_gateways_cluster_membership_is_in_its_metrics(cluster_config: ConfigFactory) -> None:
    member = ClusterMember(cluster_config(node_id="gw-m"), kind="gateway", load=lambda: 0)
    with member:
        member.drain()
        values = GatewayMetrics(lambda: None, member.status).snapshot()
    labels = 'kind="gateway",member="gw-m"'
    assert values[f"transport_cluster_connected{{{labels}}}"] == 1
    assert values[f"transport_cluster_draining{{{labels}}}"] == 1
    assert values[f'transport_cluster_events_total{{event="redis_errors",{labels}}}'] == 0
