"""Vonage's Voice API control plane: create a call whose NCCO connects it to our websocket, and
hang it up.

Checked against Vonage's OpenAPI description of the Voice API (v1.3.7, MIT; the contract
test, ``tests/providers/test_vonage_contract.py``, runs the client against it) and its pages
(developer.vonage.com: "Making an outbound call", "WebSockets", "NCCO reference",
"Authentication"):

- ``POST /v1/calls`` with ``to: [{type: phone, number}]``, ``from: {type: phone, number}``
  (E.164 digits, no ``+``: the spec's ``AddressE164``), ``ncco``, and optionally
  ``event_url`` and ``ringing_timer`` (1..120 s): 201 with ``uuid``, ``status``,
  ``direction``, ``conversation_uuid``.
- The NCCO (:func:`websocket_ncco`) is one ``connect`` action with a ``websocket`` endpoint:
  ``uri``, ``content-type: audio/l16;rate=8000|16000``, ``headers``. Vonage flattens the
  headers into the stream's first frame (``websocket:connected``): that is where the gateway
  finds the session and its stream token. The answer webhook of an inbound call returns the
  same NCCO.
- ``PUT /v1/calls/{uuid}`` with ``{"action": "hangup"}``: 204; the spec documents 404 for a
  call it does not know, which is how a call that has already ended answers: success here.
- Errors are RFC 7807 problem bodies (``type``, ``title``, ``detail``, ``instance``; older
  answers ``error_title`` and ``invalid_parameters``): :func:`parse_error_response`.
- Auth: ``Authorization: Bearer <JWT>``, RS256 under the application's private key, a fresh
  one per request (:mod:`actors.pubkey`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Unpack

import requests

from ..codecs.pcm import FRAME_MS
from ..codecs.vonage import VonageCodec, content_type
from ..config import VonageProviderConfig
from ..errors import ConfigError, ProviderError
from ..messages import SessionRequest
from ..pubkey import application_token
from . import GatewayEndpoint, SessionPlan
from ._gateway import GatewayProvider, call_ends
from ._http import AT_MOST_ONCE, IDEMPOTENT, clip, json_body, reason_phrase, text_of, title_detail
from ._rest import BearerAuth, RestClient, RestOptions
from ._streamed import audio_policy, call_parameters, nonced_parameters

__all__ = [
    "VonageProvider",
    "VonageRestClient",
    "parse_error_response",
    "phone_number",
    "websocket_ncco",
]

logger = logging.getLogger(__name__)

PROVIDER = "vonage"
#: Where a call's websocket events go in a cluster (synchronous): a ``disconnected`` one,
#: when the caller stays on, is answered with a new NCCO (the gateway died).
REATTACH_ROUTE = "/vonage/event"
_DIGITS = re.compile(r"\d{7,15}")
_UUID = re.compile(r"[0-9A-Za-z-]{1,64}")
_WS_URI = re.compile(r"wss?://\S+", re.IGNORECASE)


def phone_number(number: str) -> str:
    """A number as Vonage's API writes it: E.164 digits without the ``+`` (``ValueError``
    for anything else)."""
    digits = number.strip().removeprefix("+")
    if not _DIGITS.fullmatch(digits):
        raise ValueError("a Vonage number is 7 to 15 digits (E.164, + optional)")
    return digits


def websocket_ncco(
    uri: str,
    *,
    rate: int = 16000,
    headers: Mapping[str, str] | None = None,
    event_url: str | None = None,
) -> list[dict[str, Any]]:
    """The NCCO that connects a call to the websocket at ``uri``: 16-bit PCM at ``rate``
    (8000 or 16000 Hz), ``headers`` flattened into the stream's ``websocket:connected``.

    ``event_url`` (with ``eventType: synchronous``) makes Vonage ask that URL what to do when
    the websocket ends: the way to keep a call alive across a gateway's failover. Built as
    data and sent as JSON, so no value can change its structure; header values must be
    strings (``TypeError`` otherwise)."""
    if not _WS_URI.fullmatch(uri):
        raise ValueError("the websocket uri must be a ws:// or wss:// URL")
    content_type(rate)
    if rate not in (8000, 16000):
        raise ValueError(f"Vonage streams audio/l16 at 8000 or 16000 Hz, not {rate}")
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("websocket headers must map str to str")
    endpoint = {
        "type": "websocket",
        "uri": uri,
        "content-type": content_type(rate),
        "headers": dict(headers or {}),
    }
    connect: dict[str, Any] = {"action": "connect", "endpoint": [endpoint]}
    if event_url is not None:
        connect["eventUrl"] = [event_url]
        connect["eventType"] = "synchronous"
    return [connect]


def parse_error_response(status: int, body: bytes | str, *, reason: str = "") -> ProviderError:
    """The :class:`ProviderError` for an error answer: ``code`` is the problem type's
    fragment (``.../api-errors#unauthorized`` -> ``unauthorized``), the message ``title:
    detail`` (and the names of invalid parameters); an unknown body is not echoed."""
    data = json_body(body)
    if not isinstance(data, dict):
        return ProviderError(PROVIDER, reason_phrase(status, reason), status=status)
    problem_type = text_of(data.get("type"))
    title = text_of(data.get("title")) or text_of(data.get("error_title"))
    message = title_detail(title, text_of(data.get("detail")))
    invalid = data.get("invalid_parameters")
    if isinstance(invalid, list | dict) and invalid:
        names = [
            text_of(item.get("name")) if isinstance(item, dict) else text_of(item)
            for item in invalid
        ]
        message = f"{message} ({', '.join(n for n in names if n)})" if message else ""
    code: str | None = None
    if "#" in problem_type:
        code = clip(problem_type.rpartition("#")[2], 64) or None
    more_info = problem_type if problem_type.startswith(("http://", "https://")) else None
    return ProviderError(
        PROVIDER,
        clip(message) or reason_phrase(status, reason),
        status=status,
        code=code,
        more_info=more_info,
    )


class VonageRestClient(RestClient):
    """Vonage's Voice API (``/v1/calls``), authenticated by a fresh application JWT per request.

    Creating a call is retried only on 429 (and connection errors before it left); hanging up
    is idempotent, so 5xx and read errors are retried too. The private key never appears in
    a log line, an error or the repr.
    """

    provider = PROVIDER
    retry_policies = {"create_call": AT_MOST_ONCE, "hang_up": IDEMPOTENT}

    def __init__(
        self,
        *,
        application_id: str,
        private_key: str,
        api_base_url: str = "https://api.nexmo.com",
        **options: Unpack[RestOptions],
    ) -> None:
        if not application_id:
            raise ValueError("application_id is required")
        if "PRIVATE KEY" not in private_key:
            raise ValueError("private_key must be a PEM private key")
        self.application_id = application_id

        def token() -> str:
            return application_token(application_id, private_key)

        super().__init__(
            api_base_url=api_base_url,
            auth=BearerAuth(token),
            headers={"Content-Type": "application/json"},
            **options,
        )

    def __repr__(self) -> str:
        return f"VonageRestClient(application_id={self.application_id!r}, api={self._origin!r})"

    def create_call(
        self,
        *,
        to: str,
        from_: str,
        ncco: list[dict[str, Any]],
        event_url: str | None = None,
        ringing_timer: int | None = None,
    ) -> dict[str, Any]:
        """Place a call to ``to`` that runs ``ncco``; Vonage's answer (``uuid`` at least).
        A failure after the request left is reported, never repeated (the call may exist)."""
        body: dict[str, Any] = {
            "to": [{"type": "phone", "number": phone_number(to)}],
            "from": {"type": "phone", "number": phone_number(from_)},
            "ncco": ncco,
        }
        if event_url is not None:
            body["event_url"] = [event_url]
        if ringing_timer is not None:
            body["ringing_timer"] = ringing_timer
        response = self._request("create_call", "POST", "/v1/calls", json=body)
        call = self._json_object(response, "POST /v1/calls")
        if not isinstance(call.get("uuid"), str):
            raise ProviderError(
                PROVIDER, "POST /v1/calls: the response has no uuid", status=response.status_code
            )
        logger.info("vonage call %s created", call["uuid"])
        return call

    def hang_up(self, uuid: str) -> bool:
        """End call ``uuid``: True if this hung it up, False if Vonage no longer knows it
        (404: it has already ended). Anything else raises :class:`ProviderError`."""
        if not _UUID.fullmatch(uuid):
            raise ValueError("a Vonage call uuid is letters, digits and '-'")
        path = f"/v1/calls/{uuid}"
        response = self._request(
            "hang_up", "PUT", path, what="/v1/calls/{uuid}", json={"action": "hangup"}
        )
        ended = self._done(response)
        logger.info("vonage call %s %s", uuid, "hung up" if ended else "had already ended")
        return ended

    def parse_error(self, response: requests.Response) -> ProviderError:
        return parse_error_response(
            response.status_code, response.content, reason=response.reason or ""
        )


class VonageProvider(GatewayProvider[VonageProviderConfig, VonageRestClient]):
    """The ``vonage`` provider: a call per session, its audio through the media gateway.

    ``open`` places the call with an NCCO that connects it to the gateway's ``/vonage`` with
    the session id and its stream token as websocket headers, and tells the connector to dial
    the gateway's ``/sessions/{id}`` with the hop token. The application reads and writes
    ``audio_encoding`` at ``audio_sample_rate`` (or the wire's own PCM16), 20 ms at a time.
    """

    def _make_client(self) -> VonageRestClient:
        c = self.config
        where = f"providers.{self.name}"
        if c.api_base_url == "emulator":
            emulator = self._infrastructure.vonage_emulator()
            application_id, key, base = (
                emulator.application_id,
                emulator.private_key,
                emulator.base_url,
            )
        else:
            if not c.application_id:
                raise ConfigError("required for Vonage's API", key_path=f"{where}.application_id")
            key = c.private_key or _read_key(c.private_key_file, where)
            application_id, base = c.application_id, c.api_base_url
        return VonageRestClient(
            application_id=application_id,
            private_key=key,
            api_base_url=base,
            **self._rest_options(),
        )

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        to, from_ = call_ends(
            "vonage",
            self.name,
            request,
            configured_from=self.config.from_number,
            to_example="+44...",
            from_hint="",
        )
        gateway = self._infrastructure.gateway()
        headers = call_parameters(gateway, session_id, request.parameters)
        ncco = self._ncco(gateway, session_id, headers)
        call = self._rest().create_call(
            to=to,
            from_=from_,
            ncco=ncco,
            # The runtime's webhook takes the call's progress, unless you name your own.
            event_url=self.config.event_url
            or self._infrastructure.webhook_route(self.config, "/vonage/event"),
            ringing_timer=self.config.ring_timeout_s,
        )
        uuid = str(call["uuid"])
        logger.info("session %s: Vonage call %s placed to %s", session_id, uuid, to)
        return self._plan(session_id, gateway, uuid)

    def answer(
        self,
        session_id: str,
        uuid: str,
        parameters: Mapping[str, str],
        redirect_url: str | None = None,
    ) -> tuple[SessionPlan, str]:
        """Inbound call ``uuid`` accepted as ``session_id``: the plan, and the answer webhook's
        NCCO (JSON: :func:`websocket_ncco` to the gateway's ``/vonage`` with the session and its
        stream token as headers; in a cluster, its ``eventUrl`` is our
        ``/vonage/event?reattach=``, synchronous). ``redirect_url`` is Twilio's, not used."""
        self._rest()  # the REST client exists: end_session hangs up with it
        gateway = self._infrastructure.gateway()
        return self._plan(session_id, gateway, uuid), self.answer_document(session_id, parameters)

    def answer_document(self, session_id: str, parameters: Mapping[str, str]) -> str:
        """The NCCO (JSON) of :meth:`answer` alone (a cluster's node answering a call
        claimed for another node, which carries it)."""
        gateway = self._infrastructure.gateway()
        headers = call_parameters(gateway, session_id, parameters)
        return json.dumps(self._ncco(gateway, session_id, headers))

    def restream(self, session_id: str) -> str:
        """The NCCO (JSON) that connects a call back to ``session_id`` through this session's
        gateway, with a stream credential of its own (a fresh nonce): the answer to the
        ``disconnected`` event of its websocket, which a synchronous ``eventUrl`` may answer
        with a new NCCO (a cluster's: the stream ended with its gateway)."""
        gateway = self._infrastructure.gateway()
        return json.dumps(self._ncco(gateway, session_id, nonced_parameters(gateway, session_id)))

    def _ncco(
        self, gateway: GatewayEndpoint, session_id: str, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        """:func:`websocket_ncco` to the gateway's ``/vonage`` with ``headers`` (in a cluster,
        its ``eventUrl`` is our ``/vonage/event?reattach=``)."""
        return websocket_ncco(
            gateway.public_url.rstrip("/") + "/vonage",
            rate=self.config.sample_rate,
            headers=headers,
            event_url=self._infrastructure.reattach_url(session_id, REATTACH_ROUTE),
        )

    def _codec(self, session_id: str) -> VonageCodec:
        c = self.config
        return VonageCodec(
            audio=audio_policy(c.audio_encoding, c.audio_sample_rate),
            session_id=session_id,
            hidden_parameters=frozenset({"token", "nonce"}),
            # Vonage drops what is past its buffer: written faster than real time, audio waits.
            lead_frames=c.max_lead_ms // FRAME_MS or None,
        )

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        if plan.call_id is None:
            return
        if self._rest().hang_up(plan.call_id):
            logger.info("session %s: Vonage call %s hung up", session_id, plan.call_id)
        else:
            logger.info("session %s: Vonage call %s had already ended", session_id, plan.call_id)


def _read_key(path: str | None, where: str) -> str:
    if not path:
        raise ConfigError("set private_key or private_key_file", key_path=f"{where}.private_key")
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(
            f"cannot read the private key: {why}",
            key_path=f"{where}.private_key_file",
        ) from None
