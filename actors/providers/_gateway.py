"""What the providers whose media comes through the gateway share: how a provider plans and
resumes a session's hop (:class:`GatewayProvider`, which holds its REST client as every
:class:`~actors.providers._rest.RestProvider` does), and what it checks of a request
(:func:`call_ends`)."""

from __future__ import annotations

from abc import abstractmethod
from typing import TypeVar

from ..codecs import Codec
from ..messages import SessionRequest
from ..transport import websocket_connection
from . import GatewayEndpoint, SessionPlan
from ._rest import RestClient, RestProvider, RestSettings
from ._streamed import hop_dial

__all__ = ["GatewayProvider", "call_ends"]

ConfigT = TypeVar("ConfigT", bound=RestSettings)
ClientT = TypeVar("ClientT", bound=RestClient)


class GatewayProvider(RestProvider[ConfigT, ClientT]):
    """A provider entry whose calls stream through the media gateway: its REST client as a
    :class:`~actors.providers._rest.RestProvider`'s, and a session's plan that dials the
    gateway's ``/sessions/{id}`` with the session's hop token, over a WebSocket, with the
    provider's codec (:meth:`_codec`)."""

    @abstractmethod
    def _codec(self, session_id: str) -> Codec:
        """The codec of ``session_id``'s stream."""

    def _plan(self, session_id: str, gateway: GatewayEndpoint, call_id: str | None) -> SessionPlan:
        dial = hop_dial(gateway, session_id, self.runtime)
        codec = self._codec(session_id)
        return SessionPlan(codec=codec, dial=dial, connect=websocket_connection, call_id=call_id)

    def resume(self, session_id: str, call_id: str) -> SessionPlan:
        """The plan that carries on call ``call_id``, which already streams to the gateway
        for ``session_id`` (a cluster's takeover, or a call another node answered): no
        answer document, no request to the provider."""
        return self._plan(session_id, self._infrastructure.gateway(), call_id)


def call_ends(
    provider: str,
    entry: str,
    request: SessionRequest,
    *,
    configured_from: str | None,
    from_key: str = "from_number",
    to_example: str = "+1...",
    from_hint: str = "'+1...'",
) -> tuple[str, str]:
    """The call's ``to`` and ``from_`` (the request's, else the provider entry's
    ``from_key``). A ``url``, ``headers`` or ``subprotocols`` is a ``TypeError`` (the session
    dials the media gateway, not a URL of the caller's); a missing end is a ``ValueError``
    naming what to pass."""
    for field_name in ("url", "headers", "subprotocols"):
        if getattr(request, field_name) is not None:
            raise TypeError(
                f"the {provider} provider takes no {field_name!r}: it dials the media gateway"
            )
    to, from_ = request.to, request.from_ or configured_from
    if not to:
        raise ValueError(f"create_session(provider={provider!r}) needs to={to_example!r}")
    if not from_:
        raise ValueError(
            f"create_session(provider={provider!r}) needs from_={from_hint}, "
            f"or providers.{entry}.{from_key} in the config"
        )
    return to, from_
