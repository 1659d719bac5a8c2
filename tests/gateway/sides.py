"""The two sides of the media gateway, as the gateway tests drive them over real sockets: the
session's hop as a connector dials it (raw ``websocket-client``, so that every handshake header
is set by hand) and Twilio's side of a stream (a ``websockets`` client speaking Media Streams,
frames built by :class:`TwilioStream`)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import websocket as wsc
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from actors.codecs.twilio import TwilioStream, new_sid
from actors.config import GatewayConfig
from actors.gateway.server import MediaGateway
from actors.wire.constants import RESUME_FROM_HEADER


def gateway_config(secret: str, **overrides: object) -> GatewayConfig:
    """A gateway on ``secret`` that waits 5 s for a pairing and for a resume: long enough for a
    loaded machine, short enough to bound a test."""
    base: dict[str, object] = {"secret": secret, "pair_timeout_s": 5.0, "resume_window_s": 5.0}
    base.update(overrides)
    return GatewayConfig(**base)  # type: ignore[arg-type]


def dial_hop(
    url: str, session_id: str, token: str, resume_from: int = 0, headers: Sequence[str] = ()
) -> wsc.WebSocket:
    """A session hop to the gateway at ``url``, as a connector makes it: ``token`` as its
    bearer, resuming from frame ``resume_from``, with any further ``headers`` (whole lines)."""
    ws = wsc.WebSocket()
    ws.connect(
        f"{url}/sessions/{session_id}",
        header=[
            f"Authorization: Bearer {token}",
            f"{RESUME_FROM_HEADER}: {resume_from}",
            *headers,
        ],
        timeout=5,
    )
    return ws


def closed_with(ws: ClientConnection) -> tuple[int | None, str]:
    """Read until the gateway closes ``ws``: its close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            ws.recv(timeout=5)
    return ws.close_code, ws.close_reason or ""


class TwilioSide:
    """Twilio's side of one stream to the gateway's ``/twilio``, with ``parameters`` as its
    custom parameters (the session, its token, a nonce)."""

    def __init__(self, gateway: MediaGateway, account: str, parameters: Mapping[str, str]) -> None:
        self.stream = TwilioStream(
            new_sid("MZ"), new_sid("CA"), account, custom_parameters=parameters
        )
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(gateway.public_url + "/twilio", open_timeout=5)
        )

    def begin(self) -> list[str]:
        """Send ``connected`` and ``start``; return them."""
        frames = [self.stream.connected(), self.stream.start()]
        for frame in frames:
            self.ws.send(frame)
        return frames

    def media(self, n: int, first: int = 0) -> list[str]:
        """Send ``n`` media frames, numbered from ``first`` (each its number's bytes); return
        them."""
        frames = [
            self.stream.media(bytes([i % 256]) * 160, i * 20) for i in range(first, first + n)
        ]
        for frame in frames:
            self.ws.send(frame)
        return frames

    def recv(self) -> str:
        frame = self.ws.recv(timeout=5)
        assert isinstance(frame, str)
        return frame

    def wait_closed(self) -> tuple[int | None, str]:
        return closed_with(self.ws)

    def close(self) -> None:
        self._stack.close()
