"""Where a cluster's call goes: its gateway, and how its session is set up on this node.

:class:`Placed` is what ``accept_session`` needs for a call the cluster placed here (the
claimed session id and gateway, the lease epoch, and for a takeover where to resume); the
functions turn registry members and lease meta into gateway endpoints and back, and mint the
TwiML that streams a call to a gateway (:func:`stream_twiml`, the one place a cluster makes a
stream credential).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .embedded import GATEWAY_CHOICE
from .providers import GatewayEndpoint, SessionPlan
from .signing import stream_nonce, stream_token
from .webhooks.twilio import InboundCall, connect_twiml
from .wire.constants import EPOCH_HEADER

if TYPE_CHECKING:
    from .cluster import Lease, Member
    from .config import GatewayConfig
    from .session import SessionRecord

__all__ = [
    "Placed",
    "endpoint_of_member",
    "endpoint_of_meta",
    "gateway_meta",
    "offer_of",
    "on_gateway",
    "stream_twiml",
    "with_epoch",
]


@dataclasses.dataclass(slots=True)
class Placed:
    """A call the cluster placed on this node, as ``accept_session`` sets it up: its session
    id, gateway, lease epoch and, for a takeover, where to resume."""

    session_id: str
    endpoint: GatewayEndpoint | None
    epoch: int = 1
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    resume_in: int = 0  # provider frames the previous node had reported receiving
    opening: str | None = None  # the frame that started the stream there (its Started)
    # Offered from its lease: another node answered the provider (or the call streams
    # already), so this node only carries it (the provider's ``resume``, no document).
    answered: bool = False
    #: told of the session's record and the gateway its hop dials
    track: Callable[[SessionRecord, GatewayEndpoint | None], None] | None = None

    def gateway(self) -> contextlib.AbstractContextManager[None]:
        """While set up: the provider's ``gateway()`` is this call's gateway."""
        return on_gateway(self.endpoint)

    def plan(self, plan: SessionPlan) -> SessionPlan:
        return with_epoch(plan, self.epoch)

    def prepare(self, record: SessionRecord) -> None:
        """Before the first dial: resume where the previous node was (a takeover)."""
        if self.track is not None:
            self.track(record, self.endpoint)
        if not self.details.get("resumed"):
            return
        record.traffic.frames_in = self.resume_in
        if record.sent_log is not None:
            record.sent_log.adopt = True  # number our frames from the gateway's count
        codec = record.codec
        if self.opening:
            # The stream started on the other node: decoding its first frame again gives this
            # codec what every provider's learns there (Twilio's streamSid, Telnyx's stream_id,
            # Plivo's callId, Vonage's rate, Exotel's stream_sid and rate). Its Started is not
            # delivered: the application has the call from accept_session(resumed=True).
            codec.decode(self.opening)
            record.opening = self.opening
        resume_at = getattr(codec, "resume_at", None)
        if resume_at is not None:  # a codec that numbers or orders frames carries on
            resume_at(self.resume_in)


@contextlib.contextmanager
def on_gateway(endpoint: GatewayEndpoint | None) -> Iterator[None]:
    """While inside: a provider's ``gateway()`` on this thread is ``endpoint`` (``None``:
    the configured gateway), for the TwiML it makes for a call of the cluster."""
    token = GATEWAY_CHOICE.set(lambda: endpoint)
    try:
        yield
    finally:
        GATEWAY_CHOICE.reset(token)


def with_epoch(plan: SessionPlan, epoch: int) -> SessionPlan:
    """``plan`` whose hop names the lease epoch (the gateway fences older ones off)."""
    if plan.dial.resume_frames <= 0:
        return plan
    headers = {**plan.dial.headers, EPOCH_HEADER: str(epoch)}
    return dataclasses.replace(plan, dial=dataclasses.replace(plan.dial, headers=headers))


def gateway_meta(endpoint: GatewayEndpoint) -> dict[str, str]:
    """A lease's meta naming the gateway (the session URL, the public URL)."""
    return {"gw_url": endpoint.url, "gw_public": endpoint.public_url}


def endpoint_of_member(config: GatewayConfig, member: Member | None) -> GatewayEndpoint | None:
    """A registered gateway as an endpoint (the secret is the cluster's shared one)."""
    if member is None or "session" not in member.urls:
        return None
    return GatewayEndpoint(
        url=member.urls["session"],
        public_url=member.urls.get("public", member.urls["session"]),
        secret=config.secret or "",
        resume_frames=config.buffer_frames,
        exotel_auth=config.exotel_basic_auth,
    )


def endpoint_of_meta(
    config: GatewayConfig, meta: Mapping[str, str], secret: str
) -> GatewayEndpoint | None:
    """The gateway a lease's meta names (:func:`gateway_meta`), or ``None``."""
    url = meta.get("gw_url")
    if not url:
        return None
    return GatewayEndpoint(
        url=url,
        public_url=meta.get("gw_public", url),
        secret=secret,
        resume_frames=config.buffer_frames,
        exotel_auth=config.exotel_basic_auth,
    )


def stream_twiml(endpoint: GatewayEndpoint, session_id: str, voice_url: str) -> str:
    """The answer that streams a call to ``endpoint`` for ``session_id`` (a credential of its
    own: a fresh nonce), then comes back to ``voice_url?reattach=`` if the stream ends while
    the caller stays on."""
    nonce = stream_nonce()
    token = stream_token(endpoint.secret, session_id, nonce)
    parameters = {"session": session_id, "token": token, "nonce": nonce}
    stream_url = endpoint.public_url.rstrip("/") + "/twilio"
    return connect_twiml(stream_url, parameters, redirect_url=f"{voice_url}?reattach={session_id}")


def offer_of(
    lease: Lease,
    call_id: str,
    endpoint: GatewayEndpoint,
    resumed: bool,
    track: Callable[[SessionRecord, GatewayEndpoint | None], None],
) -> tuple[Placed, InboundCall]:
    """A call claimed for (or taken over by) this node, from its lease: its placement, and
    the call as the local queue offers it to ``accept_session``."""
    meta = lease.meta
    details: dict[str, Any] = {
        "direction": meta.get("direction", "outbound"),
        "from_": meta.get("from") or None,
        "to": meta.get("to") or None,
    }
    if resumed:
        details.update(resumed=True, state=lease.state)
    placed = Placed(
        lease.session_id,
        endpoint,
        lease.epoch,
        details,
        resume_in=int(meta.get("in", "0") or 0),
        opening=meta.get("opening") or None,
        answered=True,
        track=track,
    )
    call = InboundCall(
        direction=details["direction"],
        from_=meta.get("from", ""),
        to=meta.get("to", ""),
        call_id=call_id,
        account_sid=meta.get("account", ""),
    )
    return placed, call
