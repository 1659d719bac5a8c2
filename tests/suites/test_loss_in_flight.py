"""Honest loss: frames a dead connection had in flight are counted, never silently gone.

A silent drop (the path stops carrying packets, nothing closes) is made for real: the peer
lives in a network namespace of its own, joined to ours by a veth pair, and the test takes the
peer's end of the pair down. Our kernel then keeps what it was sending, unacknowledged, in the
socket's send queue until the watchdog declares the peer dead; what the peer's TCP had
acknowledged, the peer reads (it counts every frame by its sequence number). A TCP proxy on
loopback cannot do this: it reads, so our kernel sees everything acknowledged, and the loss
would sit in the proxy where no socket of ours can see it.

Namespaces need root (CI runs as root) and iproute2's ``ip``; without them the test is skipped
and says why. Everything it creates is deleted in ``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from actors import Binary, Mark, Started, Text, TransportService
from actors.config import GatewayConfig, SupervisorConfig, TransportConfig
from actors.gateway.server import MediaGateway
from actors.lifecycle import SessionState
from actors.metrics import sample_key
from actors.session import SessionRecord
from tests.conftest import eventually, fast_config
from tests.netns import dotted as _dotted
from tests.netns import ip as _ip
from tests.netns import join
from tests.netns import namespaces_unavailable as _namespaces_unavailable
from tests.peers import ThreadedServer, answer_upgrade, server_frame
from tests.suites.test_faults import (
    FROM,
    SECRET,
    TO,
    audio_frames,
    emulator_of,
    fault_config,
    is_a,
    read_until,
)

pytestmark = pytest.mark.timeout(60)

PING_INTERVAL_S = 0.25
PING_TIMEOUT_S = 1.0


def _config() -> TransportConfig:
    return dataclasses.replace(
        fast_config(ping_interval_s=PING_INTERVAL_S, ping_timeout_s=PING_TIMEOUT_S),
        supervisor=SupervisorConfig(
            max_restarts=3, within_s=10.0, backoff_initial_s=0.02, backoff_max_s=0.2
        ),
    )


class Namespace:
    """A network namespace with a veth pair to ours: ``peer_ip`` is its end, in it."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.name = f"ta-loss-{pid}"
        self.ours, self.theirs = f"tl{pid}a"[-15:], f"tl{pid}b"[-15:]
        # A /30 of 10.64.0.0/10 chosen by pid: concurrent runs do not collide.
        base = (10 << 24) | (64 << 16) | ((pid << 2) & 0x3FFFFC)
        self.our_ip, self.peer_ip = _dotted(base + 1), _dotted(base + 2)

    def __enter__(self) -> Namespace:
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.ours, "type", "veth", "peer", "name", self.theirs)
            _ip("link", "set", self.theirs, "netns", self.name)
            _ip("addr", "add", f"{self.our_ip}/30", "dev", self.ours)
            _ip("link", "set", self.ours, "up")
            _ip("-n", self.name, "addr", "add", f"{self.peer_ip}/30", "dev", self.theirs)
            _ip("-n", self.name, "link", "set", self.theirs, "up")
            # Fixed neighbour entries: a link that goes down flushes learnt ones, and packets
            # sent while ARP is unresolved wait in its queue and go out when the link is back,
            # after our reset: the peer would get frames we rightly counted lost. A real
            # silent drop loses them; so does a link that nobody re-resolves.
            _ip(
                "neigh",
                "replace",
                self.peer_ip,
                "lladdr",
                self._mac(self.name, self.theirs),
                "dev",
                self.ours,
                "nud",
                "permanent",
            )
            _ip(
                "-n",
                self.name,
                "neigh",
                "replace",
                self.our_ip,
                "lladdr",
                self._mac(None, self.ours),
                "dev",
                self.theirs,
                "nud",
                "permanent",
            )
        except BaseException:
            self._delete()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._delete()

    @staticmethod
    def _mac(namespace: str | None, device: str) -> str:
        where = ["-n", namespace] if namespace else []
        shown = subprocess.run(
            ["ip", "-j", *where, "link", "show", "dev", device],
            check=True,
            capture_output=True,
            timeout=10,
            text=True,
        )
        address: str = json.loads(shown.stdout)[0]["address"]
        return address

    def _delete(self) -> None:
        # Whatever exists: deleting our end of the pair deletes both; then the namespace.
        for args in (["link", "del", self.ours], ["netns", "del", self.name]):
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(["ip", *args], check=False, capture_output=True, timeout=10)

    def drop(self, dropping: bool) -> None:
        """Start (or stop) dropping every packet to and from the peer, silently: its end of
        the pair goes down, ours stays up, and what our kernel sends vanishes."""
        _ip("-n", self.name, "link", "set", self.theirs, "down" if dropping else "up")

    def listen(self) -> socket.socket:
        """A listening socket in the namespace. A thread enters it (setns is per thread) to
        make the socket, which stays in it; the thread, and its namespace, end there."""
        made: list[socket.socket] = []
        failed: list[str] = []

        def make() -> None:
            try:
                join(self.name)
            except OSError as exc:
                failed.append(str(exc))
                return
            made.append(socket.create_server((self.peer_ip, 0)))

        thread = threading.Thread(target=make, name="netns-listen")
        thread.start()
        thread.join(5)
        if not made:
            raise RuntimeError(f"setns failed: {failed}")
        return made[0]


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    reason = _namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Namespace() as ns:
        yield ns


class CountingPeer(ThreadedServer):
    """A WebSocket server that records the sequence number (first 4 bytes) of every binary
    frame it receives, per connection; answers pings and close frames; and sets ``ended``
    when a text frame ``end`` arrives."""

    def __init__(self, listener: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(listener, "counting-peer")
        self._tls = tls
        host, port = listener.getsockname()[:2]
        self.url = f"{'wss' if tls else 'ws'}://{host}:{port}/"
        self.received: list[list[int]] = []  # per connection, in the order accepted
        self.ended = threading.Event()
        self._acceptor.start()

    def count(self) -> int:
        with self._lock:
            return sum(len(frames) for frames in self.received)

    def all_received(self) -> list[int]:
        with self._lock:
            return [n for frames in self.received for n in frames]

    def _accepted(self, client: socket.socket) -> None:
        frames: list[int] = []
        with self._lock:
            self.received.append(frames)
        self._spawn(self._serve, client, frames, sockets=[client], name="peer-conn")

    def _serve(self, client: socket.socket, frames: list[int]) -> None:
        with contextlib.suppress(OSError):
            if self._tls is not None:
                client = self._tls.wrap_socket(client, server_side=True)  # detaches the other
                with self._lock:
                    self._clients.append(client)
            buf = bytearray(answer_upgrade(client))
            while True:
                while (found := _client_frame(buf)) is not None:
                    opcode, payload, size = found
                    del buf[:size]
                    if opcode == 0x2:
                        with self._lock:
                            frames.append(int.from_bytes(payload[:4], "big"))
                    elif opcode == 0x1 and payload == b"end":
                        self.ended.set()
                    elif opcode == 0x9:
                        client.sendall(server_frame(0xA, payload))
                    elif opcode == 0x8:
                        client.sendall(server_frame(0x8, payload[:2]))
                        return
                chunk = client.recv(65536)
                if not chunk:
                    return
                # Acknowledge now what was read, not up to 40 ms later (delayed ACK): when the
                # test cuts the path after the peer has read a frame, our kernel knows it.
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                buf += chunk


def _client_frame(buf: bytearray) -> tuple[int, bytes, int] | None:
    """``(opcode, unmasked payload, frame size)`` of the whole masked frame at the start of
    ``buf``, if it is all there (the client never fragments what this test sends)."""
    if len(buf) < 2:
        return None
    opcode, length, head = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if length == 126:
        if len(buf) < 4:
            return None
        length, head = int.from_bytes(buf[2:4], "big"), 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length, head = int.from_bytes(buf[2:10], "big"), 10
    end = head + 4 + length
    if len(buf) < end:
        return None
    key = bytes(buf[head : head + 4])
    data = bytes(buf[head + 4 : end])
    mask = (key * ((length + 3) // 4))[:length]
    payload = (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(length, "big")
    return opcode, payload, end


class Forwarder(ThreadedServer):
    """Relays each connection accepted on ``listener`` (in the namespace) to ``port`` on our
    loopback, both ways, until either side closes."""

    def __init__(self, listener: socket.socket, port: int) -> None:
        super().__init__(listener, "forwarder")
        self._port = port
        host, own = listener.getsockname()[:2]
        self.url = f"ws://{host}:{own}"
        self._acceptor.start()

    def _accepted(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self._port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._spawn(_relay, client, upstream, sockets=[client, upstream], name="forwarder-pump")
        self._spawn(_relay, upstream, client, name="forwarder-pump")


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


def _frame(seq: int, size: int = 160) -> bytes:
    return seq.to_bytes(4, "big") + bytes(size - 4)  # 160 bytes: 20 ms of mu-law


def _record(service: TransportService, session_id: str) -> SessionRecord:
    return service._sessions[session_id].record


@pytest.mark.parametrize(
    ("during", "size"),
    [
        pytest.param(300, 160, id="all-in-the-kernel"),
        # 6 MB: more than a socket's send buffer grows to (tcp_wmem's 4 MB), so the rest
        # waits in our queue.
        pytest.param(3000, 2000, id="more-than-the-kernel-takes"),
    ],
)
def test_frames_in_flight_when_a_silent_path_dies_are_counted_as_lost(
    namespace: Namespace, during: int, size: int
) -> None:
    """Stream into a path that then drops every packet silently: the watchdog ends the
    connection, the session redials once the path is back and sends the rest. Every frame
    written is then accounted for exactly: received by the peer, or dropped, or lost in flight
    (counted in status() and metrics), or still queued, and the lost ones are exactly those
    the peer never got. On a provider without resume they are not resent; what was still in
    our queue is kept for the next connection, which delivers it first.

    Exact because the peer acknowledges at once what it reads (TCP_QUICKACK) and the path is
    cut only once it has read everything sent before: a frame that arrived but whose
    acknowledgement died with the path would be counted lost (an upper bound, by design)."""
    before, after = 200, 100
    written = 0
    with CountingPeer(namespace.listen()) as peer, TransportService(_config()) as service:
        sid = service.create_session(provider="websocket", url=peer.url).session_id
        record = _record(service, sid)

        def write(count: int, size: int = 160) -> None:
            nonlocal written
            for _ in range(count):
                service.write_websocket_message(sid, Binary(_frame(written, size)))
                written += 1

        write(before)
        assert eventually(lambda: peer.count() == before, 5), "the path never carried"
        assert service.status(sid).lost_in_flight == 0

        namespace.drop(True)
        write(during, size)  # into the kernel's send queue (and what does not fit, our queues)
        assert record.lifecycle.wait_until(lambda: record.restarts > 0, 5 * PING_TIMEOUT_S)
        namespace.drop(False)
        assert record.lifecycle.wait_until(lambda: record.state is SessionState.OPEN, 10)

        write(after)
        service.write_websocket_message(sid, Text("end"))
        assert peer.ended.wait(5), "the redialled connection did not deliver"
        service.end_session(sid)
        status = service.status(sid)
        metrics = service.metrics()

    received = peer.all_received()
    assert len(received) == len(set(received)), "a frame arrived twice"
    missing = sorted(set(range(written)) - set(received))
    print(
        f"silent drop: written {written}, received {len(received)}, lost {len(missing)}, "
        f"counted lost_in_flight {status.lost_in_flight}, dropped {status.dropped_out}, "
        f"queued {status.queued_out}; per connection {[len(r) for r in peer.received]}"
    )
    assert status.lost_in_flight > 0
    assert len(received) + status.dropped_out + status.lost_in_flight + status.queued_out == written
    # The lost frames are the tail of what the dead connection took, and only those.
    assert missing == list(range(before, before + len(missing)))
    assert status.lost_in_flight == len(missing)
    assert status.resent_out == 0  # no resume on this provider
    assert peer.received[0] == list(range(before))  # the dead path delivered nothing more
    # The next connection starts with what was still queued when the first one died.
    assert peer.received[1] == list(range(before + len(missing), written))
    key = sample_key("transport_frames_lost_in_flight_total", {"provider": "websocket"})
    assert metrics[key] == status.lost_in_flight


def test_frames_in_flight_on_a_resumable_session_are_resent_not_lost(
    namespace: Namespace,
) -> None:
    """A Twilio call's session hop to the gateway resumes. The hop goes through the namespace
    (a forwarder there relays it to the gateway), and the path drops silently while the
    session streams: what the dead hop had in flight, in our kernel's send queue, is resent
    from the gateway's count on the redial, so nothing is counted lost, and the phone hears
    every frame once."""
    with (
        MediaGateway(GatewayConfig(embedded=False, secret=SECRET)) as gateway,
        Forwarder(namespace.listen(), gateway._server.port) as forwarder,
    ):
        hops = GatewayConfig(
            embedded=False, url=forwarder.url, public_url=gateway.url, secret=SECRET
        )
        config = dataclasses.replace(
            fault_config(media="tone", gateway=hops), runtime=_config().runtime
        )
        with TransportService(config) as service:
            info = service.create_session(provider="twilio", to=TO, from_=FROM)
            sid = info.session_id
            record = _record(service, sid)
            read_until(service, sid, is_a(Started))
            sent = audio_frames(120)  # the phone plays them in real time: 2.4 s
            for frame in sent[:40]:
                service.write_websocket_message(sid, Binary(frame))
            namespace.drop(True)
            for frame in sent[40:80]:  # into the dead path: in flight when it is declared dead
                service.write_websocket_message(sid, Binary(frame))
            assert record.lifecycle.wait_until(lambda: record.restarts > 0, 5 * PING_TIMEOUT_S)
            namespace.drop(False)
            for frame in sent[80:]:
                service.write_websocket_message(sid, Binary(frame))
            service.write_websocket_message(sid, Mark("all"))
            read_until(service, sid, lambda m: m == Mark("all"))
            status = service.status(sid)
            print(f"resumable hop: resent {status.resent_out}, lost {status.lost_in_flight}")
            assert status.resent_out > 0
            assert status.lost_in_flight == 0
            assert info.call_id is not None
            media = emulator_of(service).call_media(info.call_id)
            assert media is not None
            assert bytes(media.recording) == b"".join(sent)
            service.end_session(sid)
            assert media.ended.wait(5)
            assert service.status(sid).lost_in_flight == 0
            key = sample_key("transport_frames_lost_in_flight_total", {"provider": "twilio"})
            assert service.metrics()[key] == 0


def test_a_clean_close_counts_nothing_lost(namespace: Namespace) -> None:
    """A session ended with a close handshake loses nothing and says so."""
    with CountingPeer(namespace.listen()) as peer, TransportService(_config()) as service:
        sid = service.create_session(provider="websocket", url=peer.url).session_id
        for seq in range(500):
            service.write_websocket_message(sid, Binary(_frame(seq)))
        service.end_session(sid)
        status = service.status(sid)
    assert peer.all_received() == list(range(500))
    assert status.lost_in_flight == 0 and status.dropped_out == 0


def _tls_context(directory: Path, ip: str) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for ``ip`` (PEM: cert.pem)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_over_tls_the_count_is_an_upper_bound(
    namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over wss:// the kernel's send queue holds TLS records, not frames: the count may say
    a few more frames lost than were (a record costs more bytes than it carries, and a partly
    acknowledged one delivers nothing), but never fewer."""
    context = _tls_context(tmp_path, namespace.peer_ip)
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(tmp_path / "cert.pem"))
    before, during = 200, 300
    with (
        CountingPeer(namespace.listen(), context) as peer,
        TransportService(_config()) as service,
    ):
        sid = service.create_session(provider="websocket", url=peer.url).session_id
        record = _record(service, sid)
        for seq in range(before):
            service.write_websocket_message(sid, Binary(_frame(seq)))
        assert eventually(lambda: peer.count() == before, 5), "the path never carried"
        namespace.drop(True)
        for seq in range(before, before + during):
            service.write_websocket_message(sid, Binary(_frame(seq)))
        assert record.lifecycle.wait_until(lambda: record.restarts > 0, 5 * PING_TIMEOUT_S)
        service.end_session(sid)
        status = service.status(sid)
    written = before + during
    received = peer.all_received()
    missing = written - len(received)
    print(f"silent drop over TLS: lost {missing}, counted {status.lost_in_flight}")
    assert missing > 0
    assert status.lost_in_flight >= missing
    assert len(received) + status.dropped_out + status.lost_in_flight + status.queued_out >= written
