"""``transport-actors cluster status`` and ``transport-actors drain``: the cluster's registry,
read and marked from outside any member.

Both read the ``cluster`` section of the config (``redis_url``, ``key_prefix``) and talk to
Redis through :class:`~actors.cluster.redis.RedisDirectory` only, each command bounded by
``cluster.redis_timeout_s``. Redis unreachable, or no ``cluster`` section: a one-line error
and exit 2 (nothing was read or changed).

- ``cluster status`` lists the healthy runtime nodes and gateways: id, load/capacity,
  draining, the age of the last heartbeat and when the member expires without another, and
  its URLs (``--json``: the same as one JSON object).
- ``drain --node ID`` marks the runtime node (or gateway) ``ID`` draining in the registry:
  inbound claims, takeovers and gateway picks skip it at once, and its
  :class:`~actors.cluster.ClusterMember` reads the mark back at its next heartbeat and drains
  (its live calls go on). ``--wait S``: then wait up to S seconds for its load to reach 0 (or
  for it to leave); exit 1 if it still carries calls then, or if no such member is healthy.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import ClusterUnavailable
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _config

if TYPE_CHECKING:
    from ..cluster import Member
    from ..cluster.redis import RedisDirectory

__all__ = ["_cmd_cluster_status", "_cmd_drain"]

_WAIT_POLL_S = 0.2


def _directory(args: argparse.Namespace) -> RedisDirectory | None:
    config = _config(args)
    if config.cluster is None:
        print(f"error: {args.config}: no cluster section (nothing to ask)", file=sys.stderr)
        return None
    from ..cluster.redis import RedisDirectory  # noqa: PLC0415 (redis only for these commands)

    try:
        return RedisDirectory(config.cluster)
    except ClusterUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _row(member: Member) -> dict[str, Any]:
    return {
        "kind": member.kind,
        "id": member.id,
        "load": member.load,
        "capacity": member.capacity,
        "draining": member.draining,
        "beat_age_s": round(member.beat_age_s, 3),
        "expires_in_s": round(member.expires_in_s, 3),
        "urls": dict(member.urls),
    }


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ("KIND", "ID", "LOAD/CAP", "DRAINING", "BEAT AGO", "URLS")
    lines = [header]
    for r in rows:
        urls = " ".join(f"{k}={v}" for k, v in sorted(r["urls"].items())) or "-"
        lines.append(
            (
                r["kind"],
                r["id"],
                f"{r['load']}/{r['capacity']}",
                "yes" if r["draining"] else "no",
                f"{r['beat_age_s']:.1f}s",
                urls,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip())


def _cmd_cluster_status(args: argparse.Namespace) -> int:
    directory = _directory(args)
    if directory is None:
        return EXIT_USAGE
    try:
        nodes, gateways = directory.members("node"), directory.members("gateway")
    except ClusterUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        directory.close()
    rows = [_row(m) for m in sorted(nodes, key=lambda m: m.id)]
    rows += [_row(m) for m in sorted(gateways, key=lambda m: m.id)]
    if args.json:
        print(json.dumps({"nodes": rows[: len(nodes)], "gateways": rows[len(nodes) :]}))
        return EXIT_OK
    load = sum(m.load for m in nodes)
    capacity = sum(m.capacity for m in nodes)
    print(
        f"cluster: {len(nodes)} nodes ({load}/{capacity} sessions), {len(gateways)} gateways "
        f"({sum(m.load for m in gateways)} calls)"
    )
    if rows:
        _print_table(rows)
    return EXIT_OK


def _find(directory: RedisDirectory, member_id: str) -> Member | None:
    for kind in ("node", "gateway"):
        for member in directory.members(kind):
            if member.id == member_id:
                return member
    return None


def _cmd_drain(args: argparse.Namespace) -> int:
    directory = _directory(args)
    if directory is None:
        return EXIT_USAGE
    member_id: str = args.node
    try:
        marked = directory.set_draining("node", member_id) or directory.set_draining(
            "gateway", member_id
        )
        if not marked:
            print(f"error: no healthy node or gateway {member_id!r}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{member_id}: draining (takes no new call; its calls go on)", flush=True)
        wait_s: float = args.wait or 0.0
        deadline = time.monotonic() + wait_s
        pause = threading.Event()
        while wait_s > 0:
            found = _find(directory, member_id)
            if found is None or found.load == 0:
                print(f"{member_id}: {'gone' if found is None else 'no call left'}", flush=True)
                return EXIT_OK
            if time.monotonic() >= deadline:
                print(f"{member_id}: still carries {found.load} after {wait_s:g} s", flush=True)
                return EXIT_FAILED
            pause.wait(_WAIT_POLL_S)
        return EXIT_OK
    except ClusterUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        directory.close()
