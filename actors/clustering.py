"""A :class:`~actors.service.TransportService` as a runtime node of a cluster (``cluster:``).

:class:`NodeCluster` is what the service runs when its config has a ``cluster`` section; without
one the service never imports this module (nor redis). It starts with the service: the node
registers (kind ``node``, its voice webhook's URL, its capacity), so that inbound calls and
orphans can be placed on it before the application first calls ``accept_session``.

- **Outbound** (:meth:`NodeCluster.placing`, :meth:`NodeCluster.leased`): the session's gateway
  is the least-loaded healthy one in the registry (``pick_gateway``; none registered: the
  configured one); the TwiML names its public URL, the connector dials its session URL with
  the lease epoch (``X-Session-Epoch``, so that a node that lost the session is fenced off);
  once connected the session is leased with its meta (provider, call, gateway, direction,
  numbers), and released when it ends.
- **Inbound** (:meth:`NodeCluster.on_voice`, on the webhook's thread, on any node): the call is
  claimed for the least-loaded node with room (``claim_inbound``). Claimed for this node: the
  local queue answers it as without a cluster, with the claimed session id and gateway.
  Claimed for another: answered at once with the TwiML that streams it to the chosen gateway
  for the claimed session; that node is offered it (``on_offer``) and its ``accept_session``
  returns it. Every node full or draining: the configured refusal.
- **Takeover** (``on_orphan``): a session whose node stopped renewing its lease is offered to
  ``accept_session`` here with ``resumed=True``, its meta and the state its application last
  saved. The connector resumes the hop at the count of provider frames the dead node had
  reported (``X-Resume-From``; progress is merged into the lease's meta every
  ``lease_renew_s``, with the frame that started the provider's stream, which the new
  node's codec decodes again to learn what it says: stream id, format, call id): what the
  dead node received after its last report is delivered again (at most one report period
  of audio, duplicated, never lost while the gateway still holds it:
  ``gateway.buffer_frames``). Its first hop adopts the gateway's count of session frames
  (``X-Gateway-Received``) as its own numbering. The call is carried with its provider's
  ``resume`` (the plan, no answer document), whatever the provider.
- **Lost** (``on_lost``, or a hop closed 4409 ``SESSION_FENCED``): another node holds the session;
  it ends here quietly: the call is not hung up.
- **A gateway dies** (:meth:`NodeCluster.on_reattach`, on any node): the call's stream ends,
  and the call comes back to a webhook its answer named (``?reattach=<session>``): Twilio's and
  Telnyx TeXML's ``<Redirect>`` after ``<Connect>``, Plivo's ``<Redirect>`` after ``<Stream
  keepCallAlive>``, Vonage's synchronous ``eventUrl`` (its websocket's ``disconnected``); it
  gets its provider's document (``restream``) that streams it, for the same session, to
  another healthy gateway, with a credential of its own. A Telnyx Call Control call (no
  document after its stream) is streamed again over REST on its ``streaming.stopped`` webhook
  (:meth:`NodeCluster.on_stream_lost`). The lease's meta names the new gateway, and the
  session's node (which polls the meta of its sessions whose hop is down) points the
  connector's next redial at it. An Exotel call cannot be streamed again: its session ends
  (:data:`GATEWAY_LOST`) once its gateway has left the registry.
- **Call control**: the node keeps the gateway each of its sessions is on now (placed, taken
  over from the lease's meta, moved), and the re-stream after ``send_dtmf`` names it
  (:meth:`NodeCluster.gateway_of`): the new stream goes where the session's hop redials.
- Offers (claims and takeovers) go through the webhook's
  :class:`~actors.webhooks.inbound.InboundQueue` from a thread each, so that the queue's
  bounds hold for them: one that no ``accept_session`` takes within
  ``inbound.queue_timeout_s`` is hung up and released.

Nothing here runs on an actor's thread or waits on Redis there: the member's writes are queued
(:class:`~actors.cluster.ClusterMember`), and the progress thread only reads counters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .calls import end_now
from .cluster import ClusterMember, Lease, Member, least_loaded
from .embedded import GATEWAY_CHOICE
from .errors import ClusterUnavailable, ConfigError, TransportError
from .lifecycle import SessionState
from .placement import (
    Placed,
    endpoint_of_member,
    endpoint_of_meta,
    gateway_meta,
    offer_of,
    on_gateway,
    stream_twiml,
    with_epoch,
)
from .providers import GatewayEndpoint
from .webhooks.inbound import Answer
from .webhooks.twilio import InboundCall
from .wire.constants import SESSIONS_PATH, CloseCode

if TYPE_CHECKING:
    from .config import TransportConfig
    from .embedded import EmbeddedInfrastructure
    from .providers import Provider
    from .session import SessionRecord

__all__ = ["GATEWAY_LOST", "NodeCluster", "Placed", "with_epoch"]

logger = logging.getLogger(__name__)

_FENCED = int(CloseCode.SESSION_FENCED)
#: The reason a session ends with (``Close(1000, ...)``) when its gateway died and its
#: provider has no way to stream the call to another (Exotel).
GATEWAY_LOST = "gateway lost"
#: The largest opening frame kept with a lease (a start frame is a few hundred bytes).
_OPENING_MAX = 8192
_NOT_TAKEN = frozenset({"refused_timeout", "refused_failed", "refused_busy", "replayed"})


def _same_call(lease: Lease, call: InboundCall) -> bool:
    """Whether a request that comes back for a session is about the session's call. (The
    session id is unguessable and the request is signed by its provider; this is a second
    check.) Plivo's call we placed is leased under its ``RequestUUID``; Vonage posts its
    websocket leg's events, whose ``uuid`` is the leg's own, not the call's."""
    if lease.call_id is None or call.provider == "vonage":
        return True
    return lease.call_id in (call.call_id, call.fields.get("RequestUUID"))


class NodeCluster:
    """This service's membership of the cluster (see the module docstring)."""

    def __init__(
        self,
        config: TransportConfig,
        infrastructure: EmbeddedInfrastructure,
        *,
        provider_of: Callable[[str], Provider],
        end_quietly: Callable[[str], None],
    ) -> None:
        cluster = config.cluster
        assert cluster is not None
        config.check_cluster_node()
        if not config.gateway.secret and not config.gateway.embedded:
            raise ConfigError(
                "a cluster's nodes share it with its gateways", key_path="gateway.secret"
            )
        self.config = config
        self._infra = infrastructure
        self._provider_of = provider_of
        self._end_quietly = end_quietly
        self._lock = threading.Lock()
        self._placed: dict[str, Placed] = {}  # by call id: claimed here, not yet accepted
        self._local: dict[str, bool] = {}  # session ids our webhook claims: ended yet?
        self._tracked: dict[str, SessionRecord] = {}  # live clustered sessions of this node
        # The gateway each of them is on now (its hop dials it): what its TwiML names.
        self._gateways: dict[str, GatewayEndpoint] = {}
        self._lost: set[str] = set()  # sessions another node took: end without hanging up
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self.takeovers = 0
        webhook = infrastructure.webhook() if config.inbound.enabled else None
        infrastructure.reattach = webhook is not None  # outbound calls come back too
        if webhook is not None:
            webhook.routes.mint = self._mint_answer
        urls = {"webhook": webhook.voice_url} if webhook is not None else {}
        self.member = ClusterMember(
            cluster,
            kind="node",
            urls=urls,
            on_offer=self._on_offer,
            on_orphan=self._on_orphan,
            on_lost=self._on_lost,
        ).start()
        self._progress = threading.Thread(
            target=self._progress_loop, name="cluster-progress", daemon=True
        )
        self._progress.start()

    @property
    def node_id(self) -> str:
        return self.member.node_id

    # -- outbound ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def placing(self, chosen: list[GatewayEndpoint]) -> Iterator[None]:
        """While a session is set up: a provider that asks for a gateway gets one from the
        registry (picked once, and appended to ``chosen``). ``ClusterUnavailable`` from the
        provider's ``open`` when Redis is down (``on_redis_down: fail``)."""

        def choose() -> GatewayEndpoint | None:
            if not chosen:
                chosen.append(self._gateway_for(self.member.pick_gateway()))
            return chosen[0]

        token = GATEWAY_CHOICE.set(choose)
        try:
            yield
        finally:
            GATEWAY_CHOICE.reset(token)

    def leased(
        self, record: SessionRecord, provider: str, endpoint: GatewayEndpoint, **meta: str | None
    ) -> None:
        """A session created here through ``endpoint`` is live: lease it (queued)."""
        fields = {k: v for k, v in meta.items() if v is not None}
        fields.update(gateway_meta(endpoint), provider=provider, call=record.call_id or "")
        self.member.register_session(record.session_id, fields, call_id=record.call_id)
        self.started(record, endpoint)

    def _gateway_for(self, member: Member | None) -> GatewayEndpoint:
        found = endpoint_of_member(self.config.gateway, member)
        if found is not None:
            return found
        token = GATEWAY_CHOICE.set(None)  # none registered: the configured gateway
        try:
            return self._infra.gateway()
        finally:
            GATEWAY_CHOICE.reset(token)

    # -- a gateway died: the call comes back to a webhook ---------------------------------------

    def on_reattach(self, call: InboundCall) -> str | None:
        """The call's stream ended and the caller is still on (its gateway died): the
        document (its provider's: TwiML, TeXML, Plivo XML, an NCCO) that streams it again,
        for the same session, to another healthy gateway; ``None`` (hang up) when the session
        is over, the cluster cannot say where it is, or its provider cannot stream a call
        again (Exotel)."""
        sid = call.reattach
        assert sid is not None
        lease, endpoint = self._regateway(sid, lambda lease: _same_call(lease, call))
        if lease is None or endpoint is None:
            return None
        name = lease.meta.get("provider", "twilio")
        restream = getattr(self._provider_of(name), "restream", None)
        if restream is None:
            logger.warning("session %s: a %s call cannot be streamed again", sid, name)
            return None
        token = GATEWAY_CHOICE.set(lambda: endpoint)
        try:
            document: str = restream(sid)
        finally:
            GATEWAY_CHOICE.reset(token)
        self._count("reattached")
        logger.info("session %s: call %s streamed again to %s", sid, call.call_id, endpoint.url)
        if lease.node_id == self.node_id:
            self._move(sid, endpoint)
        return document

    def on_stream_lost(self, provider: str, call_id: str, session_id: str) -> bool:
        """A call we placed whose stream ended while it goes on, where no document runs after
        the stream (Telnyx Call Control: its ``streaming.failed``/``streaming.stopped``
        webhook): stream it again over REST (the provider's ``restart_stream``) to another
        healthy gateway. Whether it was."""
        lease, endpoint = self._regateway(
            session_id, lambda lease: lease.call_id in (None, call_id)
        )
        if lease is None or endpoint is None:
            return False
        restart = getattr(
            self._provider_of(lease.meta.get("provider", provider)), "restart_stream", None
        )
        if restart is None:
            return False
        token = GATEWAY_CHOICE.set(lambda: endpoint)
        try:
            restarted = bool(restart(session_id, call_id))
        except TransportError as exc:
            logger.warning("session %s: its stream could not be restarted: %s", session_id, exc)
            return False
        finally:
            GATEWAY_CHOICE.reset(token)
        if restarted:
            self._count("reattached")
            logger.info(
                "session %s: call %s streams again to %s", session_id, call_id, endpoint.url
            )
            if lease.node_id == self.node_id:
                self._move(session_id, endpoint)
        return restarted

    def _regateway(
        self, sid: str, same: Callable[[Lease], bool]
    ) -> tuple[Lease | None, GatewayEndpoint | None]:
        """The session's lease and another healthy gateway for its call, now named in the
        lease's meta (the session's node follows it); ``(None, None)`` when there is no
        such lease, it is not for this call (``same``), or Redis cannot say."""
        try:
            lease = self.member.lease(sid)
            if lease is None or not same(lease):
                return None, None
            old = lease.meta.get("gw_url")
            gateways = self.member.members("gateway")
            # The dead one may still be listed (until its TTL): another, if there is one.
            member = least_loaded(g for g in gateways if g.urls.get("session") != old)
            endpoint = self._gateway_for(member or least_loaded(gateways))
            self.member.merge_meta(sid, gateway_meta(endpoint))
        except ClusterUnavailable as exc:
            logger.warning("session %s: cannot move its call: %s", sid, exc.reason)
            return None, None
        return lease, endpoint

    def _mint_answer(self, provider: str, session_id: str, public_url: str) -> str | None:
        """The answer of a call another node placed, asked of this node (Plivo asks the answer
        URL of the call, which a balancer may send to any node): streamed to the gateway the
        URL names, with a credential of its own. The application's own parameters are known
        to the placing node only: only its answer carries them."""
        restream = getattr(self._provider_of(provider), "restream", None)
        if restream is None or not public_url.startswith(("ws://", "wss://")):
            return None
        secret = self.config.gateway.secret or self._infra.gateway().secret
        endpoint = GatewayEndpoint(url=public_url, public_url=public_url, secret=secret)
        token = GATEWAY_CHOICE.set(lambda: endpoint)
        try:
            document: str = restream(session_id)
        finally:
            GATEWAY_CHOICE.reset(token)
        logger.info("session %s: answered here for the node that placed its call", session_id)
        return document

    def _move(self, session_id: str, endpoint: GatewayEndpoint) -> None:
        """Point the session's next redial at ``endpoint`` (its gateway moved)."""
        with self._lock:
            record = self._tracked.get(session_id)
            if record is not None:
                self._gateways[session_id] = endpoint
        if record is None or record.dial.url.startswith(endpoint.url.rstrip("/") + "/"):
            return
        path = record.dial.url.split(SESSIONS_PATH, 1)[-1]
        record.dial = dataclasses.replace(
            record.dial, url=endpoint.url.rstrip("/") + SESSIONS_PATH + path
        )
        self.member.update_meta(session_id, gateway_meta(endpoint))
        logger.info("session %s: its gateway is now %s", session_id, endpoint.url)

    def _follow_moves(self, tracked: list[tuple[str, SessionRecord]]) -> None:
        """Sessions whose hop is down: has another node moved their call to a new gateway?
        A session whose provider cannot stream a call again (Exotel: its stream ended with
        the gateway, and so did the call) ends once its gateway has left the registry."""
        for sid, record in tracked:
            if record.state is not SessionState.RECONNECTING:
                continue
            try:
                lease = self.member.lease(sid)
                movable = hasattr(self._provider_of(record.provider), "restream")
                gateways = () if movable else self.member.members("gateway")
            except ClusterUnavailable:
                return
            endpoint = None if lease is None else self._endpoint_from(lease.meta)
            if endpoint is not None:
                self._move(sid, endpoint)
            if not movable and not any(
                record.dial.url.startswith(g.urls.get("session", "?").rstrip("/") + "/")
                for g in gateways
            ):
                logger.warning(
                    "session %s: its gateway is gone, and a %s call cannot be streamed again: "
                    "ended",
                    sid,
                    record.provider,
                )
                end_now(record, GATEWAY_LOST)

    def _endpoint_from(self, meta: Mapping[str, str]) -> GatewayEndpoint | None:
        secret = self.config.gateway.secret or self._infra.gateway().secret
        return endpoint_of_meta(self.config.gateway, meta, secret)

    # -- inbound: the webhook of any node ------------------------------------------------------

    def on_voice(
        self,
        call: InboundCall,
        local: Callable[[], Answer],
        *,
        provider: str | None = None,
        refusal: str | None = None,
    ) -> Answer:
        """A new call at our webhook (any provider's: ``provider`` names its entry,
        ``refusal`` is its own refusal): claim it for a node; answer (see the module
        docstring). A call claimed for another node is answered here with its provider's
        document, streaming it to the claimed session's gateway."""
        refusal = refusal or self.config.inbound.refusal_twiml
        name = provider or self._provider_name(call)
        sid = secrets.token_urlsafe(16)
        try:
            endpoint = self._gateway_for(self.member.pick_gateway())
            meta = {
                **gateway_meta(endpoint),
                "provider": name,
                "direction": "inbound",
                "from": call.from_,
                "to": call.to,
                "account": call.account_sid,
                "call": call.call_id,
            }
            with self._lock:
                self._local[sid] = False
            claim = self.member.claim_inbound(call.call_id, meta, session_id=sid)
        except ClusterUnavailable as exc:
            logger.warning(
                "call %s refused: the cluster is unavailable: %s", call.call_id, exc.reason
            )
            claim = None
        mine = claim is not None and claim.node_id == self.node_id and not claim.duplicate
        if not mine:
            with self._lock:
                self._local.pop(sid, None)
        if claim is None:
            self._count("refused_busy")
            return Answer(200, refusal, "refused_busy")
        if claim.duplicate:
            if claim.ended:
                self._count("replayed")
                return Answer(200, refusal, "replayed")
            if claim.node_id == self.node_id:
                return local()  # our queue knows the call: its answer again
            endpoint = self._endpoint_from(claim.meta) or endpoint
            document = self._document(call, name, endpoint, claim.session_id)
            return Answer(200, document, "duplicate", claim.session_id)
        if not mine:
            self._count("claimed_remote")
            logger.info("call %s claimed for node %s: session %s", call.call_id, claim.node_id, sid)
            return Answer(200, self._document(call, name, endpoint, sid), "accepted", sid)
        with self._lock:
            self._placed[call.call_id] = Placed(sid, endpoint, track=self.started)
        answer = local()
        if answer.outcome in _NOT_TAKEN:
            with self._lock:
                self._placed.pop(call.call_id, None)
            self._ended_local(sid)
        return answer

    def _document(
        self, call: InboundCall, provider: str, endpoint: GatewayEndpoint, session_id: str
    ) -> str:
        """The answer that streams ``call`` to ``endpoint`` for ``session_id`` (claimed for
        another node, which carries it): TwiML, or the provider's own document."""
        if call.provider == "twilio":
            return stream_twiml(endpoint, session_id, self._infra.webhook().voice_url)
        make = getattr(self._provider_of(provider), "answer_document", None)
        if make is None:
            raise TransportError(f"provider {provider!r} cannot answer a call in a cluster")
        token = GATEWAY_CHOICE.set(lambda: endpoint)
        try:
            document: str = make(session_id, {"direction": "inbound"})
        finally:
            GATEWAY_CHOICE.reset(token)
        return document

    def _provider_name(self, call: InboundCall) -> str:
        webhook = self._infra.webhook()
        return webhook._providers.get(call.account_sid, webhook.provider)

    def placed(self, call_id: str) -> Placed | None:
        """The placement of a call the cluster claimed (or took over) for this node, taken
        once by the ``accept_session`` that sets it up."""
        with self._lock:
            return self._placed.pop(call_id, None)

    def started(self, record: SessionRecord, endpoint: GatewayEndpoint | None) -> None:
        """A clustered session of this node is set up; its hop dials ``endpoint``."""
        with self._lock:
            self._tracked[record.session_id] = record
            if endpoint is not None:
                self._gateways[record.session_id] = endpoint

    def gateway_of(self, record: SessionRecord) -> contextlib.AbstractContextManager[None]:
        """While inside: a provider's ``gateway()`` is the gateway the session's hop is on
        now (placed least loaded, taken over from another node, or moved when its gateway
        died), for TwiML that streams its call again (``send_dtmf``'s re-stream); the
        configured gateway only for a session the cluster does not know."""
        with self._lock:
            endpoint = self._gateways.get(record.session_id)
        return on_gateway(endpoint)

    # -- the member's callbacks (its threads: hand over, return) -------------------------------

    def _on_offer(self, lease: Lease) -> None:
        with self._lock:
            if lease.session_id in self._local:
                ended = self._local.pop(lease.session_id)
                if ended:
                    self.member.release(lease.session_id)
                return  # our webhook answers it through the local queue
        self._spawn(self._offer, lease, False)

    def _on_orphan(self, lease: Lease) -> None:
        with self._lock:
            self.takeovers += 1
        self._spawn(self._offer, lease, True)

    def _on_lost(self, session_id: str) -> None:
        with self._lock:
            self._lost.add(session_id)
            known = session_id in self._tracked
        if known:
            self._spawn(self._end_quietly, session_id)

    def _offer(self, lease: Lease, resumed: bool) -> None:
        """On a thread of its own: through the local queue to an ``accept_session``."""
        meta = lease.meta
        call_id = lease.call_id or meta.get("call", "")
        endpoint = self._endpoint_from(meta)
        if not call_id or endpoint is None:
            logger.warning(
                "session %s: its lease names no call or gateway; released", lease.session_id
            )
            self.member.release(lease.session_id)
            return
        placed, call = offer_of(lease, call_id, endpoint, resumed, self.started)
        with self._lock:
            self._placed[call_id] = placed
        webhook = self._infra.webhook()
        name = meta.get("provider", webhook.provider)
        answer = webhook.queue.offer(call, self.config.inbound.refusal_twiml, provider=name)
        with self._lock:
            self._placed.pop(call_id, None)
        if answer.outcome in ("accepted", "duplicate"):
            return
        if answer.outcome == "closed" or self._stopping.is_set():
            return  # this node is closing: the lease expires, another node takes the call
        logger.warning(
            "session %s: not accepted here (%s): hung up", lease.session_id, answer.outcome
        )
        self._hang_up(lease, name, call_id, endpoint)
        self.member.release(lease.session_id)

    def _hang_up(
        self, lease: Lease, provider: str, call_id: str, endpoint: GatewayEndpoint
    ) -> None:
        """Hang up a call no ``accept_session`` took here, with its provider's own hang-up
        (the plan it would have been carried with, its codec told what the stream said)."""
        try:
            found = self._provider_of(provider)
            resume = getattr(found, "resume", None)
            if resume is None:
                return
            token = GATEWAY_CHOICE.set(lambda: endpoint)
            try:
                plan = resume(lease.session_id, call_id)
            finally:
                GATEWAY_CHOICE.reset(token)
            opening = lease.meta.get("opening")
            if opening:
                plan.codec.decode(opening)  # Plivo's call uuid is in its start
            found.hang_up(lease.session_id, plan)
        except TransportError as exc:
            logger.warning("call %s: hanging up failed: %s", call_id, exc)

    # -- sessions ending -----------------------------------------------------------------------

    def ended(self, record: SessionRecord) -> None:
        """A session of this service ended: release its lease (queued)."""
        sid = record.session_id
        with self._lock:
            self._tracked.pop(sid, None)
            self._gateways.pop(sid, None)
            self._lost.discard(sid)
        self._ended_local(sid)

    def _ended_local(self, session_id: str) -> None:
        with self._lock:
            if session_id in self._local:
                self._local[session_id] = True  # its offer, when it comes, releases it
        self.member.release(session_id)

    def keeps_call(self, record: SessionRecord) -> bool:
        """Whether ending this session must leave its call alone: another node has it."""
        with self._lock:
            if record.session_id in self._lost:
                return True
        return any(exit.code == _FENCED for exit in record.exits)

    # -- progress, for the node that would take a session over ---------------------------------

    def _progress_loop(self) -> None:
        period = self.member.config.renew_s
        while not self._stopping.wait(period):
            with self._lock:
                tracked = list(self._tracked.items())
            self._follow_moves(tracked)
            for sid, record in tracked:
                fields = {"in": str(record.traffic.frames_in)}
                opening = record.opening
                if (
                    isinstance(opening, str)
                    and len(opening) <= _OPENING_MAX
                    and (self.member.meta(sid) or {}).get("opening") != opening
                ):
                    fields["opening"] = opening  # once: what the next node's codec starts from
                self.member.update_meta(sid, fields)

    # -- draining, closing ---------------------------------------------------------------------

    def drain(self) -> None:
        self.member.drain()

    def close(self) -> None:
        """Stop (the service has ended its sessions): write what is queued, deregister."""
        self._stopping.set()
        self.member.drain()  # no takeover while closing
        self._progress.join(2.0)
        for thread in list(self._threads):
            thread.join(self.config.inbound.queue_timeout_s + self.config.inbound.answer_timeout_s)
        self.member.stop()

    def status(self) -> dict[str, Any]:
        found = self.member.status()
        found["takeovers_offered"] = self.takeovers
        return found

    # -- helpers -------------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        webhook = self._infra.webhook_started()
        if webhook is not None:
            webhook.counters.add(name)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception:
                logger.exception("cluster node %s: an offer failed", self.node_id)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"cluster-offer-{self.node_id}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
