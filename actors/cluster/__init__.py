"""The cluster's engine layer: runtime nodes and gateways that share a directory on Redis.

- :mod:`actors.cluster.directory`: the seam, :class:`~actors.cluster.directory.Directory`
  (members with heartbeats and TTLs, leases with a saved state, atomic inbound claims and
  takeovers), and its value types. No engine is named there.
- :mod:`actors.cluster.redis`: :class:`~actors.cluster.redis.RedisDirectory`, the one module
  that imports redis (the ``cluster`` extra: ``pip install 'transport-actors[cluster]'``).
- :mod:`actors.cluster.node`: :class:`~actors.cluster.node.ClusterMember`, the threads that
  keep one process's registration and leases alive, and the API a service calls.

Nothing is imported from redis until a :class:`ClusterMember` is built without a directory of
its own (or :mod:`actors.cluster.redis` is imported): without a ``cluster`` section the runtime
never loads it.
"""

from .directory import Claim, Directory, Kind, Lease, Member, Renewal, least_loaded
from .node import ClusterMember

__all__ = [
    "Claim",
    "ClusterMember",
    "Directory",
    "Kind",
    "Lease",
    "Member",
    "Renewal",
    "least_loaded",
]
