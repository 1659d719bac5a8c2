"""Restart types and per-provider supervision, end to end through the facade."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator

import pytest

from actors import Close, Text, TransportService
from actors.config import (
    SupervisorConfig,
    TransportConfig,
    WebSocketProviderConfig,
    parse_config,
)
from actors.gateway import ServerConnection, ServerThread
from actors.lifecycle import SessionState

from .conftest import fast_config
from .peers import RawPeer

pytestmark = pytest.mark.timeout(30)


async def echo_once_then_hang_up(ws: ServerConnection) -> None:
    """Echo one message, then close normally: a peer that ends the conversation."""
    message = await ws.recv()
    await ws.send(message)
    await ws.close(1000, "bye")


def drop_at_once(sock: socket.socket, stop: threading.Event) -> None:
    """Complete the handshake, then vanish without a close frame."""
    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def hang_up_peer() -> Iterator[ServerThread]:
    with ServerThread(echo_once_then_hang_up, name="hang-up-peer") as server:
        yield server


def service_with(**providers: SupervisorConfig | None) -> TransportService:
    quick = dict(max_restarts=3, within_s=10.0, backoff_initial_s=0.01, backoff_max_s=0.05)
    config: TransportConfig = dataclasses.replace(
        fast_config(),
        providers={
            name: WebSocketProviderConfig(
                name=name,
                supervisor=None if own is None else dataclasses.replace(own, **quick),
            )
            for name, own in providers.items()
        },
    )
    return TransportService(config)


def test_a_permanent_session_redials_a_peer_that_hung_up(hang_up_peer: ServerThread) -> None:
    with service_with(keep=SupervisorConfig(restart="permanent"), plain=None) as service:
        kept = service.create_session(provider="keep", url=hang_up_peer.url).session_id
        plain = service.create_session(provider="plain", url=hang_up_peer.url).session_id
        for sid in (kept, plain):
            service.write_websocket_message(sid, Text("one"))
            assert service.read_websocket_message(sid, timeout=5) == Text("one")
        # The transient (default) one ends with the peer's own words; the permanent one is
        # dialled again and talks on.
        assert service.read_websocket_message(plain, timeout=5) == Close(1000, "bye")
        assert service.read_websocket_message(plain, timeout=5) is None
        record = service._sessions[kept].record
        assert record.lifecycle.wait_until(
            lambda: record.restarts == 1 and record.state is SessionState.OPEN, 5
        )
        service.write_websocket_message(kept, Text("two"))
        assert service.read_websocket_message(kept, timeout=5) == Text("two")
        assert "closed by peer" in service.status(kept).exit_reasons[0]


def test_a_temporary_session_ends_at_its_first_failure() -> None:
    with (
        RawPeer(drop_at_once) as peer,
        service_with(once=SupervisorConfig(restart="temporary")) as service,
    ):
        sid = service.create_session(provider="once", url=peer.url).session_id
        message = service.read_websocket_message(sid, timeout=5)
        assert isinstance(message, Close)
        assert message.code == 1006
        assert message.reason == "connection closed without a close frame"
        assert service.read_websocket_message(sid, timeout=5) is None
        status = service.status(sid)
        assert status.restarts == 0
        assert status.state is SessionState.CLOSED


def test_a_provider_supervisor_section_is_read_from_yaml() -> None:
    config = parse_config(
        {
            "supervisor": {"max_restarts": 5},
            "providers": {
                "calls": {"type": "websocket", "supervisor": {"restart": "permanent"}},
                "other": {"type": "websocket"},
            },
        }
    )
    calls, other = config.provider("calls"), config.provider("other")
    assert calls.supervisor == SupervisorConfig(restart="permanent")  # its own, whole
    assert other.supervisor is None  # the deployment's: max_restarts 5
    assert config.supervisor.max_restarts == 5
