"""A local Exotel: the calls-connect API with a bidirectional stream, and a phone per call.

:class:`ExotelApiServer` answers ``POST /v1/Accounts/{sid}/Calls/connect[.json]`` (HTTP basic
auth as the account's API key and token; form keys read in any case, as Exotel's pages write
them both ways): ``From``, ``CallerId``, ``StreamUrl`` (``ws(s)://``, at most 600
characters, at most three custom query parameters besides ``sample-rate``, 256 characters),
``StreamType=bidirectional``. It answers ``{"Call": {"Sid", "Status", ...}}``, or a
``{"RestException": {"Status", "Message", "Code"}}`` refusal. There is no hang-up route:
Exotel's v1 API has none.

Each call's phone (:mod:`actors.emulator.pcm_phone`, speaking
:class:`~actors.codecs.exotel.ExotelStream`) dials the stream URL (its ``user:password@``
sent as ``Authorization: Basic``, as Exotel does), sends ``connected`` and ``start`` (the
query's custom parameters as ``custom_parameters``, ``media_format`` at ``?sample-rate=``),
then base64 PCM16 ``media`` every 100 ms (five 20 ms frames), refuses outbound chunks that
break Exotel's size rules (recorded as errors), echoes each ``mark`` once the audio before it
has played, empties its queue on ``clear``, and ends with ``stop`` on hang-up.

An inbound call (:meth:`ExotelEmulator.place_inbound_call`) is a caller dialling an ExoPhone
whose flow's Voicebot applet holds the gateway's URL: the phone dials that URL itself, as
above, with no webhook before it.

A call's ``StatusCallback`` gets its end as Exotel posts it (a form: ``CallSid``, ``Status``
``completed``, or ``busy``, ``no-answer``, ``failed`` for the numbers ``emulator.behaviours``
makes busy, unanswered or failed, ``EventType=terminal``); Exotel signs nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..codecs import Frame
from ..codecs.exotel import ExotelStream
from ..codecs.twilio import MarkOut, new_sid
from ..config import EmulatorConfig
from ._http import ApiRequestHandler, Fault, HTTPApiServer, Reply
from .hooks import behaviour_for, unanswered_outcome
from .pcm_phone import PcmCallMedia, PcmDialer
from .provider_emulator import ProviderEmulator

__all__ = ["ExotelApiServer", "ExotelCall", "ExotelEmulator", "ExotelWire", "stream_target"]

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
_CONNECT = re.compile(r"/v1/Accounts/(?P<sid>[^/]+)/Calls/connect(?:\.json)?", re.IGNORECASE)
_RATES = ("8000", "16000", "24000")
CHUNK_FRAMES = 5  # Exotel sends ~100 ms of audio per media frame


class ExotelWire:
    """Exotel's side of one call's stream, for the emulated phone."""

    def __init__(self, stream: ExotelStream) -> None:
        self.stream = stream
        self.rate = stream.sample_rate
        self._gathered = bytearray()
        self._first = 0

    def opening(self) -> list[Frame]:
        return [self.stream.connected(), self.stream.start()]

    def audio(self, pcm: bytes, timestamp_ms: int) -> list[Frame]:
        if not self._gathered:
            self._first = timestamp_ms
        self._gathered += pcm
        if len(self._gathered) < CHUNK_FRAMES * len(pcm):
            return []
        chunk, self._gathered = bytes(self._gathered), bytearray()
        return [self.stream.media(chunk, self._first)]

    def parse(self, frame: Frame) -> object:
        return self.stream.parse(frame)

    def mark_name(self, event: object) -> str:
        return event.name if isinstance(event, MarkOut) else str(event)

    def played(self, event: object) -> Frame:
        return self.stream.mark(self.mark_name(event))

    def cleared(self) -> list[Frame]:
        return []  # Exotel acknowledges no clear

    def dtmf(self, digit: str) -> Frame:
        return self.stream.dtmf(digit)

    def closing(self) -> list[Frame]:
        return [self.stream.stop("callended")]


@dataclass(slots=True)
class ExotelCall:
    """A call the emulator was asked to make (``to`` the number dialled, ``caller_id`` the
    ExoPhone), or an inbound one (``to`` the ExoPhone dialled, ``caller_id`` the caller)."""

    sid: str
    to: str
    caller_id: str
    stream_url: str
    sample_rate: int
    custom_parameters: dict[str, str]
    authorization: str | None  # what the phone sends: the URL's user:password, as Basic
    status: str = "in-progress"
    media: PcmCallMedia | None = None
    status_callback: str | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    inbound: bool = False  # a caller dialled an ExoPhone whose applet streams to us


def stream_target(url: str) -> tuple[str, int, dict[str, str], str | None] | str:
    """What Exotel makes of a stream URL (a StreamUrl, or a Voicebot applet's URL): the URL
    it dials (no userinfo), the sample rate, the custom parameters, and the ``Authorization:
    Basic`` its ``user:password@`` becomes; or why Exotel would refuse it."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname or len(url) > 600:
        return "streamurl must be a ws(s):// URL of 600 characters at most"
    query = dict(parse_qsl(parts.query))
    rate = query.pop("sample-rate", "8000")
    if rate not in _RATES or len(query) > 3 or len(parts.query) > 256 + 20:
        return "sample-rate or custom parameters out of range"
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    host = parts.netloc.rpartition("@")[2]
    plain = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    return plain, int(rate), query, authorization


def _exception(status: int, message: str, code: str) -> Reply:
    return Reply(status, {"RestException": {"Status": status, "Message": message, "Code": code}})


class ExotelApiServer(HTTPApiServer):
    """Exotel's Calls/connect for one account; ``on_create(call)`` runs once a created
    call's answer is on the wire."""

    _label = "exotel emulator"
    _logger = logger

    def __init__(
        self,
        account_sid: str,
        api_key: str,
        api_token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "exotel-api",
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            name=name,
            handler=_Handler,
            max_body=MAX_BODY,
            fault_operations=("create_call",),
            requests_kept=None,
        )
        self.account_sid = account_sid
        self._credentials = f"{api_key}:{api_token}".encode()
        self.calls: dict[str, ExotelCall] = {}
        self.on_create: Any = None

    def inject(self, status: int, payload: dict[str, Any], times: int = 1) -> None:
        """Answer the next ``times`` calls-connect requests with ``status`` and ``payload``."""
        self._queue_fault("create_call", Fault(status, payload, None, times))

    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        match = _CONNECT.fullmatch(target.split("?", 1)[0])
        if match is None or method != "POST":
            return _exception(404, "no such resource", "NOT_FOUND"), None
        if not self._authorized(authorization):
            return _exception(401, "Authentication failed.", "UNAUTHORIZED"), "create_call"
        if match.group("sid") != self.account_sid:
            return _exception(403, "not your account", "FORBIDDEN"), "create_call"
        fault = self._take_fault("create_call")
        if fault is not None:
            return fault.reply(), "create_call"
        form = {k.lower(): v for k, v in parse_qsl(body.decode("utf-8", "replace"))}
        return self._create(form), "create_call"

    def _authorized(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return False
        return scheme.lower() == "basic" and hmac.compare_digest(given, self._credentials)

    def _create(self, form: Mapping[str, str]) -> Reply:
        for key in ("from", "callerid", "streamurl", "streamtype"):
            if not form.get(key):
                return _exception(400, f"{key} is required", "MISSING_PARAMETER")
        if form["streamtype"] != "bidirectional":
            return _exception(400, "streamtype must be bidirectional", "INVALID_PARAMETER")
        target = stream_target(form["streamurl"])
        if isinstance(target, str):
            return _exception(400, target, "INVALID_PARAMETER")
        plain, rate, query, authorization = target
        call = ExotelCall(
            secrets.token_hex(16),
            form["from"],
            form["callerid"],
            plain,
            rate,
            query,
            authorization,
            status_callback=form.get("statuscallback") or None,
        )
        with self._lock:
            self.calls[call.sid] = call
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        payload = {
            "Call": {
                "Sid": call.sid,
                "Status": call.status,
                "From": call.to,
                "PhoneNumberSid": call.caller_id,
                "Direction": "outbound-api",
                "DateCreated": created,
                "RecordingUrl": None,
            }
        }
        return Reply(200, payload, after=lambda: self.on_create and self.on_create(call))


class _Handler(ApiRequestHandler):
    """Exotel's words for refused requests."""

    server_version = "ExotelEmulator/1.0"

    def _length_required(self) -> Reply:
        return _exception(411, "send a Content-Length", "LENGTH_REQUIRED")

    def _bad_length(self) -> Reply:
        return _exception(400, "invalid Content-Length", "BAD_REQUEST")

    def _too_large(self, length: int, limit: int) -> Reply:
        return _exception(413, f"the body exceeds {limit} bytes", "TOO_LARGE")

    def _internal_error(self) -> Reply:
        return _exception(500, "internal error", "INTERNAL_ERROR")


class ExotelEmulator(ProviderEmulator[ExotelCall]):
    """A local Exotel: :attr:`url` is its API base URL, with a made-up account
    (:attr:`account_sid`, :attr:`api_key`, :attr:`api_token`, for this process only); calls
    play per ``config.media`` (``echo``, ``tone``, ``silence``, ``reflect``)."""

    api: ExotelApiServer
    media: PcmDialer

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1") -> None:
        self.account_sid = "emulated" + secrets.token_hex(4)
        self.api_key = secrets.token_hex(8)
        self.api_token = secrets.token_urlsafe(24)
        media = PcmDialer(config, name="exotel", max_queued_ms=60_000)
        api = ExotelApiServer(self.account_sid, self.api_key, self.api_token, host=host)
        super().__init__(config, "exotel", media, api)
        self.api.on_create = self._created

    def start(self, timeout: float = 5.0) -> Self:
        super().start(timeout)
        logger.info("Exotel emulator listening on %s", self.url)
        return self

    def _finish(self, call: ExotelCall, status: str) -> None:
        if call.ended.is_set():
            return
        call.status = status
        if call.status_callback is not None:
            form = {
                "CallSid": call.sid,
                "Status": status,
                "EventType": "terminal",
                "From": call.to,
                "To": call.caller_id,
                "DateUpdated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            }
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            self.hooks.post(call.sid, call.status_callback, urlencode(form).encode(), headers)
        logger.info("emulated call %s ended (%s)", call.sid, status)
        call.ended.set()

    def call_media(self, sid: str) -> PcmCallMedia | None:
        return self.media.media(sid)

    def send_dtmf(self, sid: str, digits: str) -> None:
        self.media.send_dtmf(sid, digits)

    def hang_up(self, sid: str) -> None:
        """The caller hangs up: ``stop``, then the stream closes."""
        self.media.hang_up(sid)

    def place_inbound_call(self, applet_url: str, to: str, from_: str) -> ExotelCall:
        """``from_`` calls ExoPhone ``to``, whose flow's Voicebot applet holds ``applet_url``:
        as Exotel does, the phone dials that URL itself (its ``user:password@`` as Basic
        auth) and streams ``connected``, ``start`` (``from``, ``to``, the URL's custom
        parameters) and media, with no webhook before it. The call ends with its stream (a
        gateway that refuses it closes the stream: :attr:`PcmCallMedia.close_code`);
        :meth:`hang_up` is the caller hanging up. ``ValueError`` for a URL Exotel refuses."""
        target = stream_target(applet_url)
        if isinstance(target, str):
            raise ValueError(target)
        plain, rate, query, authorization = target
        call = ExotelCall(
            secrets.token_hex(16), to, from_, plain, rate, query, authorization, inbound=True
        )
        with self._lock:
            self.api.calls[call.sid] = call
        stream = ExotelStream(
            new_sid("ST"),
            call.sid,
            self.account_sid,
            from_=from_,
            to=to,
            custom_parameters=query,
            sample_rate=rate,
        )
        headers = {"Authorization": authorization} if authorization else {}
        call.media = self.media.dial(
            call.sid,
            plain,
            ExotelWire(stream),
            to=to,
            headers=headers,
            on_end=lambda: self._finish(call, "completed"),
        )
        logger.info("emulated inbound call %s from %s to %s", call.sid, from_, to)
        return call

    def _created(self, call: ExotelCall) -> None:
        behaviour = behaviour_for(self.config.behaviours, call.to)
        unanswered = unanswered_outcome(behaviour, self.config.answer_after_s, None)
        if unanswered is not None:
            outcome, after = unanswered
            self.later.call(after, lambda: self._finish(call, outcome))
            return

        def ended() -> None:
            self._finish(call, "completed")

        stream = ExotelStream(
            new_sid("ST"),
            call.sid,
            self.account_sid,
            from_=call.to,
            to=call.caller_id,
            custom_parameters=call.custom_parameters,
            sample_rate=call.sample_rate,
        )
        headers = {"Authorization": call.authorization} if call.authorization else {}
        call.media = self.media.dial(
            call.sid, call.stream_url, ExotelWire(stream), to=call.to, headers=headers, on_end=ended
        )
