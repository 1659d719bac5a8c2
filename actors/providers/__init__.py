"""Provider control planes: how a session is set up and torn down on the provider's side.

Each provider type has a module here; REST providers are the only users of ``requests``. A
provider turns a :class:`~actors.messages.SessionRequest` into a :class:`SessionPlan` (the
codec and where to dial) and hangs up when the session ends. Both calls may block on the
network, so the facade makes them on the caller's thread, never on an actor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..codecs import Codec
from ..config import ProviderConfig, RuntimeConfig
from ..messages import SessionRequest
from ..websocket import DialOptions

__all__ = ["Provider", "SessionPlan", "provider_for"]


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """What a connector needs to carry one session."""

    codec: Codec
    dial: DialOptions
    call_id: str | None = None


class Provider(Protocol):
    name: str

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        """Create the provider side of a session (a call, a room); say how to reach it."""
        ...

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        """End the provider side; "already ended" counts as success."""
        ...


def provider_for(config: ProviderConfig, runtime: RuntimeConfig) -> Provider:
    """The provider implementation for one configured provider entry."""
    from .websocket import WebSocketProvider  # noqa: PLC0415 (the submodule imports this one)

    return WebSocketProvider(config, runtime)
