"""Provider control planes: how a session is set up and torn down on the provider's side.

Each provider type has a module here; REST providers are the only users of ``requests``. A
provider turns a :class:`~actors.messages.SessionRequest` into a :class:`SessionPlan` (the
codec, where to dial, and the connection factory that dials) and hangs up when the session
ends. Both calls may block on the network, so the facade makes them on the caller's thread,
never on an actor's.

A REST client reports each request it made to an optional :data:`RequestObserver` (the
service's metrics): a plain callback, so that no provider module depends on a metrics library.

Providers whose media arrives through the media gateway (Twilio, Telnyx, Plivo) ask their
:class:`Infrastructure` where the gateway is; the service answers, starting the embedded
gateway (and emulator) on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..codecs import Codec
from ..config import (
    DailyProviderConfig,
    ExotelProviderConfig,
    PlivoProviderConfig,
    ProviderConfig,
    RuntimeConfig,
    TelnyxProviderConfig,
    TwilioProviderConfig,
    VonageProviderConfig,
)
from ..connection import ConnectionFactory, DialOptions
from ..messages import SessionRequest

__all__ = [
    "CallControl",
    "ControlCommand",
    "DailyEndpoint",
    "ExotelEndpoint",
    "GatewayEndpoint",
    "Infrastructure",
    "ProgressUrls",
    "Provider",
    "Redirect",
    "RequestObserver",
    "RestEndpoint",
    "SendDigits",
    "SessionPlan",
    "Transfer",
    "VonageEndpoint",
    "provider_for",
]


#: Told of every REST request a provider's client made: ``(operation, status, seconds)``, where
#: ``operation`` names the call (``create_call``, ``hang_up``, ``create_room``...), ``status``
#: is the final HTTP status as text (retries included) or ``"error"`` when no response came,
#: and ``seconds`` is how long it took. Called on the requesting thread; it must not block.
RequestObserver = Callable[[str, str, float], None]


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """What a connector needs to carry one session."""

    codec: Codec
    dial: DialOptions
    connect: ConnectionFactory  # makes each connection: actors.transport's for a WebSocket
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayEndpoint:
    """Where the media gateway is, and the secret that signs session tokens for it."""

    url: str  # sessions dial {url}/sessions/{id}
    public_url: str  # providers dial {public_url}/{provider}
    secret: str = field(repr=False)
    resume_frames: int = 1000  # sent frames a session keeps for resending after a reconnect
    # What Exotel's streams must present (gateway.exotel_username/password): put in the
    # StreamUrl as its user:password@ (Exotel's "Basic Auth"); None: nothing is checked.
    exotel_auth: tuple[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RestEndpoint:
    """A REST API to use instead of the configured one (the embedded emulator).

    ``account_sid`` is the account's id (Twilio's AccountSid, Plivo's auth id, Telnyx's Call
    Control App ``connection_id``), ``auth_token`` its secret (Telnyx: the API key)."""

    base_url: str
    account_sid: str
    auth_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DailyEndpoint:
    """The embedded Daily emulator: its REST API, and the stand-in of Daily's SDK that joins
    its rooms (a room it made has no counterpart at Daily that the real SDK could join)."""

    base_url: str
    api_key: str = field(repr=False)
    sdk: Any = field(repr=False)  # follows daily-python's interface (actors.dailycall)


@dataclass(frozen=True, slots=True)
class VonageEndpoint:
    """The embedded Vonage emulator: its Voice API and its made-up application's key."""

    base_url: str
    application_id: str
    private_key: str = field(repr=False)
    signature_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ExotelEndpoint:
    """The embedded Exotel emulator: its API and its made-up account."""

    base_url: str
    account_sid: str
    api_key: str
    api_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ProgressUrls:
    """Where the runtime's webhook takes a call's progress: its status callbacks,
    (``AsyncAmd``) machine detection's verdict, and its ``<Stream statusCallback>``."""

    status_url: str
    amd_url: str
    stream_url: str | None = None


class Infrastructure(Protocol):
    """What the service runs for providers: the gateway, the emulators, the webhook."""

    def gateway(self) -> GatewayEndpoint: ...

    def progress_urls(self, config: TwilioProviderConfig) -> ProgressUrls | None:
        """Where calls of ``config`` send their progress (``None``: the runtime's webhook
        is off, or Twilio could not reach it), starting the webhook if need be."""
        ...

    def webhook_route(self, provider: ProviderConfig, path: str) -> str | None:
        """The runtime webhook's public URL of ``path`` for calls of ``provider`` (``None``:
        off, or out of the provider's reach), starting the webhook if need be."""
        ...

    def expect_answer(self, session_id: str, document: str) -> None:
        """``document`` answers the webhook's ``/plivo/answer?session=<session_id>``."""
        ...

    def forget_answer(self, session_id: str) -> None: ...

    def control_document(self, provider: ProviderConfig, document: str) -> str | None:
        """A URL of the runtime's webhook that serves ``document`` to ``provider``'s signed
        requests (Plivo's transfer fetches the call's next XML from one); ``None``: the
        webhook is off or out of the provider's reach."""
        ...

    def exotel_status_url(self, provider: ExotelProviderConfig, session_id: str) -> str | None:
        """An Exotel call's StatusCallback: the webhook's, with the session's capability."""
        ...

    def twilio_emulator(self) -> RestEndpoint: ...

    def reattach_url(self, session_id: str, route: str = "/twilio/voice") -> str | None:
        """Where a call's document sends it back when its stream ends while the caller stays
        on (a cluster's: its gateway died, another one takes the call): the webhook's
        ``route`` (its provider's) with ``?reattach=``; ``None``: nowhere."""
        ...

    def daily_emulator(self) -> DailyEndpoint: ...

    def vonage_emulator(self) -> VonageEndpoint: ...

    def exotel_emulator(self) -> ExotelEndpoint: ...
    def telnyx_emulator(self) -> RestEndpoint: ...

    def plivo_emulator(self) -> RestEndpoint: ...


class Provider(Protocol):
    name: str

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        """Create the provider side of a session (a call, a room); say how to reach it."""
        ...

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        """End the provider side; "already ended" counts as success."""
        ...

    def close(self) -> None:
        """Release what the provider holds (HTTP connections)."""
        ...


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move the call out of its stream to ``to`` (an E.164 number or a ``sip:`` URI, checked
    by the facade), showing ``caller_id`` where given."""

    to: str
    caller_id: str | None = None


@dataclass(frozen=True, slots=True)
class Redirect:
    """Give the call ``document`` (the provider's own XML, checked well-formed with a
    ``<Response>`` root by the facade) in place of its stream."""

    document: str


@dataclass(frozen=True, slots=True)
class SendDigits:
    """Play ``digits`` (checked by the facade) into the call; its stream goes on."""

    digits: str


#: What :meth:`CallControl.control_call` is asked to do.
ControlCommand = Transfer | Redirect | SendDigits


@runtime_checkable
class CallControl(Protocol):
    """A provider that controls its calls mid-call through commands (Telnyx, Plivo; Twilio
    gives its calls new TwiML instead, through ``update_call``)."""

    def control_call(self, session_id: str, plan: SessionPlan, command: ControlCommand) -> bool:
        """Carry out ``command`` on the session's live call: ``True`` once the provider took
        it, ``False`` if the call had already ended. ``UnsupportedMessage`` at once for a
        command this call cannot take, ``ProviderError`` for a refusal. After a
        :class:`Transfer` or :class:`Redirect` the call is no longer the session's:
        :meth:`Provider.hang_up` then leaves it alone."""
        ...


def provider_for(
    config: ProviderConfig,
    runtime: RuntimeConfig,
    infrastructure: Infrastructure,
    on_request: RequestObserver | None = None,
) -> Provider:
    """The provider implementation for one configured provider entry; ``on_request`` hears
    of every REST request it makes."""
    # The submodules import this one, hence the imports here.
    if isinstance(config, TwilioProviderConfig):
        from .twilio import TwilioProvider  # noqa: PLC0415

        return TwilioProvider(config, runtime, infrastructure, on_request=on_request)
    if isinstance(config, DailyProviderConfig):
        from .daily import DailyProvider  # noqa: PLC0415

        return DailyProvider(config, runtime, infrastructure, on_request=on_request)
    # -- issue 16 --
    if isinstance(config, VonageProviderConfig):
        from .vonage import VonageProvider  # noqa: PLC0415

        return VonageProvider(config, runtime, infrastructure, on_request=on_request)
    if isinstance(config, ExotelProviderConfig):
        from .exotel import ExotelProvider  # noqa: PLC0415

        return ExotelProvider(config, runtime, infrastructure, on_request=on_request)
    # -- end issue 16 --
    if isinstance(config, TelnyxProviderConfig):
        from .telnyx import TelnyxProvider  # noqa: PLC0415

        return TelnyxProvider(config, runtime, infrastructure, on_request=on_request)
    if isinstance(config, PlivoProviderConfig):
        from .plivo import PlivoProvider  # noqa: PLC0415

        return PlivoProvider(config, runtime, infrastructure, on_request=on_request)
    from .websocket import WebSocketProvider  # noqa: PLC0415

    return WebSocketProvider(config, runtime)
