"""A local Vonage: the Voice API's calls (create, hang up) and a phone that plays each call.

:class:`VonageApiServer` answers ``POST /v1/calls`` and ``PUT /v1/calls/{uuid}`` as Vonage's
OpenAPI description says (201 with ``uuid``, ``status``, ``direction``,
``conversation_uuid``; 204 for a hang-up; 404 for a call it does not know or that has ended;
RFC 7807 problem bodies for refusals), checking each request's JWT: RS256 under its made-up
application's key, with ``application_id``, ``iat`` and ``jti``. A created call's NCCO must
``connect`` it to a ``websocket`` endpoint; its phone (:mod:`actors.emulator.pcm_phone`,
speaking :class:`~actors.codecs.vonage.VonageSocket`) dials the endpoint's ``uri``, sends
``websocket:connected`` with the endpoint's headers, then 20 ms binary PCM16 frames (320
bytes at 8 kHz, 640 at 16 kHz) both ways at real time, answers each ``notify`` once the audio
before it has played, empties its queue on ``clear`` (``websocket:cleared``), and buffers at
most 1024 frames (Vonage's limit: the rest is dropped and counted). Vonage ends a stream by
closing the socket: a hang-up closes it.

A call's ``event_url`` gets its events, signed as Vonage signs callbacks (a JWT under the
signature secret with the body's ``payload_hash``): ``started``, ``ringing``, ``answered``,
``completed``, or ``busy``, ``timeout``, ``failed`` for the numbers ``emulator.behaviours``
makes busy, unanswered or failed. :meth:`VonageEmulator.place_inbound_call` makes it a caller:
it posts the answer URL, signed, and obeys the NCCO it answers.

A ``connect`` action with ``eventType: synchronous`` and an ``eventUrl``: Vonage's NCCO
reference says this "enable[s] eventUrl to return an NCCO that overrides the current NCCO
when a call moves to specific states" (the .NET SDK's ``ConnectAction.EventType`` repeats
it); issue 16 names the websocket's ``disconnected`` as one such state, which the pages read
here do not list state by state. So, as modelled: when the websocket ends while the call is up
(its server went away: not hung up over the API), the emulator posts a signed ``disconnected``
event to that ``eventUrl`` (its ``uuid`` is the websocket leg's own, as a connected leg's
events carry theirs; ``conversation_uuid`` is the call's) and obeys the NCCO it answers (a
websocket ``connect`` is dialled); an answer with none, or no ``eventUrl``, ends the call.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from ..codecs import Frame
from ..codecs.vonage import NotifyOut, VonageSocket
from ..config import EmulatorConfig
from ..pubkey import (
    TokenRefused,
    new_private_key,
    public_key_of,
    verify_application_token,
    webhook_token,
)
from ._http import ApiRequestHandler, Fault, HTTPApiServer, RecordedRequest, Reply
from .hooks import behaviour_for, send, unanswered_outcome
from .pcm_phone import PcmCallMedia, PcmDialer
from .provider_emulator import ProviderEmulator

__all__ = ["VonageApiServer", "VonageCall", "VonageEmulator", "VonageWire"]

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
#: Vonage buffers what is sent faster than real time, "only 1024 messages" (~20 s).
MAX_BUFFERED_FRAMES = 1024
_ERRORS = "https://developer.nexmo.com/api-errors"
_CALL_PATH = re.compile(r"/v1/calls/(?P<uuid>[^/]+)")
_DIGITS = re.compile(r"\d{7,15}")
_CONTENT_TYPE = re.compile(r"audio/l16;rate=(8000|16000)")
_OPERATIONS = ("create_call", "hang_up")


class VonageWire:
    """Vonage's side of one call's websocket, for the emulated phone."""

    def __init__(self, rate: int, headers: Mapping[str, Any]) -> None:
        self.socket = VonageSocket(rate, headers)
        self.rate = rate

    def opening(self) -> list[Frame]:
        return [self.socket.connected()]

    def audio(self, pcm: bytes, timestamp_ms: int) -> list[Frame]:
        return [self.socket.audio(pcm)]

    def parse(self, frame: Frame) -> object:
        return self.socket.parse(frame)

    def mark_name(self, event: object) -> str:
        name = event.name if isinstance(event, NotifyOut) else None
        return name if name is not None else json.dumps(getattr(event, "payload", None))

    def played(self, event: object) -> Frame:
        payload = event.payload if isinstance(event, NotifyOut) else {}
        return self.socket.notify(payload)

    def cleared(self) -> list[Frame]:
        return [self.socket.cleared()]

    def dtmf(self, digit: str) -> Frame:
        return self.socket.dtmf(digit)

    def closing(self) -> list[Frame]:
        return []


@dataclass(slots=True)
class VonageCall:
    """A call the emulator was asked to make."""

    uuid: str
    to: str
    from_: str
    uri: str
    rate: int
    headers: dict[str, Any]
    conversation_uuid: str = field(default_factory=lambda: "CON-" + str(uuidlib.uuid4()))
    status: str = "started"
    media: PcmCallMedia | None = None
    event_url: str | None = None
    ringing_timer: float | None = None
    direction: str = "outbound"
    ncco: Any = None  # an inbound call's answer, as it came
    sync_url: str | None = None  # its connect's eventUrl, when eventType is synchronous
    ended: threading.Event = field(default_factory=threading.Event)


def _problem(status: int, kind: str, title: str, detail: str) -> Reply:
    return Reply(status, {"type": f"{_ERRORS}#{kind}", "title": title, "detail": detail})


def _endpoint(body: Mapping[str, Any]) -> dict[str, Any] | str:
    """The NCCO's websocket endpoint, or what is wrong with the NCCO."""
    ncco = body.get("ncco")
    if not isinstance(ncco, list) or not ncco:
        return "ncco must be a non-empty array of actions (the emulator needs one)"
    for action in ncco:
        if not isinstance(action, dict) or action.get("action") != "connect":
            continue
        for endpoint in action.get("endpoint") or []:
            if isinstance(endpoint, dict) and endpoint.get("type") == "websocket":
                return endpoint
    return "the emulator only plays NCCOs that connect to a websocket endpoint"


def _synchronous(ncco: object) -> str | None:
    """The ``eventUrl`` of the NCCO's websocket ``connect``, if its ``eventType`` is
    ``synchronous`` (the URL that may answer the websocket's end with a new NCCO)."""
    if not isinstance(ncco, list):
        return None
    for action in ncco:
        if not isinstance(action, dict) or action.get("action") != "connect":
            continue
        urls = action.get("eventUrl")
        if action.get("eventType") == "synchronous" and isinstance(urls, list) and urls:
            return urls[0] if isinstance(urls[0], str) else None
    return None


class VonageApiServer(HTTPApiServer):
    """Vonage's ``/v1/calls`` on ``host:port``; ``on_create(call)`` runs once a created
    call's answer is on the wire, ``on_hang_up(call)`` once a hang-up's is."""

    _label = "vonage emulator"
    _logger = logger

    def __init__(
        self,
        application_id: str,
        public_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "vonage-api",
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            name=name,
            handler=_Handler,
            max_body=MAX_BODY,
            fault_operations=_OPERATIONS,
            requests_kept=None,
        )
        self.application_id = application_id
        self._public_key = public_key
        self.calls: dict[str, VonageCall] = {}
        self.on_create: Any = None
        self.on_hang_up: Any = None

    def inject(self, operation: str, status: int, payload: dict[str, Any], times: int = 1) -> None:
        """Answer the next ``times`` requests of ``operation`` with ``status`` and ``payload``."""
        self._queue_fault(operation, Fault(status, payload, None, times))

    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        path = target.split("?", 1)[0].rstrip("/")
        if path == "/v1/calls" and method == "POST":
            operation = "create_call"
        elif _CALL_PATH.fullmatch(path) and method == "PUT":
            operation = "hang_up"
        else:
            return _problem(404, "not-found", "Not Found", "no such resource"), None
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise TokenRefused("no bearer token")
            claims = verify_application_token(token, self._public_key)
        except TokenRefused as exc:
            return _problem(401, "unauthorized", "Unauthorized", str(exc)), operation
        if claims.get("application_id") != self.application_id:
            return _problem(401, "unauthorized", "Unauthorized", "unknown application"), operation
        fault = self._take_fault(operation)
        if fault is not None and not fault.performed:
            return fault.reply(), operation
        try:
            data = json.loads(body or b"null")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _problem(
                400, "invalid-json", "Bad Request", "body is not a JSON object"
            ), operation
        if operation == "create_call":
            return self._create(data), operation
        match = _CALL_PATH.fullmatch(path)
        assert match is not None
        return self._update(match.group("uuid"), data), operation

    def _create(self, data: dict[str, Any]) -> Reply:
        to = data.get("to")
        number = (
            to[0].get("number") if isinstance(to, list) and to and isinstance(to[0], dict) else None
        )
        source = data.get("from")
        from_ = source.get("number") if isinstance(source, dict) else None
        for name, value in (("to[0].number", number), ("from.number", from_)):
            if not isinstance(value, str) or not _DIGITS.fullmatch(value):
                return _problem(400, "validation", "Bad Request", f"{name} must be 7-15 digits")
        endpoint = _endpoint(data)
        if isinstance(endpoint, str):
            return _problem(400, "validation", "Bad Request", endpoint)
        uri, kind = endpoint.get("uri"), endpoint.get("content-type")
        matched = _CONTENT_TYPE.fullmatch(kind) if isinstance(kind, str) else None
        if not isinstance(uri, str) or not uri.startswith(("ws://", "wss://")) or matched is None:
            why = "the websocket needs a ws(s):// uri and content-type audio/l16;rate=8000|16000"
            return _problem(400, "validation", "Bad Request", why)
        headers = endpoint.get("headers") or {}
        if not isinstance(headers, dict):
            return _problem(400, "validation", "Bad Request", "headers must be an object")
        assert isinstance(number, str) and isinstance(from_, str)
        call = VonageCall(str(uuidlib.uuid4()), number, from_, uri, int(matched.group(1)), headers)
        call.sync_url = _synchronous(data.get("ncco"))
        events, timer = data.get("event_url"), data.get("ringing_timer")
        if isinstance(events, list) and events and isinstance(events[0], str):
            call.event_url = events[0]
        call.ringing_timer = float(timer) if isinstance(timer, int | float) else None
        with self._lock:
            self.calls[call.uuid] = call
        payload = {
            "uuid": call.uuid,
            "status": call.status,
            "direction": "outbound",
            "conversation_uuid": call.conversation_uuid,
        }
        return Reply(201, payload, after=lambda: self.on_create and self.on_create(call))

    def _update(self, uuid: str, data: dict[str, Any]) -> Reply:
        with self._lock:
            call = self.calls.get(uuid)
        if call is None or call.status == "completed":
            return _problem(404, "not-found", "Not Found", f"call {uuid} was not found")
        action = data.get("action")
        if action == "hangup":
            call.status = "completed"
            return Reply(204, {}, after=lambda: self.on_hang_up and self.on_hang_up(call))
        if action in ("mute", "unmute", "earmuff", "unearmuff"):
            return Reply(204, {})
        return _problem(400, "validation", "Bad Request", "unsupported action")


class _Handler(ApiRequestHandler):
    """Vonage's words for refused requests; a 204 has no body."""

    server_version = "VonageEmulator/1.0"
    server: Any

    def _length_required(self) -> Reply:
        return _problem(411, "length-required", "Length Required", "send a Content-Length")

    def _bad_length(self) -> Reply:
        return _problem(400, "bad-request", "Bad Request", "invalid Content-Length")

    def _too_large(self, length: int, limit: int) -> Reply:
        return _problem(413, "too-large", "Payload Too Large", f"the body exceeds {limit} bytes")

    def _internal_error(self) -> Reply:
        return _problem(500, "internal-error", "Internal Server Error", "internal error")

    def _send(self, reply: Reply, operation: str | None, close: bool = False) -> None:
        if reply.status != 204:
            super()._send(reply, operation, close)
            return
        self.server.api._record(RecordedRequest(self.command, self.path, 204, operation))
        self.send_response(204)
        self.end_headers()
        self.wfile.flush()


class VonageEmulator(ProviderEmulator[VonageCall]):
    """A local Vonage: :attr:`url` is its API base URL, :attr:`application_id` and
    :attr:`private_key` its made-up application (for this process only); calls play per
    ``config.media`` (``echo``, ``tone``, ``silence``, ``reflect``)."""

    api: VonageApiServer
    media: PcmDialer

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1") -> None:
        self.application_id = str(uuidlib.uuid4())
        self.private_key = new_private_key()
        self.signature_secret = uuidlib.uuid4().hex
        media = PcmDialer(config, name="vonage", max_queued_ms=MAX_BUFFERED_FRAMES * 20)
        api = VonageApiServer(self.application_id, public_key_of(self.private_key), host=host)
        super().__init__(config, "vonage", media, api)
        self.api.on_create = self._created
        self.api.on_hang_up = self._hung_up

    def start(self, timeout: float = 5.0) -> Self:
        super().start(timeout)
        logger.info("Vonage emulator listening on %s", self.url)
        return self

    def place_inbound_call(
        self, answer_url: str, to: str, from_: str, *, event_url: str | None = None
    ) -> VonageCall:
        """Call ``to`` from ``from_``: post the answer URL (signed) and obey the NCCO it
        answers. Returns at once; :meth:`wait_ended` tells how it went."""
        call = VonageCall(str(uuidlib.uuid4()), to.lstrip("+"), from_.lstrip("+"), "", 16000, {})
        call.direction, call.event_url = "inbound", event_url
        with self.api._lock:
            self.api.calls[call.uuid] = call
        payload = {
            "uuid": call.uuid,
            "conversation_uuid": call.conversation_uuid,
            "from": call.from_,
            "to": call.to,
        }

        def ask() -> None:
            body = json.dumps(payload).encode()
            result = send(answer_url, body, self._signed(body))
            try:
                call.ncco = json.loads(result.body) if result.ok else None
            except ValueError:
                call.ncco = None
            endpoint = _endpoint({"ncco": call.ncco})
            if isinstance(endpoint, str):  # no websocket to connect: the NCCO ends the call
                self._finish(call, "completed" if result.ok else "failed")
                return
            kind = str(endpoint.get("content-type", ""))
            matched = _CONTENT_TYPE.fullmatch(kind)
            call.uri, call.headers = str(endpoint.get("uri", "")), endpoint.get("headers") or {}
            call.rate = int(matched.group(1)) if matched else 16000
            call.sync_url = _synchronous(call.ncco)
            self._dial(call)

        self.hooks.call(call.uuid, ask)
        return call

    def _signed(self, body: bytes) -> dict[str, str]:
        token = webhook_token(self.signature_secret, body, {"application_id": self.application_id})
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _event(self, call: VonageCall, status: str) -> None:
        call.status = status
        if call.event_url is None:
            return
        payload = {
            "uuid": call.uuid,
            "conversation_uuid": call.conversation_uuid,
            "status": status,
            "direction": call.direction,
            "from": call.from_,
            "to": call.to,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        body = json.dumps(payload).encode()
        self.hooks.post(call.uuid, call.event_url, body, self._signed(body))

    def _finish(self, call: VonageCall, status: str) -> None:
        if call.ended.is_set():
            return
        self._event(call, status)
        logger.info("emulated call %s ended (%s)", call.uuid, status)
        call.ended.set()

    def call_media(self, uuid: str) -> PcmCallMedia | None:
        return self.media.media(uuid)

    def send_dtmf(self, uuid: str, digits: str) -> None:
        self.media.send_dtmf(uuid, digits)

    def hang_up(self, uuid: str) -> None:
        """The far end hangs up (the phone closes the stream)."""
        self.media.hang_up(uuid)

    def _created(self, call: VonageCall) -> None:
        self._event(call, "started")
        behaviour = behaviour_for(self.config.behaviours, "+" + call.to)
        unanswered = unanswered_outcome(
            behaviour, self.config.answer_after_s, call.ringing_timer or 60.0
        )
        if unanswered is not None:
            outcome, after = unanswered
            if outcome == "no-answer":
                self._event(call, "ringing")
            words = {"no-answer": "timeout"}

            def ring_out() -> None:
                gone = call.status == "completed"  # hung up over REST while it rang
                self._finish(call, "cancelled" if gone else words.get(outcome, outcome))

            self.later.call(after, ring_out)
            return
        self._event(call, "ringing")
        self._event(call, "answered")
        self._dial(call)

    def _dial(self, call: VonageCall) -> None:
        wire = VonageWire(call.rate, call.headers)
        call.status = "answered"
        end = lambda: self._stream_ended(call)  # noqa: E731
        call.media = self.media.dial(call.uuid, call.uri, wire, to="+" + call.to, on_end=end)

    def _stream_ended(self, call: VonageCall) -> None:
        """The websocket closed: the call ends, unless it is still up and its connect was
        synchronous (see the module docstring)."""
        url, call.sync_url = call.sync_url, None
        hung_up = call.status == "completed" or (call.media is not None and call.media.hung_up)
        if url is None or hung_up:  # (over the API, or the far end hung up)
            self._finish(call, "completed")
            return
        self.hooks.call(call.uuid, lambda: self._disconnected(call, url))

    def _disconnected(self, call: VonageCall, url: str) -> None:
        payload = {
            "uuid": str(uuidlib.uuid4()),  # the websocket leg's own
            "conversation_uuid": call.conversation_uuid,
            "status": "disconnected",
            "direction": "outbound",
            "from": call.from_,
            "to": call.to,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        body = json.dumps(payload).encode()
        result = send(url, body, self._signed(body))
        try:
            ncco = json.loads(result.body) if result.ok and result.body.strip() else None
        except ValueError:
            ncco = None
        endpoint = _endpoint({"ncco": ncco})
        if isinstance(endpoint, str) or call.status == "completed":
            self._finish(call, "completed")
            return
        kind = str(endpoint.get("content-type", ""))
        matched = _CONTENT_TYPE.fullmatch(kind)
        call.uri, call.headers = str(endpoint.get("uri", "")), endpoint.get("headers") or {}
        call.rate = int(matched.group(1)) if matched else call.rate
        call.sync_url = _synchronous(ncco)
        logger.info("vonage emulator: call %s connects again to %s", call.uuid, call.uri)
        self._dial(call)

    def _hung_up(self, call: VonageCall) -> None:
        self.media.hang_up(call.uuid)
