"""The whole emulator: Twilio's Calls API, and a phone that plays each call's media stream.

A call created through the API rings for ``emulator.answer_after_s`` (0: it is answered at
once; longer than the call's ``Timeout``: it ends ``no-answer``, as Twilio's does), then
its ``<Connect><Stream>`` is dialled and played (see :mod:`actors.emulator.media`); hanging it
up through the API sends ``stop`` and closes the stream; a stream that ends on its own (the
application closed it, or ``max_call_s``) completes the call, as a Twilio call with nothing
after ``<Connect>`` does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Self

from ..config import EmulatorConfig
from ..startable import Startable
from .media import CallMedia, MediaDialer
from .rest import EmulatedCall, TwilioApiServer

__all__ = ["TwilioEmulator"]

logger = logging.getLogger(__name__)


class TwilioEmulator(Startable):
    """A local Twilio: ``url`` is its API base URL; calls play per ``config.media``.

    ``start()`` starts the media dialer, then the API; ``stop()`` stops both (``with`` does
    the two)."""

    def __init__(self, config: EmulatorConfig, accounts: Mapping[str, str]) -> None:
        self.config = config
        host, _, port = config.listen.rpartition(":")
        self.media = MediaDialer(config, accounts)
        self.api = TwilioApiServer(
            accounts,
            host=host.strip("[]"),
            port=int(port),
            on_create=self._answer,
            on_hang_up=self._hang_up,
            name="twilio-emulator-api",
        )
        self._watchers: set[threading.Thread] = set()

    @property
    def url(self) -> str:
        return self.api.url

    def start(self) -> Self:
        self.media.start()
        try:
            self.api.start()
        except BaseException:
            self.media.stop()
            raise
        logger.info("Twilio emulator listening on %s (calls play %s)", self.url, self.config.media)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.api.stop(timeout)
        self.media.stop(timeout)

    def call_media(self, call_sid: str) -> CallMedia | None:
        """What call ``call_sid`` sent, received and played."""
        return self.media.media(call_sid)

    def _answer(self, call: EmulatedCall) -> None:
        stream = call.stream
        if stream is None:
            logger.info("emulator: call %s has no <Connect><Stream>; it ends", call.sid)
            self.api.set_status(call.sid, "completed")
            return
        self.api.set_status(call.sid, "ringing" if self.config.answer_after_s else "in-progress")
        self.media.dial(
            call_sid=call.sid,
            account_sid=call.account_sid,
            to=call.to,
            url=stream.url,
            parameters=stream.parameters,
            on_end=lambda: self._stream_ended(call.sid),
            ring_timeout_s=call.timeout_s,
            on_answer=lambda: self._answered(call.sid),
        )

    def _answered(self, call_sid: str) -> None:
        if self.config.answer_after_s:
            with contextlib.suppress(KeyError):
                self.api.set_status(call_sid, "in-progress")

    def _stream_ended(self, call_sid: str) -> None:
        media = self.media.media(call_sid)
        answered = media is None or media.answered
        try:
            if not self.api.call(call_sid).ended:
                self.api.set_status(call_sid, "completed" if answered else "no-answer")
        except KeyError:
            pass

    def _hang_up(self, call: EmulatedCall) -> None:
        self.media.hang_up(call.sid)
