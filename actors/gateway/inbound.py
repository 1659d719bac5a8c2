"""Inbound streams: a provider stream that arrives with no session is a new inbound call.

Exotel has no voice webhook: a Voicebot applet in the call's flow dials the gateway's
``/exotel`` itself, so the gateway is where such a call is discovered. Its URL carries no
session but ``inbound=<provider entry>`` and that entry's standing **inbound token**
(:func:`actors.signing.inbound_token`). Once the stream is authenticated (Basic auth, when
the gateway has Exotel credentials; then the inbound token, under the gateway's secret), the
gateway hands the call to its :class:`~actors.streamed_calls.InboundDesk`, which offers it
to the runtime's inbound queue and blocks until an application thread accepts it
(``accept_session``) or it is refused (capacity, the queue timeout): the answer is the
session's routing parameters (``session`` and its stream token), with which the stream
pairs as any other. A refused call gets its stream closed (1000), which hands it back to
Exotel's flow.

The embedded gateway's desk is the runtime's own (:class:`~actors.webhooks.streamed.StreamDesk`,
in-process); a standalone gateway's is :class:`HttpDesk`, which posts the call, signed, to
the runtime's webhook (``gateway.inbound_url`` + ``/exotel/inbound``). The desk runs on a
thread of its own per call (it blocks for at most the inbound queue's two timeouts); the
gateway's loop goes on reading the stream meanwhile and drops its audio (the caller's, from
before anyone answered), and tells the desk if the caller hangs up first.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Final

from ..streamed_calls import SIGNATURE_HEADER, InboundDesk, InboundStream, desk_request

__all__ = ["DESK_PATH", "HttpDesk", "InboundDesk", "InboundStream"]

logger = logging.getLogger("actors.gateway.server")  # one logger for the whole gateway

#: The runtime webhook's route for a standalone gateway's inbound streams.
DESK_PATH: Final = "/exotel/inbound"
#: Longer than the runtime's two inbound waits may add up to (under 14 s).
_OFFER_TIMEOUT_S: Final = 20.0
_ABANDON_TIMEOUT_S: Final = 5.0


class HttpDesk:
    """A standalone gateway's desk: each call posted, signed under ``secret``, to the
    runtime webhook at ``base_url`` (its ``/exotel/inbound``), which answers once the call
    is accepted (``200``, the routing JSON) or refused (``409``)."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.url = base_url.rstrip("/") + DESK_PATH
        self._secret = secret

    def offer(self, call: InboundStream) -> Mapping[str, str] | None:
        reply = self._post("offer", call, _OFFER_TIMEOUT_S)
        if reply is None:
            return None
        try:
            data = json.loads(reply)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            logger.error("inbound call %s: the runtime's answer is not JSON", call.call_id)
            return None
        routing = {k: v for k, v in data.items() if k in ("session", "token")}
        if len(routing) != 2 or not all(isinstance(v, str) for v in routing.values()):
            logger.error("inbound call %s: the runtime's answer names no session", call.call_id)
            return None
        return routing

    def abandon(self, call: InboundStream) -> None:
        self._post("abandon", call, _ABANDON_TIMEOUT_S)

    def _post(self, action: str, call: InboundStream, timeout: float) -> bytes | None:
        body, signature = desk_request(self._secret, action, call, time.time())
        request = urllib.request.Request(  # noqa: S310 (the configured http(s) inbound_url)
            self.url,
            data=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return bytes(response.read(4096))
        except urllib.error.HTTPError as error:
            if error.code != 409:  # 409: refused (busy, no answer): said by the runtime
                logger.warning("inbound call %s: the runtime answered %d", call.call_id, error.code)
            error.close()
        except (OSError, ValueError) as exc:
            logger.warning(
                "inbound call %s: the runtime's webhook could not be reached (%s)",
                call.call_id,
                type(exc).__name__,
            )
        return None
