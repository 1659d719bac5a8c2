"""The webhook server's routes for Telnyx, Plivo, Vonage and Exotel (Twilio's are the server's
own): :class:`ProviderRoutes`.

====================  =====================================================================
``/telnyx/voice``     TeXML voice URL: an inbound call, answered ``<Connect><Stream>``
``/telnyx/events``    Call Control webhooks and TeXML status callbacks: call progress; with
                      ``inbound: call_control``, an incoming ``call.initiated`` is an
                      inbound call (answered 200 at once, then ``actions/answer``)
``/plivo/answer``     answer URL: an inbound call; or (``?session=``) one we placed
``/plivo/hangup``     hang-up (and ring) URL: call progress
``/plivo/control``    (``?doc=``) the XML a transfer or redirect gives a live call
``/plivo/machine``    machine_detection_url: machine detection's verdict
``/vonage/answer``    answer URL (GET or POST): an inbound call, answered with the NCCO
``/vonage/event``     event URL: call progress
``/exotel/status``    StatusCallback of a call we placed (a capability URL per session)
``/exotel/inbound``   a standalone gateway's inbound stream (Exotel's applet): offered to
                      the queue; signed with the gateway's secret (``X-Gateway-Signature``)
====================  =====================================================================

In a cluster a call of ours comes back after its stream ended while the caller stays on (its
gateway died) with ``?reattach=<session>``: to ``/telnyx/voice`` (TeXML's ``<Redirect>``),
``/plivo/answer`` (Plivo's ``<Redirect>``) or ``/vonage/event`` (a synchronous ``eventUrl``'s
``disconnected``). It is authenticated as any request of its provider, then answered with the
cluster's document that streams it again (``WebhookServer.reattached``), or one that ends it.
A Call Control ``streaming.stopped`` at ``/telnyx/events`` goes to ``stream_lost`` (streamed
again over REST); a Plivo answer asked of the node that did not place the call is minted here
(``mint``) from the gateway its signed URL names.

Each request is read as the server reads Twilio's (method, length, at most ``max_body``
bytes), then authenticated (:mod:`actors.webhooks.calls`) before anything in it is used. An
inbound call goes through the same :class:`~actors.webhooks.inbound.InboundQueue` as
Twilio's, under the name of the provider whose key verified it, so ``accept_session(provider=)``
takes it; refused calls get the provider's own refusal (TeXML ``<Reject reason="busy"/>``,
Plivo ``<Hangup reason="busy"/>``, a Vonage NCCO that says so and ends).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from ..streamed_calls import SIGNATURE_HEADER, read_desk_request
from . import calls as decide
from .inbound import Answer
from .twilio import InboundCall, Refusal, StatusEvent, precheck

if TYPE_CHECKING:
    from .server import WebhookServer, _Handler
    from .streamed import StreamDesk

__all__ = ["PATHS", "ProviderRoutes"]

logger = logging.getLogger(__name__)

TELNYX_VOICE, TELNYX_EVENTS = "/telnyx/voice", "/telnyx/events"
PLIVO_ANSWER, PLIVO_HANGUP = "/plivo/answer", "/plivo/hangup"
PLIVO_CONTROL, PLIVO_MACHINE = "/plivo/control", "/plivo/machine"
VONAGE_ANSWER, VONAGE_EVENT = "/vonage/answer", "/vonage/event"
EXOTEL_STATUS, EXOTEL_INBOUND = "/exotel/status", "/exotel/inbound"
PATHS = frozenset(
    {TELNYX_VOICE, TELNYX_EVENTS, PLIVO_ANSWER, PLIVO_HANGUP, VONAGE_ANSWER, VONAGE_EVENT}
    | {EXOTEL_STATUS, EXOTEL_INBOUND, PLIVO_CONTROL, PLIVO_MACHINE}
)
_GET_OK = frozenset(
    {PLIVO_ANSWER, PLIVO_HANGUP, PLIVO_CONTROL, PLIVO_MACHINE, VONAGE_ANSWER, VONAGE_EVENT}
)
#: The routes where our own calls come back after their stream (``?reattach=``): TeXML's and
#: Plivo's ``<Redirect>``, and the synchronous ``eventUrl`` of a Vonage websocket.
_REATTACH_ROUTES = frozenset({TELNYX_VOICE, PLIVO_ANSWER, VONAGE_EVENT})
REATTACH_PARAM = "reattach"
_XML, _JSON = "text/xml; charset=utf-8", "application/json"
_KEPT = 10_000  # answers of calls we placed, and answered Telnyx calls, remembered at most


@dataclass(frozen=True, slots=True)
class _Document:
    """A document we serve as it is (the XML a Plivo transfer fetches)."""

    document: str


@dataclass(frozen=True, slots=True)
class _Answered:
    """A call we placed was picked up: its answer document, and that news as an event."""

    document: str
    event: StatusEvent


class ProviderRoutes:
    """The non-Twilio routes of one :class:`~actors.webhooks.server.WebhookServer`; thread-safe.

    :meth:`expect_answer` registers the document that answers a call *we* place (Plivo asks
    its answer URL when the callee picks up): ``/plivo/answer?session=<key>`` gets it.
    """

    def __init__(self, keys: decide.ProviderKeys) -> None:
        self.keys = keys
        # A standalone gateway's inbound streams (/exotel/inbound): the desk that offers
        # them, and the gateway secret they are signed with; set before the server starts
        # (unset: the route answers 404).
        self.stream_desk: StreamDesk | None = None
        self.gateway_secret: str | None = None
        # (provider, session, gateway public URL) -> the answer of a call another node of a
        # cluster placed (Plivo's answer URL may reach any node), or None; set by a cluster.
        self.mint: Callable[[str, str, str], str | None] | None = None
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, str] = OrderedDict()
        self._answered: OrderedDict[str, None] = OrderedDict()  # Telnyx calls picked up
        self._documents: OrderedDict[str, str] = OrderedDict()  # served at /plivo/control
        # Told of a Call Control call the queue refused: (provider name, call) -> None.
        self.on_unanswered: Callable[[str, InboundCall], None] | None = None

    def expect_answer(self, key: str, document: str) -> None:
        with self._lock:
            self._answers[key] = document
            while len(self._answers) > _KEPT:
                self._answers.popitem(last=False)

    def forget_answer(self, key: str) -> None:
        with self._lock:
            self._answers.pop(key, None)

    def serve_document(self, key: str, document: str) -> None:
        """``/plivo/control?doc=<key>`` answers ``document`` (to every signed request: Plivo
        may fetch it again on a retry) until :data:`_KEPT` newer ones push it out."""
        with self._lock:
            self._documents[key] = document
            while len(self._documents) > _KEPT:
                self._documents.popitem(last=False)

    # -- requests --------------------------------------------------------------------------

    def handle(self, server: WebhookServer, request: _Handler, route: str, arrived: float) -> None:
        method = request.command
        if method == "GET" and route in _GET_OK:
            body = b""
        else:
            early = precheck(
                method,
                dict(request.headers.items()),
                max_body=server.config.max_body,
                signature_header=None,
            )
            if early is not None:
                return server._refuse(request, early)
            length = int(request.headers.get("Content-Length") or 0)
            body = request.rfile.read(length) if length else b""
            if len(body) < length:
                server.counters.add("bad_request")
                request.close_connection = True
                return None
        headers = dict(request.headers.items())
        if route == EXOTEL_INBOUND:
            return self._stream_offer(server, request, headers, body)
        query = urlsplit(request.path).query
        url = server.public_url + request.path
        session = dict(parse_qsl(query)).get(REATTACH_PARAM)
        if session is not None and route in _REATTACH_ROUTES:
            return self._reattach(server, request, route, (method, url, headers, body), session)
        outcome = self._decide(route, method, url, headers, body, query)
        if isinstance(outcome, Refusal):
            return server._refuse(request, outcome)
        name, decided = outcome
        if isinstance(decided, InboundCall) and route == TELNYX_EVENTS:
            # Call Control waits for no document: say 200 at once (Telnyx retries a webhook
            # not answered soon), and answer the call with a command once a thread takes it.
            request.reply(200, "")
            return self._offer_call_control(server, name, decided, arrived)
        if isinstance(decided, InboundCall):
            return self._offer(server, request, name, decided, arrived)
        if isinstance(decided, _Document):
            return request.reply(200, decided.document, content_type=_XML)
        if isinstance(decided, _Answered):  # a call we placed was answered
            server.deliver(decided.event)
            return request.reply(200, decided.document, content_type=_XML)
        if decided is not None:
            server.deliver(decided)
        else:
            server.counters.add("status")
            lost = decide.telnyx_stream_lost(body) if route == TELNYX_EVENTS else None
            if lost is not None:  # verified: it was decided (no call state) above
                server.stream_lost(name, *lost)
        reply = "[]" if route.startswith("/vonage") else ""
        request.reply(200, reply, content_type=_JSON if reply else None)

    def _reattach(
        self,
        server: WebhookServer,
        request: _Handler,
        route: str,
        asked: tuple[str, str, dict[str, str], bytes],
        session: str,
    ) -> None:
        """A call of ours back after its stream (``?reattach=<session>``), authenticated
        like any request of its provider: answered with the document that streams it again
        (the cluster's), or with one that ends it."""
        method, url, headers, body = asked
        found = self._returning(route, method, url, headers, body, session)
        if isinstance(found, Refusal):
            return server._refuse(request, found)
        if found is None:  # a Vonage websocket event other than disconnected: nothing to do
            server.counters.add("status")
            return request.reply(200, "", content_type=_JSON)
        document = server.reattached(found)
        if route == VONAGE_EVENT:  # an NCCO with nothing in it: the call's NCCO has ended
            return request.reply(200, document or "[]", content_type=_JSON)
        ending = decide.telnyx_hangup() if route == TELNYX_VOICE else decide.plivo_hangup()
        return request.reply(200, document or ending, content_type=_XML)

    def _returning(  # noqa: PLR0917 (the request's parts)
        self, route: str, method: str, url: str, headers: dict[str, str], body: bytes, session: str
    ) -> InboundCall | Refusal | None:
        keys = self.keys
        if route == TELNYX_VOICE:
            voiced = decide.telnyx_voice(keys, headers, body)
            if isinstance(voiced, Refusal):
                return voiced
            return dataclasses.replace(voiced[1], reattach=session)
        if route == PLIVO_ANSWER:
            verified = decide.verify_plivo(keys, method, url, headers, body)
            if isinstance(verified, Refusal):
                return verified
            call = decide.plivo_call(verified[1])
            return (
                call if isinstance(call, Refusal) else dataclasses.replace(call, reattach=session)
            )
        query = urlsplit(url).query
        signed = decide.verify_vonage(keys, headers, body, method, query)
        if isinstance(signed, Refusal):
            return signed
        return decide.vonage_disconnected(signed[1].payload, session)

    def _decide(  # noqa: PLR0917 (the request's parts, each read once by handle)
        self, route: str, method: str, url: str, headers: dict[str, str], body: bytes, query: str
    ) -> tuple[str, InboundCall | StatusEvent | _Answered | _Document | None] | Refusal:
        keys = self.keys
        if route == TELNYX_VOICE:
            return decide.telnyx_voice(keys, headers, body)
        if route == TELNYX_EVENTS:
            return self._telnyx_event(headers, body)
        if route in (PLIVO_ANSWER, PLIVO_HANGUP, PLIVO_CONTROL, PLIVO_MACHINE):
            verified = decide.verify_plivo(keys, method, url, headers, body)
            if isinstance(verified, Refusal):
                return verified
            name, fields = verified
            if method == "GET":
                fields = dict(parse_qsl(query, keep_blank_values=True))
            if route == PLIVO_HANGUP:
                event = decide.plivo_status(fields)
                return event if isinstance(event, Refusal) else (name, event)
            if route == PLIVO_MACHINE:
                event = decide.plivo_machine(fields)
                return event if isinstance(event, Refusal) else (name, event)
            if route == PLIVO_CONTROL:
                with self._lock:
                    document = self._documents.get(dict(parse_qsl(query)).get("doc", ""))
                if document is None:
                    return Refusal(404, "not_found", "no such document")
                return name, _Document(document)
            return self._plivo_answer(name, fields, query)
        if route in (VONAGE_ANSWER, VONAGE_EVENT):
            signed = decide.verify_vonage(keys, headers, body, method, query)
            if isinstance(signed, Refusal):
                return signed
            name, webhook = signed
            found = (
                decide.vonage_call(webhook.payload)
                if route == VONAGE_ANSWER
                else decide.vonage_event(webhook.payload)
            )
            return found if isinstance(found, Refusal) else (name, found)
        named = decide.exotel_status(keys, query, body)
        return named

    def _telnyx_event(
        self, headers: dict[str, str], body: bytes
    ) -> tuple[str, StatusEvent | InboundCall | None] | Refusal:
        # Whether the call was answered decides what a hang-up means: peek at the id first.
        probe = decide.telnyx_event(self.keys, headers, body)
        if isinstance(probe, Refusal):
            return probe
        name, event = probe
        if not isinstance(event, StatusEvent):
            return name, event
        with self._lock:
            answered = event.call_id in self._answered
            if event.status == "in-progress":
                self._answered[event.call_id] = None
                while len(self._answered) > _KEPT:
                    self._answered.popitem(last=False)
            elif event.fields.get("event_type") == "call.hangup":
                self._answered.pop(event.call_id, None)
        if answered and event.fields.get("event_type") == "call.hangup":
            return decide.telnyx_event(self.keys, headers, body, answered=True)
        return name, event

    def _plivo_answer(
        self, name: str, fields: dict[str, str], query: str
    ) -> tuple[str, InboundCall | _Answered] | Refusal:
        asked = dict(parse_qsl(query))
        session = asked.get("session")
        if session is not None:  # a call we placed: its answer, and it was answered
            with self._lock:
                document = self._answers.get(session)
            if document is None and self.mint is not None and asked.get("gateway"):
                # Placed by another node of a cluster: the answer made here, for its gateway.
                document = self.mint(name, session, asked["gateway"])
            if document is None:
                return Refusal(404, "not_found", "no answer for that session")
            call_id = fields.get("RequestUUID") or fields.get("CallUUID", "")
            event = StatusEvent(call_id, "", "in-progress", None, MappingProxyType(fields))
            return name, _Answered(document, event)
        call = decide.plivo_call(fields)
        return call if isinstance(call, Refusal) else (name, call)

    def _stream_offer(
        self, server: WebhookServer, request: _Handler, headers: dict[str, str], body: bytes
    ) -> None:
        """A standalone gateway's inbound stream: verified, then offered (blocking, as a
        voice webhook); ``200`` and the session's routing JSON, or ``409`` refused."""
        desk, secret = self.stream_desk, self.gateway_secret
        if desk is None or secret is None:
            return server._refuse(request, Refusal(404, "not_found", "no inbound streams here"))
        signature = next(
            (v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None
        )
        read = read_desk_request(secret, body, signature, time.time())
        if isinstance(read, str):
            status = 403 if read in ("bad_signature", "stale") else 400
            reason = "bad_signature" if status == 403 else "bad_request"
            return server._refuse(request, Refusal(status, reason, f"gateway request: {read}"))
        action, call = read
        if action == "abandon":
            desk.abandon(call)
            return request.reply(200, "{}", content_type=_JSON)
        routing = desk.offer(call)
        if routing is None:
            return request.reply(409, '{"refused":true}', content_type=_JSON)
        return request.reply(200, json.dumps(routing), content_type=_JSON)

    def _offer_call_control(
        self, server: WebhookServer, name: str, call: InboundCall, arrived: float
    ) -> None:
        """Offer a Call Control call from a thread of its own (it lives until a thread takes
        the call, or the queue refuses it: ``queue_timeout_s`` at most); a call refused is
        rejected with a command (``on_unanswered``), never left ringing in silence."""

        def offer() -> None:
            answer = server.queue.offer(call, "", provider=name, arrived_at=arrived)
            if answer.outcome == "accepted":
                logger.info("%s call %s taken: session %s", name, call.call_id, answer.session_id)
            elif answer.session_id is None and answer.outcome != "duplicate":
                logger.warning("%s call %s refused: %s", name, call.call_id, answer.outcome)
                if self.on_unanswered is not None:
                    try:
                        self.on_unanswered(name, call)
                    except Exception:  # the call rings out at Telnyx; this thread must end
                        logger.exception("%s call %s: rejecting it failed", name, call.call_id)

        thread = threading.Thread(target=offer, name="telnyx-offer", daemon=True)
        thread.start()

    def _offer(
        self, server: WebhookServer, request: _Handler, name: str, call: InboundCall, arrived: float
    ) -> None:
        refusal, kind = {
            "telnyx": (decide.telnyx_refusal(), _XML),
            "plivo": (decide.plivo_refusal(), _XML),
            "vonage": (decide.vonage_refusal(), _JSON),
        }[call.provider]

        def local() -> Answer:
            return server.queue.offer(call, refusal, provider=name, arrived_at=arrived)

        answer = server.claim(call, local, name, refusal)
        took = (time.monotonic() - arrived) * 1000
        if answer.outcome == "accepted":
            logger.info(
                "%s call %s answered: session %s (%.0f ms)",
                name,
                call.call_id,
                answer.session_id,
                took,
            )
        elif answer.session_id is None and answer.outcome != "duplicate":
            logger.warning("%s call %s refused: %s", name, call.call_id, answer.outcome)
        request.reply(answer.status, answer.body, content_type=kind)
