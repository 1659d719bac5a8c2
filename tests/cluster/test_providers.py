"""The cluster with each provider whose calls go through the gateway (Telnyx, Plivo, Vonage,
Exotel), as tests/cluster/test_nodes.py shows it for Twilio: runtime nodes as processes, a
standalone gateway, a Redis of the test's own and the provider's emulator, shared by the nodes.

A node SIGKILLed mid-call: another takes the call over (``accept_session(resumed=True)``, its
metadata and saved state), and the audio goes on both ways, with no frame the gateway held
lost (the frames' numbers on both nodes say so).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .nodes import NodeLog, NodeProcess, cluster
from .redis_server import redis_server_binary
from .telephony import PROVIDERS, heard

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)


def flowing(sid: str, at_least: int) -> object:
    return lambda log: len(log.frames.get(sid, ())) >= at_least


def sessions_of(node: NodeProcess) -> dict[str, dict[str, object]]:
    with node.changed:
        return dict(node.log.sessions)


def _one_session(log: NodeLog) -> bool:
    return len(log.sessions) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_killed_node_s_call_is_taken_over_and_goes_on_both_ways(
    tmp_path: Path, provider: str
) -> None:
    with cluster(tmp_path, nodes=2, gateways=1, capacity=4, provider=provider) as c:
        phone = c.telephony
        assert phone is not None
        node, other = c.nodes
        node.command(f"call +15550140 {provider}")
        node.wait_for(_one_session, 15, f"the outbound {provider} call")
        sid, info = next(iter(sessions_of(node).items()))
        call = str(info["call"])
        node.wait_for(flowing(sid, 60), 15, "audio")  # the state is saved every 50 frames
        assert info["provider"] == provider
        killed_at = time.monotonic()
        node.kill()
        last = node.frames(sid)[-1].seq
        before = heard(phone, call)
        other.wait_for(lambda log: sid in log.sessions, 10, f"the takeover of {sid}")
        taken = sessions_of(other)[sid]
        assert taken["resumed"] is True
        assert taken["dir"] == "outbound" and taken["provider"] == provider
        assert taken["call"] == call
        assert json.loads(str(taken["state"]))["frames"] >= 50  # what the dead node saved
        other.wait_for(flowing(sid, 25), 10, "audio on the new node")
        first = other.frames(sid)[0]
        lost = first.seq - last - 1
        print(
            f"{provider} takeover of {sid}: audio again {1000 * (first.t - killed_at):.0f} ms "
            f"after the kill; frames lost {max(0, lost)}, delivered twice {max(0, -lost)}"
        )
        assert lost <= 0, f"{lost} frames lost on takeover"
        numbers = [f.seq for f in other.frames(sid)]
        distinct = list(dict.fromkeys(numbers))  # Exotel's frames carry several 20 ms each
        assert numbers == sorted(numbers)
        assert distinct == list(range(numbers[0], numbers[0] + len(distinct)))  # none missing
        deadline = time.monotonic() + 10  # the new node's echo reaches the phone
        while heard(phone, call) < before + 4000 and time.monotonic() < deadline:
            other.wait_for(flowing(sid, len(other.frames(sid)) + 5), 5, "more audio")
        assert heard(phone, call) >= before + 4000, "no audio played since the takeover"
        assert phone.up(call)
