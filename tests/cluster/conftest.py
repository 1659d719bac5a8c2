"""Fixtures of the cluster tests: a Redis server of the test's own (never 127.0.0.1:6379), and
cluster configs with periods short enough for tests, each test under a key prefix of its own."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest

from actors.cluster.redis import RedisDirectory
from actors.config import ClusterConfig

from .redis_server import RedisServer, redis_server_binary

if redis_server_binary() is None:  # .ci/run installs it; a bare dev machine may lack it
    pytest.skip("redis-server is not installed", allow_module_level=True)

#: Fast periods: out within 0.5 s, orphaned 0.5 s after the last renewal, 0.3 s per command.
FAST = {
    "heartbeat_s": 0.1,
    "ttl_s": 0.5,
    "lease_s": 0.5,
    "lease_renew_s": 0.1,
    "redis_timeout_s": 0.3,
}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


ConfigFactory = Callable[..., ClusterConfig]


@pytest.fixture
def cluster_config(redis_server: RedisServer) -> ConfigFactory:
    """``cluster_config(node_id="a", capacity=3)``: a fast config on this test's Redis."""
    prefix = f"ta:{{t{uuid.uuid4().hex[:8]}}}"

    def make(**fields: object) -> ClusterConfig:
        base = ClusterConfig(redis_url=redis_server.url, key_prefix=prefix, **FAST)  # type: ignore[arg-type]
        return dataclasses.replace(base, **fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
def directory(cluster_config: ConfigFactory) -> Iterator[RedisDirectory]:
    """A directory of its own (the test's view of the cluster), closed after the test."""
    found = RedisDirectory(cluster_config(node_id="observer"))
    try:
        yield found
    finally:
        found.close()
