"""A local Telnyx: Call Control v2's dial, commands and hang-up, and a phone that plays each
call's stream.

The API (below the base URL, as Prism serves Telnyx's OpenAPI: ``POST /calls``,
``POST /calls/{call_control_id}/actions/hangup``) checks the Bearer key and what ``DialCall``
requires (``connection_id``, ``to``, ``from``; a ``ws(s)://`` ``stream_url``;
``stream_bidirectional_mode`` rtp or mp3; a codec and rate from the spec's enums; a base64
``client_state``), and answers with Telnyx's shapes: ``{"data": {...call}}``,
``{"data": {"result": "ok"}}``, and errors ``{"errors": [{"code", "title", "detail"}]}``
(422 ``90018`` "Call has already ended" for a hang-up of an ended call, as in the spec's
examples; the 401 and 422 codes for bad keys and fields are the emulator's own).

Each call rings (``emulator.answer_after_s``), then dials ``stream_url`` speaking Telnyx's
frames (:class:`~actors.codecs.telnyx.TelnyxStream`): ``connected``, ``start`` with the dial's
``client_state``, 20 ms ``media`` per the call's ``emulator.media``, ``mark`` once the audio
before it has played, the queued marks on ``clear``, ``dtmf`` when keys are pressed
(:meth:`TelnyxEmulator.press`), ``stop`` at hang-up.

A dial's ``webhook_url`` gets Call Control's webhooks, signed with Ed25519 under the
emulator's own key (:attr:`TelnyxEmulator.public_key` verifies them): ``call.initiated``,
``call.answered``, ``call.hangup`` with its ``hangup_cause`` (``user_busy``, ``timeout``,
``not_found`` for the numbers ``emulator.behaviours`` makes busy, unanswered or failed).
:meth:`TelnyxEmulator.place_inbound_call` makes it a caller: it posts a TeXML voice webhook,
signed, and obeys the ``<Connect><Stream>`` (or ``<Reject>``) it answers;
:meth:`TelnyxEmulator.place_call_control_call` is a caller on a Call Control App: it posts
``call.initiated`` (``direction: incoming``) and waits for ``actions/answer`` (then streams
where it says) or ``actions/reject``.

Commands (``/calls/{id}/actions/...``, checked as ``TransferCall``, ``SendDTMF``,
``AnswerCall`` and ``RejectCall`` require): ``transfer`` and ``send_dtmf`` are recorded on the
call (``transfers``, ``dtmf_sent``); a transferred call stays up after its stream ends (it is
bridged on; leg B is not emulated). A dial's ``answering_machine_detection`` makes the answer
followed by ``call.machine.detection.ended`` (or the premium one) with the number's verdict,
and by ``call.machine.greeting.ended`` for a machine where the mode waits for its greeting.

When a stream ends while its call is up (the server went away; not hung up over the API):

- a TeXML call goes on with the verb after ``<Connect>`` ("TeXML Translator ... executes your
  TeXML commands sequentially", Telnyx's TeXML setup guide; ``<Connect><Stream>`` holds the
  flow while it streams, the TeXML streams page): a ``<Redirect>`` is posted (signed, the
  voice webhook's fields) and its answer obeyed; with none, or an answer without a stream,
  the call ends;
- a Call Control call stays up (it has no document to go on with), and its ``webhook_url``
  gets ``streaming.stopped`` (the spec's ``CallStreamingStopped``, with the dial's
  ``client_state``); ``POST /calls/{id}/actions/streaming_start`` (``StartCallStreaming``)
  dials a new stream for it, with that request's ``stream_url`` and ``client_state``. A call
  with no ``webhook_url`` ends with its stream, as the emulator always did.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ..codecs.telnyx import TelnyxStream
from ..config import EmulatorConfig
from ..pubkey import new_ed25519_key, sign_ed25519
from ..safexml import parse_xml
from ..webhooks.telnyx import SIGNATURE_HEADER, TIMESTAMP_HEADER
from ._http import ApiRequestHandler, Fault, HTTPApiServer, Reply
from .callbacks import HttpResult
from .hooks import behaviour_for, send, unanswered_outcome
from .media import CallMedia, MediaDialer
from .numbers import Behaviour
from .phones import PhoneEvent
from .provider_emulator import ProviderEmulator

__all__ = ["TelnyxApiServer", "TelnyxCall", "TelnyxEmulator"]

logger = logging.getLogger(__name__)

_CODECS = ("PCMU", "PCMA", "G722", "OPUS", "AMR-WB", "L16")
_RATES = (8000, 16000, 22050, 24000, 48000)
_TRACKS = ("inbound_track", "outbound_track", "both_tracks")
#: The Call Control commands the emulator takes (``/calls/{id}/actions/{name}``).
_ACTIONS = ("hangup", "transfer", "send_dtmf", "answer", "reject", "streaming_start")
_CALLER_PATIENCE_S = 30.0  # an incoming Call Control call neither answered nor rejected
TEXML_ACCOUNT_SID = "emulated-account"  # the AccountSid of the emulator's TeXML calls
_DIGITS = frozenset("0123456789ABCD*#wW")
_AMD = ("premium", "detect", "detect_beep", "detect_words", "greeting_end", "disabled")


def _errors(status: int, code: str, title: str, detail: str = "") -> Reply:
    return Reply(status, {"errors": [{"code": code, "title": title, "detail": detail}]})


def _bad_client_state(data: dict[str, Any]) -> Reply | None:
    """Telnyx's refusal of a ``client_state`` that is not base64, or ``None`` if it is fine."""
    state = data.get("client_state")
    if state is not None:
        try:
            base64.b64decode(state, validate=True)
        except (TypeError, ValueError, binascii.Error):
            return _errors(422, "10015", "Invalid parameter", "'client_state' not base64.")
    return None


@dataclass
class TelnyxCall:
    """One emulated call, as its dial asked for it."""

    call_control_id: str
    to: str
    from_: str
    stream_url: str
    client_state: str | None
    alive: bool = True
    media: CallMedia | None = None
    hung_up_by_api: bool = False
    request: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # how it ended: completed, busy, no-answer, failed, canceled, transferred
    ended: threading.Event = field(default_factory=threading.Event)
    transfers: list[dict[str, Any]] = field(default_factory=list)  # each transfer's body
    dtmf_sent: list[str] = field(default_factory=list)  # each send_dtmf's digits
    answered: bool = True  # an incoming Call Control call: False until actions/answer
    account_sid: str = ""  # a TeXML call's AccountSid (UpdateTexmlCall names it)
    documents: list[str] = field(default_factory=list)  # TeXML given by UpdateTexmlCall
    after: str | None = None  # TeXML: the <Redirect> URL after its <Connect><Stream>
    texml: bool = False  # a TeXML call (inbound), not a Call Control one
    streaming: bool = False  # its stream is up


class _TelnyxPhone:
    """Telnyx's frames on the phone's side (a :class:`~actors.emulator.phones.PhoneStream`)."""

    clear_returns_marks = True  # the codec's provenance: "clear returns the queued marks"

    def __init__(self, stream: TelnyxStream) -> None:
        self.stream = stream
        self.stream_sid = stream.stream_id

    def opening(self) -> Sequence[str]:
        return (self.stream.connected(), self.stream.start())

    def media(self, payload: bytes, timestamp_ms: int) -> str:
        return self.stream.media(payload, timestamp_ms)

    def mark(self, name: str) -> str:
        return self.stream.mark(name)

    def dtmf(self, digit: str) -> str:
        return self.stream.dtmf(digit)

    def stop(self) -> str | None:
        return self.stream.stop()

    def cleared(self, pending_marks: Sequence[str]) -> Sequence[str]:
        return [self.stream.mark(name) for name in pending_marks]

    def parse(self, frame: str | bytes) -> PhoneEvent:
        return self.stream.parse(frame)


class TelnyxApiServer(HTTPApiServer):
    """Telnyx's Call Control dial and hang-up for one API key, on ``host:port``.

    ``on_dial(call)`` runs for each call placed (on the request's thread, after the answer is
    sent); ``on_hang_up(call)`` for each hang-up of a live call. ``fail(operation, ...)``
    injects errors (``dial``, ``hangup``).
    """

    _label = "telnyx emulator"
    _logger = logger

    def __init__(self, api_key: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(
            host=host,
            port=port,
            name="telnyx-emulator-api",
            handler=_Handler,
            max_body=64 * 1024,
            fault_operations=("dial", "update_texml", *_ACTIONS),
            requests_kept=10_000,
        )
        self._api_key = api_key
        self.calls: dict[str, TelnyxCall] = {}
        self.on_dial: Any = None
        self.on_hang_up: Any = None
        self.on_action: Any = None  # (operation, call, body) after a command was taken
        self.on_texml: Any = None  # (call, texml) after a TeXML update was taken
        self.on_streaming_start: Any = None

    def fail(
        self,
        operation: str,
        status: int,
        code: str = "10007",
        times: int = 1,
        *,
        performed: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` ``operation`` requests get ``status`` with a Telnyx error body
        (after acting, with ``performed``)."""
        payload = {"errors": [{"code": code, "title": "Injected", "detail": "emulator fault"}]}
        self._queue_fault(operation, Fault(status, payload, retry_after, times, performed))

    def ended(self, call_control_id: str) -> None:
        with self._lock:
            call = self.calls.get(call_control_id)
            if call is not None:
                call.alive = False

    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        if not secrets.compare_digest(authorization.encode(), f"Bearer {self._api_key}".encode()):
            return _errors(401, "10009", "Authentication failed", "The API key is wrong."), None
        parts = [unquote(p) for p in urlsplit(target).path.strip("/").split("/")]
        texml_call = len(parts) == 5 and (parts[0], parts[1], parts[3]) == (
            "texml",
            "Accounts",
            "Calls",
        )
        if method == "POST" and texml_call:
            fault = self._take_fault("update_texml")
            if fault is not None:
                return fault.reply(), "update_texml"
            return self._update_texml(parts[2], parts[4], body), "update_texml"
        if method == "POST" and parts == ["calls"]:
            operation = "dial"
        elif (
            method == "POST"
            and len(parts) == 4
            and parts[0] == "calls"
            and parts[2] == "actions"
            and parts[3] in _ACTIONS
        ):
            operation = parts[3]
        else:
            return _errors(404, "10005", "Resource not found", "No such route."), None
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _errors(400, "10015", "Bad Request", "The body is not a JSON object."), operation
        fault = self._take_fault(operation)
        if fault is not None and not fault.performed:
            return fault.reply(), operation
        if operation == "dial":
            reply = self._dial(data)
        elif operation == "hangup":
            reply = self._hang_up(parts[1])
        else:
            reply = (
                self._streaming_start(parts[1], data)
                if operation == "streaming_start"
                else self._action(operation, parts[1], data)
            )
        return (fault.reply() if fault is not None else reply), operation

    def _dial(self, data: dict[str, Any]) -> Reply:
        for name in ("connection_id", "to", "from"):
            if not isinstance(data.get(name), str) or not data[name]:
                return _errors(422, "10015", "Invalid parameter", f"'{name}' is required.")
        url = data.get("stream_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("ws", "wss"):
            return _errors(422, "10015", "Invalid parameter", "'stream_url' must be ws(s)://.")
        checks = (
            ("stream_track", _TRACKS),
            ("stream_bidirectional_mode", ("mp3", "rtp")),
            ("stream_bidirectional_codec", _CODECS),
            ("stream_bidirectional_sampling_rate", _RATES),
            ("answering_machine_detection", _AMD),
        )
        for name, allowed in checks:
            if name in data and data[name] not in allowed:
                return _errors(422, "10015", "Invalid parameter", f"'{name}' is not allowed.")
        if (refused := _bad_client_state(data)) is not None:
            return refused
        state = data.get("client_state")
        call = TelnyxCall(
            "v3:" + secrets.token_urlsafe(24), data["to"], data["from"], url, state, request=data
        )
        with self._lock:
            self.calls[call.call_control_id] = call
        payload = {
            "record_type": "call",
            "call_control_id": call.call_control_id,
            "call_leg_id": str(uuid.uuid4()),
            "call_session_id": str(uuid.uuid4()),
            "is_alive": False,
        }
        reply = Reply(200, {"data": payload})
        if self.on_dial is not None:
            reply.after = lambda: self.on_dial(call)
        return reply

    def _streaming_start(self, call_control_id: str, data: dict[str, Any]) -> Reply:
        with self._lock:
            call = self.calls.get(call_control_id)
        if call is None:
            return _errors(404, "10005", "Resource not found", "No such call.")
        if not call.alive:
            detail = "This call is no longer active and can't receive commands."
            return _errors(422, "90018", "Call has already ended", detail)
        url = data.get("stream_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("ws", "wss"):
            return _errors(422, "10015", "Invalid parameter", "'stream_url' must be ws(s)://.")
        if (refused := _bad_client_state(data)) is not None:
            return refused
        state = data.get("client_state")
        reply = Reply(200, {"data": {"result": "ok"}})
        if self.on_streaming_start is not None:
            reply.after = lambda: self.on_streaming_start(call, url, state)
        return reply

    def _hang_up(self, call_control_id: str) -> Reply:
        with self._lock:
            call = self.calls.get(call_control_id)
            alive = call is not None and call.alive
            if call is not None:
                call.alive = False
        if call is None:
            return _errors(404, "10005", "Resource not found", "No such call.")
        if not alive:
            detail = "This call is no longer active and can't receive commands."
            return _errors(422, "90018", "Call has already ended", detail)
        call.hung_up_by_api = True
        reply = Reply(200, {"data": {"result": "ok"}})
        if self.on_hang_up is not None:
            reply.after = lambda: self.on_hang_up(call)
        return reply

    def _update_texml(self, account_sid: str, call_sid: str, body: bytes) -> Reply:
        """``UpdateTexmlCall``: a form (TeXML's CamelCase) whose ``Texml`` replaces the
        live TeXML call's current instructions (``Url`` is not fetched here: the runtime sends
        ``Texml``). Answers the call resource's JSON; 404 for no such live call."""
        try:
            form = dict(
                parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
            )
        except (UnicodeDecodeError, ValueError):
            return _errors(422, "10015", "Invalid parameter", "The body is not a form.")
        texml = form.get("Texml")
        if texml is None:
            return _errors(422, "10015", "Invalid parameter", "This emulator takes 'Texml'.")
        problem = _texml_problem(texml)
        if problem is not None:
            return _errors(422, "10015", "Invalid parameter", problem)
        with self._lock:
            call = self.calls.get(call_sid)
            live = call is not None and call.alive and call.account_sid == account_sid
            if live and call is not None:
                call.documents.append(texml)
        if not live or call is None:
            return _errors(404, "10005", "Resource not found", "No such call in progress.")
        payload = {"account_sid": account_sid, "call_sid": call_sid, "status": "in-progress"}
        reply = Reply(200, payload)
        if self.on_texml is not None:
            on_texml = self.on_texml
            reply.after = lambda: on_texml(call, texml)
        return reply

    def _action(self, operation: str, call_control_id: str, data: dict[str, Any]) -> Reply:
        """``transfer`` (``to`` required), ``send_dtmf`` (``digits`` of 0-9, A-D, ``*``,
        ``#``, ``w``, ``W``; ``duration_millis`` 100..500) and ``answer`` (of an incoming
        call not yet answered, with the dial's stream parameters), on a live call."""
        problem = _check_action(operation, data)
        if problem is not None:
            return _errors(422, "10015", "Invalid parameter", problem)
        # answer and reject are for an incoming call not yet answered, the others for one
        # answered (the codes of these two refusals are the emulator's own).
        before_answer = operation in ("answer", "reject")
        with self._lock:
            call = self.calls.get(call_control_id)
            alive = call is not None and call.alive
            fits = call is not None and call.answered != before_answer
            if alive and fits and call is not None:
                if operation == "transfer":
                    call.transfers.append(dict(data))
                elif operation == "send_dtmf":
                    call.dtmf_sent.append(str(data["digits"]))
                elif operation == "answer":
                    call.answered = True
                elif operation == "reject":
                    call.alive = False
        if call is None:
            return _errors(404, "10005", "Resource not found", "No such call.")
        if not alive:
            detail = "This call is no longer active and can't receive commands."
            return _errors(422, "90018", "Call has already ended", detail)
        if not fits:
            title = "Call already answered" if before_answer else "Call not answered"
            return _errors(422, "90015", title, f"{operation} does not fit the call's state.")
        reply = Reply(200, {"data": {"result": "ok"}})
        if self.on_action is not None:
            reply.after = lambda: self.on_action(operation, call, data)
        return reply


def _texml_problem(texml: str) -> str | None:
    try:
        root = parse_xml(texml)
    except ValueError:
        return "'Texml' is not well-formed XML."
    return None if root.tag == "Response" else "'Texml' must have <Response> at its root."


def _check_action(operation: str, data: dict[str, Any]) -> str | None:
    if operation == "transfer":
        to = data.get("to")
        if not isinstance(to, str) or not to:
            return "'to' is required."
        if "from" in data and not isinstance(data["from"], str):
            return "'from' must be a string."
    elif operation == "send_dtmf":
        digits = data.get("digits")
        if not isinstance(digits, str) or not digits or not set(digits) <= _DIGITS:
            return "'digits' must be 0-9, A-D, *, #, w or W."
        duration = data.get("duration_millis", 250)
        if not isinstance(duration, int) or not 100 <= duration <= 500:
            return "'duration_millis' must be 100 to 500."
    elif operation == "reject":
        if data.get("cause") not in ("CALL_REJECTED", "USER_BUSY"):
            return "'cause' must be CALL_REJECTED or USER_BUSY."
    elif operation == "answer":
        url = data.get("stream_url")
        if url is not None and (
            not isinstance(url, str) or urlsplit(url).scheme not in ("ws", "wss")
        ):
            return "'stream_url' must be ws(s)://."
    return None


class _Handler(ApiRequestHandler):
    server_version = "TelnyxEmulator/1.0"

    def _length_required(self) -> Reply:
        return _errors(411, "10015", "Bad Request", "Send a Content-Length.")

    def _bad_length(self) -> Reply:
        return _errors(400, "10015", "Bad Request", "Invalid Content-Length.")

    def _too_large(self, length: int, limit: int) -> Reply:
        return _errors(413, "10015", "Bad Request", f"The body exceeds {limit} bytes.")

    def _internal_error(self) -> Reply:
        return _errors(500, "10001", "Internal error", "")


class TelnyxEmulator(ProviderEmulator[TelnyxCall]):
    """A local Telnyx for one API key (made up when not given): ``url`` is its API base URL,
    ``connection_id`` the Call Control App it accepts; calls play per ``config.media``."""

    api: TelnyxApiServer
    media: MediaDialer

    def __init__(self, config: EmulatorConfig, api_key: str | None = None) -> None:
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.connection_id = "emulated-call-control-app"
        host = config.listen.rpartition(":")[0].strip("[]")
        api = TelnyxApiServer(self.api_key, host=host)  # a port of its own
        super().__init__(config, "telnyx", MediaDialer(config, {}), api)
        self.api.on_dial = self._dialled
        self.api.on_hang_up = self._hung_up
        self.api.on_action = self._acted
        self.api.on_texml = self._new_texml
        self.api.on_streaming_start = self._restream
        self._signing_key, self.public_key = new_ed25519_key()

    def press(self, call_control_id: str, digits: str) -> None:
        """The callee presses keys: each becomes a ``dtmf`` frame."""
        self.media.send_dtmf(call_control_id, digits)

    def place_inbound_call(self, voice_url: str, to: str, from_: str) -> TelnyxCall:
        """Call ``to`` from ``from_``: post TeXML's voice webhook to ``voice_url`` (signed) and
        obey its answer. Returns at once; :meth:`wait_ended` tells how it went."""
        call = TelnyxCall("v3:" + secrets.token_urlsafe(24), to, from_, "", None)
        call.account_sid = TEXML_ACCOUNT_SID
        with self.api._lock:
            self.api.calls[call.call_control_id] = call
        fields = {
            "AccountSid": TEXML_ACCOUNT_SID,
            "CallSid": call.call_control_id,
            "ConnectionId": self.connection_id,
            "From": from_,
            "To": to,
            "CallStatus": "ringing",
            "Direction": "inbound",
        }
        body = urlencode(fields).encode()
        headers = {**self._signed(body), "Content-Type": "application/x-www-form-urlencoded"}

        def ask() -> None:
            self._obey(call, send(voice_url, body, headers))

        call.request = {"texml_fields": fields}
        self.hooks.call(call.call_control_id, ask)
        logger.info("telnyx emulator: inbound call %s: %s -> %s", call.call_control_id, from_, to)
        return call

    def place_call_control_call(self, events_url: str, to: str, from_: str) -> TelnyxCall:
        """Call ``to`` from ``from_`` on a Call Control App whose webhook is ``events_url``:
        post ``call.initiated`` (``direction: incoming``, ``state: parked``; signed) and wait
        for a command: ``actions/answer`` streams the call where it says, ``actions/reject``
        ends it ``busy``; neither within :data:`_CALLER_PATIENCE_S`: the caller hangs up."""
        call = TelnyxCall(
            "v3:" + secrets.token_urlsafe(24),
            to,
            from_,
            "",
            None,
            request={"webhook_url": events_url},
            answered=False,
        )
        with self.api._lock:
            self.api.calls[call.call_control_id] = call
        self._event(call, "call.initiated", direction="incoming", state="parked")

        def give_up() -> None:
            if not call.answered:
                self._finish(call, "canceled")

        self.later.call(_CALLER_PATIENCE_S, give_up)
        logger.info("telnyx emulator: incoming call %s: %s -> %s", call.call_control_id, from_, to)
        return call

    def _new_texml(self, call: TelnyxCall, texml: str) -> None:
        """New TeXML replaced the call's ``<Connect><Stream>``: the stream ends; a ``<Dial>``
        is recorded as a transfer (the call stays up, bridged on), anything else plays out
        (no-ops) and the call ends after it."""
        root = parse_xml(texml)
        targets = [
            {"to": (noun.text or "").strip(), "noun": noun.tag, **dial.attrib}
            for dial in root.iter("Dial")
            for noun in dial
            if noun.tag in ("Number", "Sip")
        ]
        with self.api._lock:
            call.transfers.extend(targets)
        self.media.hang_up(call.call_control_id)

    def _acted(self, operation: str, call: TelnyxCall, data: dict[str, Any]) -> None:
        """After a command was taken: ``answer`` dials the stream it names (with its
        ``client_state``, which Telnyx puts in the stream's ``start`` and every later
        webhook), ``reject`` ends the call (``call.hangup``, ``call_rejected``)."""
        if operation == "answer":
            call.stream_url = str(data.get("stream_url") or "")
            state = data.get("client_state")
            call.client_state = state if isinstance(state, str) else None
            if isinstance(data.get("webhook_url"), str):
                call.request["webhook_url"] = data["webhook_url"]
            stream = TelnyxStream(
                str(uuid.uuid4()),
                call.call_control_id,
                client_state=call.client_state,
                from_=call.from_,
                to=call.to,
            )
            self._stream(call, stream, None, 0.0)
        elif operation == "reject":
            self._finish(call, "busy")

    def _obey(self, call: TelnyxCall, result: HttpResult) -> None:
        try:
            root = parse_xml(result.body) if result.ok else None
        except ValueError:
            root = None
        stream = root.find("Connect/Stream") if root is not None else None
        url = stream.get("url") if stream is not None else None
        if root is None or stream is None or not url:
            refused = root is not None and root.find("Reject") is not None
            hung_up = root is not None and root.find("Hangup") is not None
            self._finish(call, "busy" if refused else "completed" if hung_up else "failed")
            return
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        call.stream_url, call.texml = url, True
        redirect = root.find("Redirect")
        call.after = (redirect.text or "").strip() or None if redirect is not None else None
        self._stream(
            call,
            TelnyxStream(
                str(uuid.uuid4()),
                call.call_control_id,
                custom_parameters=parameters,
                from_=call.from_,
                to=call.to,
            ),
            None,
            None,
        )

    def _signed(self, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        signature = sign_ed25519(self._signing_key, stamp.encode() + b"|" + body)
        return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: base64.b64encode(signature).decode()}

    def _event(self, call: TelnyxCall, kind: str, **extra: str) -> None:
        url = call.request.get("webhook_url")
        if not isinstance(url, str):
            return
        payload = {
            "call_control_id": call.call_control_id,
            "connection_id": self.connection_id,
            "client_state": call.client_state,
            "from": call.from_,
            "to": call.to,
            **extra,
        }
        event = {
            "record_type": "event",
            "event_type": kind,
            "id": str(uuid.uuid4()),
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "payload": payload,
        }
        body = json.dumps({"data": event}).encode()
        headers = {**self._signed(body), "Content-Type": "application/json"}
        self.hooks.post(call.call_control_id, url, body, headers)

    def _finish(self, call: TelnyxCall, outcome: str) -> None:
        if call.ended.is_set():
            return
        if outcome == "completed" and call.transfers and call.alive:
            # The stream ended after a transfer: the call goes on, bridged to the transfer's
            # target (leg B, not emulated), until someone hangs up.
            call.outcome = "transferred"
            logger.info("emulated call %s: stream over, transferred", call.call_control_id)
            call.ended.set()
            return
        call.outcome = outcome
        self.api.ended(call.call_control_id)
        cause = {"busy": "user_busy", "no-answer": "timeout", "failed": "not_found"}
        self._event(call, "call.hangup", hangup_cause=cause.get(outcome, "normal_clearing"))
        logger.info("emulated call %s ended (%s)", call.call_control_id, outcome)
        call.ended.set()

    def _dialled(self, call: TelnyxCall) -> None:
        self._event(call, "call.initiated", state="parked")
        timeout = call.request.get("timeout_secs")
        ring_timeout = float(timeout) if isinstance(timeout, int) else None
        behaviour = behaviour_for(self.config.behaviours, call.to)
        unanswered = unanswered_outcome(behaviour, self.config.answer_after_s, ring_timeout)
        if unanswered is not None:
            outcome, after = unanswered

            def ring_out() -> None:
                self._finish(call, outcome if call.alive else "canceled")

            self.later.call(after, ring_out)
            return
        stream = TelnyxStream(
            str(uuid.uuid4()),
            call.call_control_id,
            client_state=call.client_state,
            from_=call.from_,
            to=call.to,
        )
        self._stream(call, stream, ring_timeout, behaviour.ring_s, behaviour)

    def _answered(self, call: TelnyxCall, behaviour: Behaviour | None) -> None:
        """Picked up: ``call.answered``, then machine detection's webhooks if the dial asked
        (Telnyx's OpenAPI, ``answering_machine_detection``): ``premium`` sends
        ``call.machine.premium.detection.ended`` (``human_residence``, ``machine``,
        ``fax_detected``) and, for a machine, ``call.machine.premium.greeting.ended``
        (``beep_detected``); the others send ``call.machine.detection.ended`` (``human`` or
        ``machine``), and for a machine under ``greeting_end``, ``detect_words`` or
        ``detect_beep`` a ``call.machine.greeting.ended`` once its beep is heard."""
        self._event(call, "call.answered")
        mode = call.request.get("answering_machine_detection", "disabled")
        if behaviour is None or mode == "disabled":
            return
        verdict = behaviour.answered_by("Enable")
        if mode == "premium":
            result = {"human": "human_residence", "fax": "fax_detected"}.get(
                str(verdict), "machine"
            )
            self._event(call, "call.machine.premium.detection.ended", result=result)
            if result == "machine":
                self._event(call, "call.machine.premium.greeting.ended", result="beep_detected")
            return
        result = "human" if verdict == "human" else "machine"
        self._event(call, "call.machine.detection.ended", result=result)
        if result == "machine" and mode in ("greeting_end", "detect_words", "detect_beep"):
            self._event(call, "call.machine.greeting.ended", result="beep_detected")

    def _hung_up(self, call: TelnyxCall) -> None:
        if call.streaming:
            self.media.hang_up(call.call_control_id)
        else:  # between streams: nothing plays, the call just ends
            self._finish(call, "completed")

    def _stream_ended(self, call: TelnyxCall) -> None:
        """A stream ended (see the module docstring for what the call does then)."""
        call.streaming = False
        if not call.alive or (call.media is not None and call.media.hung_up) or call.transfers:
            # Hung up (over the API, or the far end did), or transferred: then it goes on,
            # bridged (see _finish).
            self._finish(call, "completed")
        elif call.texml:
            after, call.after = call.after, None
            if after is None:
                self._finish(call, "completed")
            else:
                self.hooks.call(call.call_control_id, lambda: self._redirect(call, after))
        elif isinstance(call.request.get("webhook_url"), str):
            self._event(call, "streaming.stopped", stream_id=str(uuid.uuid4()))
        else:
            self._finish(call, "completed")

    def _redirect(self, call: TelnyxCall, url: str) -> None:
        fields = dict(call.request.get("texml_fields") or {})
        fields["CallStatus"] = "in-progress"
        body = urlencode(fields).encode()
        headers = {**self._signed(body), "Content-Type": "application/x-www-form-urlencoded"}
        logger.info("telnyx emulator: call %s redirected to %s", call.call_control_id, url)
        self._obey(call, send(url, body, headers))

    def _restream(self, call: TelnyxCall, url: str, client_state: str | None) -> None:
        """``streaming_start``: a new stream for a Call Control call."""
        if call.streaming or not call.alive:
            return
        call.stream_url, call.client_state = url, client_state
        stream = TelnyxStream(
            str(uuid.uuid4()),
            call.call_control_id,
            client_state=client_state,
            from_=call.from_,
            to=call.to,
        )
        logger.info("telnyx emulator: call %s streams again to %s", call.call_control_id, url)
        self._stream(call, stream, None, 0.0, answered=True)

    def _stream(
        self,
        call: TelnyxCall,
        stream: TelnyxStream,
        ring_timeout: float | None,
        ring_s: float | None,
        behaviour: Behaviour | None = None,
        *,
        answered: bool = False,
    ) -> None:
        call.streaming = True
        call.media = self.media.dial(
            call_sid=call.call_control_id,
            account_sid="",
            to=call.to,
            url=call.stream_url,
            parameters={},
            on_end=lambda: self._stream_ended(call),
            on_answer=None if answered else lambda: self._answered(call, behaviour),
            answer_after_s=ring_s,
            ring_timeout_s=ring_timeout,
            phone=_TelnyxPhone(stream),
        )
