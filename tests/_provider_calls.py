"""What the Telnyx and Plivo call tests share: a service on the fast config, reading until a
message of a kind, and the session-hop drop resumed through a real gateway and a TCP proxy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from actors import Audio, Mark, Started, TransportService
from actors.config import EmulatorConfig, GatewayConfig, TransportConfig
from actors.emulator.media import CallMedia
from actors.gateway.server import MediaGateway
from actors.messages import Binary, Message

from .conftest import fast_config
from .proxy import TcpProxy

TO, FROM = "+15550100", "+15550199"


def config(**emulator: object) -> TransportConfig:
    return dataclasses.replace(fast_config(), emulator=EmulatorConfig(**emulator))  # type: ignore[arg-type]


def read_until(service: TransportService, sid: str, kind: type[Message]) -> list[Message]:
    """Every message up to and including the first ``kind``."""
    seen: list[Message] = []
    while True:
        message = service.read_websocket_message(sid, timeout=5)
        assert message is not None, f"session ended before a {kind.__name__}: {seen[-3:]}"
        seen.append(message)
        if isinstance(message, kind):
            return seen


def resume_after_a_dropped_hop(
    provider: str, media_of: Callable[[TransportService, str], CallMedia | None]
) -> None:
    """A reset of the session's hop mid-call: the connector redials through the proxy, the
    gateway resumes, and the phone plays every frame once, in order; the session hears every
    frame of the phone once, in order."""
    secret = "shared-secret-of-the-test"
    with (
        MediaGateway(GatewayConfig(embedded=False, secret=secret)) as gateway,
        TcpProxy(gateway._server.port) as proxy,
    ):
        cfg = dataclasses.replace(
            config(media="tone"),
            gateway=GatewayConfig(
                embedded=False, url=proxy.url, public_url=gateway.url, secret=secret
            ),
        )
        with TransportService(cfg) as service:
            info = service.create_session(provider=provider, to=TO, from_=FROM)
            sid = info.session_id
            read_until(service, sid, Started)
            inbound = [read_until(service, sid, Audio)[-1] for _ in range(10)]
            sent = [bytes([i]) * 160 for i in range(100)]
            for frame in sent[:50]:
                service.write_websocket_message(sid, Binary(frame))
            proxy.cut()  # a reset mid-call: no close frame, frames in flight are gone
            for frame in sent[50:]:
                service.write_websocket_message(sid, Binary(frame))
            service.write_websocket_message(sid, Mark("all"))
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
