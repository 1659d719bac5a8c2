"""Telnyx's REST control plane (Call Control v2): place a call that streams to us, control it,
answer an inbound one, hang it up.

Checked against Telnyx's OpenAPI (``DialCall``, ``HangupCall``, ``CallRequest``; the contract
test, ``tests/providers/test_telnyx_contract.py``, runs the client against it with Prism):

- ``POST /calls`` (below ``https://api.telnyx.com/v2``), Bearer auth, JSON with the required
  ``connection_id``, ``to``, ``from``, and the stream: ``stream_url``, ``stream_track``
  (``inbound_track``: the caller), ``stream_bidirectional_mode: rtp``,
  ``stream_bidirectional_codec`` (PCMU or PCMA), ``stream_bidirectional_sampling_rate``
  (8000), and ``client_state`` (base64, "add state to every subsequent webhook"; it also comes
  back in the stream's ``start``): the session id and its stream token
  (:func:`actors.routing.encode_client_state`). Call Control has no custom stream parameters,
  so ``client_state`` is what routes the stream at the gateway.
- ``POST /calls/{call_control_id}/actions/hangup`` with a JSON body (required by the spec; a
  ``command_id`` makes a retried hang-up one command). "Already ended" is the 422 with code
  ``90018`` ("Call has already ended", the spec's example) and a 404 (the id is unknown).
- Commands, each with a ``command_id`` ("Telnyx will ignore any command with the same
  command_id for the same call_control_id"), so retried like a hang-up: ``actions/transfer``
  (``TransferCall``: ``to``, ``from``), ``actions/send_dtmf`` (``SendDTMF``: ``digits``,
  ``duration_millis``; "no webhooks associated": the stream goes on), ``actions/answer``
  (``AnswerCall``, with the dial's stream parameters: an inbound call with ``inbound:
  call_control``) and ``actions/reject`` (``RejectCall``, ``cause: USER_BUSY``). Ended: as
  for a hang-up. A Call Control call takes no document: ``redirect`` is unsupported.
- A call answered with TeXML takes new TeXML: ``POST /texml/Accounts/{account_sid}/Calls/
  {call_sid}`` (``UpdateTexmlCall``, a form with ``Texml``; 404: over), for ``transfer`` (a
  ``<Dial>``) and ``redirect``.
- Machine detection: ``answering_machine_detection`` (``detect``, ``greeting_end``...) and its
  config on the dial; the results come as webhooks (:mod:`actors.webhooks.calls`).
- Error bodies ``{"errors": [{"code", "title", "detail"}]}`` become :class:`ProviderError`.

Creating is retried only on 429 (a 5xx may mean the call exists); hanging up also on 5xx.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import requests

from ..codecs import Frame
from ..codecs.telnyx import TelnyxCodec
from ..config import RuntimeConfig, TelnyxProviderConfig
from ..errors import ConfigError, ProviderError, UnsupportedMessage
from ..messages import Message, SessionRequest, Started
from ..routing import decode_client_state, encode_client_state
from ..webhooks.telnyx import dial_texml, stream_texml
from ..webhooks.twilio import InboundCall
from . import (
    ControlCommand,
    Infrastructure,
    Redirect,
    RequestObserver,
    SendDigits,
    SessionPlan,
    Transfer,
)
from ._gateway import GatewayProvider, call_ends
from ._http import AT_MOST_ONCE, IDEMPOTENT, clip, json_body, reason_phrase, title_detail
from ._rest import BearerAuth, RestClient, RestOptions
from ._streamed import call_parameters, nonced_parameters

__all__ = ["ALREADY_ENDED_CODE", "TelnyxProvider", "TelnyxRestClient", "parse_error_response"]

logger = logging.getLogger(__name__)

PROVIDER = "telnyx"
#: Where a TeXML call comes back when its stream ends while the caller stays on (a cluster's).
REATTACH_ROUTE = "/telnyx/voice"
#: "Call has already ended": "This call is no longer active and can't receive commands."
ALREADY_ENDED_CODE = "90018"


def parse_error_response(status: int, body: bytes, reason: str = "") -> ProviderError:
    """The :class:`ProviderError` for a Telnyx error response: the first of ``errors``
    (``code`` as text, ``title: detail`` as the message); any other body gives the HTTP
    status and reason phrase only (an unknown body is not echoed)."""
    data = json_body(body)
    errors = data.get("errors") if isinstance(data, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return ProviderError(PROVIDER, reason_phrase(status, reason), status=status)
    code = first.get("code")
    title = first["title"] if isinstance(first.get("title"), str) else ""
    detail = first["detail"] if isinstance(first.get("detail"), str) else ""
    return ProviderError(
        PROVIDER,
        clip(title_detail(title, detail)) or reason_phrase(status, reason),
        status=status,
        code=clip(str(code), 16) if isinstance(code, str | int) else None,
    )


def _stream(stream_url: str, codec: str) -> dict[str, Any]:
    """The parameters of a bidirectional stream of the caller's audio to ``stream_url`` (a
    dial's, an answer's, a ``streaming_start``'s: the spec names them alike)."""
    return {
        "stream_url": stream_url,
        "stream_track": "inbound_track",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": codec,
        "stream_bidirectional_sampling_rate": 8000,
    }


class TelnyxRestClient(RestClient):
    """Telnyx Call Control v2 at ``api_base_url``, authenticated with ``api_key`` (Bearer).

    Retries (``retries`` at most, exponential backoff): creating a call only on 429 and on
    connection errors where the request never left; hanging up also on 5xx and read errors.
    """

    provider = PROVIDER
    # A command's command_id makes Telnyx ignore its repeats ("Telnyx will ignore any command
    # with the same command_id for the same call_control_id"), so all but a dial may be retried.
    retry_policies = {
        "create_call": AT_MOST_ONCE,
        "hang_up": IDEMPOTENT,
        "transfer": IDEMPOTENT,
        "send_dtmf": IDEMPOTENT,
        "answer": IDEMPOTENT,
        "reject": IDEMPOTENT,
        "streaming_start": IDEMPOTENT,
        # New TeXML twice would run it twice; a TeXML update has no command_id.
        "update_texml_call": AT_MOST_ONCE,
    }

    def __init__(
        self,
        *,
        api_key: str,
        api_base_url: str = "https://api.telnyx.com/v2",
        **options: Unpack[RestOptions],
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        super().__init__(api_base_url=api_base_url, auth=BearerAuth(api_key), **options)

    def __repr__(self) -> str:
        return f"TelnyxRestClient(api_base_url={self._origin!r})"

    def create_call(
        self,
        *,
        connection_id: str,
        to: str,
        from_: str,
        stream_url: str,
        client_state: str | None = None,
        codec: str = "PCMU",
        timeout_secs: int | None = None,
        webhook_url: str | None = None,
        answering_machine_detection: str | None = None,
        answering_machine_detection_config: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """Dial ``to``, streaming both ways to ``stream_url``; Telnyx's call (``data``), with
        at least ``call_control_id``. ``answering_machine_detection`` (``detect``,
        ``greeting_end``, ``premium``...) asks for machine detection, whose results come as
        webhooks (``call.machine.*``). :class:`ProviderError` for a refusal or failure."""
        body: dict[str, Any] = {
            "connection_id": connection_id,
            "to": to,
            "from": from_,
            **_stream(stream_url, codec),
        }
        if client_state is not None:
            body["client_state"] = client_state
        if timeout_secs is not None:
            body["timeout_secs"] = timeout_secs
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if answering_machine_detection is not None:
            body["answering_machine_detection"] = answering_machine_detection
        if answering_machine_detection_config:
            body["answering_machine_detection_config"] = dict(answering_machine_detection_config)
        response = self._request("create_call", "POST", "/calls", json=body)
        data = self._json_object(response, "POST /calls").get("data")
        if not isinstance(data, dict) or not isinstance(data.get("call_control_id"), str):
            raise ProviderError(
                PROVIDER, "POST /calls: the response has no call_control_id", status=200
            )
        logger.info("telnyx call %s created", data["call_control_id"])
        return data

    def start_streaming(
        self, call_control_id: str, *, stream_url: str, client_state: str, codec: str = "PCMU"
    ) -> bool:
        """``POST /calls/{id}/actions/streaming_start`` (the spec's ``StartCallStreaming``):
        stream the call both ways to ``stream_url`` again. True if Telnyx took it, False if
        the call has ended (422 code 90018, or 404); :class:`ProviderError` otherwise."""
        body = {**_stream(stream_url, codec), "client_state": client_state}
        return self._command("streaming_start", call_control_id, "streaming_start", body)

    def hang_up(self, call_control_id: str) -> bool:
        """Hang up: True if this ended the call, False if it had already ended (422 with code
        90018, or 404). Anything else raises :class:`ProviderError`."""
        return self._command("hang_up", call_control_id, "hangup", {})

    def transfer(self, call_control_id: str, to: str, from_: str | None = None) -> bool:
        """``actions/transfer`` (``TransferCall``): the call leaves for ``to`` (a number or SIP
        URI; ``from_``: the caller id shown there). True once Telnyx took the command, False
        if the call had already ended."""
        body: dict[str, Any] = {"to": to}
        if from_ is not None:
            body["from"] = from_
        return self._command("transfer", call_control_id, "transfer", body)

    def send_dtmf(self, call_control_id: str, digits: str, duration_millis: int = 250) -> bool:
        """``actions/send_dtmf`` (``SendDTMF``): play ``digits`` (0-9, A-D, ``*``, ``#``;
        ``w``/``W`` pause) into the call; the stream goes on ("there are no webhooks
        associated with this command"). False if the call had already ended."""
        body = {"digits": digits, "duration_millis": duration_millis}
        return self._command("send_dtmf", call_control_id, "send_dtmf", body)

    def answer(
        self,
        call_control_id: str,
        *,
        stream_url: str,
        client_state: str | None = None,
        codec: str = "PCMU",
        webhook_url: str | None = None,
    ) -> bool:
        """``actions/answer`` (``AnswerCall``) an incoming Call Control call, streaming it
        both ways to ``stream_url`` (the same stream parameters as a dial). False if the call
        had already ended (the caller gave up)."""
        body: dict[str, Any] = _stream(stream_url, codec)
        if client_state is not None:
            body["client_state"] = client_state
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        return self._command("answer", call_control_id, "answer", body)

    def update_texml_call(self, account_sid: str, call_sid: str, texml: str) -> bool:
        """``POST /texml/Accounts/{account_sid}/Calls/{call_sid}`` (``UpdateTexmlCall``, a form
        in TeXML's CamelCase): ``Texml`` replaces the call's current TeXML (its ``<Connect>
        <Stream>``). True once taken, False if the call is over (404)."""
        for value in (account_sid, call_sid):
            if not value or "/" in value:
                raise ValueError("account_sid and call_sid must be non-empty ids")
        path = f"/texml/Accounts/{account_sid}/Calls/{call_sid}"
        response = self._request(
            "update_texml_call", "POST", path, what="texml update", form=[("Texml", texml)]
        )
        return self._done(response)

    def reject(self, call_control_id: str, cause: str = "USER_BUSY") -> bool:
        """``actions/reject`` (``RejectCall``) an incoming call not answered: ``cause``
        ``USER_BUSY`` or ``CALL_REJECTED``. False if the call had already ended."""
        return self._command("reject", call_control_id, "reject", {"cause": cause})

    def _command(
        self, operation: str, call_control_id: str, action: str, body: dict[str, Any]
    ) -> bool:
        """``POST /calls/{call_control_id}/actions/{action}`` with ``body`` and a
        ``command_id`` of its own (the same for every retry: one command). True once taken,
        False if the call had already ended (422 with code 90018, or 404)."""
        if not call_control_id or "/" in call_control_id:
            raise ValueError("call_control_id must be a non-empty id")
        path = f"/calls/{call_control_id}/actions/{action}"
        body = {**body, "command_id": str(uuid.uuid4())}
        response = self._request(operation, "POST", path, what=action, json=body)
        if response.ok:
            return True
        error = self.parse_error(response)
        if response.status_code == 404 or (
            response.status_code == 422 and error.code == ALREADY_ENDED_CODE
        ):
            return False
        raise error

    def parse_error(self, response: requests.Response) -> ProviderError:
        return parse_error_response(response.status_code, response.content, response.reason or "")


class _StateCodec(TelnyxCodec):
    """Telnyx's codec, with the application's parameters read back out of ``client_state``
    (where :class:`TelnyxProvider` put them beside the routing values): ``Started.parameters``
    then holds them, and ``client_state`` (which holds the stream token) is not shown."""

    def decode(self, frame: Frame) -> Sequence[Message]:
        messages = super().decode(frame)
        if len(messages) != 1 or not isinstance(messages[0], Started):
            return messages
        started = messages[0]
        parameters = dict(started.parameters)
        state = decode_client_state(parameters.pop("client_state", None)) or {}
        state.pop("token", None)
        state.pop("nonce", None)  # a stream streamed again: its credential's
        return (dataclasses.replace(started, parameters={**state, **parameters}),)


class TelnyxProvider(GatewayProvider[TelnyxProviderConfig, TelnyxRestClient]):
    """The ``telnyx`` provider: a call per session, its audio through the media gateway.

    ``open`` dials with the gateway's ``/telnyx`` as ``stream_url`` and the session id and its
    **stream token** in ``client_state``; the connector dials ``/sessions/{id}`` with the
    **hop token**, as for Twilio. Telnyx signs nothing on the stream itself: the single-use
    stream token is what authenticates it.
    """

    def __init__(
        self,
        config: TelnyxProviderConfig,
        runtime: RuntimeConfig,
        infrastructure: Infrastructure,
        *,
        on_request: RequestObserver | None = None,
    ) -> None:
        super().__init__(config, runtime, infrastructure, on_request=on_request)
        self._connection_id = config.connection_id
        # Sessions of calls answered with TeXML -> the call's AccountSid (for UpdateTexmlCall).
        self._texml: dict[str, str] = {}
        self._handed_on: set[str] = set()  # sessions whose call was transferred
        # Inbound Call Control calls taken, until answered: session -> (call, stream, state).
        self._to_answer: dict[str, tuple[str, str, str]] = {}

    def _make_client(self) -> TelnyxRestClient:
        c, where = self.config, f"providers.{self.name}"
        if c.api_base_url == "emulator":
            emulator = self._infrastructure.telnyx_emulator()
            key, base = emulator.auth_token, emulator.base_url
            self._connection_id = emulator.account_sid
        else:
            if not c.api_key:
                raise ConfigError("required for Telnyx's API", key_path=f"{where}.api_key")
            if not c.connection_id:
                raise ConfigError("required for Telnyx's API", key_path=f"{where}.connection_id")
            key, base = c.api_key, c.api_base_url
        return TelnyxRestClient(
            api_key=key,
            api_base_url=base,
            **self._rest_options(),
        )

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        to, from_ = call_ends("telnyx", self.name, request, configured_from=self.config.from_number)
        client = self._rest()
        gateway = self._infrastructure.gateway()
        state = call_parameters(gateway, session_id, request.parameters)
        assert self._connection_id is not None  # checked when the client was made
        amd, amd_config = _amd(request.machine_detection)
        call = client.create_call(
            connection_id=self._connection_id,
            to=to,
            from_=from_,
            stream_url=gateway.public_url.rstrip("/") + "/telnyx",
            client_state=encode_client_state(state),
            codec=self.config.codec,
            timeout_secs=self.config.ring_timeout_s,
            # The runtime's webhook takes the call's progress, unless you name your own.
            webhook_url=self.config.webhook_url
            or self._infrastructure.webhook_route(self.config, "/telnyx/events"),
            answering_machine_detection=amd,
            answering_machine_detection_config=amd_config,
        )
        call_id = str(call["call_control_id"])
        logger.info("session %s: Telnyx call %s placed to %s", session_id, call_id, to)
        return self._plan(session_id, gateway, call_id)

    def answer(
        self,
        session_id: str,
        call_id: str,
        parameters: Mapping[str, str],
        redirect_url: str | None = None,
    ) -> tuple[SessionPlan, str]:
        """Inbound call ``call_id`` accepted as ``session_id``: the plan, and the answer. With
        ``inbound: texml`` (``call_id`` is TeXML's ``CallSid``), the TeXML answer:
        ``<Connect><Stream>`` to the gateway's ``/telnyx`` with the session and its stream
        token as ``<Parameter>``s (in a cluster, then a ``<Redirect>`` back to our
        ``/telnyx/voice?reattach=``). With ``inbound: call_control`` (``call_id`` is the
        ``call_control_id``), no document: :meth:`confirm_answer` answers with
        ``actions/answer`` and the same stream, the routing values in ``client_state``.
        ``redirect_url`` is Twilio's, not used."""
        self._rest()  # the REST client (the emulator) exists: end_session hangs up with it
        gateway = self._infrastructure.gateway()
        if self.config.inbound == "call_control":
            state = call_parameters(gateway, session_id, parameters)
            stream_url = gateway.public_url.rstrip("/") + "/telnyx"
            with self._lock:
                self._to_answer[session_id] = (call_id, stream_url, encode_client_state(state))
            return self._plan(session_id, gateway, call_id), ""
        texml = self.answer_document(session_id, parameters)
        with self._lock:
            self._texml[session_id] = ""  # its AccountSid comes with inbound_call
        return self._plan(session_id, gateway, call_id), texml

    def answer_document(self, session_id: str, parameters: Mapping[str, str]) -> str:
        """The TeXML of :meth:`answer` alone (a cluster's node answering a call claimed for
        another node, which carries it)."""
        gateway = self._infrastructure.gateway()
        return stream_texml(
            gateway.public_url.rstrip("/") + "/telnyx",
            call_parameters(gateway, session_id, parameters),
            codec=self.config.codec,
            redirect_url=self._infrastructure.reattach_url(session_id, REATTACH_ROUTE),
        )

    def restream(self, session_id: str) -> str:
        """The TeXML that streams a call back to ``session_id`` through this session's gateway
        (a cluster's: the call's stream ended with its gateway, the TeXML's ``<Redirect>``
        brought it back), with a stream credential of its own (a fresh nonce)."""
        gateway = self._infrastructure.gateway()
        return stream_texml(
            gateway.public_url.rstrip("/") + "/telnyx",
            nonced_parameters(gateway, session_id),
            codec=self.config.codec,
            redirect_url=self._infrastructure.reattach_url(session_id, REATTACH_ROUTE),
        )

    def restart_stream(self, session_id: str, call_control_id: str) -> bool:
        """Stream a Call Control call (one we placed: no TeXML runs after its stream) to this
        session's gateway again, with a credential of its own: ``streaming_start`` over REST.
        ``False`` when the call has ended."""
        gateway = self._infrastructure.gateway()
        return self._rest().start_streaming(
            call_control_id,
            stream_url=gateway.public_url.rstrip("/") + "/telnyx",
            client_state=encode_client_state(nonced_parameters(gateway, session_id)),
            codec=self.config.codec,
        )

    def inbound_call(self, session_id: str, call: InboundCall) -> None:
        """The webhook's call that ``session_id`` answers: a TeXML call's ``AccountSid`` is
        what :meth:`TelnyxRestClient.update_texml_call` names it by."""
        with self._lock:
            if session_id in self._texml:
                self._texml[session_id] = call.account_sid

    def confirm_answer(self, session_id: str) -> bool:
        """Answer an inbound Call Control call taken as ``session_id`` (``actions/answer``,
        streaming to the gateway); ``False`` if the caller had hung up meanwhile. A TeXML
        call was answered by its document already: ``True``."""
        with self._lock:
            pending = self._to_answer.pop(session_id, None)
        if pending is None:
            return True
        call_id, stream_url, state = pending
        answered = self._rest().answer(
            call_id,
            stream_url=stream_url,
            client_state=state,
            codec=self.config.codec,
            webhook_url=self.config.webhook_url,
        )
        logger.info("session %s: Telnyx call %s answered: %s", session_id, call_id, answered)
        return answered

    def reject(self, call_id: str) -> None:
        """Refuse an inbound Call Control call no thread took (``actions/reject``, the cause
        ``USER_BUSY``: the caller hears busy, not silence); one already over is fine."""
        if not self._rest().reject(call_id):
            logger.info("Telnyx call %s was over before it was rejected", call_id)

    def _codec(self, session_id: str) -> _StateCodec:
        return _StateCodec(session_id=session_id, hidden_parameters=frozenset({"token", "nonce"}))

    def control_call(self, session_id: str, plan: SessionPlan, command: ControlCommand) -> bool:
        """A Call Control call takes commands: ``actions/transfer``, ``actions/send_dtmf``
        (the stream goes on); it takes no document, so a :class:`Redirect` is
        ``UnsupportedMessage``. A call answered with TeXML takes new TeXML instead
        (``UpdateTexmlCall``): a ``<Dial>`` for a :class:`Transfer`, your TeXML for a
        :class:`Redirect`; DTMF would need new TeXML too, leaving the stream, so
        :class:`SendDigits` is ``UnsupportedMessage`` there."""
        with self._lock:
            account = self._texml.get(session_id)
        if plan.call_id is None:
            return False
        client = self._rest()
        if account is not None:  # a TeXML call
            if isinstance(command, SendDigits):
                raise UnsupportedMessage(
                    session_id,
                    self.name,
                    "send_dtmf on a call answered with TeXML (new TeXML would end its stream;"
                    f" set providers.{self.name}.inbound: call_control to keep it)",
                )
            if not account:
                raise UnsupportedMessage(
                    session_id, self.name, f"{type(command).__name__} (no AccountSid came)"
                )
            texml = (
                dial_texml(command.to, command.caller_id)
                if isinstance(command, Transfer)
                else command.document
            )
            done = client.update_texml_call(account, plan.call_id, texml)
        elif isinstance(command, Redirect):
            raise UnsupportedMessage(
                session_id,
                self.name,
                "redirect: a Call Control call takes commands, not a document "
                "(transfer and send_dtmf are there)",
            )
        elif isinstance(command, SendDigits):
            return client.send_dtmf(plan.call_id, command.digits)
        else:
            done = client.transfer(plan.call_id, command.to, command.caller_id)
        if done:
            with self._lock:
                self._handed_on.add(session_id)
        return done

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        """Hang the call up, unless it was transferred (it is the transfer's now)."""
        with self._lock:
            self._texml.pop(session_id, None)
            self._to_answer.pop(session_id, None)
            if session_id in self._handed_on:
                self._handed_on.discard(session_id)
                logger.info("session %s: Telnyx call %s was transferred", session_id, plan.call_id)
                return
        if plan.call_id is None:
            return
        ended = self._rest().hang_up(plan.call_id)
        what = "hung up" if ended else "had already ended"
        logger.info("session %s: Telnyx call %s %s", session_id, plan.call_id, what)


def _amd(asked: str | Mapping[str, str] | None) -> tuple[str | None, dict[str, int]]:
    """Telnyx's ``answering_machine_detection`` (and its config) for
    ``create_session(machine_detection=...)``: ``Enable`` is ``detect`` (human or machine),
    ``DetectMessageEnd`` is ``greeting_end`` (and then the greeting's end, its beep or
    silence). Of Twilio's parameters, ``MachineDetectionTimeout`` (seconds) becomes
    ``total_analysis_time_millis``; ``AsyncAmd`` changes nothing (Telnyx's detection is always
    asynchronous); the others have no counterpart at Telnyx: a ``ValueError``."""
    if asked is None:
        return None, {}
    options = {"MachineDetection": asked} if isinstance(asked, str) else dict(asked)
    mode = {"Enable": "detect", "DetectMessageEnd": "greeting_end"}[
        options.pop("MachineDetection", "Enable")
    ]
    options.pop("AsyncAmd", None)
    config: dict[str, int] = {}
    timeout = options.pop("MachineDetectionTimeout", None)
    if timeout is not None:
        if not timeout.isdigit():
            raise ValueError("machine_detection's MachineDetectionTimeout must be whole seconds")
        config["total_analysis_time_millis"] = int(timeout) * 1000
    if options:
        raise ValueError(
            f"Telnyx has no counterpart of machine_detection's {', '.join(sorted(options))} "
            "(MachineDetection, MachineDetectionTimeout and AsyncAmd are carried)"
        )
    return mode, config
