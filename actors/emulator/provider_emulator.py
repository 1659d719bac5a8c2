"""What the Telnyx, Plivo, Vonage and Exotel emulators share: an API server, a phone dialler,
a webhook sender and a timer, started and stopped together, and a wait for a call's end.

Each emulator adds its provider's own: its API's routes and callbacks, its webhooks and what
its phone speaks.
"""

from __future__ import annotations

import threading
from typing import Generic, Protocol, Self, TypeVar

from ..config import EmulatorConfig
from ..startable import Startable
from .hooks import HookSender, Later
from .media import MediaDialer
from .pcm_phone import PcmDialer

__all__ = ["EndingCall", "ProviderApi", "ProviderEmulator"]


class EndingCall(Protocol):
    """An emulated call: ``ended`` is set once it is over."""

    @property
    def ended(self) -> threading.Event: ...


CallT = TypeVar("CallT", bound=EndingCall)


class ProviderApi(Protocol[CallT]):
    """A provider's emulated API (an :class:`~actors.emulator._http.HTTPApiServer`), with the
    calls it knows by id."""

    calls: dict[str, CallT]

    @property
    def url(self) -> str: ...

    def start(self) -> object: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class ProviderEmulator(Startable, Generic[CallT]):
    """A provider's emulator: :attr:`url` is its API base URL. ``start`` starts the phone
    dialler, the webhook sender and the API (in that order, undoing the first two if the API
    fails to start); ``stop`` stops the timer, the API, the dialler and the sender.

    ``name`` names the sender's and the timer's threads (``{name}-emulator-hooks``,
    ``{name}-emulator-timer``)."""

    def __init__(
        self,
        config: EmulatorConfig,
        name: str,
        media: MediaDialer | PcmDialer,
        api: ProviderApi[CallT],
    ) -> None:
        self.config = config
        self.media = media
        self.api = api
        self._lock = threading.Lock()
        self.hooks = HookSender(f"{name}-emulator-hooks")
        self.later = Later(f"{name}-emulator-timer")

    @property
    def url(self) -> str:
        return self.api.url

    def start(self, timeout: float = 5.0) -> Self:
        self.media.start(timeout)
        self.hooks.start()
        try:
            self.api.start()
        except BaseException:
            self.hooks.stop()
            self.media.stop(timeout)
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.later.stop(timeout)
        self.api.stop(timeout)
        self.media.stop(timeout)
        self.hooks.stop(timeout)

    def call(self, call_id: str) -> CallT:
        """The call the API knows as ``call_id`` (``KeyError`` for none)."""
        with self._lock:
            return self.api.calls[call_id]

    def wait_ended(self, call_id: str, timeout: float | None = None) -> CallT:
        """Block until the call is over; the call (its ``outcome``, or for Vonage and Exotel
        its ``status``, says how)."""
        call = self.call(call_id)
        if not call.ended.wait(timeout):
            raise TimeoutError(f"call {call_id} has not ended within {timeout} s")
        return call
