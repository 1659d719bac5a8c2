"""What the provider call tests share: a service on the fast config or one for inbound calls,
the running emulator, reading until a message of a kind, a standalone gateway behind a TCP
proxy, and the session-hop drop resumed through them."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from actors import Audio, Binary, Mark, Started, TransportService, default_config
from actors.config import EmulatorConfig, GatewayConfig, InboundConfig, TransportConfig
from actors.emulator.media import CallMedia
from actors.gateway.server import MediaGateway
from actors.messages import Message

from .conftest import fast_config
from .proxy import TcpProxy

TO, FROM = "+15550100", "+15550199"
MACHINE, PERSON = "+15550105", "+15550106"  # how they answer: amd_service's behaviours
HOP_SECRET = "shared-secret-of-the-test"  # >= 16 bytes: GatewayConfig checks it

T = TypeVar("T")


def config(**emulator: object) -> TransportConfig:
    return dataclasses.replace(fast_config(), emulator=EmulatorConfig(**emulator))  # type: ignore[arg-type]


def inbound_service(behaviours: Mapping[str, str], **inbound: Any) -> TransportService:
    """A service on the default config, its ``inbound`` section as given, whose emulated
    phones answer as ``behaviours`` says (number -> behaviour)."""
    cfg = dataclasses.replace(
        default_config(),
        emulator=EmulatorConfig(behaviours=behaviours),
        inbound=InboundConfig(**inbound),
    )
    return TransportService(cfg)


def running(service: TransportService, name: str, kind: type[T]) -> T:
    """What the service runs as ``name`` (an emulator), checked to be a ``kind``."""
    found = service.infrastructure.running[name]
    assert isinstance(found, kind)
    return found


def read_until(service: TransportService, sid: str, kind: type[Message]) -> list[Message]:
    """Every message up to and including the first ``kind``."""
    seen: list[Message] = []
    while True:
        message = service.read_websocket_message(sid, timeout=5)
        assert message is not None, f"session ended before a {kind.__name__}: {seen[-3:]}"
        seen.append(message)
        if isinstance(message, kind):
            return seen


@contextlib.contextmanager
def gateway_behind_a_proxy(
    secret: str = HOP_SECRET,
) -> Iterator[tuple[MediaGateway, TcpProxy, GatewayConfig]]:
    """A standalone gateway, a TCP proxy to it, and the ``gateway`` section of a service whose
    sessions' hops go through the proxy (so a test can cut them) while phones reach the
    gateway itself."""
    with (
        MediaGateway(GatewayConfig(embedded=False, secret=secret)) as gateway,
        TcpProxy(gateway._server.port) as proxy,
    ):
        yield (
            gateway,
            proxy,
            GatewayConfig(embedded=False, url=proxy.url, public_url=gateway.url, secret=secret),
        )


def write_across_a_cut(
    service: TransportService, sid: str, proxy: TcpProxy, frames: list[bytes]
) -> None:
    """Write the first half of ``frames``, reset the hop mid-call (no close frame: frames in
    flight are gone), then write the rest and a mark ``all``."""
    half = len(frames) // 2
    for frame in frames[:half]:
        service.write_websocket_message(sid, Binary(frame))
    proxy.cut()
    for frame in frames[half:]:
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Mark("all"))


def resume_after_a_dropped_hop(
    provider: str, media_of: Callable[[TransportService, str], CallMedia | None]
) -> None:
    """A reset of the session's hop mid-call: the connector redials through the proxy, the
    gateway resumes, and the phone plays every frame once, in order; the session hears every
    frame of the phone once, in order."""
    with gateway_behind_a_proxy() as (gateway, proxy, hop):
        cfg = dataclasses.replace(config(media="tone"), gateway=hop)
        with TransportService(cfg) as service:
            info = service.create_session(provider=provider, to=TO, from_=FROM)
            sid = info.session_id
            read_until(service, sid, Started)
            inbound = [read_until(service, sid, Audio)[-1] for _ in range(10)]
            sent = [bytes([i]) * 160 for i in range(100)]
            write_across_a_cut(service, sid, proxy, sent)
            while True:
                message = service.read_websocket_message(sid, timeout=10)
                if isinstance(message, Audio):
                    inbound.append(message)
                if isinstance(message, Mark) and message.name == "all":
                    break
            assert service.status(sid).restarts == 1
            assert proxy.connections == 2
            numbers = [m.sequence for m in inbound]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # once each
            assert info.call_id is not None
            media = media_of(service, info.call_id)
            assert media is not None
            assert bytes(media.recording) == b"".join(sent)  # what it played: all, in order
            assert gateway.stats().resumes == 1
            service.end_session(sid)
            assert media.ended.wait(5)
