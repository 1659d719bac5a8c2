"""Plivo's REST control plane: place a call whose answer streams it to us, hang it up.

From Plivo's Voice API reference (docs.plivo.com/docs/voice/api/call, read 2026-12-01; Plivo
publishes no OpenAPI description, so there is no contract test: see the README):

- ``POST /v1/Account/{auth_id}/Call/``, HTTP basic auth (auth id, auth token), JSON with
  ``from``, ``to``, ``answer_url`` and ``answer_method``; answered ``201`` with ``request_uuid``
  (the call's own ``CallUUID`` comes to the answer URL, and in the stream's ``start`` as
  ``callId``). The answer URL must answer the ``<Stream>`` XML
  (:func:`actors.webhooks.plivo.stream_xml`); the runtime appends the ``session`` and its
  stream ``token`` to it as query values for that server. Without one, the runtime's own
  webhook answers (``/plivo/answer?session=``, whenever Plivo can reach it: the emulator
  always, a real account once ``inbound.public_url`` is set); the emulator with the webhook
  off takes the answer inline (``answer_xml``, an emulator extension).
- ``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/`` hangs up (``204``); a ``404`` means
  the call is already over. Before the stream has told the call's uuid, the queued or ringing
  call is cancelled instead: ``DELETE /v1/Account/{auth_id}/Request/{request_uuid}/``.
- ``POST /v1/Account/{auth_id}/Call/{call_uuid}/`` transfers a live call (``legs=aleg``,
  ``aleg_url``: it fetches and runs that XML in place of its stream; ``202 "call
  transferred"``): our ``transfer`` (a ``<Dial>``) and ``redirect`` (your XML), served by the
  runtime's webhook (``/plivo/control``). ``POST .../Call/{call_uuid}/DTMF/`` (``digits``,
  ``leg``; ``202 "digits sent"``) plays digits while the stream goes on. Neither is retried
  past a lost answer (each would run twice); 404: the call is over.
- ``machine_detection`` (``true``) with ``machine_detection_url`` (our ``/plivo/machine``):
  the verdict is posted there in the background (``Machine`` true or false).
- Error bodies ``{"api_id": ..., "error": "..."}`` (``error`` may be an object of field
  messages) become :class:`ProviderError`.

Creating is retried only on 429 (a 5xx may mean the call exists); hanging up also on 5xx.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Unpack
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from ..codecs import Frame
from ..codecs.plivo import PlivoCodec
from ..config import PlivoProviderConfig, RuntimeConfig
from ..errors import ConfigError, ProviderError, TransportError
from ..messages import Message, SessionRequest, Started
from ..routing import decode_extra_headers
from ..webhooks.plivo import dial_xml, stream_xml
from . import (
    ControlCommand,
    GatewayEndpoint,
    Infrastructure,
    RequestObserver,
    SendDigits,
    SessionPlan,
    Transfer,
)
from ._gateway import GatewayProvider, call_ends
from ._http import AT_MOST_ONCE, IDEMPOTENT, clip, json_body, reason_phrase
from ._rest import RestClient, RestOptions
from ._streamed import call_parameters, nonced_parameters

__all__ = ["PlivoProvider", "PlivoRestClient", "parse_error_response"]

logger = logging.getLogger(__name__)

PROVIDER = "plivo"
_AUTH_ID = re.compile(r"[MS]A[A-Z0-9]{18}")
_UUID = re.compile(r"[0-9A-Za-z-]{1,64}")


def parse_error_response(status: int, body: bytes, reason: str = "") -> ProviderError:
    """The :class:`ProviderError` for a Plivo error response: its ``error`` (a text, or an
    object of field messages, joined); any other body gives the status and reason only."""
    data = json_body(body)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        parts = []
        for name, value in error.items():
            text = (
                "; ".join(v for v in value if isinstance(v, str))
                if isinstance(value, list)
                else value
            )
            if isinstance(text, str):
                parts.append(f"{name}: {text}")
        error = ", ".join(parts)
    message = error if isinstance(error, str) else ""
    return ProviderError(PROVIDER, clip(message) or reason_phrase(status, reason), status=status)


class PlivoRestClient(RestClient):
    """Plivo's Call API for account ``auth_id`` (basic auth with ``auth_token``)."""

    provider = PROVIDER
    # A transfer runs its XML again, DTMF plays its digits again: neither is repeated after an
    # unknown outcome (AT_MOST_ONCE).
    retry_policies = {
        "create_call": AT_MOST_ONCE,
        "hang_up": IDEMPOTENT,
        "transfer": AT_MOST_ONCE,
        "send_digits": AT_MOST_ONCE,
    }

    def __init__(
        self,
        *,
        auth_id: str,
        auth_token: str,
        api_base_url: str = "https://api.plivo.com",
        **options: Unpack[RestOptions],
    ) -> None:
        if not _AUTH_ID.fullmatch(auth_id or ""):
            raise ValueError("auth_id must be MA or SA followed by 18 capitals or digits")
        if not auth_token:
            raise ValueError("auth_token is required")
        super().__init__(api_base_url=api_base_url, auth=(auth_id, auth_token), **options)
        self.auth_id = auth_id
        self._account = f"/v1/Account/{auth_id}"

    def __repr__(self) -> str:
        return f"PlivoRestClient(auth_id={self.auth_id!r}, api_base_url={self._origin!r})"

    def create_call(
        self,
        *,
        to: str,
        from_: str,
        answer_url: str,
        answer_method: str = "POST",
        hangup_url: str | None = None,
        answer_xml: str | None = None,
        machine_detection: str | None = None,
        machine_detection_url: str | None = None,
    ) -> dict[str, Any]:
        """Place a call; Plivo's answer, with at least ``request_uuid``. ``answer_xml`` is
        the emulator's extension (the answer inline). ``machine_detection`` (``true``, or
        ``hangup``: hang up on a machine) asks for machine detection, whose verdict goes to
        ``machine_detection_url`` in the background. :class:`ProviderError` on refusal."""
        body: dict[str, Any] = {
            "from": from_,
            "to": to,
            "answer_url": answer_url,
            "answer_method": answer_method,
        }
        if hangup_url is not None:
            body["hangup_url"] = hangup_url
        if answer_xml is not None:
            body["answer_xml"] = answer_xml
        if machine_detection is not None:
            body["machine_detection"] = machine_detection
            if machine_detection_url is not None:
                body["machine_detection_url"] = machine_detection_url
                body["machine_detection_method"] = "POST"
        response = self._request(
            "create_call", "POST", f"{self._account}/Call/", what="Call/", json=body
        )
        data = self._json_object(response, "POST Call/")
        request_uuid = data.get("request_uuid")
        if isinstance(request_uuid, list) and request_uuid:  # one per destination
            request_uuid = request_uuid[0]
        if not isinstance(request_uuid, str):
            raise ProviderError(
                PROVIDER,
                "POST Call/: the response has no request_uuid",
                status=response.status_code,
            )
        data["request_uuid"] = request_uuid
        logger.info("plivo call request %s fired", request_uuid)
        return data

    def hang_up(self, call_uuid: str) -> bool:
        """End call ``call_uuid``: True if this hung it up, False if it had already ended
        (404). Anything else raises :class:`ProviderError`."""
        return self._delete(f"Call/{self._checked(call_uuid)}/")

    def transfer(self, call_uuid: str, aleg_url: str, aleg_method: str = "POST") -> bool:
        """Transfer a call (``POST Call/{call_uuid}/`` with ``legs=aleg``): the call fetches
        its next XML from ``aleg_url`` and runs it in place of its stream. True once Plivo
        took it (``202 "call transferred"``), False if the call is over (404)."""
        name = f"Call/{self._checked(call_uuid)}/"
        body = {"legs": "aleg", "aleg_url": aleg_url, "aleg_method": aleg_method}
        return self._post("transfer", name, body)

    def send_digits(self, call_uuid: str, digits: str, leg: str = "aleg") -> bool:
        """Send digits (``POST Call/{call_uuid}/DTMF/``): play ``digits`` into the call's
        ``leg``; the call's XML (its stream) goes on. True once Plivo took them (``202
        "digits sent"``), False if the call is over (404)."""
        name = f"Call/{self._checked(call_uuid)}/DTMF/"
        return self._post("send_digits", name, {"digits": digits, "leg": leg})

    def _post(self, operation: str, name: str, body: dict[str, str]) -> bool:
        response = self._request(operation, "POST", f"{self._account}/{name}", what=name, json=body)
        return self._done(response)

    def cancel_request(self, request_uuid: str) -> bool:
        """Cancel a call not yet answered: True if this cancelled it, False if it was no
        longer queued or ringing (404)."""
        return self._delete(f"Request/{self._checked(request_uuid)}/")

    def _checked(self, value: str) -> str:
        if not _UUID.fullmatch(value or ""):
            raise ValueError("a Plivo uuid holds only letters, digits and '-'")
        return value

    def _delete(self, name: str) -> bool:
        return self._done(self._request("hang_up", "DELETE", f"{self._account}/{name}", what=name))

    def parse_error(self, response: requests.Response) -> ProviderError:
        return parse_error_response(response.status_code, response.content, response.reason or "")


#: Where a call comes back when its stream ends while the caller stays on (a cluster's).
REATTACH_ROUTE = "/plivo/answer"


class _RoutedPlivoCodec(PlivoCodec):
    """Plivo's codec, with the extra headers' routing values hex-decoded (session) or hidden
    (token) in ``Started.parameters``."""

    def decode(self, frame: Frame) -> Sequence[Message]:
        messages = super().decode(frame)
        if len(messages) == 1 and isinstance(messages[0], Started):
            parameters = decode_extra_headers(messages[0].parameters)
            parameters.pop("token", None)
            parameters.pop("nonce", None)  # a stream streamed again: its credential's
            return (dataclasses.replace(messages[0], parameters=parameters),)
        return messages


class PlivoProvider(GatewayProvider[PlivoProviderConfig, PlivoRestClient]):
    """The ``plivo`` provider: a call per session, its audio through the media gateway.

    ``open`` places the call with an answer that streams it to the gateway's ``/plivo``, the
    session id and its **stream token** in the ``<Stream>``'s extra headers; the connector
    dials ``/sessions/{id}`` with the **hop token**, as for Twilio.
    """

    def __init__(
        self,
        config: PlivoProviderConfig,
        runtime: RuntimeConfig,
        infrastructure: Infrastructure,
        *,
        on_request: RequestObserver | None = None,
    ) -> None:
        super().__init__(config, runtime, infrastructure, on_request=on_request)
        self._emulated = config.api_base_url == "emulator"
        self._requests: dict[str, str] = {}  # session id -> request_uuid, until hung up
        self._inbound: set[str] = set()  # sessions of inbound calls (their id is the CallUUID)
        self._handed_on: set[str] = set()  # sessions whose call was transferred or redirected

    def _make_client(self) -> PlivoRestClient:
        c, where = self.config, f"providers.{self.name}"
        if self._emulated:
            emulator = self._infrastructure.plivo_emulator()
            auth_id, token, base = emulator.account_sid, emulator.auth_token, emulator.base_url
        else:
            if not c.auth_id or not c.auth_token:
                missing = "auth_id" if not c.auth_id else "auth_token"
                raise ConfigError("required for Plivo's API", key_path=f"{where}.{missing}")
            auth_id, token, base = c.auth_id, c.auth_token, c.api_base_url
        return PlivoRestClient(
            auth_id=auth_id, auth_token=token, api_base_url=base, **self._rest_options()
        )

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        to, from_ = call_ends("plivo", self.name, request, configured_from=self.config.from_number)
        client = self._rest()
        machine_detection = _machine_detection(request.machine_detection)
        machine_url = None
        if machine_detection is not None:
            machine_url = self._infrastructure.webhook_route(self.config, "/plivo/machine")
            if machine_url is None:
                raise ConfigError(
                    "machine detection's verdict comes to the runtime's webhook: enable it "
                    "(inbound.enabled) with an inbound.public_url that Plivo can reach",
                    key_path="inbound.public_url",
                )
        gateway = self._infrastructure.gateway()
        routing = call_parameters(gateway, session_id, None)
        # Built (and checked: Plivo's extra headers take letters and digits only) before the
        # call is placed, whichever server will answer it.
        xml = self._stream_xml(gateway, session_id, {**dict(request.parameters or {}), **routing})
        infra = self._infrastructure
        ours = infra.webhook_route(self.config, "/plivo/answer")
        hangup_url = self.config.hangup_url or infra.webhook_route(self.config, "/plivo/hangup")
        answer_xml = None
        if self.config.answer_url is not None:  # your server answers (see stream_xml)
            answer_url = _with_query(self.config.answer_url, routing)
        elif ours is not None:  # the runtime's webhook answers, and hears it was answered
            infra.expect_answer(session_id, xml)
            query = {"session": session_id}
            if infra.reattach_url(session_id) is not None:
                # A cluster's: Plivo may ask any node, and only this one expects the answer;
                # another mints it from the gateway named here (signed by Plivo with the URL).
                query["gateway"] = gateway.public_url
            answer_url = _with_query(ours, query)
        elif self._emulated:  # no webhook: the emulator takes the answer inline
            answer_url, answer_xml = "http://emulator.invalid/answer", xml
        else:
            raise ConfigError(
                "required for Plivo's API when the webhook is off or has no inbound.public_url:"
                " a URL answering the <Stream> XML",
                key_path=f"providers.{self.name}.answer_url",
            )
        try:
            call = client.create_call(
                to=to,
                from_=from_,
                answer_url=answer_url,
                hangup_url=hangup_url,
                answer_xml=answer_xml,
                machine_detection=machine_detection,
                machine_detection_url=machine_url,
            )
        except BaseException:
            infra.forget_answer(session_id)
            raise
        request_uuid = str(call["request_uuid"])
        with self._lock:
            self._requests[session_id] = request_uuid
        logger.info("session %s: Plivo call %s placed to %s", session_id, request_uuid, to)
        return self._plan(session_id, gateway, request_uuid)

    def answer(
        self,
        session_id: str,
        call_uuid: str,
        parameters: Mapping[str, str],
        redirect_url: str | None = None,
    ) -> tuple[SessionPlan, str]:
        """Inbound call ``call_uuid`` accepted as ``session_id``: the plan, and the answer
        (:func:`~actors.webhooks.plivo.stream_xml` to the gateway's ``/plivo`` with the session
        and its stream token; in a cluster, then a ``<Redirect>`` back to our
        ``/plivo/answer?reattach=``). ``redirect_url`` is Twilio's, not used."""
        self._rest()  # the REST client exists: end_session hangs up with it
        gateway = self._infrastructure.gateway()
        xml = self.answer_document(session_id, parameters)
        with self._lock:
            self._inbound.add(session_id)
        return self._plan(session_id, gateway, call_uuid), xml

    def answer_document(self, session_id: str, parameters: Mapping[str, str]) -> str:
        """The XML of :meth:`answer` alone (a cluster's node answering a call claimed for
        another node, which carries it)."""
        gateway = self._infrastructure.gateway()
        return self._stream_xml(
            gateway, session_id, call_parameters(gateway, session_id, parameters)
        )

    def restream(self, session_id: str) -> str:
        """The XML that streams a call back to ``session_id`` through this session's gateway
        (a cluster's: the stream ended with its gateway, the ``<Redirect>`` after it brought
        the call back), with a stream credential of its own (a fresh nonce)."""
        gateway = self._infrastructure.gateway()
        return self._stream_xml(gateway, session_id, nonced_parameters(gateway, session_id))

    def _stream_xml(
        self, gateway: GatewayEndpoint, session_id: str, parameters: dict[str, str]
    ) -> str:
        """The ``<Stream>`` XML to the gateway's ``/plivo`` with ``parameters`` as extra
        headers (in a cluster, then a ``<Redirect>`` back to our ``/plivo/answer``)."""
        return stream_xml(
            gateway.public_url.rstrip("/") + "/plivo",
            parameters,
            content_type=self.config.content_type,
            redirect_url=self._infrastructure.reattach_url(session_id, REATTACH_ROUTE),
        )

    def _codec(self, session_id: str) -> _RoutedPlivoCodec:
        return _RoutedPlivoCodec(session_id=session_id)

    def control_call(self, session_id: str, plan: SessionPlan, command: ControlCommand) -> bool:
        """Send digits (``POST Call/{uuid}/DTMF/``: the stream goes on), or transfer the call
        (``POST Call/{uuid}/``) to XML the runtime's webhook serves: a ``<Dial>`` for a
        :class:`Transfer`, the given document for a :class:`Redirect`."""
        with self._lock:
            inbound = session_id in self._inbound
        call_uuid = getattr(plan.codec, "call_id", None)
        if inbound:
            call_uuid = call_uuid or plan.call_id
        if not isinstance(call_uuid, str) or not call_uuid:
            # An outbound call's uuid comes with its stream's start: before that it rings.
            raise TransportError(
                f"session {session_id!r}: the Plivo call has not been answered yet (its "
                "uuid comes with the stream's start); try again after Started"
            )
        client = self._rest()
        if isinstance(command, SendDigits):
            return client.send_digits(call_uuid, command.digits)
        if isinstance(command, Transfer):
            document = dial_xml(command.to, command.caller_id)
        else:
            document = command.document
        url = self._infrastructure.control_document(self.config, document)
        if url is None:
            raise ConfigError(
                "a Plivo transfer fetches the call's next XML from the runtime's webhook: "
                "enable it (inbound.enabled) with an inbound.public_url that Plivo can reach",
                key_path="inbound.public_url",
            )
        done = client.transfer(call_uuid, url)
        if done:
            with self._lock:
                self._handed_on.add(session_id)
        return done

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        """Hang the call up by its uuid once the stream has told it (``start.callId``), else
        cancel its request (it is still queued or ringing); a call transferred or redirected
        is left alone (its new XML owns it)."""
        self._infrastructure.forget_answer(session_id)
        with self._lock:
            request_uuid = self._requests.pop(session_id, plan.call_id)
            inbound = session_id in self._inbound
            self._inbound.discard(session_id)
            handed_on = session_id in self._handed_on
            self._handed_on.discard(session_id)
        if handed_on:
            logger.info("session %s: Plivo call was transferred: not hung up", session_id)
            return
        call_uuid = getattr(plan.codec, "call_id", None)
        if inbound:  # its call id is the call's uuid already
            call_uuid = call_uuid or plan.call_id
        client = self._rest()
        if isinstance(call_uuid, str) and call_uuid:
            ended = client.hang_up(call_uuid)
        elif request_uuid is not None:
            ended = client.cancel_request(request_uuid)
        else:
            return
        what = "hung up" if ended else "had already ended"
        logger.info("session %s: Plivo call %s %s", session_id, call_uuid or request_uuid, what)


def _machine_detection(asked: str | Mapping[str, str] | None) -> str | None:
    """Plivo's ``machine_detection`` for ``create_session(machine_detection=...)``: ``Enable``
    is ``true`` (detect, and go on). Plivo detects a machine but not the end of its greeting,
    and takes none of Twilio's tuning parameters: those are a ``ValueError``."""
    if asked is None:
        return None
    if asked == "Enable" or (
        isinstance(asked, Mapping) and dict(asked) == {"MachineDetection": "Enable"}
    ):
        return "true"
    raise ValueError(
        "Plivo's machine detection takes machine_detection='Enable' only (it tells a machine "
        "from a person, not the end of a greeting, and has none of Twilio's tuning parameters)"
    )


def _with_query(url: str, values: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(values)) if q)
    return urlunsplit(parts._replace(query=query))
