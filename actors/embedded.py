"""What a service runs for its providers: the media gateway, the Twilio, Daily, Telnyx and
Plivo emulators.

Each starts on first use (the first Twilio session; the first Daily session with
``api_base_url: emulator``), so a service that only carries plain WebSocket sessions runs none.
The embedded default needs no accounts: the emulators are given a made-up account (or API key)
and a random secret, and the gateway a random secret, for this process only. A deployment
with a standalone gateway (``gateway.embedded: false``) names its ``url`` and shares its
``secret`` instead.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import TYPE_CHECKING

from .config import TransportConfig
from .errors import ConfigError
from .providers import DailyEndpoint, ExotelEndpoint, GatewayEndpoint, RestEndpoint, VonageEndpoint

if TYPE_CHECKING:  # both import websockets: loaded only when a Twilio session needs them
    from .emulator.daily_sdk import DailyEmulator
    from .emulator.exotel import ExotelEmulator
    from .emulator.phone import TwilioEmulator
    from .emulator.plivo import PlivoEmulator
    from .emulator.telnyx import TelnyxEmulator
    from .emulator.vonage import VonageEmulator
    from .gateway.server import GatewayStats, MediaGateway

    Running = (
        MediaGateway
        | TwilioEmulator
        | DailyEmulator
        | VonageEmulator
        | ExotelEmulator
        | TelnyxEmulator
        | PlivoEmulator
    )

__all__ = ["EMULATOR_ACCOUNT_SID", "EmbeddedInfrastructure"]

logger = logging.getLogger(__name__)

EMULATOR_ACCOUNT_SID = "AC" + "0" * 32  # the emulator's only account; not a real one


class EmbeddedInfrastructure:
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
        self._stopped = False

    def gateway(self) -> GatewayEndpoint:
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
                self._plivo_endpoint = RestEndpoint(plivo.url, plivo.auth_id, plivo.auth_token)
            return self._plivo_endpoint

    @property
    def running(
        self,
    ) -> dict[str, Running]:
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
            self._gateway = self._emulator = self._daily = None
            self._vonage = self._exotel = self._telnyx = self._plivo = None
        if daily is not None:
            daily.stop()
        for other in others:  # their calls end while the gateway can still relay it
            if other is not None:
                other.stop()
        # The emulator first: its calls hang up while the gateway can still relay the news.
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

        gateway = MediaGateway(gw).start()
        self._gateway = gateway
        return GatewayEndpoint(
            url=gateway.url,
            public_url=gateway.public_url,
            secret=gateway.secret,
            resume_frames=gw.buffer_frames,
            exotel_auth=gw.exotel_basic_auth,  # issue 16
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
