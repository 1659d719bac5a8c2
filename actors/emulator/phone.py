"""The whole emulator: Twilio's Calls API, the calls' progress, and a phone that plays each
call's media stream.

A call created through the API is ``initiated``, rings for ``emulator.answer_after_s`` (or as
its number's behaviour says: ``emulator.behaviours``, :mod:`actors.emulator.numbers`), is
answered (or ends busy, no-answer, failed), then obeys its TwiML (:mod:`actors.emulator.calls`):
its ``<Connect><Stream>`` is dialled and played (:mod:`actors.emulator.media`); hanging it up
through the API sends ``stop`` and closes the stream; a stream that ends on its own (the
application closed it) goes on to the next verb, and with none the call completes, as a Twilio
call does. Status callbacks go out signed, in order (:mod:`actors.emulator.callbacks`).

:meth:`TwilioEmulator.place_inbound_call` (or ``POST`` :data:`~actors.emulator.rest.INBOUND_PATH`
on the API) makes the emulator a caller: it asks a voice URL, signed, and obeys its TwiML.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Self

from ..config import EmulatorConfig
from ..startable import Startable
from .callbacks import WEBHOOK_TIMEOUT_S, CallbackSender
from .calls import AMD_S, CallFlows
from .inbound import inbound_call
from .media import CallMedia, MediaDialer
from .rest import EmulatedCall, TwilioApiServer

__all__ = ["TwilioEmulator"]

logger = logging.getLogger(__name__)


class TwilioEmulator(Startable):
    """A local Twilio: ``url`` is its API base URL; calls play per ``config.media``.

    ``webhook_timeout_s`` bounds every request the emulator makes (TwiML fetches, callbacks;
    Twilio's 15 s by default); ``amd_s`` is how long machine detection takes.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        accounts: Mapping[str, str],
        *,
        webhook_timeout_s: float = WEBHOOK_TIMEOUT_S,
        amd_s: float = AMD_S,
    ) -> None:
        self.config = config
        self._accounts = dict(accounts)
        host, _, port = config.listen.rpartition(":")
        self.media = MediaDialer(config, accounts)
        self.sender = CallbackSender(accounts, timeout_s=webhook_timeout_s)
        self.api = TwilioApiServer(
            accounts,
            host=host.strip("[]"),
            port=int(port),
            name="twilio-emulator-api",
            default_voice_url=config.voice_url,
        )
        self.flows = CallFlows(config, self.api, self.media, self.sender, amd_s=amd_s)
        self.api.on_create = self.flows.created
        self.api.on_hang_up = self.flows.hung_up
        self.api.on_update = self.flows.updated
        self.api.on_inbound = self.flows.inbound
        self.api.on_status = self.flows.status_changed

    @property
    def url(self) -> str:
        return self.api.url

    def start(self) -> Self:
        started: list[MediaDialer | CallbackSender | CallFlows] = []
        try:
            for part in (self.media, self.sender, self.flows):
                part.start()
                started.append(part)
            self.api.start()
        except BaseException:
            for part in reversed(started):
                part.stop()
            raise
        logger.info("Twilio emulator listening on %s (calls play %s)", self.url, self.config.media)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.api.stop(timeout)
        self.media.stop(timeout)  # the streams end first: their calls complete
        self.flows.stop(timeout)
        self.sender.stop(timeout)

    def call_media(self, call_sid: str) -> CallMedia | None:
        """What call ``call_sid`` sent, received and played (its latest stream)."""
        return self.media.media(call_sid)

    def place_inbound_call(
        self,
        to: str,
        from_: str,
        *,
        voice_url: str | None = None,
        method: str = "POST",
        account_sid: str | None = None,
        caller_name: str | None = None,
        forwarded_from: str | None = None,
        status_callback: str | None = None,
        status_callback_events: tuple[str, ...] = (),
    ) -> EmulatedCall:
        """Call ``to`` (a number of ``account_sid``: the first account by default) from
        ``from_``: ask ``voice_url`` (default ``emulator.voice_url``) as Twilio does, signed
        under the account's auth token, and obey the TwiML it answers. Returns at once; the
        call's progress is on the returned call (and :meth:`wait_ended`)."""
        url = voice_url or self.config.voice_url
        if not url:
            raise ValueError("no voice URL: pass voice_url or configure emulator.voice_url")
        account = account_sid or next(iter(self._accounts))
        if account not in self._accounts:
            raise ValueError(f"account {account!r} is not one of the emulator's")
        call = inbound_call(
            account,
            to,
            from_,
            url,
            method=method,
            caller_name=caller_name,
            forwarded_from=forwarded_from,
            status_callback=status_callback,
            status_callback_events=status_callback_events,
        )
        self.api.add_call(call)
        self.flows.inbound(call)
        logger.info("emulator: inbound call %s: %s -> %s", call.sid, from_, to)
        return call

    def wait_ended(self, call_sid: str, timeout: float | None = None) -> EmulatedCall:
        """Block until call ``call_sid`` is over (it has ended and obeys nothing more); the
        call. ``TimeoutError`` if it is not within ``timeout`` seconds."""
        if not self.flows.done(call_sid).wait(timeout):
            raise TimeoutError(f"call {call_sid} has not ended within {timeout} s")
        return self.api.call(call_sid)
