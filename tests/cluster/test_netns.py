"""A cluster across hosts: Redis, a gateway and two runtime nodes each in a network namespace of
its own, on one switch (:class:`tests.netns.Network`), the emulator and the load balancer on a
host of the test's; then a real, silent partition of a node (its switch port down: no RST, no
FIN, its packets vanish). Loopback cannot show this: a killed process's sockets are reset at
once, a frozen one's kernel still answers. The node's leases expire, the other node takes its
call over, and the gateway resumes the hop from its buffer: no frame lost. When the link comes
back, the cut-off node lets the call go without hanging it up.

Root only (``ip netns``); skipped otherwise. CI runs as root.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.config import EmulatorConfig
from actors.emulator.phone import TwilioEmulator

from ..netns import Network, inside, namespaces_unavailable
from .nodes import (
    ACCOUNT,
    FAST,
    SECRET,
    TOKEN,
    Balancer,
    GatewayProcess,
    NodeProcess,
    flowing,
    sessions_of,
)
from .redis_server import RedisServer, redis_server_binary

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

HOSTS = ["ctl", "redis", "gw", "n1", "n2"]


@pytest.fixture
def network() -> Iterator[Network]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Network(HOSTS) as net:
        yield net


def _cluster(redis: RedisServer, prefix: str, member_id: str, **extra: object) -> str:
    fields = {**FAST, "redis_url": redis.url, "key_prefix": prefix, "node_id": member_id, **extra}
    return "cluster: {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items()) + "}\n"


def test_a_node_cut_off_from_redis_and_the_gateway_loses_its_call_to_another_without_a_lost_frame(
    network: Network, tmp_path: Path
) -> None:
    prefix = f"ta:{{x{uuid.uuid4().hex[:8]}}}"
    processes: list[GatewayProcess | NodeProcess] = []
    with inside(network.netns("ctl")):  # this thread, and the threads it starts, on "ctl"
        redis = RedisServer(host=network.address("redis"), netns=network.netns("redis"))
        emulator = TwilioEmulator(
            EmulatorConfig(media="tone", listen=f"{network.address('ctl')}:0"), {ACCOUNT: TOKEN}
        )
        nodes: list[NodeProcess] = []
        balancer = Balancer(nodes)  # on ctl's loopback: only the emulator, on ctl, calls it
        try:
            redis.__enter__()
            emulator.start()
            path = tmp_path / "gw.yaml"
            path.write_text(
                f'gateway: {{listen: "{network.address("gw")}:0", secret: "{SECRET}", '
                "resume_window_s: 10}\n" + _cluster(redis, prefix, "gw")
            )
            gateway = GatewayProcess(path, "gw", netns=network.netns("gw"))
            processes.append(gateway)
            gateway.start()
            for host in ("n1", "n2"):
                path = tmp_path / f"{host}.yaml"
                path.write_text(
                    'gateway: {embedded: false, url: "ws://127.0.0.1:9", '
                    f'secret: "{SECRET}"}}\n'
                    "providers:\n"
                    f'  twilio: {{type: twilio, api_base_url: "{emulator.url}", '
                    f'account_sid: "{ACCOUNT}", auth_token: "{TOKEN}", from_number: "+15550199"}}\n'
                    f'inbound: {{listen: "{network.address(host)}:0", '
                    f'public_url: "{balancer.url}", max_sessions: 8, queue_timeout_s: 3, '
                    "answer_timeout_s: 3}\n" + _cluster(redis, prefix, host, capacity=4)
                )
                node = NodeProcess(path, host, netns=network.netns(host))
                processes.append(node)
                node.start()
                nodes.append(node)
            _partition(network, emulator, balancer, nodes)
        finally:
            for process in reversed(processes):
                process.stop()
            emulator.stop()
            balancer.stop()
            redis.__exit__(None, None, None)


def _owner(nodes: list[NodeProcess], call: str) -> tuple[NodeProcess, str] | None:
    for node in nodes:
        for sid, info in sessions_of(node).items():
            if info.get("call") == call and sid not in node.log.ends:
                return node, sid
    return None


def _partition(
    network: Network, emulator: TwilioEmulator, balancer: Balancer, nodes: list[NodeProcess]
) -> None:
    calls = [
        emulator.place_inbound_call("+15550100", "+15550177", voice_url=balancer.voice_url).sid
        for _ in range(2)
    ]
    owners: dict[str, tuple[NodeProcess, str]] = {}
    for call in calls:
        nodes[0].wait_for(lambda _, c=call: _owner(nodes, c) is not None, 15, f"{call} placed")
        found = _owner(nodes, call)
        assert found is not None
        owners[call] = found
        found[0].wait_for(flowing(found[1], 25), 10, f"audio on {found[1]}")
    assert {node.node_id for node, _ in owners.values()} == {"n1", "n2"}  # one each
    cut, other = nodes[0], nodes[1]
    call, sid = next((c, s) for c, (n, s) in owners.items() if n is cut)
    kept_call, kept_sid = next((c, s) for c, (n, s) in owners.items() if n is other)

    cut_at = time.monotonic()
    network.cut(cut.node_id)  # silent: nothing tells anyone
    other.wait_for(lambda log: sid in log.sessions, 10, f"the takeover of {sid}")
    assert sessions_of(other)[sid]["resumed"] is True
    other.wait_for(flowing(sid, 25), 10, f"audio on {sid} on the other node")
    first = other.frames(sid)[0]
    last_seen = cut.frames(sid)[-1].seq  # nothing reaches the cut-off node any more
    lost = first.seq - last_seen - 1
    print(
        f"partition of {cut.node_id}: {sid} taken over by {other.node_id}, audio again "
        f"{1000 * (first.t - cut_at):.0f} ms after the cut; frames lost {max(0, lost)}, "
        f"delivered twice {max(0, -lost)}"
    )
    assert lost <= 0, f"{lost} frames lost from the gateway's buffer"
    before = len(other.frames(kept_sid))
    other.wait_for(flowing(kept_sid, before + 10), 10, "the other node's own call going on")

    network.cut(cut.node_id, cut=False)  # back: it learns another node has the call
    cut.wait_for(lambda log: sid in log.ends, 20, f"the quiet end of {sid} on {cut.node_id}")
    before = len(other.frames(sid))
    other.wait_for(flowing(sid, before + 25), 10, f"{sid} going on after the link came back")
    for each in (call, kept_call):
        emulated = emulator.api.call(each)
        assert emulated is not None and emulated.status == "in-progress", emulated
