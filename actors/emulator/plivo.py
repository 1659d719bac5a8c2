"""A local Plivo: the Call API's create and hang-up, and a phone that obeys each call's answer.

The API (``/v1/Account/{auth_id}/...``, HTTP basic auth) answers as Plivo documents it:
``POST Call/`` with ``from``, ``to``, ``answer_url`` -> ``201 {"api_id", "message": "call
fired", "request_uuid"}``; ``DELETE Call/{call_uuid}/`` -> ``204``, or ``404`` once the call is
over; ``DELETE Request/{request_uuid}/`` cancels a call not yet answered (``204``, else
``404``); errors are ``{"api_id", "error"}``. As an extension of the emulator's own, the body
may carry the answer inline (``answer_xml``); otherwise ``answer_url`` is fetched once the call
is answered, a POST of ``CallUUID``, ``From``, ``To``, ``Direction``, ``CallStatus`` signed
with ``X-Plivo-Signature-V3`` under the account's token (:mod:`actors.webhooks.plivo`).

The answer's ``<Stream>`` is obeyed: its URL is dialled speaking Plivo's frames
(:class:`~actors.codecs.plivo.PlivoStream`): ``start`` with its ``extraHeaders``, 20 ms
``media``, ``playedStream`` once a checkpoint's audio has played, ``clearedAudio`` after
``clearAudio`` (a cleared checkpoint is not answered: Plivo's pages say nothing of one),
``dtmf`` when keys are pressed; ``sendDTMF`` is recorded. Only ``audio/x-mulaw;rate=8000`` is
played.

After the stream, the answer's next element runs only with ``keepCallAlive="true"`` ("If
true, this stream element runs alone. Subsequent XML elements execute only after the stream
disconnects", docs.plivo.com/docs/voice/xml/audiostream): when the stream ends while the call
is up (its server went away: not hung up over the API), a ``<Redirect>`` there is followed: its
URL is posted (signed V3, the call's fields) and its answer obeyed (a ``<Stream>`` is dialled
again, anything else ends the call), as Plivo's ``<Redirect>`` "transfers control of a call to
a different URL". A call hung up over the API runs nothing more.

A call's ``hangup_url`` gets its end, signed V3 (``CallStatus`` ``completed``, or ``busy``,
``timeout``, ``failed`` for the numbers ``emulator.behaviours`` makes busy, unanswered or
failed, with ``RequestUUID``). :meth:`PlivoEmulator.place_inbound_call` makes it a caller: it
posts the answer URL, signed, and obeys the ``<Stream>`` (or ``<Hangup>``) it answers.

``POST Call/{call_uuid}/`` (a transfer, ``legs=aleg`` with ``aleg_url``) answers ``202 "call
transferred"``, then fetches that URL signed V3 and runs its XML in place of the stream: a
``<Dial>`` is recorded (``transfers``) and the call stays up, bridged on; other XML plays out
and the call ends. ``POST Call/{call_uuid}/DTMF/`` records the digits (``dtmf_sent``), ``202
"digits sent"``. A call created with ``machine_detection`` posts the verdict to its
``machine_detection_url`` once answered (``Machine`` true or false, signed V3); ``hangup``
ends a call a machine answered.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from ..codecs.plivo import DtmfOut, PlivoStream, _extra_headers
from ..config import EmulatorConfig
from ..safexml import parse_xml
from ..webhooks.plivo import NONCE_HEADER, SIGNATURE_HEADER, signature_v3
from ._http import ApiRequestHandler, Fault, HTTPApiServer, Reply
from .hooks import behaviour_for, unanswered_outcome
from .media import CallMedia, MediaDialer
from .numbers import Behaviour
from .phones import DtmfIn, PhoneEvent
from .provider_emulator import ProviderEmulator

__all__ = [
    "EMULATOR_AUTH_ID",
    "PlivoApiServer",
    "PlivoCall",
    "PlivoEmulator",
    "read_answer",
    "read_next",
]

logger = logging.getLogger(__name__)

EMULATOR_AUTH_ID = "MA" + "EMULATOR" + "0" * 10  # the emulator's only account; not a real one
_MULAW = "audio/x-mulaw;rate=8000"
_DTMF_KEYS = frozenset("0123456789*#ABCDwW")


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"api_id": str(uuid.uuid4()), "error": message})


@dataclass
class PlivoCall:
    """One emulated call."""

    request_uuid: str
    call_uuid: str
    to: str
    from_: str
    answer_url: str
    answer_method: str
    answer_xml: str | None
    answered: bool = False
    alive: bool = True
    media: CallMedia | None = None
    dialled: threading.Event = field(default_factory=threading.Event)  # answer read, media on
    hangup_url: str | None = None
    direction: str = "outbound"
    outcome: str = ""  # how it ended: completed, busy, timeout, failed, cancel, transferred
    after: tuple[str, str] | None = None  # the <Redirect> after its <Stream keepCallAlive>
    stream_url: str = ""  # where its (last) stream was dialled
    ended: threading.Event = field(default_factory=threading.Event)
    request: dict[str, Any] = field(default_factory=dict)  # the create's body
    documents: list[str] = field(default_factory=list)  # each XML a transfer fetched
    transfers: list[list[tuple[str, str]]] = field(default_factory=list)  # each <Dial>'s targets
    dtmf_sent: list[str] = field(default_factory=list)  # each DTMF request's digits


def read_answer(document: str) -> tuple[str, dict[str, str], str]:
    """The ``<Stream>`` of an answer: its URL, extra headers and content type. ``ValueError``
    for a document that is not ``<Response><Stream ...>url</Stream></Response>``."""
    root = parse_xml(document)
    stream = root.find("Stream")
    if root.tag != "Response" or stream is None or not (stream.text or "").strip():
        raise ValueError("the answer has no <Response><Stream>url</Stream>")
    if stream.get("bidirectional") != "true":
        raise ValueError("the emulator plays bidirectional streams only")
    headers = _extra_headers(stream.get("extraHeaders") or None)
    content_type = stream.get("contentType", "audio/x-l16;rate=8000")  # the XML page's default
    return (stream.text or "").strip(), headers, content_type


def read_next(document: str) -> tuple[str, str] | None:
    """What runs after the answer's ``<Stream>`` once it disconnects: ``(url, method)`` of a
    ``<Redirect>`` that follows it, when the stream has ``keepCallAlive="true"`` (without it,
    Plivo runs the next elements at once, so nothing waits for the stream); else ``None``."""
    root = parse_xml(document)
    children = list(root)
    for i, element in enumerate(children):
        if element.tag != "Stream":
            continue
        if element.get("keepCallAlive") != "true":
            return None
        for after in children[i + 1 :]:
            target = (after.text or "").strip()
            if after.tag == "Redirect" and target:
                return target, (after.get("method") or "POST").upper()
            if after.tag == "Hangup":
                return None
        return None
    return None


class _PlivoPhone:
    """Plivo's frames on the phone's side (a :class:`~actors.emulator.phones.PhoneStream`)."""

    clear_returns_marks = False

    def __init__(self, stream: PlivoStream) -> None:
        self.stream = stream
        self.stream_sid = stream.stream_id

    def opening(self) -> Sequence[str]:
        return (self.stream.start(),)  # Plivo sends no `connected`

    def media(self, payload: bytes, timestamp_ms: int) -> str:
        return self.stream.media(payload, timestamp_ms)

    def mark(self, name: str) -> str:
        return self.stream.played(name)

    def dtmf(self, digit: str) -> str:
        return self.stream.dtmf(digit)

    def stop(self) -> str | None:
        return None  # Plivo's pages list no stop frame: the socket closes

    def cleared(self, pending_marks: Sequence[str]) -> Sequence[str]:
        return (self.stream.cleared(),)

    def parse(self, frame: str | bytes) -> PhoneEvent:
        event = self.stream.parse(frame)
        return DtmfIn(event.digits) if isinstance(event, DtmfOut) else event


class PlivoApiServer(HTTPApiServer):
    """Plivo's Call API for one account. ``on_create(call)`` runs after a call is fired,
    ``on_hang_up(call)`` after a live call is hung up or cancelled. ``fail`` injects errors
    (``create``, ``hangup``)."""

    _label = "plivo emulator"
    _logger = logger

    def __init__(self, auth_id: str, auth_token: str, *, host: str = "127.0.0.1") -> None:
        super().__init__(
            host=host,
            port=0,
            name="plivo-emulator-api",
            handler=_Handler,
            max_body=64 * 1024,
            fault_operations=("create", "hangup", "transfer", "dtmf"),
            requests_kept=10_000,
        )
        self.auth_id = auth_id
        self._basic = "Basic " + base64.b64encode(f"{auth_id}:{auth_token}".encode()).decode()
        self.calls: dict[str, PlivoCall] = {}  # by request_uuid and by call_uuid
        self.on_create: Any = None
        self.on_hang_up: Any = None
        self.on_transfer: Any = None  # (call, aleg_url, aleg_method) after a transfer is taken

    def fail(self, operation: str, status: int, message: str = "injected", times: int = 1) -> None:
        """The next ``times`` ``operation`` requests get ``status`` with a Plivo error body."""
        payload = {"api_id": str(uuid.uuid4()), "error": message}
        self._queue_fault(operation, Fault(status, payload, None, times))

    def ended(self, call: PlivoCall) -> None:
        with self._lock:
            call.alive = False

    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        if not secrets.compare_digest(authorization.encode(), self._basic.encode()):
            return _error(401, "Authentication credentials invalid"), None
        parts = [unquote(p) for p in urlsplit(target).path.strip("/").split("/")]
        if parts[:3] != ["v1", "Account", self.auth_id] or len(parts) < 4:
            return _error(404, "not found"), None
        rest = parts[3:]
        if method == "POST" and rest == ["Call"]:
            fault = self._take_fault("create")
            return (fault.reply() if fault else self._create(body)), "create"
        if method == "DELETE" and len(rest) == 2 and rest[0] in ("Call", "Request"):
            fault = self._take_fault("hangup")
            return (fault.reply() if fault else self._delete(rest[0], rest[1])), "hangup"
        if method == "POST" and len(rest) == 2 and rest[0] == "Call":
            fault = self._take_fault("transfer")
            return (fault.reply() if fault else self._transfer(rest[1], body)), "transfer"
        if method == "POST" and len(rest) == 3 and rest[0] == "Call" and rest[2] == "DTMF":
            fault = self._take_fault("dtmf")
            return (fault.reply() if fault else self._dtmf(rest[1], body)), "dtmf"
        return _error(405, "method not allowed"), None

    def _create(self, body: bytes) -> Reply:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _error(400, "invalid JSON")
        for name in ("from", "to", "answer_url"):
            if not isinstance(data.get(name), str) or not data[name]:
                return _error(400, f"{name} parameter is required")
        if urlsplit(data["answer_url"]).scheme not in ("http", "https"):
            return _error(400, "answer_url must be an http(s) URL")
        method = data.get("answer_method", "POST")
        if method not in ("GET", "POST"):
            return _error(400, "answer_method must be GET or POST")
        xml = data.get("answer_xml")
        hangup = data.get("hangup_url")
        detection = data.get("machine_detection")
        if detection is not None and detection not in ("true", "hangup"):
            return _error(400, "machine_detection must be true or hangup")
        amd_url = data.get("machine_detection_url")
        if amd_url is not None and urlsplit(str(amd_url)).scheme not in ("http", "https"):
            return _error(400, "machine_detection_url must be an http(s) URL")
        call = PlivoCall(
            str(uuid.uuid4()),
            str(uuid.uuid4()),
            data["to"],
            data["from"],
            data["answer_url"],
            method,
            xml if isinstance(xml, str) else None,
            hangup_url=hangup if isinstance(hangup, str) else None,
            request=data,
        )
        with self._lock:
            self.calls[call.request_uuid] = self.calls[call.call_uuid] = call
        payload = {
            "api_id": str(uuid.uuid4()),
            "message": "call fired",
            "request_uuid": call.request_uuid,
        }
        reply = Reply(201, payload)
        if self.on_create is not None:
            reply.after = lambda: self.on_create(call)
        return reply

    def _delete(self, kind: str, key: str) -> Reply:
        with self._lock:
            call = self.calls.get(key)
            matches = call is not None and (
                key == call.call_uuid if kind == "Call" else key == call.request_uuid
            )
            # A call is hung up once answered; a request cancelled only before that.
            live = matches and call is not None and call.alive and (kind == "Call") == call.answered
            if live and call is not None:
                call.alive = False
        if not live or call is None:
            return _error(
                404, "not found" if kind == "Call" else "call not found or already answered"
            )
        if self.on_hang_up is not None:
            return Reply(204, {}, after=lambda: self.on_hang_up(call))
        return Reply(204, {})

    def _live(self, call_uuid: str) -> PlivoCall | None:
        """The answered, live call of ``call_uuid`` (a request uuid is not a call's)."""
        with self._lock:
            call = self.calls.get(call_uuid)
            if call is None or call.call_uuid != call_uuid or not call.alive or not call.answered:
                return None
            return call

    def _transfer(self, call_uuid: str, body: bytes) -> Reply:
        data = _json_body(body)
        if data is None:
            return _error(400, "invalid JSON")
        legs = data.get("legs", "aleg")
        if legs not in ("aleg", "bleg", "both"):
            return _error(400, "legs must be aleg, bleg or both")
        if legs != "aleg":  # no call of the emulator is ever in a <Dial>: it has no B leg
            return _error(400, "the call has no bridged leg (bleg) to transfer")
        url, method = data.get("aleg_url"), data.get("aleg_method", "POST")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            return _error(400, "aleg_url is required when legs is aleg or both")
        if method not in ("GET", "POST"):
            return _error(400, "aleg_method must be GET or POST")
        call = self._live(call_uuid)
        if call is None:
            return _error(404, "call not found")
        payload = {"api_id": str(uuid.uuid4()), "message": "call transferred"}
        on_transfer = self.on_transfer
        after = None if on_transfer is None else (lambda: on_transfer(call, url, method))
        return Reply(202, payload, after=after)

    def _dtmf(self, call_uuid: str, body: bytes) -> Reply:
        data = _json_body(body)
        if data is None:
            return _error(400, "invalid JSON")
        digits, leg = data.get("digits"), data.get("leg", "aleg")
        if not isinstance(digits, str) or not digits or not set(digits) <= _DTMF_KEYS:
            return _error(400, "digits must be 0-9, *, #, A-D, w or W")
        if leg not in ("aleg", "bleg"):
            return _error(400, "leg must be aleg or bleg")
        call = self._live(call_uuid)
        if call is None:
            return _error(404, "call not found")
        with self._lock:
            call.dtmf_sent.append(digits)
        return Reply(202, {"api_id": str(uuid.uuid4()), "message": "digits sent"})


def _json_body(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class _Handler(ApiRequestHandler):
    server_version = "PlivoEmulator/1.0"

    def _length_required(self) -> Reply:
        return _error(411, "send a Content-Length")

    def _bad_length(self) -> Reply:
        return _error(400, "invalid Content-Length")

    def _too_large(self, length: int, limit: int) -> Reply:
        return _error(413, f"the body exceeds {limit} bytes")

    def _internal_error(self) -> Reply:
        return _error(500, "internal server error")


class PlivoEmulator(ProviderEmulator[PlivoCall]):
    """A local Plivo for one made-up account: ``url`` is its API base URL; calls play per
    ``config.media``."""

    api: PlivoApiServer
    media: MediaDialer

    def __init__(self, config: EmulatorConfig, auth_token: str | None = None) -> None:
        self.auth_id = EMULATOR_AUTH_ID
        self.auth_token = auth_token or secrets.token_urlsafe(24)
        host = config.listen.rpartition(":")[0].strip("[]")
        api = PlivoApiServer(self.auth_id, self.auth_token, host=host)
        super().__init__(config, "plivo", MediaDialer(config, {}), api)
        self.api.on_create = self._fired
        self.api.on_hang_up = lambda call: self.media.hang_up(call.request_uuid)
        self.api.on_transfer = self._transferred

    def place_inbound_call(self, answer_url: str, to: str, from_: str) -> PlivoCall:
        """Call ``to`` from ``from_``: post the answer URL (signed V3) and obey its answer.
        Returns at once; :meth:`wait_ended` tells how it went."""
        call_uuid = str(uuid.uuid4())
        call = PlivoCall(call_uuid, call_uuid, to, from_, answer_url, "POST", None)
        call.direction, call.answered = "inbound", True
        with self.api._lock:
            self.api.calls[call_uuid] = call

        def ask() -> None:
            try:
                document = self.answer(call)
                url, headers, _ = read_answer(document)
                call.after = read_next(document)
            except (OSError, ValueError) as exc:
                logger.info("plivo emulator: inbound call %s not streamed: %s", call_uuid, exc)
                self._finish(call, "busy")
                return
            self._dial(call, url, headers)

        self.hooks.call(call_uuid, ask)
        return call

    def _finish(self, call: PlivoCall, outcome: str) -> None:
        if call.ended.is_set():
            return
        if outcome == "completed" and call.transfers and call.alive:
            # Its stream ended for a transfer's <Dial>: the call goes on, bridged to the
            # dialled party (not emulated), until someone hangs up.
            call.outcome = "transferred"
            call.dialled.set()
            logger.info("emulated call %s: stream over, transferred", call.request_uuid)
            call.ended.set()
            return
        call.outcome = outcome
        self.api.ended(call)
        call.dialled.set()
        if call.hangup_url is not None:
            form = [
                ("CallUUID", call.call_uuid),
                ("RequestUUID", call.request_uuid),
                ("Direction", call.direction),
                ("From", call.from_),
                ("To", call.to),
                ("CallStatus", outcome),
                ("HangupCause", "NORMAL_CLEARING" if outcome == "completed" else outcome.upper()),
            ]
            body, headers = self._signed(call.hangup_url, form)
            self.hooks.post(call.request_uuid, call.hangup_url, body, headers)
        logger.info("emulated call %s ended (%s)", call.request_uuid, outcome)
        call.ended.set()

    def _signed(self, url: str, form: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
        nonce = str(secrets.randbelow(10**20))
        headers = {
            SIGNATURE_HEADER: signature_v3(self.auth_token, "POST", url, nonce, form),
            NONCE_HEADER: nonce,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return urlencode(form).encode(), headers

    def press(self, request_uuid: str, digits: str) -> None:
        """The callee presses keys: each becomes a ``dtmf`` frame."""
        self.media.send_dtmf(request_uuid, digits)

    def _fired(self, call: PlivoCall) -> None:
        behaviour = behaviour_for(self.config.behaviours, call.to)
        unanswered = unanswered_outcome(behaviour, self.config.answer_after_s, None)
        if unanswered is not None:  # never answered: its answer URL is never asked
            outcome, after = unanswered
            words = {"no-answer": "timeout"}

            def ring_out() -> None:
                self._finish(call, words.get(outcome, outcome) if call.alive else "cancel")

            self.later.call(after, ring_out)
            return
        # The answer is read when the call is fired (on the API's request thread, never on
        # the media loop), before it rings: Plivo asks it once the callee answers.
        try:
            document = self.answer(call)
            url, headers, content_type = read_answer(document)
            call.after = read_next(document)
            if content_type != _MULAW:
                raise ValueError(f"the emulator plays {_MULAW} only, not {content_type[:40]!r}")
        except (OSError, ValueError) as exc:
            logger.warning("plivo emulator: call %s has no answer to obey: %s", call.call_uuid, exc)
            self._finish(call, "failed")
            return
        self._dial(call, url, headers, behaviour)

    def _dial(
        self,
        call: PlivoCall,
        url: str,
        headers: dict[str, str],
        behaviour: Behaviour | None = None,
    ) -> None:
        stream = PlivoStream(str(uuid.uuid4()), call.call_uuid, self.auth_id, extra_headers=headers)
        call.stream_url = url
        # The media runs under the request uuid (what the runtime knows the call by first).
        call.media = self.media.dial(
            call_sid=call.request_uuid,
            account_sid="",
            to=call.to,
            url=url,
            parameters={},
            on_end=lambda: self._stream_ended(call),
            on_answer=lambda: self._answered(call, behaviour),
            phone=_PlivoPhone(stream),
        )
        call.dialled.set()

    def _answered(self, call: PlivoCall, behaviour: Behaviour | None) -> None:
        """Picked up (on the media loop): machine detection, if the call asked for it, posts
        its verdict to ``machine_detection_url`` (Plivo's fields: ``Machine`` true or false,
        ``Event`` MachineDetection, ``CallStatus`` in-progress); ``hangup`` ends a call a
        machine answered."""
        call.answered = True
        detection = call.request.get("machine_detection")
        if behaviour is None or detection is None:
            return
        machine = behaviour.answered_by("Enable") != "human"  # a fax is no person either
        url = call.request.get("machine_detection_url")
        if isinstance(url, str):
            form = [
                ("CallUUID", call.call_uuid),
                ("RequestUUID", call.request_uuid),
                ("ALegUUID", call.call_uuid),
                ("ALegRequestUUID", call.request_uuid),
                ("From", call.from_),
                ("To", call.to),
                ("Direction", "outbound"),
                ("Machine", "true" if machine else "false"),
                ("IfMachine", "hangup" if detection == "hangup" else "continue"),
                ("Event", "MachineDetection"),
                ("CallStatus", "in-progress"),
            ]
            body, headers = self._signed(url, form)
            self.hooks.post(call.request_uuid, url, body, headers)
        if machine and detection == "hangup":
            self.later.call(0.0, lambda: self.media.hang_up(call.request_uuid))

    def _transferred(self, call: PlivoCall, url: str, method: str) -> None:
        """A transfer was taken (after its 202): fetch the call's next XML, signed, and run it
        in place of the stream: a ``<Dial>`` is recorded as a transfer (the call stays up,
        bridged), anything else is played out (no-ops) and the call ends after it."""
        try:
            document = self._fetch(call, url, method, "in-progress")
            root = parse_xml(document)
        except (OSError, ValueError) as exc:
            logger.info("plivo emulator: call %s transfer fetch failed: %s", call.call_uuid, exc)
            self.media.hang_up(call.request_uuid)
            return
        targets = [
            ("sip" if noun.tag == "User" else "number", (noun.text or "").strip())
            for dial in root.iter("Dial")
            for noun in dial
            if noun.tag in ("Number", "User")
        ]
        with self.api._lock:
            call.documents.append(document)
            if targets:
                call.transfers.append(targets)
        self.media.hang_up(call.request_uuid)  # the XML moved on: its <Stream> is over

    def _stream_ended(self, call: PlivoCall) -> None:
        """The stream disconnected: the call ends, unless it is still up and a ``<Redirect>``
        waits after its ``<Stream keepCallAlive>`` (see the module docstring)."""
        after, call.after = call.after, None
        hung_up = not call.alive or (call.media is not None and call.media.hung_up)
        if after is None or hung_up:  # (over the API, or the far end hung up)
            self._finish(call, "completed")
            return
        self.hooks.call(call.request_uuid, lambda: self._redirect(call, *after))

    def _redirect(self, call: PlivoCall, url: str, method: str) -> None:
        try:
            document = self._fetch(call, url, method, "in-progress")
            stream_url, headers, _ = read_answer(document)
            call.after = read_next(document)
        except (OSError, ValueError) as exc:  # a <Hangup/>, or nothing to stream: it ends
            logger.info("plivo emulator: call %s ends after its redirect: %s", call.call_uuid, exc)
            self._finish(call, "completed")
            return
        if not call.alive:
            self._finish(call, "completed")
            return
        logger.info("plivo emulator: call %s streams again to %s", call.call_uuid, stream_url)
        self._dial(call, stream_url, headers)

    def answer(self, call: PlivoCall) -> str:
        """The answer document of ``call``: inline, or fetched from its answer URL (signed)."""
        if call.answer_xml is not None:
            return call.answer_xml
        status = "ringing" if call.direction == "inbound" else "in-progress"
        return self._fetch(call, call.answer_url, call.answer_method, status)

    def _fetch(self, call: PlivoCall, url: str, method: str, status: str) -> str:
        """An XML document of ``call`` from ``url``, requested as Plivo does (signed V3)."""
        form = [
            ("CallUUID", call.call_uuid),
            ("RequestUUID", call.request_uuid),
            ("From", call.from_),
            ("To", call.to),
            ("Direction", call.direction),
            ("CallStatus", status),
        ]
        if urlsplit(url).scheme not in ("http", "https"):  # a <Redirect>'s, from a document
            raise ValueError("not an http(s) URL")
        data = None
        if method == "GET":
            url += ("&" if urlsplit(url).query else "?") + urlencode(form)
            form = []
        else:
            data = urlencode(form).encode()
        nonce = str(secrets.randbelow(10**20))
        signature = signature_v3(self.auth_token, method, url, nonce, form)
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (checked)
        request.add_header(SIGNATURE_HEADER, signature)
        request.add_header(NONCE_HEADER, nonce)
        with urllib.request.urlopen(request, timeout=5.0) as response:  # noqa: S310 (http(s))
            return bytes(response.read(100_000)).decode("utf-8")
