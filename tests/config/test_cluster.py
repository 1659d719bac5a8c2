"""The ``cluster`` section: absent by default (no Redis, nothing imported from redis), parsed
and checked when present, its Redis password never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.config import ClusterConfig, default_config, parse_config
from actors.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_no_cluster_section_means_no_cluster() -> None:
    assert default_config().cluster is None
    assert parse_config({}).cluster is None
    assert parse_config({"cluster": None}).cluster is None


def test_an_empty_cluster_section_takes_the_defaults() -> None:
    cluster = parse_config({"cluster": {}}).cluster
    assert cluster == ClusterConfig()
    assert cluster.redis_url == "redis://127.0.0.1:6379/0"
    assert (cluster.capacity, cluster.lease_s, cluster.heartbeat_s, cluster.ttl_s) == (
        100,
        2.0,
        0.5,
        2.0,
    )
    assert cluster.renew_s == 0.5  # lease_s / 4
    assert cluster.key_prefix == "ta:{default}" and cluster.on_redis_down == "fail"
    assert cluster.max_state_bytes == 65_536 and cluster.redis_timeout_s == 1.0
    assert cluster.member_id.endswith(f"-{os.getpid()}")


def test_cluster_section_values() -> None:
    data = {
        "redis_url": "redis://10.0.0.5:6380/2",
        "node_id": "node-a",
        "capacity": 300,
        "lease_s": 3,
        "lease_renew_s": 1,
        "on_redis_down": "local",
    }
    cluster = parse_config({"cluster": data}).cluster
    assert cluster is not None
    assert (cluster.member_id, cluster.capacity, cluster.renew_s) == ("node-a", 300, 1.0)
    assert cluster.on_redis_down == "local"


@pytest.mark.parametrize(
    ("data", "key", "text"),
    [
        ({"redis_url": "http://h:6379"}, "cluster.redis_url", "redis://"),
        ({"capacity": 0}, "cluster.capacity", "> 0"),
        ({"on_redis_down": "ignore"}, "cluster.on_redis_down", "fail, local"),
        ({"node_id": "a b"}, "cluster.node_id", "whitespace"),
        ({"heartbeat_s": 2.0, "ttl_s": 2.0}, "cluster.heartbeat_s", "< cluster.ttl_s"),
        ({"lease_s": 1.0, "lease_renew_s": 1.0}, "cluster.lease_renew_s", "< cluster.lease_s"),
        ({"redis": "x"}, "cluster.redis", "redis_url"),
    ],
)
def test_bad_cluster_values_are_refused(data: dict[str, object], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cluster": data}, source="t.yaml")
    assert info.value.key_path == key
    assert text in info.value.why


def test_the_redis_password_is_never_shown() -> None:
    url = "redis://:hunter2-secret@redis.internal:6379/0"
    config = parse_config({"cluster": {"redis_url": url}})
    assert "hunter2" not in repr(config.cluster)
    assert "hunter2" not in str(config.redacted())
    from_env = parse_config({"cluster": {"redis_url": "${REDIS_URL}"}}, environ={"REDIS_URL": url})
    assert from_env.cluster is not None and from_env.cluster.redis_url == url
    assert from_env.redacted()["cluster"]["redis_url"] == "${REDIS_URL}"


def test_the_runtime_never_imports_redis_without_a_cluster() -> None:
    code = (
        "import sys, actors, actors.cluster\n"
        "from actors import TransportService\n"
        "TransportService().close()\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
        "assert 'actors.clustering' not in sys.modules, 'the node side imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_a_node_s_inbound_queue_must_hold_its_cluster_capacity() -> None:
    config = parse_config(
        {"cluster": {"capacity": 40}, "inbound": {"max_sessions": 16}}, source="node.yaml"
    )  # a gateway reads the same file: parsing it is fine
    with pytest.raises(ConfigError) as info:
        config.check_cluster_node()
    assert info.value.key_path == "inbound.max_sessions" and info.value.file == "node.yaml"
    assert "inbound.max_sessions (16)" in info.value.why
    assert "cluster.capacity (40)" in info.value.why
    for fine in (
        {"cluster": {"capacity": 16}, "inbound": {"max_sessions": 16}},
        {"cluster": {"capacity": 40}, "inbound": {"enabled": False}},
        {"inbound": {"max_sessions": 1}},
    ):
        parse_config(fine).check_cluster_node()


def test_a_node_whose_queue_is_smaller_than_its_capacity_does_not_start() -> None:
    from actors import TransportService  # noqa: PLC0415

    # The defaults disagree (capacity 100, max_sessions 16): refused before Redis is reached.
    config = parse_config({"cluster": {"redis_url": "redis://127.0.0.1:9/0"}})
    with pytest.raises(ConfigError, match=r"max_sessions \(16\).*cluster.capacity \(100\)"):
        TransportService(config)
