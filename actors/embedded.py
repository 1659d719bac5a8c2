"""What a service runs for its providers: the media gateway, the emulators (Twilio, Daily,
Telnyx, Plivo, Vonage, Exotel), and the webhook that answers Twilio (inbound calls, call
progress).

Each starts on first use (the first Twilio session; the first Daily session with
``api_base_url: emulator``; the first ``accept_session`` or Twilio call that reports its
progress), so a service that only carries plain WebSocket sessions runs none.
The embedded default needs no accounts: the emulators are given a made-up account (or API key)
and a random secret, and the gateway a random secret, for this process only. A deployment
with a standalone gateway (``gateway.embedded: false``) names its ``url`` and shares its
``secret`` instead.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from .config import (
    ExotelProviderConfig,
    PlivoProviderConfig,
    ProviderConfig,
    TelnyxProviderConfig,
    TransportConfig,
    TwilioProviderConfig,
    VonageProviderConfig,
)
from .errors import ConfigError
from .providers import (
    DailyEndpoint,
    ExotelEndpoint,
    GatewayEndpoint,
    ProgressUrls,
    RestEndpoint,
    VonageEndpoint,
)

if TYPE_CHECKING:  # both import websockets: loaded only when a Twilio session needs them
    from .emulator.daily_sdk import DailyEmulator
    from .emulator.exotel import ExotelEmulator
    from .emulator.phone import TwilioEmulator
    from .emulator.plivo import PlivoEmulator
    from .emulator.telnyx import TelnyxEmulator
    from .emulator.vonage import VonageEmulator
    from .gateway.server import GatewayStats, MediaGateway
    from .webhooks.calls import ProviderKeys
    from .webhooks.inbound import Answer, InboundQueue
    from .webhooks.server import WebhookServer
    from .webhooks.streamed import StreamDesk
    from .webhooks.twilio import InboundCall, StatusEvent, StreamEvent

    Running = (
        MediaGateway
        | TwilioEmulator
        | DailyEmulator
        | VonageEmulator
        | ExotelEmulator
        | TelnyxEmulator
        | PlivoEmulator
        | WebhookServer
    )


class WebhookHooks(Protocol):
    """What the webhook tells the service (:class:`actors.calls.CallPlane`)."""

    def on_status(self, event: StatusEvent) -> bool: ...

    def on_amd(self, event: StatusEvent) -> bool: ...

    def on_stream(self, event: StreamEvent) -> bool: ...

    def on_reattach(self, call: InboundCall) -> str | None: ...

    def on_stream_lost(self, provider: str, call_id: str, session_id: str) -> bool: ...

    def on_voice(
        self,
        call: InboundCall,
        local: Callable[[], Answer],
        *,
        provider: str | None = None,
        refusal: str | None = None,
    ) -> Answer: ...

    def on_unanswered(self, provider: str, call: InboundCall) -> None: ...


__all__ = ["EMULATOR_ACCOUNT_SID", "EmbeddedInfrastructure"]

logger = logging.getLogger(__name__)

EMULATOR_ACCOUNT_SID = "AC" + "0" * 32  # the emulator's only account; not a real one

#: The gateway chosen for the session being set up on this thread (a cluster picks one per
#: session, :mod:`actors.clustering`): asked by :meth:`EmbeddedInfrastructure.gateway` first,
#: and only when the provider needs a gateway at all. ``None``: the configured gateway.
GATEWAY_CHOICE: ContextVar[Callable[[], GatewayEndpoint | None] | None] = ContextVar(
    "gateway_choice", default=None
)


# -- issues 15/16: the other providers' webhooks ------------------------------------------------


def _provider_keys(config: TransportConfig) -> ProviderKeys:
    """The keys of configured accounts (the emulators' are added as they start), and a
    random secret per Exotel provider that its status URLs are minted under."""
    from .webhooks.calls import ProviderKeys  # noqa: PLC0415

    call_control = frozenset(
        name
        for name, provider in config.providers.items()
        if isinstance(provider, TelnyxProviderConfig) and provider.inbound == "call_control"
    )
    keys = ProviderKeys(telnyx={}, plivo={}, vonage={}, exotel={}, telnyx_call_control=call_control)
    for name, provider in config.providers.items():
        real = getattr(provider, "api_base_url", "emulator") != "emulator"
        if isinstance(provider, TelnyxProviderConfig) and real and provider.public_key:
            keys.telnyx[name] = provider.public_key  # type: ignore[index]
        elif isinstance(provider, PlivoProviderConfig) and real and provider.auth_token:
            keys.plivo[name] = provider.auth_token  # type: ignore[index]
        elif isinstance(provider, VonageProviderConfig) and real and provider.signature_secret:
            keys.vonage[name] = provider.signature_secret  # type: ignore[index]
        elif isinstance(provider, ExotelProviderConfig):
            keys.exotel[name] = _exotel_key(config, name)  # type: ignore[index]
    return keys


def _exotel_key(config: TransportConfig, name: str) -> str:
    """The secret an Exotel provider's status URLs are minted under: random per process, but
    in a cluster derived from the secret its nodes share (``gateway.secret``), since a
    balancer may send a call's StatusCallback to any node."""
    shared = config.gateway.secret if config.cluster is not None else None
    if not shared:
        return secrets.token_urlsafe(32)
    return hmac.new(shared.encode(), f"exotel-status-key:{name}".encode(), "sha256").hexdigest()


class _ProviderWebhooks(ABC):
    """What the providers ask of the webhook (mixed into :class:`EmbeddedInfrastructure`,
    which supplies the abstract methods)."""

    config: TransportConfig
    _keys: ProviderKeys

    @abstractmethod
    def webhook(self) -> WebhookServer: ...

    def webhook_route(self, provider: ProviderConfig, path: str) -> str | None:
        """The public URL of the runtime webhook's ``path`` for calls of ``provider``, when
        the webhook is on and the provider can reach it (its emulator always can; the real one
        through ``inbound.public_url``); the webhook starts if need be."""
        inbound = self.config.inbound
        if not inbound.enabled:
            return None
        if getattr(provider, "api_base_url", None) != "emulator" and inbound.public_url is None:
            return None
        return self.webhook().public_url + path

    def expect_answer(self, session_id: str, document: str) -> None:
        """``document`` answers ``/plivo/answer?session=<session_id>`` (a call we place)."""
        self.webhook().routes.expect_answer(session_id, document)

    def forget_answer(self, session_id: str) -> None:
        webhook = getattr(self, "_webhook", None)
        if webhook is not None:
            webhook.routes.forget_answer(session_id)

    def control_document(self, provider: ProviderConfig, document: str) -> str | None:
        """Our ``/plivo/control?doc=<key>`` serving ``document`` (``key`` unguessable; the
        request must be signed as Plivo signs), or ``None`` when Plivo could not reach it."""
        base = self.webhook_route(provider, "/plivo/control")
        if base is None:
            return None
        key = secrets.token_urlsafe(16)
        self.webhook().routes.serve_document(key, document)
        return f"{base}?doc={key}"

    def exotel_status_url(self, provider: ExotelProviderConfig, session_id: str) -> str | None:
        """The StatusCallback of an Exotel call: our ``/exotel/status`` with the session and its
        capability, or ``None`` when Exotel could not reach the webhook."""
        from .webhooks.calls import exotel_capability  # noqa: PLC0415

        base = self.webhook_route(provider, "/exotel/status")
        secret = self._keys.exotel.get(provider.name)
        if base is None or secret is None:
            return None
        return f"{base}?session={session_id}&sig={exotel_capability(secret, session_id)}"

    def exotel_applet_url(self, provider: str, parameters: Mapping[str, str] | None = None) -> str:
        """The URL to give the Voicebot applet of the flow that Exotel provider entry
        ``provider``'s numbers run: the gateway's ``/exotel`` with the sample rate, the
        entry's inbound token and the gateway's Basic credentials (``parameters``: at most
        one custom parameter of your own). A credential: never log it (``redact_url``)."""
        from .providers.exotel import applet_url  # noqa: PLC0415

        config = self.config.provider(provider)
        if not isinstance(config, ExotelProviderConfig):
            raise ValueError(f"provider {provider!r} is not an exotel provider")
        gateway = self.gateway()
        return applet_url(
            gateway.public_url,
            provider,
            gateway.secret,
            sample_rate=config.sample_rate,
            basic_auth=gateway.exotel_auth,
            parameters=parameters,
        )

    def place_inbound(self, provider: str, to: str = "+15550100", from_: str = "+15550177") -> str:
        """Place an emulated inbound call from ``provider``'s emulator (a ``telnyx``,
        ``plivo``, ``vonage`` or ``exotel`` provider with ``api_base_url: emulator``) to this
        service, as that provider would (Exotel's applet dials the gateway itself); the
        call's id (for demos and tests)."""
        config = self.config.provider(provider)
        base = self.webhook().public_url
        if isinstance(config, ExotelProviderConfig):
            self.exotel_emulator()
            exotel = getattr(self, "_exotel", None)
            assert exotel is not None
            return str(exotel.place_inbound_call(self.exotel_applet_url(provider), to, from_).sid)
        if isinstance(config, TelnyxProviderConfig):
            self.telnyx_emulator()
            telnyx = getattr(self, "_telnyx", None)
            assert telnyx is not None
            if config.inbound == "call_control":  # a Call Control App: call.initiated
                placed = telnyx.place_call_control_call(base + "/telnyx/events", to, from_)
            else:  # a TeXML App: its voice URL
                placed = telnyx.place_inbound_call(base + "/telnyx/voice", to, from_)
            return str(placed.call_control_id)
        if isinstance(config, PlivoProviderConfig):
            self.plivo_emulator()
            plivo = getattr(self, "_plivo", None)
            assert plivo is not None
            return str(plivo.place_inbound_call(base + "/plivo/answer", to, from_).call_uuid)
        if isinstance(config, VonageProviderConfig):
            self.vonage_emulator()
            vonage = getattr(self, "_vonage", None)
            assert vonage is not None
            event_url = base + "/vonage/event"
            return str(
                vonage.place_inbound_call(
                    base + "/vonage/answer", to, from_, event_url=event_url
                ).uuid
            )
        raise ValueError(f"provider {provider!r} places no emulated inbound calls here")

    @abstractmethod
    def telnyx_emulator(self) -> RestEndpoint: ...

    @abstractmethod
    def plivo_emulator(self) -> RestEndpoint: ...

    @abstractmethod
    def vonage_emulator(self) -> VonageEndpoint: ...

    @abstractmethod
    def exotel_emulator(self) -> ExotelEndpoint: ...

    @abstractmethod
    def gateway(self) -> GatewayEndpoint: ...

    def _emulated_key(self, kind: type, keys: Mapping[str, str], key: str) -> None:
        for name, provider in self.config.providers.items():
            if isinstance(provider, kind) and getattr(provider, "api_base_url", "") == "emulator":
                keys[name] = key  # type: ignore[index]


class EmbeddedInfrastructure(_ProviderWebhooks):
    """The gateway and emulator of one service: started lazily, stopped by :meth:`stop`."""

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._gateway: MediaGateway | None = None
        self._emulator: TwilioEmulator | None = None
        self._gateway_endpoint: GatewayEndpoint | None = None
        self._emulator_endpoint: RestEndpoint | None = None
        self._daily: DailyEmulator | None = None
        self._daily_endpoint: DailyEndpoint | None = None
        # -- issue 16: the Vonage and Exotel emulators --
        self._vonage: VonageEmulator | None = None
        self._vonage_endpoint: VonageEndpoint | None = None
        self._exotel: ExotelEmulator | None = None
        self._exotel_endpoint: ExotelEndpoint | None = None
        # -- end issue 16 --
        self._telnyx: TelnyxEmulator | None = None
        self._telnyx_endpoint: RestEndpoint | None = None
        self._plivo: PlivoEmulator | None = None
        self._plivo_endpoint: RestEndpoint | None = None
        self._webhook: WebhookServer | None = None
        self.hooks: WebhookHooks | None = None  # set by the service before the webhook starts
        self.reattach = False  # a cluster's: outbound TwiML comes back (see reattach_url)
        self._stopped = False
        self._keys = _provider_keys(config)  # issues 15/16: filled as emulators start

    def gateway(self) -> GatewayEndpoint:
        choose = GATEWAY_CHOICE.get()
        chosen = choose() if choose is not None else None
        if chosen is not None:
            return chosen
        with self._lock:
            if self._gateway_endpoint is None:
                self._gateway_endpoint = self._start_gateway()
            return self._gateway_endpoint

    def twilio_emulator(self) -> RestEndpoint:
        with self._lock:
            if self._emulator_endpoint is None:
                self._emulator_endpoint = self._start_emulator()
            return self._emulator_endpoint

    def daily_emulator(self) -> DailyEndpoint:
        with self._lock:
            if self._daily_endpoint is None:
                self._daily_endpoint = self._start_daily()
            return self._daily_endpoint

    # -- issue 16 --
    def vonage_emulator(self) -> VonageEndpoint:
        with self._lock:
            if self._vonage_endpoint is None:
                self._vonage_endpoint = self._start_vonage()
            return self._vonage_endpoint

    def exotel_emulator(self) -> ExotelEndpoint:
        with self._lock:
            if self._exotel_endpoint is None:
                self._exotel_endpoint = self._start_exotel()
            return self._exotel_endpoint

    def _emulator_host(self) -> str:
        return self.config.emulator.listen.rpartition(":")[0].strip("[]")

    def _start_vonage(self) -> VonageEndpoint:
        self._check_running()
        from .emulator.vonage import VonageEmulator  # noqa: PLC0415

        vonage = VonageEmulator(self.config.emulator, host=self._emulator_host()).start()
        self._vonage = vonage
        self._emulated_key(VonageProviderConfig, self._keys.vonage, vonage.signature_secret)
        return VonageEndpoint(
            vonage.url, vonage.application_id, vonage.private_key, vonage.signature_secret
        )

    def _start_exotel(self) -> ExotelEndpoint:
        self._check_running()
        from .emulator.exotel import ExotelEmulator  # noqa: PLC0415

        exotel = ExotelEmulator(self.config.emulator, host=self._emulator_host()).start()
        self._exotel = exotel
        return ExotelEndpoint(exotel.url, exotel.account_sid, exotel.api_key, exotel.api_token)

    # -- end issue 16 --
    def telnyx_emulator(self) -> RestEndpoint:
        with self._lock:
            if self._telnyx_endpoint is None:
                self._check_running()
                from .emulator.telnyx import TelnyxEmulator  # noqa: PLC0415

                telnyx = TelnyxEmulator(self.config.emulator).start()
                self._telnyx = telnyx
                self._emulated_key(TelnyxProviderConfig, self._keys.telnyx, telnyx.public_key)
                self._telnyx_endpoint = RestEndpoint(
                    telnyx.url, telnyx.connection_id, telnyx.api_key
                )
            return self._telnyx_endpoint

    def plivo_emulator(self) -> RestEndpoint:
        with self._lock:
            if self._plivo_endpoint is None:
                self._check_running()
                from .emulator.plivo import PlivoEmulator  # noqa: PLC0415

                plivo = PlivoEmulator(self.config.emulator).start()
                self._plivo = plivo
                self._emulated_key(PlivoProviderConfig, self._keys.plivo, plivo.auth_token)
                self._plivo_endpoint = RestEndpoint(plivo.url, plivo.auth_id, plivo.auth_token)
            return self._plivo_endpoint

    def webhook(self) -> WebhookServer:
        """The webhook server (``inbound:``), started on first use; ``ConfigError`` when
        ``inbound.enabled`` is false."""
        if not self.config.inbound.enabled:
            raise ConfigError(
                "the webhook is off: inbound calls need it", key_path="inbound.enabled"
            )
        # Outside the lock: the emulator (whose account the webhook answers for) starts there.
        accounts, providers = self._webhook_accounts()
        with self._lock:
            if self._webhook is None:
                self._check_running()
                self._webhook = self._start_webhook(accounts, providers)
            return self._webhook

    def reattach_url(self, session_id: str, route: str = "/twilio/voice") -> str | None:
        """The webhook's ``route`` (Twilio's voice URL by default, or another provider's:
        :mod:`actors.webhooks.routes`) with ``?reattach=`` for the session, when a cluster
        wants calls back after their stream ends (``reattach``); else ``None``."""
        if not self.reattach:
            return None
        return f"{self.webhook().public_url}{route}?reattach={session_id}"

    def webhook_started(self) -> WebhookServer | None:
        """The webhook server if it runs (for metrics: never starts it)."""
        return self._webhook

    def progress_urls(self, config: TwilioProviderConfig) -> ProgressUrls | None:
        """Where a call of ``config`` reports its progress: the webhook, when it is on and
        Twilio can reach it (the emulator always can; the real one through ``public_url``)."""
        inbound = self.config.inbound
        if not inbound.enabled:
            return None
        if config.api_base_url != "emulator" and inbound.public_url is None:
            return None
        from .webhooks.server import AMD_PATH, STREAM_PATH  # noqa: PLC0415

        webhook = self.webhook()
        public = webhook.public_url
        return ProgressUrls(webhook.status_url, public + AMD_PATH, public + STREAM_PATH)

    def dial_in(
        self,
        to: str = "+15550100",
        from_: str = "+15550177",
        *,
        caller_name: str | None = None,
        forwarded_from: str | None = None,
    ) -> str:
        """Place an emulated inbound call to this service's webhook, as Twilio would when
        ``from_`` dials ``to``; the call's sid. (The embedded emulator's; for demos and tests:
        ``caller_name``, ``forwarded_from`` may be given.)"""
        webhook = self.webhook()
        self.twilio_emulator()
        emulator = self._emulator
        assert emulator is not None
        call = emulator.place_inbound_call(
            to,
            from_,
            voice_url=webhook.voice_url,
            caller_name=caller_name,
            forwarded_from=forwarded_from,
        )
        return call.sid

    @property
    def running(self) -> dict[str, Running]:
        """The components started so far, by name (for tests and the CLI)."""
        with self._lock:
            found = {
                "gateway": self._gateway,
                "emulator": self._emulator,
                "daily": self._daily,
                "vonage": self._vonage,
                "exotel": self._exotel,
                "telnyx": self._telnyx,
                "plivo": self._plivo,
                "webhook": self._webhook,
            }
        return {name: thing for name, thing in found.items() if thing is not None}

    def gateway_stats(self) -> GatewayStats | None:
        """The embedded gateway's counters (for metrics), or None while it is not running."""
        gateway = self._gateway  # one attribute read: no lock, so a scrape never waits on a start
        return None if gateway is None else gateway.stats()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            gateway, emulator, daily = self._gateway, self._emulator, self._daily
            others = (self._vonage, self._exotel, self._telnyx, self._plivo)
            webhook, self._webhook = self._webhook, None
            self._gateway = self._emulator = self._daily = None
            self._vonage = self._exotel = self._telnyx = self._plivo = None
        if daily is not None:
            daily.stop()
        for other in others:  # their calls end while the gateway can still relay it
            if other is not None:
                other.stop()
        if webhook is not None:  # before the emulators: calls waiting in it are refused, not
            webhook.stop()  # left hanging
        # The Twilio emulator before the gateway: its calls hang up while the gateway can
        # still relay the news.
        if emulator is not None:
            emulator.stop()
        if gateway is not None:
            gateway.stop()

    def _check_running(self) -> None:
        if self._stopped:
            raise RuntimeError("the service's infrastructure has been stopped")

    def _start_gateway(self) -> GatewayEndpoint:
        self._check_running()
        gw = self.config.gateway
        if not gw.embedded:
            if gw.url is None or not gw.secret:
                missing = "gateway.url" if gw.url is None else "gateway.secret"
                raise ConfigError(
                    "required when gateway.embedded is false (the standalone gateway's "
                    + ("address" if gw.url is None else "shared secret")
                    + ")",
                    file=self.config.source,
                    key_path=missing,
                )
            return GatewayEndpoint(
                url=gw.url,
                public_url=gw.public_url or gw.url,
                secret=gw.secret,
                resume_frames=gw.buffer_frames,
                exotel_auth=gw.exotel_basic_auth,  # issue 16
            )
        from .gateway.server import MediaGateway  # noqa: PLC0415 (websockets only when needed)

        gateway = MediaGateway(gw, inbound=self._stream_desk()).start()
        self._gateway = gateway
        return GatewayEndpoint(
            url=gateway.url,
            public_url=gateway.public_url,
            secret=gateway.secret,
            resume_frames=gw.buffer_frames,
            exotel_auth=gw.exotel_basic_auth,  # issue 16
        )

    def _stream_desk(self, queue_of: Callable[[], InboundQueue | None] | None = None) -> StreamDesk:
        """Where calls that dial the gateway with no session (Exotel's applet) go: the
        webhook's inbound queue, as a webhook's call (issue 16). The embedded gateway's desk
        starts the webhook if need be; the webhook's own (``/exotel/inbound``, a standalone
        gateway's) passes ``queue_of``."""
        from .webhooks.streamed import StreamDesk  # noqa: PLC0415

        entries = {
            name: "exotel"
            for name, provider in self.config.providers.items()
            if isinstance(provider, ExotelProviderConfig)
        }

        def started_queue() -> InboundQueue | None:
            try:
                return self.webhook().queue
            except (ConfigError, RuntimeError):  # the webhook is off, or the service stopped
                return None

        return StreamDesk(
            queue_of or started_queue,
            entries,
            lambda: bool(getattr(self.hooks, "draining", False)),
        )

    def _start_emulator(self) -> RestEndpoint:
        self._check_running()
        from .emulator.phone import TwilioEmulator  # noqa: PLC0415

        token = secrets.token_urlsafe(24)
        emulator = TwilioEmulator(self.config.emulator, {EMULATOR_ACCOUNT_SID: token}).start()
        self._emulator = emulator
        return RestEndpoint(emulator.url, EMULATOR_ACCOUNT_SID, token)

    def _start_daily(self) -> DailyEndpoint:
        self._check_running()
        from .emulator.daily_sdk import DailyEmulator  # noqa: PLC0415

        # Beside the Twilio emulator's host, on a port of its own.
        host = self.config.emulator.listen.rpartition(":")[0].strip("[]")
        daily = DailyEmulator(host=host).start()
        self._daily = daily
        return DailyEndpoint(daily.api_url, daily.api_key, daily.sdk)

    def _webhook_accounts(self) -> tuple[dict[str, str], dict[str, str]]:
        """The accounts whose webhooks are signed with a token we know: AccountSid -> auth
        token, and AccountSid -> provider name."""
        accounts: dict[str, str] = {}
        providers: dict[str, str] = {}
        for name, provider in self.config.providers.items():
            if not isinstance(provider, TwilioProviderConfig):
                continue
            if provider.api_base_url == "emulator":
                endpoint = self.twilio_emulator()
                sid, token = endpoint.account_sid, endpoint.auth_token
            elif provider.account_sid and provider.auth_token:
                sid, token = provider.account_sid, provider.auth_token
            else:
                logger.warning(
                    "webhook: providers.%s has no auth_token: its calls cannot be verified "
                    "and are refused (403)",
                    name,
                )
                continue
            accounts.setdefault(sid, token)
            providers.setdefault(sid, name)
        return accounts, providers

    def _start_webhook(self, accounts: dict[str, str], providers: dict[str, str]) -> WebhookServer:
        from .webhooks.inbound import InboundQueue, InboundSettings  # noqa: PLC0415
        from .webhooks.server import WebhookConfig, WebhookServer  # noqa: PLC0415

        inbound = self.config.inbound
        host, _, port = inbound.listen.rpartition(":")
        settings = InboundSettings(
            max_sessions=inbound.max_sessions,
            queue_timeout_s=inbound.queue_timeout_s,
            answer_timeout_s=inbound.answer_timeout_s,
            recent_ttl_s=inbound.recent_ttl_s,
            recent_max=inbound.recent_max,
        )
        config = WebhookConfig(
            accounts=accounts,
            host=host.strip("[]"),
            port=int(port),
            public_url=inbound.public_url,
            max_body=inbound.max_body_bytes,
            max_connections=inbound.max_connections,
            request_timeout_s=inbound.request_timeout_s,
            refusal_twiml=inbound.refusal_twiml,
            keys=self._keys,
        )
        hooks = self.hooks
        webhook = WebhookServer(
            config,
            InboundQueue(settings),
            on_status=hooks.on_status if hooks else None,
            on_amd=hooks.on_amd if hooks else None,
            on_stream=hooks.on_stream if hooks else None,
            on_reattach=hooks.on_reattach if hooks else None,
            on_stream_lost=hooks.on_stream_lost if hooks else None,
            on_voice=hooks.on_voice if hooks else None,
            provider=next(iter(providers.values()), "twilio"),
            providers=providers,
        )
        gateway = self.config.gateway
        if not gateway.embedded and gateway.secret:
            # A standalone gateway posts the inbound streams it admits here, signed.
            webhook.routes.gateway_secret = gateway.secret
            webhook.routes.stream_desk = self._stream_desk(lambda: webhook.queue)
        webhook.routes.on_unanswered = hooks.on_unanswered if hooks else None
        try:
            return webhook.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the webhook there: {exc.strerror or exc}",
                file=self.config.source,
                key_path="inbound.listen",
            ) from None
