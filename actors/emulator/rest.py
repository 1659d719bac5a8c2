"""A local Twilio-compatible REST API for calls: create, update (hang up) and fetch.

:class:`TwilioApiServer` answers the three requests a session makes of Twilio's 2010-04-01 API
the way Twilio does (status codes, error codes and the legacy error body
``{"code", "message", "more_info", "status"}``), keeps the calls it was asked to make in
:attr:`TwilioApiServer.calls`, and tells its owner through ``on_create`` / ``on_hang_up``, so a
media dialer can play the phone. Tests can make it fail on purpose with
:meth:`TwilioApiServer.inject` and count attempts in :attr:`TwilioApiServer.requests`.

It serves plain HTTP on loopback from a thread of its own (``http.server``), one thread per
connection. Authorization headers and tokens are never logged.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hmac
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from ..wire.constants import ACCOUNT_SID as _ACCOUNT_SID
from ._http import (
    ApiRequestHandler,
    Fault,
    HTTPApiServer,
    RecordedRequest,
    Reply,
    status_phrase,
)
from .twiml import Dial, StreamTarget, TwiMLError, parse_stream_target, parse_twiml

__all__ = [
    "INBOUND_PATH",
    "EmulatedCall",
    "Operation",
    "RecordedRequest",
    "StreamTarget",
    "TwiMLError",
    "TwilioApiServer",
    "parse_stream_target",
]

logger = logging.getLogger(__name__)

_KEPT = 10_000  # calls and requests remembered

API_VERSION = "2010-04-01"
MAX_BODY = 64 * 1024

Operation = Literal["create", "update"]

#: Where the emulator's own extension places an inbound call (not a Twilio endpoint).
INBOUND_PATH = "/2010-04-01/Accounts/{account}/Emulator/InboundCalls.json"

_CALLS = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Calls\.json")
_CALL = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/]+)\.json")
_INBOUND = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Emulator/InboundCalls\.json")
_METHODS = ("GET", "POST")
_MACHINE_DETECTION = ("Enable", "DetectMessageEnd")
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_CLIENT = re.compile(r"client:[^\s]+", re.IGNORECASE)
_SIP = re.compile(r"sip:[^\s]+", re.IGNORECASE)
_CALLBACK_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
_TERMINAL = frozenset({"completed", "canceled", "failed", "busy", "no-answer"})
_STATUSES = frozenset({"queued", "ringing", "in-progress"}) | _TERMINAL
_SUBRESOURCES = {
    "notifications": "Notifications",
    "recordings": "Recordings",
    "payments": "Payments",
    "events": "Events",
    "siprec": "Siprec",
    "streams": "Streams",
    "transcriptions": "Transcriptions",
    "user_defined_message_subscriptions": "UserDefinedMessageSubscriptions",
    "user_defined_messages": "UserDefinedMessages",
}
_DEFAULT_FAULTS = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


@dataclass
class EmulatedCall:
    """One call the emulator was asked to place. Mutated only under the server's lock."""

    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str | None
    url: str | None
    status: str
    status_callback: str | None
    status_callback_events: tuple[str, ...]
    created_at: datetime
    stream: StreamTarget | None = None
    status_callback_method: str | None = None
    application_sid: str | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    timeout_s: int | None = None  # `Timeout`: how long it may ring (None: not given)
    direction: str = "outbound-api"  # or "inbound": a call the emulator placed to a voice URL
    method: str = "POST"  # how `url` is requested
    caller_name: str | None = None
    forwarded_from: str | None = None
    machine_detection: str | None = None  # `MachineDetection`: Enable | DetectMessageEnd
    async_amd: bool = False
    async_amd_callback: str | None = None
    async_amd_callback_method: str = "POST"
    answered_by: str | None = None  # AMD's verdict, once known
    # What happened on the call, for tests to assert (appended by the call's flow):
    documents: list[str] = field(default_factory=list)  # every TwiML document obeyed, in order
    transfers: list[Dial] = field(default_factory=list)  # every <Dial>
    dtmf_played: list[str] = field(default_factory=list)  # every <Play digits>, as written
    errors: list[str] = field(default_factory=list)  # webhooks that failed, TwiML refused

    @property
    def ended(self) -> bool:
        """Whether the call is in a final state (completed, canceled, failed...)."""
        return self.status in _TERMINAL

    @property
    def duration_s(self) -> int:
        """Whole seconds from answer to end (0 if it was never answered)."""
        if self.started_at is None:
            return 0
        end = self.ended_at or _now()
        return int((end - self.started_at).total_seconds())

    def resource(self) -> dict[str, Any]:
        """The call as Twilio's Call resource (the JSON the API answers with)."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        duration = None
        if self.started_at is not None and self.ended_at is not None:
            duration = str(int((self.ended_at - self.started_at).total_seconds()))
        return {
            "sid": self.sid,
            "date_created": _rfc2822(self.created_at),
            "date_updated": _rfc2822(self.updated_at or self.created_at),
            "parent_call_sid": None,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": None,
            "status": self.status,
            "start_time": _rfc2822(self.started_at),
            "end_time": _rfc2822(self.ended_at),
            "duration": duration,
            "price": None,
            "price_unit": "USD",
            "direction": self.direction,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "forwarded_from": self.forwarded_from,
            "group_sid": None,
            "caller_name": self.caller_name,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "subresource_uris": {key: f"{uri}/{name}.json" for key, name in _SUBRESOURCES.items()},
        }


def _rfc2822(moment: datetime | None) -> str | None:
    return email.utils.format_datetime(moment) if moment is not None else None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _error(status: int, code: int | None, message: str) -> Reply:
    more_info = f"https://www.twilio.com/docs/errors/{code}" if code is not None else None
    return Reply(
        status, {"code": code, "message": message, "more_info": more_info, "status": status}
    )


def _not_found(path: str) -> Reply:
    return _error(404, 20404, f"The requested resource {path} was not found")


def _valid_endpoint(value: str) -> bool:
    return any(pattern.fullmatch(value) for pattern in (_E164, _CLIENT, _SIP))


def _valid_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_enum(form: Mapping[str, list[str]], key: str, allowed: tuple[str, ...]) -> Reply | None:
    """Twilio's 400 for a parameter given a value it does not take (``None``: fine)."""
    value = (form.get(key) or [""])[0]
    if not value or value in allowed:
        return None
    return _error(400, 20001, f"{key} must be one of {', '.join(allowed)}, not {value!r}")


def _parse_twiml(twiml: str) -> StreamTarget | Reply | None:
    """A document's stream (``None``: none, or no document), or Twilio's 400 (12100) for TwiML
    the emulator cannot obey."""
    if not twiml:
        return None
    try:
        parse_twiml(twiml)
        return parse_stream_target(twiml)
    except TwiMLError as exc:
        return _error(400, 12100, str(exc))


class TwilioApiServer(HTTPApiServer):
    """A Twilio-compatible Calls API on ``host:port`` (port 0: any free port); use its
    :attr:`url` (``http://127.0.0.1:PORT``) as the client's ``api_base_url``.

    ``accounts`` maps AccountSid to AuthToken; ``api_keys`` maps an API key SID to
    ``(secret, AccountSid)``. ``on_create(call)`` runs after a create's 201 has been sent (as
    Twilio dials once the API request is accepted); ``on_hang_up(call)`` after an update that
    ended a call; ``on_update(call)`` after one that gave it new instructions (``Twiml`` or
    ``Url``, now on the call); ``on_inbound(call)`` after ``POST`` :data:`INBOUND_PATH` (the
    emulator's own extension: place an inbound call to ``Url``, else ``default_voice_url``).
    These run on the connection's thread, so keep them short (hand work to another thread); an
    exception in one is logged and the server goes on. ``on_status(call)`` runs *under the
    server's lock* after every change of a call's status (keep it to queueing work), so that
    whatever it queues is in the order of the changes.

    ``start()`` returns once the socket listens; ``stop()`` closes it and every connection,
    and joins every thread, within ``timeout``.
    """

    _label = "twilio emulator"
    _logger = logger

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        api_keys: Mapping[str, tuple[str, str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_create: Callable[[EmulatedCall], None] | None = None,
        on_hang_up: Callable[[EmulatedCall], None] | None = None,
        max_body: int = MAX_BODY,
        name: str = "twilio-api",
        on_update: Callable[[EmulatedCall], None] | None = None,
        on_inbound: Callable[[EmulatedCall], None] | None = None,
        on_status: Callable[[EmulatedCall], None] | None = None,
        default_voice_url: str | None = None,
    ) -> None:
        for sid in accounts:
            if not _ACCOUNT_SID.fullmatch(sid):
                raise ValueError(f"account {sid!r} is not 'AC' followed by 32 hex digits")
        # Bounded: a long-running emulator forgets the oldest calls and requests.
        super().__init__(
            host=host,
            port=port,
            name=name,
            handler=_Handler,
            max_body=max_body,
            fault_operations=("create", "update"),
            requests_kept=_KEPT,
        )
        self._accounts = dict(accounts)
        self._api_keys = dict(api_keys or {})
        self.on_create = on_create
        self.on_hang_up = on_hang_up
        self.on_update = on_update
        self.on_inbound = on_inbound
        self.on_status = on_status
        self.default_voice_url = default_voice_url
        self._calls: OrderedDict[str, EmulatedCall] = OrderedDict()

    # -- what tests and the media side see ---------------------------------------------------

    @property
    def calls(self) -> dict[str, EmulatedCall]:
        """A snapshot of the calls made so far, by sid."""
        with self._lock:
            return dict(self._calls)

    def call(self, sid: str) -> EmulatedCall:
        """The call ``sid`` (``KeyError`` if there is none)."""
        with self._lock:
            return self._calls[sid]

    def set_status(self, sid: str, status: str) -> EmulatedCall:
        """Move call ``sid`` to ``status`` (``ringing``, ``in-progress``, ``completed``...).

        For the side that plays the phone: answering, or the far end hanging up. It does not
        run ``on_hang_up``, which is about hang-ups requested through the API.
        """
        if status not in _STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        with self._lock:
            call = self._calls[sid]
            self._set(call, status)
            return call

    def transition(self, sid: str, status: str) -> EmulatedCall | None:
        """Move call ``sid`` to ``status`` unless it has ended (or is unknown): ``None`` then.

        Of two sides racing to end a call (the phone, a hang-up over the API) exactly one
        moves it, so exactly one final status is reported.
        """
        if status not in _STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        with self._lock:
            call = self._calls.get(sid)
            if call is None or call.ended:
                return None
            self._set(call, status)
            return call

    def mutate(self, sid: str, change: Callable[[EmulatedCall], None]) -> EmulatedCall | None:
        """Run ``change(call)`` under the server's lock (``None``: no such call)."""
        with self._lock:
            call = self._calls.get(sid)
            if call is not None:
                change(call)
            return call

    def add_call(self, call: EmulatedCall) -> None:
        """Keep ``call`` (one the emulator places itself, e.g. inbound) like a created one."""
        with self._lock:
            self._keep(call)

    def _keep(self, call: EmulatedCall) -> None:
        self._calls[call.sid] = call
        while len(self._calls) > _KEPT:
            self._calls.popitem(last=False)

    def _set(self, call: EmulatedCall, status: str) -> None:
        """Change a call's status (lock held) and tell ``on_status``."""
        now = _now()
        changed = call.status != status
        call.status = status
        call.updated_at = now
        if status == "in-progress" and call.started_at is None:
            call.started_at = now
        if status in _TERMINAL and call.ended_at is None:
            call.ended_at = now
        if changed and self.on_status is not None:
            try:
                self.on_status(call)
            except Exception:
                logger.exception("on_status callback failed for call %s", call.sid)

    def inject(
        self,
        operation: Operation,
        status: int,
        *,
        times: int = 1,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` authenticated ``operation`` requests with ``status``.

        The operation is not performed. The body is Twilio-shaped: 429 has code 20429, 500
        20500, 503 20503, unless ``code`` says otherwise. ``retry_after`` adds that header.
        Injected faults queue up in the order given.
        """
        if operation not in self._faults:
            raise ValueError(f"operation must be 'create' or 'update', not {operation!r}")
        default_code, default_message = _DEFAULT_FAULTS.get(status, (None, status_phrase(status)))
        body = _error(
            status, code if code is not None else default_code, message or default_message
        )
        fault = Fault(status, body.payload, retry_after=retry_after, remaining=times)
        self._queue_fault(operation, fault)

    # -- request handling (called from connection threads) -----------------------------------

    def _authenticate(self, header: str, account_sid: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, colon, password = decoded.partition(":")
        if not colon:
            return False
        owner: str | None
        if username.startswith("SK"):
            expected, owner = self._api_keys.get(username, ("", None))
        else:
            expected = self._accounts.get(username, "")
            owner = username if username in self._accounts else None
        # Compare even for an unknown user, so timing does not tell which users exist.
        matches = hmac.compare_digest(password.encode(), expected.encode())
        # Credentials of another account are refused like wrong ones (Twilio: 20003).
        return matches and bool(expected) and owner == account_sid

    def _create(self, account_sid: str, form: Mapping[str, list[str]]) -> Reply:
        def first(key: str) -> str:
            values = form.get(key)
            return values[0] if values else ""

        to, from_ = first("To"), first("From")
        url, twiml, application_sid = first("Url"), first("Twiml"), first("ApplicationSid")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not _valid_endpoint(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not _valid_endpoint(from_):
            return _error(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
        if not (url or twiml or application_sid):
            return _error(
                400,
                21205,
                "Url parameter is required. For more information, see "
                "http://www.twilio.com/docs/api/twiml",
            )
        if url and not _valid_url(url):
            return _error(400, 21205, f"Url is not a valid URL: {url}")
        stream = _parse_twiml(twiml)
        if isinstance(stream, Reply):
            return stream
        # Old clients join events with spaces; current ones repeat the key. Take both.
        events = tuple(e for value in form.get("StatusCallbackEvent", []) for e in value.split())
        if any(event not in _CALLBACK_EVENTS for event in events):
            return _error(400, 21626, "One or more of the StatusCallbackEvents were invalid.")
        timeout = first("Timeout")
        if timeout and not timeout.isdigit():
            return _error(400, 21216, f"Timeout must be a number of seconds, not {timeout!r}")
        status_callback = first("StatusCallback") or None
        if status_callback is not None and not _valid_url(status_callback):
            return _error(400, 21205, f"StatusCallback is not a valid URL: {status_callback}")
        wrong = (
            _check_enum(form, "Method", _METHODS)
            or _check_enum(form, "StatusCallbackMethod", _METHODS)
            or _check_enum(form, "MachineDetection", _MACHINE_DETECTION)
            or _check_enum(form, "AsyncAmd", ("true", "false"))
            or _check_enum(form, "AsyncAmdStatusCallbackMethod", _METHODS)
        )
        if wrong is not None:
            return wrong
        amd_callback = first("AsyncAmdStatusCallback") or None
        if amd_callback is not None and not _valid_url(amd_callback):
            return _error(400, 21205, f"AsyncAmdStatusCallback is not a valid URL: {amd_callback}")
        call = EmulatedCall(
            sid="CA" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            from_=from_,
            twiml=twiml or None,
            url=url or None,
            status="queued",
            status_callback=status_callback,
            status_callback_events=events,
            created_at=_now(),
            stream=stream,
            status_callback_method=first("StatusCallbackMethod") or None,
            application_sid=application_sid or None,
            timeout_s=min(int(timeout), 600) if timeout else None,  # Twilio caps it at 600
            method=first("Method") or "POST",
            machine_detection=first("MachineDetection") or None,
            async_amd=first("AsyncAmd") == "true",
            async_amd_callback=amd_callback,
            async_amd_callback_method=first("AsyncAmdStatusCallbackMethod") or "POST",
        )
        with self._lock:
            self._keep(call)
            payload = call.resource()
        logger.info("emulated call %s created: %s -> %s", call.sid, from_, to)
        callback = self.on_create
        after = (lambda: self._callback("on_create", callback, call)) if callback else None
        return Reply(201, payload, after=after)

    def _update(
        self, path: str, account_sid: str, call_sid: str, form: Mapping[str, list[str]]
    ) -> Reply:
        status = (form.get("Status") or [""])[0]
        if status and status not in ("completed", "canceled"):
            return _error(400, 20001, f"Status must be 'completed' or 'canceled', not {status!r}")
        twiml = (form.get("Twiml") or [""])[0]
        url = (form.get("Url") or [""])[0]
        method = (form.get("Method") or [""])[0] or "POST"
        stream = _parse_twiml(twiml)
        if isinstance(stream, Reply):
            return stream
        if url and not _valid_url(url):
            return _error(400, 21205, f"Url is not a valid URL: {url}")
        wrong = _check_enum(form, "Method", _METHODS) or _check_enum(
            form, "StatusCallbackMethod", _METHODS
        )
        if wrong is not None:
            return wrong
        ended = False
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None or call.account_sid != account_sid:
                return _not_found(path)
            if call.status in _TERMINAL:
                # What Twilio answers for any change to a call that is over (hang-up included).
                return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
            now = _now()
            call.updated_at = now
            if status == "completed" or (
                status == "canceled" and call.status in ("queued", "ringing")
            ):
                self._set(call, status)
                ended = True
            # "canceled" on an answered call does nothing, as on Twilio.
            if twiml and not ended:
                call.twiml, call.url, call.stream = twiml, None, stream
            elif url and not ended:
                call.url, call.twiml, call.stream, call.method = url, None, None, method
            payload = call.resource()
        after = None
        if ended:
            logger.info("emulated call %s ended (%s)", call_sid, payload["status"])
            hang_up = self.on_hang_up
            if hang_up is not None:
                after = lambda: self._callback("on_hang_up", hang_up, call)  # noqa: E731
        elif twiml or url:
            logger.info("emulated call %s given new %s", call_sid, "Twiml" if twiml else "Url")
            update = self.on_update
            if update is not None:
                after = lambda: self._callback("on_update", update, call)  # noqa: E731
        return Reply(200, payload, after=after)

    def _inbound(self, account_sid: str, form: Mapping[str, list[str]]) -> Reply:
        from .inbound import inbound_call  # noqa: PLC0415 (inbound builds on this module)

        def first(key: str) -> str:
            values = form.get(key)
            return values[0] if values else ""

        to, from_ = first("To"), first("From")
        url = first("Url") or self.default_voice_url or ""
        if not (to and _valid_endpoint(to)):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not (from_ and _valid_endpoint(from_)):
            return _error(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
        if not _valid_url(url):
            return _error(400, 21205, "Url (the voice URL to call) is missing or not a URL")
        status_callback = first("StatusCallback") or None
        if status_callback is not None and not _valid_url(status_callback):
            return _error(400, 21205, f"StatusCallback is not a valid URL: {status_callback}")
        events = tuple(e for value in form.get("StatusCallbackEvent", []) for e in value.split())
        if any(event not in _CALLBACK_EVENTS for event in events):
            return _error(400, 21626, "One or more of the StatusCallbackEvents were invalid.")
        wrong = _check_enum(form, "Method", _METHODS) or _check_enum(
            form, "StatusCallbackMethod", _METHODS
        )
        if wrong is not None:
            return wrong
        call = inbound_call(
            account_sid,
            to,
            from_,
            url,
            method=first("Method") or "POST",
            caller_name=first("CallerName") or None,
            forwarded_from=first("ForwardedFrom") or None,
            status_callback=status_callback,
            status_callback_events=events,
            status_callback_method=first("StatusCallbackMethod") or None,
        )
        with self._lock:
            self._keep(call)
            payload = call.resource()
        callback = self.on_inbound
        after = (lambda: self._callback("on_inbound", callback, call)) if callback else None
        return Reply(201, payload, after=after)

    def _fetch(self, path: str, account_sid: str, call_sid: str) -> Reply:
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None or call.account_sid != account_sid:
                return _not_found(path)
            return Reply(200, call.resource())

    @staticmethod
    def _callback(what: str, callback: Callable[[EmulatedCall], None], call: EmulatedCall) -> None:
        try:
            callback(call)
        except Exception:
            logger.exception("%s callback failed for call %s", what, call.sid)

    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        """Route and answer one request; returns the reply and the operation's name."""
        path = urlsplit(target).path
        inbound = _INBOUND.fullmatch(path)
        route = _CALLS.fullmatch(path) or _CALL.fullmatch(path) or inbound
        if route is None:
            return _not_found(path), None
        account_sid = route["account"]
        call_sid = route.groupdict().get("call")
        if inbound is not None:
            operation = {"POST": "inbound"}.get(method)
        elif call_sid is None:
            operation = {"POST": "create"}.get(method)
        else:
            operation = {"POST": "update", "GET": "fetch"}.get(method)
        if not _ACCOUNT_SID.fullmatch(account_sid):
            return _not_found(path), operation
        if operation is None:
            allowed = "POST" if call_sid is None else "GET, POST"  # the extension: POST too
            reply = _error(405, 20004, "Method not allowed")
            reply.headers.append(("Allow", allowed))
            return reply, None
        if not self._authenticate(authorization, account_sid):
            reply = _error(401, 20003, "Authenticate")
            reply.headers.append(("WWW-Authenticate", 'Basic realm="Twilio API"'))
            return reply, operation
        fault = self._take_fault(operation)
        if fault is not None:
            return fault.reply(), operation
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError):
            return _error(400, None, "The request body is not a valid form"), operation
        if operation == "create":
            return self._create(account_sid, form), operation
        if operation == "inbound":
            return self._inbound(account_sid, form), operation
        assert call_sid is not None
        if operation == "update":
            return self._update(path, account_sid, call_sid, form), operation
        return self._fetch(path, account_sid, call_sid), operation


class _Handler(ApiRequestHandler):
    """Twilio's words for refused requests, its request id on every answer, and HEAD and
    OPTIONS answered by the API (a 404 or 405, as Twilio answers them)."""

    server_version = "TwilioEmulator/1.0"

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _length_required(self) -> Reply:
        return _error(411, None, "Length Required: send a Content-Length")

    def _bad_length(self) -> Reply:
        return _error(400, None, "Invalid Content-Length")

    def _too_large(self, length: int, limit: int) -> Reply:
        return _error(
            413, None, f"Request body of {length} bytes exceeds the limit of {limit} bytes"
        )

    def _internal_error(self) -> Reply:
        return _error(500, 20500, "Internal Server Error")

    def _extra_headers(self) -> list[tuple[str, str]]:
        return [("Twilio-Request-Id", "RQ" + secrets.token_hex(16))]
