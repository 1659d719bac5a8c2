"""The ``cluster`` section: where the cluster's Redis is, who this node is, and its periods.

Absent (``cluster: null``, the default) the runtime is one process and needs no Redis.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigError
from ._fields import _POSITIVE, _limit, _one_of, _optional_positive
from ._redacted import _safe_repr

__all__ = [
    "ClusterConfig",
]

_REDIS_DOWN = ("fail", "local")


def _redis_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
        ok = parts.scheme in ("redis", "rediss", "unix") and bool(parts.hostname or parts.path)
    except ValueError:
        ok = False
    return None if ok else "expected a redis://, rediss:// or unix:// URL"


def _node_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > 128 or any(c.isspace() or c in "{}:" for c in value):
        return "expected 1-128 characters, no whitespace, ':', '{' or '}'"
    return None


def _key_prefix(value: str) -> str | None:
    if not value or len(value) > 64 or any(c.isspace() for c in value):
        return "expected 1-64 characters without whitespace"
    return None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A runtime node (or a gateway) in a cluster on Redis (:mod:`actors.cluster`).

    Periods: a member heart-beats every ``heartbeat_s`` and is out ``ttl_s`` after its last
    beat; each session's lease is renewed every ``lease_renew_s`` (null: ``lease_s / 4``) and
    is an orphan, for another node to take over, ``lease_s`` after its last renewal. Every
    Redis command is bounded by ``redis_timeout_s`` (connect, read and write).
    ``on_redis_down``: ``fail`` (new sessions raise ``ClusterUnavailable``) or ``local`` (they
    run unclustered on this node).
    """

    # redis[s]://[[user]:password@]host:port/db (a password: write it as ${REDIS_URL})
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata={"check": _redis_url})
    node_id: str | None = field(default=None, metadata={"check": _node_id})  # null: host-pid
    capacity: int = field(default=100, metadata=_POSITIVE)  # live sessions on this node
    lease_s: float = field(default=2.0, metadata=_POSITIVE)  # unrenewed this long: orphan
    lease_renew_s: float | None = field(default=None, metadata={"check": _optional_positive})
    heartbeat_s: float = field(default=0.5, metadata=_POSITIVE)
    ttl_s: float = field(default=2.0, metadata=_POSITIVE)  # no heartbeat this long: out
    redis_timeout_s: float = field(default=1.0, metadata=_POSITIVE)  # each command, connect
    # Every key starts with this; the {braces} make it a Redis Cluster hash tag (one slot).
    key_prefix: str = field(default="ta:{default}", metadata={"check": _key_prefix})
    on_redis_down: str = field(default="fail", metadata={"check": _one_of(*_REDIS_DOWN)})
    max_state_bytes: int = field(default=65_536, metadata=_limit(">=", 0))  # save_state's bound

    __repr__ = _safe_repr

    def __post_init__(self) -> None:
        # The loader names the file and key of a single field; these span two fields.
        checks = (
            ("redis_url", _redis_url(self.redis_url)),
            ("node_id", _node_id(self.node_id)),
            ("key_prefix", _key_prefix(self.key_prefix)),
        )
        for name, problem in checks:
            if problem is not None:
                raise ConfigError(problem, key_path=f"cluster.{name}")
        if self.heartbeat_s >= self.ttl_s:
            why = "must be < cluster.ttl_s (a member beats several times per TTL)"
            raise ConfigError(why, key_path="cluster.heartbeat_s")
        if self.renew_s >= self.lease_s:
            why = "must be < cluster.lease_s (a lease is renewed several times per lease)"
            raise ConfigError(why, key_path="cluster.lease_renew_s")

    @property
    def renew_s(self) -> float:
        """How often leases are renewed: ``lease_renew_s``, or a quarter of ``lease_s``."""
        return self.lease_renew_s if self.lease_renew_s is not None else self.lease_s / 4

    @property
    def member_id(self) -> str:
        """``node_id``, or ``<hostname>-<pid>`` when it is not set."""
        if self.node_id is not None:
            return self.node_id
        host = socket.gethostname().replace(":", "-").replace("{", "").replace("}", "") or "host"
        return f"{host}-{os.getpid()}"
