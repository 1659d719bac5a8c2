"""Inbound streams: a provider stream that arrives with no session is a new inbound call.

Exotel has no voice webhook: a Voicebot applet in the call's flow dials the gateway's
``/exotel`` itself, so the gateway is where such a call is discovered. Its URL carries no
session but ``inbound=<provider entry>`` and that entry's standing **inbound token**
(:func:`actors.signing.inbound_token`). Once the stream is authenticated (Basic auth, when
the gateway has Exotel credentials; then the inbound token, under the gateway's secret), the
gateway hands the call to its :class:`InboundDesk`, which offers it to the runtime's inbound
queue and blocks until an application thread accepts it (``accept_session``) or it is
refused (capacity, the queue timeout): the answer is the session's routing parameters
(``session`` and its stream token), with which the stream pairs as any other. A refused call
gets its stream closed (1000), which hands it back to Exotel's flow.

The desk runs on a thread of its own per call (it blocks for at most the inbound queue's two
timeouts); the gateway's loop goes on reading the stream meanwhile and drops its audio (the
caller's, from before anyone answered), and tells the desk if the caller hangs up first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

__all__ = ["InboundDesk", "InboundStream"]


@dataclass(frozen=True, slots=True)
class InboundStream:
    """A call that arrived as a provider stream with no session: ``provider`` is the stream's
    kind (``exotel``), ``entry`` the provider entry its inbound token is for; ``parameters``
    are the stream's custom parameters (the inbound token left out)."""

    provider: str
    entry: str
    call_id: str
    from_: str
    to: str
    account_sid: str = ""
    stream_id: str = ""
    parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class InboundDesk(Protocol):
    """Where the gateway hands inbound streams (the embedded gateway's: the runtime's inbound
    queue, :class:`actors.embedded.StreamDesk`). Both methods run on a thread of their own."""

    def offer(self, call: InboundStream) -> Mapping[str, str] | None:
        """Block until ``call`` is accepted (the session's routing parameters: ``session``
        and ``token``) or refused (``None``)."""
        ...

    def abandon(self, call: InboundStream) -> None:
        """The stream ended before ``call`` was answered: it is over."""
        ...
