"""The call plane of a :class:`~actors.service.TransportService`: inbound calls, call progress,
call control. The facade delegates to :class:`CallPlane`; the webhook it drives is
:mod:`actors.webhooks` (started by :class:`~actors.embedded.EmbeddedInfrastructure`).

- **Progress.** Every status callback of a call we know becomes a
  :class:`~actors.messages.CallStatus` in its session's inbox, in the order Twilio numbered them
  (``SequenceNumber``: one older than the last delivered is dropped, counted ``stale``), so
  the application reads them in order with the media; machine detection's verdict becomes one
  :class:`~actors.messages.MachineDetected`. A call that ends before it is answered (``busy``,
  ``no-answer``, ``failed``, ``canceled``) ends its session at once: the reader gets the
  ``CallStatus``, then ``Close(1000, <status>)``, then ``None``. Callbacks that come before
  the session knows its call (Twilio may post ``initiated`` before its REST answer) wait for
  it, a few seconds at most.
- **Forwarding.** Twilio takes one ``StatusCallback`` per call. When the runtime takes it, a
  provider's own ``status_callback`` still gets every callback: re-posted from one bounded
  worker thread (at most :data:`FORWARD_QUEUE` waiting, then dropped and counted), signed
  under the account's auth token exactly as Twilio signs, so the receiver's validation passes.
- **Control.** On Twilio, ``transfer`` and ``redirect`` give the live call new TwiML over REST:
  the call leaves its stream, and the session ends with ``Close(1000, "transferred" |
  "redirected")``; ending it then does not hang the call up (the TwiML owns it now).
  ``send_dtmf`` keeps the session: a call update always ends the stream (Twilio's), so its
  TwiML is ``<Play digits>`` then ``<Connect><Stream>`` again for the *same* session, with a
  stream credential of its own (a fresh nonce: the gateway pairs each credential once), then
  the usual ``<Redirect>``; in a cluster the ``<Stream>`` names the gateway the session's hop
  is on now (:meth:`~actors.clustering.NodeCluster.gateway_of`), not the node's configured
  one. The session is marked to expect that re-stream for
  :func:`restream_window_s` seconds: when the gateway closes its hop with "call ended" the
  supervisor redials at once, saying so (``X-Restream-Within``), and the gateway re-opens the
  call and pairs the new stream. The reader sees ``Stopped``, then a new ``Started`` (a new
  ``stream_sid``, the same ``call_id``), and the audio goes on; writes made in between wait
  for the new stream. If no new stream comes by the deadline, the gateway closes the hop
  with 1008 and the session ends with ``Close(1008, "no provider stream again (re-stream)
  within N s")``; a ``completed`` status callback meanwhile (the call was hung up during the
  digits) ends it at once with ``Close(1000, "completed")``, and a ``stream-error`` with
  ``Close(1000, "stream error: ...")``. Telnyx and Plivo take commands instead
  (:class:`~actors.providers.CallControl`): a transfer or redirect ends the session the same
  way, DTMF is played while the stream goes on. What a provider (or a call) cannot do raises
  ``UnsupportedMessage``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import re
import secrets
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .config import TransportConfig, TwilioProviderConfig
from .errors import SessionClosed, TransportError, UnsupportedMessage
from .messages import CallStatus, Close, MachineDetected, SessionInfo, StreamError
from .safexml import parse_xml
from .signing import twilio_signature

if TYPE_CHECKING:
    from .clustering import NodeCluster
    from .embedded import EmbeddedInfrastructure
    from .providers import CallControl, ControlCommand, Provider, SessionPlan
    from .session import SessionRecord
    from .webhooks.inbound import Answer, PendingCall
    from .webhooks.twilio import InboundCall, StatusEvent, StreamEvent

__all__ = ["CallPlane", "dial_twiml", "dtmf_twiml", "restream_window_s"]

logger = logging.getLogger(__name__)

#: Statuses after which a call never streams: its session ends at once.
UNANSWERED = frozenset({"busy", "no-answer", "failed", "canceled"})
FORWARD_QUEUE = 1000
_FORWARD_TIMEOUT_S = 5.0
_FORWARD_AT_CLOSE = 2  # callbacks still forwarded when the service closes (the last ones)
_EARLY_KEPT_S = 10.0  # callbacks for a call not yet known wait this long for its session
_EARLY_MAX = 1000
_GONE_KEPT = 10_000
_DIGITS = re.compile(r"[0-9*#wW]{1,64}")
#: How long a re-stream after ``send_dtmf`` may take beyond playing the digits: Twilio
#: runs the new TwiML and dials the stream (a fraction of a second, a WebSocket handshake).
RESTREAM_BASE_S = 5.0
#: What each key takes to play, at most: a tone and its gap (``w`` and ``W`` are Twilio's
#: documented half-second and one-second pauses).
_KEY_S = {"w": 0.5, "W": 1.0}
_TONE_S = 0.25
_E164 = re.compile(r"\+?[1-9][0-9]{1,14}")
_SIP = re.compile(r"sips?:[^\s<>\"']{1,250}")

#: (name, provider, session id, plan, SessionInfo fields, registered) -> info or None (late)
Start = Callable[..., SessionInfo | None]


@dataclass(slots=True)
class _Route:
    record: SessionRecord
    provider: str
    last_sequence: int = -1
    amd_told: str | None = None  # the verdict told
    ended_why: str | None = None


@dataclass(slots=True)
class _Early:
    at: float
    events: list[StatusEvent] = field(default_factory=list)


class CallPlane:
    """Inbound calls, call progress and call control of one service; thread-safe."""

    def __init__(self, config: TransportConfig, infrastructure: EmbeddedInfrastructure) -> None:
        self.config = config
        self._infra = infrastructure
        infrastructure.hooks = self
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}  # by call id
        self._early: OrderedDict[str, _Early] = OrderedDict()
        # Calls whose session ended: their late callbacks (completed) are routine, not unknown.
        self._gone: OrderedDict[str, None] = OrderedDict()
        self.statuses: Counter[str] = Counter()  # call-status callbacks delivered, by status
        self.stream_events: Counter[str] = Counter()  # <Stream statusCallback>s, by event
        self._forward: queue.Queue[tuple[str, str, dict[str, str]] | None] | None = None
        self._forwarder: threading.Thread | None = None
        self.forward_dropped = 0
        self.cluster: NodeCluster | None = None  # set by a clustered service (cluster:)
        self.draining = False  # TransportService.drain(): new calls are refused
        # Sessions whose call now runs other TwiML (transfer, redirect): never hung up by us.
        self._handed_off: set[str] = set()
        self.provider_of: Callable[[str], Provider] | None = None  # set by the service

    # -- sessions ------------------------------------------------------------------------------

    def track(self, record: SessionRecord, provider: str) -> None:
        """A session with a call: its progress goes to its inbox from now on."""
        call_id = record.call_id
        if call_id is None:
            return
        with self._lock:
            route = self._routes[call_id] = _Route(record, provider)
            early = self._early.pop(call_id, None)
        for event in early.events if early else ():
            self._deliver(route, event)

    def ended_before_stream(self, record: SessionRecord) -> str | None:
        """The status that ended the call before it was answered, if one did."""
        with self._lock:
            route = self._routes.get(record.call_id or "")
        return route.ended_why if route is not None and route.ended_why in UNANSWERED else None

    def keeps_call(self, record: SessionRecord) -> bool:
        """Whether ending this session must leave its call alone: ``transfer`` or
        ``redirect`` gave it to other TwiML (a hang-up would cut the ``<Dial>``)."""
        with self._lock:
            return record.session_id in self._handed_off

    def ended(self, record: SessionRecord) -> None:
        """The session is over: forget its call, free its inbound capacity."""
        call_id = record.call_id
        with self._lock:
            self._handed_off.discard(record.session_id)
        if call_id is None:
            return
        with self._lock:
            route = self._routes.get(call_id)
            if route is not None and route.record is record:
                del self._routes[call_id]
            self._gone[call_id] = None
            while len(self._gone) > _GONE_KEPT:
                self._gone.popitem(last=False)
        webhook = self._infra.webhook_started()
        if webhook is not None:
            webhook.queue.ended(call_id)

    # -- inbound -------------------------------------------------------------------------------

    def accept(
        self,
        start: Start,
        provider_of: Callable[[str], Provider],
        timeout: float | None,
        provider: str | None,
    ) -> SessionInfo:
        """The next inbound call, as a session (see ``TransportService.accept_session``)."""
        webhook = self._infra.webhook()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            pending = webhook.queue.accept(remaining, provider)
            call = pending.call
            # A cluster's call: its session id and gateway were chosen when it was claimed.
            placed = self.cluster.placed(call.call_id) if self.cluster is not None else None
            session_id = secrets.token_urlsafe(16) if placed is None else placed.session_id
            try:
                answering = provider_of(pending.provider)
                redirect = f"{webhook.voice_url}?reattach={session_id}"
                with contextlib.nullcontext() if placed is None else placed.gateway():
                    if placed is not None and placed.answered:
                        plan, twiml = _carried(answering, session_id, call.call_id), ""
                    else:
                        plan, twiml = answering.answer(  # type: ignore[attr-defined]
                            session_id, call.call_id, {"direction": "inbound"}, redirect
                        )
                told = getattr(answering, "inbound_call", None)
                if told is not None:  # what a provider keeps of the webhook's call (Telnyx)
                    told(session_id, call)
            except BaseException:
                pending.refuse()
                raise
            details = {
                "direction": "inbound",
                "from_": call.from_,
                "to": call.to,
                "fields": call.fields,
            }
            if placed is not None:
                plan = placed.plan(plan)
                details.update(placed.details)
            info = start(
                pending.provider,
                answering,
                session_id,
                plan,
                details=details,
                registered=functools.partial(_answer, pending, answering, twiml, session_id),
                prepare=None if placed is None else placed.prepare,
            )
            if info is not None:
                return info
            logger.info("call %s: answered too late; accepting the next", call.call_id)

    def reattach_url(self, session_id: str) -> str | None:
        """Our voice webhook's ``?reattach=`` URL for a session, if the webhook runs."""
        webhook = self._infra.webhook_started()
        return None if webhook is None else f"{webhook.voice_url}?reattach={session_id}"

    def on_reattach(self, call: InboundCall) -> str | None:
        """Our ``<Redirect>`` after a stream ended: hang up, or (a cluster) stream the call
        again to a healthy gateway."""
        return None if self.cluster is None else self.cluster.on_reattach(call)

    def on_stream_lost(self, provider: str, call_id: str, session_id: str) -> bool:
        """A call we placed lost its stream while it goes on (Telnyx Call Control's
        ``streaming.failed``): a cluster streams it again over REST; else nothing."""
        if self.cluster is None:
            return False
        return self.cluster.on_stream_lost(provider, call_id, session_id)

    def on_voice(
        self,
        call: InboundCall,
        local: Callable[[], Answer],
        *,
        provider: str | None = None,
        refusal: str | None = None,
    ) -> Answer:
        """A new call at the webhook (``provider``: the entry's name; ``refusal``: its
        provider's refusal): the local queue's answer (``local()``), or a cluster's (it
        claims the call for one of its nodes); refused while the service drains."""
        if self.cluster is not None:
            return self.cluster.on_voice(call, local, provider=provider, refusal=refusal)
        if self.draining:
            from .webhooks.inbound import Answer  # noqa: PLC0415 (as the webhook: on first use)

            webhook = self._infra.webhook()
            webhook.counters.add("refused_busy")
            return Answer(200, refusal or webhook.config.refusal_twiml, "refused_busy")
        return local()

    def on_unanswered(self, provider: str, call: InboundCall) -> None:
        """A call that answers with a command (Telnyx's Call Control) was refused by the queue
        (capacity, no thread in time): reject it, so that the caller hears busy."""
        if self.provider_of is None:
            return
        reject = getattr(self.provider_of(provider), "reject", None)
        if reject is not None:
            reject(call.call_id)

    # -- progress (webhook threads) ------------------------------------------------------------

    def on_status(self, event: StatusEvent) -> bool:
        self._forward_to_user(event)
        with self._lock:
            route = self._routes.get(event.call_id)
            if route is None:
                if event.call_id in self._gone:
                    return True
                self._keep_early(event)
                return False
        self._deliver(route, event)
        return True

    def on_amd(self, event: StatusEvent) -> bool:
        with self._lock:
            route = self._routes.get(event.call_id)
            if route is None:
                self._keep_early(event)
                return False
        self._deliver(route, event)
        return True

    def on_stream(self, event: StreamEvent) -> bool:
        """A ``<Stream statusCallback>``: counted; a ``stream-error`` is logged, given to the
        session as :class:`StreamError`, and ends it (unless it names another stream than
        the one the session is on now)."""
        with self._lock:
            self.stream_events[event.event] += 1
            route = self._routes.get(event.call_id)
        if route is None:
            return False
        record = route.record
        if event.event != "stream-error":
            logger.debug("session %s: %s %s", record.session_id, event.event, event.stream_sid)
            return True
        logger.warning(
            "session %s: Twilio could not stream call %s (stream %s): %.120s",
            record.session_id,
            event.call_id,
            event.stream_sid,
            event.error or "no StreamError given",
        )
        record.inbox.put(StreamError(event.stream_sid, event.error, event.fields))
        current = getattr(record.codec, "stream_sid", None)
        if current is None or current == event.stream_sid:
            record.expect_restream(None)  # that stream was the re-stream, if one was expected
            end_now(record, f"stream error: {event.error[:80] or event.stream_sid}")
        return True

    def _keep_early(self, event: StatusEvent) -> None:
        now = time.monotonic()
        while self._early:
            first = next(iter(self._early.values()))
            if first.at > now - _EARLY_KEPT_S and len(self._early) < _EARLY_MAX:
                break
            self._early.popitem(last=False)
        self._early.setdefault(event.call_id, _Early(now)).events.append(event)

    def _deliver(self, route: _Route, event: StatusEvent) -> None:
        if event.session_id is not None and event.session_id != route.record.session_id:
            # Exotel's capability URL names one session: it may not speak for another call.
            logger.warning("a status event for call %s named another session", event.call_id)
            return
        inbox = route.record.inbox
        answered_by = event.fields.get("AnsweredBy") or None
        if event.status == "amd":
            messages: list[Any] = []
        else:
            with self._lock:
                if event.sequence is not None:
                    if event.sequence <= route.last_sequence:
                        self.statuses["stale"] += 1
                        return
                    route.last_sequence = event.sequence
                self.statuses[event.status] += 1
            messages = [CallStatus(event.status, answered_by, event.sequence, event.fields)]
        # Once per call; but a machine_start may be followed by its greeting's end, where a
        # provider tells both (Telnyx's greeting_end). Twilio tells one AnsweredBy a call.
        greeting_end = route.amd_told == "machine_start" and (answered_by or "").startswith(
            "machine_end"
        )
        if answered_by is not None and (route.amd_told is None or greeting_end):
            route.amd_told = answered_by
            duration = event.fields.get("MachineDetectionDuration", "")
            ms = int(duration) if duration.isdigit() else None
            messages.append(MachineDetected(answered_by, ms, event.fields))
        for message in messages:
            inbox.put(message)
        if event.status in UNANSWERED:
            route.ended_why = event.status
            logger.info("session %s: the call ended %s", route.record.session_id, event.status)
            end_now(route.record, event.status)
        elif (
            event.status == "completed" and route.record.restream_left(time.monotonic()) is not None
        ):
            # Between two streams (send_dtmf) no stream can end the session: this does.
            route.record.expect_restream(None)
            logger.info("session %s: the call ended between two streams", route.record.session_id)
            end_now(route.record, "completed")

    # -- forwarding ----------------------------------------------------------------------------

    def _forward_to_user(self, event: StatusEvent) -> None:
        for config in self.config.providers.values():
            if not isinstance(config, TwilioProviderConfig) or config.status_callback is None:
                continue
            token = self._token_of(config, event.account_sid)
            if token is None:
                continue
            wanted = config.status_callback_events or ("completed",)
            kind = {"in-progress": "answered"}.get(event.status, event.status)
            if kind not in ("initiated", "ringing", "answered") and "completed" in wanted:
                kind = "completed"
            if kind in wanted:
                self._enqueue(token, config.status_callback, dict(event.fields))

    def _token_of(self, config: TwilioProviderConfig, account_sid: str) -> str | None:
        if config.api_base_url == "emulator":
            endpoint = self._infra.twilio_emulator()
            return endpoint.auth_token if endpoint.account_sid == account_sid else None
        return config.auth_token if config.account_sid == account_sid else None

    def _enqueue(self, token: str, url: str, fields: dict[str, str]) -> None:
        with self._lock:
            if self._forward is None:
                self._forward = queue.Queue(FORWARD_QUEUE)
                self._forwarder = threading.Thread(
                    target=self._forward_loop,
                    args=(self._forward,),
                    name="status-forward",
                    daemon=True,
                )
                self._forwarder.start()
            try:
                self._forward.put_nowait((token, url, fields))
            except queue.Full:
                self.forward_dropped += 1
                logger.warning("status forwarding queue full: a callback was dropped")

    @staticmethod
    def _forward_loop(jobs: queue.Queue[tuple[str, str, dict[str, str]] | None]) -> None:
        while (job := jobs.get()) is not None:
            token, url, fields = job
            request = urllib.request.Request(  # noqa: S310 (a configured http(s) URL)
                url,
                data=urlencode(fields).encode(),
                headers={"X-Twilio-Signature": twilio_signature(token, url, fields)},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=_FORWARD_TIMEOUT_S):  # noqa: S310
                    pass
            except (OSError, ValueError) as exc:
                logger.warning("forwarding a status callback failed: %s", type(exc).__name__)

    def close(self) -> None:
        with self._lock:
            jobs, thread = self._forward, self._forwarder
            self._forward = self._forwarder = None
        if jobs is not None and thread is not None:
            with contextlib.suppress(queue.Empty):
                while jobs.qsize() > _FORWARD_AT_CLOSE:  # the service is closing: drop the rest
                    jobs.get_nowait()
                    self.forward_dropped += 1
            jobs.put(None)
            thread.join(_FORWARD_TIMEOUT_S * (_FORWARD_AT_CLOSE + 1))

    # -- control -------------------------------------------------------------------------------

    def control(self, record: SessionRecord, provider: Provider, twiml: str, reason: str) -> None:
        """Give the session's live call ``twiml``; the session ends with ``reason``, and its
        end leaves the call to that TwiML (no hang-up)."""
        update = self._updater(record, provider)
        call_id = self._live_call(record)
        sid = record.session_id
        # Marked before the update: the session may end (its stream stops) before the answer.
        with self._lock:
            self._handed_off.add(sid)
        try:
            updated = update(call_id, twiml=twiml)
        except BaseException:
            with self._lock:
                self._handed_off.discard(sid)
            raise
        if not updated:
            with self._lock:
                self._handed_off.discard(sid)
            raise SessionClosed(sid, "the call has ended")
        end_now(record, reason)

    def dtmf(
        self, record: SessionRecord, provider: Provider, digits: str, after: str | None
    ) -> None:
        """Play ``digits`` into the session's call and stream it again to the same session
        (see the module's *Control*); the session goes on."""
        update = self._updater(record, provider)
        restream = getattr(provider, "restream_twiml", None)
        if restream is None:
            raise UnsupportedMessage(record.session_id, record.provider, "DTMF")
        call_id = self._live_call(record)
        codec_parameters = getattr(record.codec, "parameters", {})
        # A cluster's session may be on another gateway than this node's configured one.
        pinned = (
            contextlib.nullcontext() if self.cluster is None else self.cluster.gateway_of(record)
        )
        with pinned:
            stream = restream(record.session_id, dict(codec_parameters))
        twiml = dtmf_twiml(digits, after, stream)
        # Set before the update: the stream may end before Twilio's REST answer comes back.
        # An update between two streams (a DTMF during the last one's digits) ends none.
        between = getattr(record.codec, "stream_sid", "") is None
        record.expect_restream(time.monotonic() + restream_window_s(digits), stopped=between)
        try:
            updated = update(call_id, twiml=twiml)
        except BaseException:
            record.expect_restream(None)
            raise
        if not updated:
            record.expect_restream(None)
            raise SessionClosed(record.session_id, "the call has ended")
        logger.info("session %s: DTMF %r played; the call streams again", record.session_id, digits)

    @staticmethod
    def _updater(record: SessionRecord, provider: Provider) -> Callable[..., bool]:
        update: Callable[..., bool] | None = getattr(provider, "update_call", None)
        if update is None:
            raise UnsupportedMessage(record.session_id, record.provider, "call control")
        return update

    def command(
        self,
        record: SessionRecord,
        provider: CallControl,
        plan: SessionPlan,
        command: ControlCommand,
        reason: str | None,
    ) -> None:
        """Carry out ``command`` on the session's live call (Telnyx, Plivo). With a
        ``reason`` the call has left its stream: the session ends with it (the provider knows
        not to hang a call up that it handed on); without one (DTMF) the session goes on."""
        self._live_call(record)
        if not provider.control_call(record.session_id, plan, command):
            raise SessionClosed(record.session_id, "the call has ended")
        if reason is not None:
            end_now(record, reason)

    @staticmethod
    def _live_call(record: SessionRecord) -> str:
        if record.inbox.closed or record.ending or record.call_id is None:
            # The inbox closes with the session's end (ours, the call's, or the connection's).
            why = record.closed_why() if record.state.is_final or record.ending else "ended"
            raise SessionClosed(record.session_id, why)
        return record.call_id

    def snapshot(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """(inbound counters, call statuses delivered, stream events) for metrics, read at
        scrape time."""
        webhook = self._infra.webhook_started()
        inbound = webhook.counters.snapshot() if webhook is not None else {}
        with self._lock:
            statuses = dict(self.statuses)
            streams = dict(self.stream_events)
        return inbound, statuses, streams


def _answer(pending: PendingCall, provider: object, document: str, session_id: str) -> bool:
    """The inbound call is answered: with ``document`` to its webhook, then (a provider that
    answers with a command: Telnyx's Call Control) with its ``confirm_answer``. Whether it
    was in time (``False``: the session is ended, the call goes unanswered or was over)."""
    if not pending.answer(document, session_id):
        return False
    confirm = getattr(provider, "confirm_answer", None)
    if confirm is None:
        return True
    try:
        return bool(confirm(session_id))
    except TransportError as exc:
        logger.warning("session %s: answering the call failed: %s", session_id, exc)
        return False


def _carried(provider: Provider, session_id: str, call_id: str) -> SessionPlan:
    """The plan of a call another node answered (a cluster's claim or takeover): the
    provider's ``resume``; ``TransportError`` for a provider that has none."""
    resume = getattr(provider, "resume", None)
    if resume is None:
        raise TransportError(f"provider {provider.name!r} cannot carry a call in a cluster")
    plan: SessionPlan = resume(session_id, call_id)
    return plan


def end_now(record: SessionRecord, reason: str) -> None:
    """End ``record``'s session with ``Close(1000, reason)``: the reader sees it at once
    (after what it has not read yet), and the connector closes the hop."""
    close = Close(1000, reason)
    record.inbox.close(close)
    with contextlib.suppress(SessionClosed):
        record.write(close)


def dial_twiml(to: str, caller_id: str | None = None) -> str:
    """``<Response><Dial [callerId]><Number>|<Sip>to</...></Dial></Response>``; ``to`` is an
    E.164 number or a ``sip:`` URI (``ValueError`` otherwise), built with ElementTree."""
    if not isinstance(to, str):
        raise TypeError(f"to must be a str, not {type(to).__name__}")
    if _E164.fullmatch(to):
        noun = "Number"
    elif _SIP.fullmatch(to) and to.isprintable():
        noun = "Sip"
    else:
        raise ValueError("to must be an E.164 number (+15550100) or a sip: URI")
    attributes: dict[str, str] = {}
    if caller_id is not None:
        if not isinstance(caller_id, str) or not _E164.fullmatch(caller_id):
            raise ValueError("caller_id must be an E.164 number (+15550199)")
        attributes["callerId"] = caller_id
    response = ET.Element("Response")
    dial = ET.SubElement(response, "Dial", attributes)
    ET.SubElement(dial, noun).text = to
    return ET.tostring(response, encoding="unicode")


def dtmf_twiml(digits: str, after: str | None, stream: str | None = None) -> str:
    """``<Response><Play digits/>[<Connect>...][<Redirect>after</Redirect>]</Response>``;
    ``digits`` are 0-9, ``*``, ``#``, and ``w``/``W`` (a half-second / one-second pause), 1
    to 64 of them; ``stream`` is a ``<Response><Connect><Stream>`` document whose verbs come
    after the digits (the re-stream)."""
    _check_digits(digits)
    response = ET.Element("Response")
    ET.SubElement(response, "Play", digits=digits)
    if stream is not None:
        response.extend(list(parse_xml(stream)))
    if after is not None:
        ET.SubElement(response, "Redirect", method="POST").text = after
    return ET.tostring(response, encoding="unicode")


def restream_window_s(digits: str) -> float:
    """How long after ``send_dtmf(digits)`` the call's new stream may take, at most."""
    _check_digits(digits)
    return RESTREAM_BASE_S + sum(_KEY_S.get(key, _TONE_S) for key in digits)


def _check_digits(digits: str) -> None:
    if not isinstance(digits, str):
        raise TypeError(f"digits must be a str, not {type(digits).__name__}")
    if not _DIGITS.fullmatch(digits):
        raise ValueError("digits must be 1 to 64 of 0-9, *, #, w, W")
