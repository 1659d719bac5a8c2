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
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from ..codecs import Frame
from ..codecs.vonage import NotifyOut, VonageSocket
from ..config import EmulatorConfig
from ..pubkey import TokenRefused, new_private_key, public_key_of, verify_application_token
from ..startable import Startable
from ._http import ApiRequestHandler, Fault, HTTPApiServer, RecordedRequest, Reply
from .pcm_phone import PcmCallMedia, PcmDialer

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


class VonageEmulator(Startable):
    """A local Vonage: :attr:`url` is its API base URL, :attr:`application_id` and
    :attr:`private_key` its made-up application (for this process only); calls play per
    ``config.media`` (``echo``, ``tone``, ``silence``)."""

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1") -> None:
        self.config = config
        self.application_id = str(uuidlib.uuid4())
        self.private_key = new_private_key()
        self.signature_secret = uuidlib.uuid4().hex
        self.media = PcmDialer(config, name="vonage", max_queued_ms=MAX_BUFFERED_FRAMES * 20)
        self.api = VonageApiServer(self.application_id, public_key_of(self.private_key), host=host)
        self.api.on_create = self._created
        self.api.on_hang_up = self._hung_up
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.api.url

    def start(self, timeout: float = 5.0) -> Self:
        self.media.start(timeout)
        try:
            self.api.start()
        except BaseException:
            self.media.stop(timeout)
            raise
        logger.info("Vonage emulator listening on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.api.stop(timeout)
        self.media.stop(timeout)

    def call(self, uuid: str) -> VonageCall:
        with self._lock:
            return self.api.calls[uuid]

    def call_media(self, uuid: str) -> PcmCallMedia | None:
        return self.media.media(uuid)

    def send_dtmf(self, uuid: str, digits: str) -> None:
        self.media.send_dtmf(uuid, digits)

    def hang_up(self, uuid: str) -> None:
        """The far end hangs up (the phone closes the stream)."""
        self.media.hang_up(uuid)

    def _created(self, call: VonageCall) -> None:
        def ended() -> None:
            call.status = "completed"

        wire = VonageWire(call.rate, call.headers)
        call.status = "answered"
        call.media = self.media.dial(call.uuid, call.uri, wire, to="+" + call.to, on_end=ended)

    def _hung_up(self, call: VonageCall) -> None:
        self.media.hang_up(call.uuid)
