"""Inbound calls that arrive as a stream at the gateway, not as a webhook: :class:`StreamDesk`.

Exotel's Voicebot applet dials the gateway's ``/exotel`` with no session (see
:mod:`actors.gateway.inbound`). The embedded gateway hands such a call, once authenticated,
to this desk, which offers it to the webhook's :class:`~actors.webhooks.inbound.InboundQueue`
exactly as a webhook thread offers a Twilio call: the same capacity (``max_sessions``), the
same two waits, the same counters, one session per call id. ``accept_session(provider=)``
takes it; the provider's ``answer`` returns the session's routing parameters (JSON), which
the desk hands back to the gateway to pair the waiting stream with.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from .twilio import InboundCall

if TYPE_CHECKING:
    from ..streamed_calls import InboundStream
    from .inbound import InboundQueue

__all__ = ["StreamDesk"]

logger = logging.getLogger(__name__)


class StreamDesk:
    """The runtime's :class:`~actors.streamed_calls.InboundDesk` (the embedded gateway's
    in-process, a standalone one's through ``/exotel/inbound``): ``queue_of()``
    is the webhook's inbound queue (``None`` when the webhook is off), ``entries`` the
    provider entries that take inbound streams (name -> type), ``draining()`` whether the
    service takes no new call."""

    def __init__(
        self,
        queue_of: Callable[[], InboundQueue | None],
        entries: Mapping[str, str],
        draining: Callable[[], bool],
    ) -> None:
        self._queue_of = queue_of
        self._entries = dict(entries)
        self._draining = draining

    def offer(self, call: InboundStream) -> Mapping[str, str] | None:
        """Offer ``call`` to the inbound queue and wait for its answer (see the module)."""
        if self._entries.get(call.entry) != call.provider:
            logger.warning("inbound call %s names no %s entry", call.call_id, call.provider)
            return None
        queue = self._queue_of()
        if queue is None:
            logger.warning("inbound call %s refused: the webhook (inbound:) is off", call.call_id)
            return None
        if self._draining():
            queue.counters.add("refused_busy")
            return None
        fields = {**call.parameters, "StreamSid": call.stream_id}
        inbound = InboundCall(
            direction="inbound",
            from_=call.from_,
            to=call.to,
            call_id=call.call_id,
            account_sid=call.account_sid,
            fields=MappingProxyType(fields),
            provider=call.provider,
        )
        arrived = time.monotonic()
        answer = queue.offer(inbound, "", provider=call.entry, arrived_at=arrived)
        if answer.outcome not in ("accepted", "duplicate") or answer.session_id is None:
            logger.warning("%s call %s refused: %s", call.entry, call.call_id, answer.outcome)
            return None
        routing = _routing(answer.body)
        if routing is None:
            logger.error("%s call %s: the answer names no session", call.entry, call.call_id)
            return None
        took = (time.monotonic() - arrived) * 1000
        logger.info(
            "%s call %s answered: session %s (%.0f ms)",
            call.entry,
            call.call_id,
            answer.session_id,
            took,
        )
        return routing

    def abandon(self, call: InboundStream) -> None:
        """The caller left before an answer: the call is over (counted ``abandoned``)."""
        queue = self._queue_of()
        if queue is not None:
            queue.ended(call.call_id)


def _routing(body: str) -> dict[str, str] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    routing = {k: v for k, v in data.items() if k in ("session", "token") and isinstance(v, str)}
    return routing if len(routing) == 2 else None
