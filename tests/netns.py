"""Network namespaces for the tests that need several hosts (root only; they skip otherwise).

``ip`` runs iproute2; :func:`join` moves the calling thread into a namespace (``setns`` is per
thread: threads it starts afterwards are born there too); :func:`inside` does so for a block
and comes back. Every address is inside a namespace the test made: nothing is added to the
machine's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def dotted(address: int) -> str:
    return socket.inet_ntoa(address.to_bytes(4, "big"))


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here (``None``: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {path}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def join(name: str) -> None:
    """Move the calling thread into the namespace ``name`` (made by ``ip netns add``)."""
    _setns(f"/run/netns/{name}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """The calling thread in the namespace ``name`` for the block, then back where it was.
    Threads started in the block stay there: the block must end them (the suite's leak
    checks see those that it does not)."""
    back = f"/proc/self/task/{threading.get_native_id()}/ns/net"
    fd = os.open(back, os.O_RDONLY)
    try:
        join(name)
        try:
            yield
        finally:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's own namespace")
    finally:
        os.close(fd)


class Network:
    """Hosts on one switch: a bridge in a namespace of its own (``<tag>-sw``), and per host a
    namespace (``<tag>-<host>``) whose ``eth0`` is plugged into it, at ``10.x.y.N/24`` (by
    pid; no address anywhere else). :meth:`cut` unplugs a host silently: its switch port goes
    down, its own interface stays up, and whatever it or anyone sends to it vanishes (no RST,
    no ICMP), as on a dead link. Always cleaned up by :meth:`__exit__` (and on a failed
    :meth:`__enter__`): deleting a namespace deletes its end of each veth pair, and the pair."""

    def __init__(self, hosts: list[str]) -> None:
        pid = os.getpid()
        self.tag = f"ta{pid}"
        self.switch = f"{self.tag}-sw"
        self._hosts = list(hosts)
        subnet = (10 << 24) | ((192 + (pid >> 8) % 64) << 16) | ((pid & 0xFF) << 8)
        self._addresses = {h: dotted(subnet + 1 + i) for i, h in enumerate(hosts)}
        for host in hosts:
            if len(f"p-{host}") > 15:
                raise ValueError(f"host name too long for an interface: {host!r}")

    def netns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def address(self, host: str) -> str:
        return self._addresses[host]

    def __enter__(self) -> Network:
        self._delete()  # what a killed earlier run of this pid left
        try:
            ip("netns", "add", self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            for host in self._hosts:
                name, port = self.netns(host), f"p-{host}"
                ip("netns", "add", name)
                ip("link", "add", "name", "eth0", "netns", name, "type", "veth",
                   "peer", "name", port, "netns", self.switch)  # fmt: skip
                ip("-n", self.switch, "link", "set", port, "master", "br0")
                ip("-n", self.switch, "link", "set", port, "up")
                ip("-n", name, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
                ip("-n", name, "link", "set", "eth0", "up")
                ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self._delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._delete()

    def _delete(self) -> None:
        for name in [self.netns(h) for h in self._hosts] + [self.switch]:
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(
                    ["ip", "netns", "del", name], check=False, capture_output=True, timeout=10
                )

    def cut(self, host: str, cut: bool = True) -> None:
        """Unplug ``host`` from the switch (``cut=False``: plug it back)."""
        ip("-n", self.switch, "link", "set", f"p-{host}", "down" if cut else "up")
