"""Twilio's REST control plane: create a call that streams to us, and hang it up.

Only what a session needs from Twilio's 2010-04-01 API lives here:

- :func:`build_stream_twiml` writes the ``<Connect><Stream>`` document a call runs;
- :class:`TwilioRestClient` (a :class:`~actors.providers._rest.RestClient`) creates calls and
  hangs them up, with retries that can never place the same call twice;
- :func:`parse_error_response` turns an error response (Twilio's legacy JSON body, an
  RFC 9457 problem body, or anything else) into a :class:`~actors.errors.ProviderError`.

Secrets (the auth token, an API key's secret) go into the ``Authorization`` header and nowhere
else: not into log lines, exception messages or reprs.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import requests

from ..codecs.twilio import TwilioCodec
from ..config import TwilioProviderConfig
from ..errors import ConfigError, ProviderError
from ..messages import SessionRequest
from ..wire.constants import ACCOUNT_SID as _ACCOUNT_SID
from ..wire.constants import CALL_SID as _CALL_SID
from . import ProgressUrls, SessionPlan
from ._gateway import GatewayProvider, call_ends
from ._http import AT_MOST_ONCE, IDEMPOTENT, clip, json_body, reason_phrase, text_of, title_detail
from ._rest import RestClient, RestOptions
from ._streamed import call_parameters, nonced_parameters

__all__ = [
    "ALREADY_ENDED_CODES",
    "TwilioProvider",
    "TwilioRestClient",
    "build_stream_twiml",
    "parse_error_response",
]

logger = logging.getLogger(__name__)

PROVIDER = "twilio"
API_VERSION = "2010-04-01"

#: Twilio codes that mean "that call is already over": 20404 (no such resource) and 21220
#: ("Call is not in-progress. Cannot redirect.", what updating a completed call answers).
ALREADY_ENDED_CODES = frozenset({20404, 21220})

# XML 1.0 cannot carry these characters at all, not even escaped: refuse them up front.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TRAILING_DIGITS = re.compile(r"(\d+)/?$")


def build_stream_twiml(
    stream_url: str, parameters: Mapping[str, str], *, status_callback: str | None = None
) -> str:
    """TwiML that connects the call's audio to a bidirectional Media Stream at ``stream_url``.

    ``parameters`` become ``<Parameter name=".." value=".."/>`` children, which Twilio hands
    back in the stream's ``start`` message. ``status_callback``: the ``<Stream
    statusCallback>`` (``POST``) Twilio tells of the stream's ``stream-started``,
    ``stream-stopped`` and ``stream-error``. The document is built with ElementTree, so quotes,
    ``<``, ``&``, ``]]>``, newlines and any Unicode come through as the same values; characters
    that XML 1.0 cannot carry at all (most C0 controls) raise :class:`ValueError`.
    """
    _check_xml_text("stream_url", stream_url)
    response = ET.Element("Response")
    connect = ET.SubElement(response, "Connect")
    stream = ET.SubElement(connect, "Stream", url=stream_url)
    if status_callback is not None:
        _check_xml_text("status_callback", status_callback)
        stream.set("statusCallback", status_callback)
        stream.set("statusCallbackMethod", "POST")
    for name, value in parameters.items():
        _check_xml_text("parameter name", name)
        _check_xml_text(f"parameter {name!r}", value)
        ET.SubElement(stream, "Parameter", name=name, value=value)
    return ET.tostring(response, encoding="unicode")


def _check_xml_text(what: str, text: str) -> None:
    bad = _XML_INVALID.search(text)
    if bad is not None:
        raise ValueError(f"{what} holds {bad.group()!r}, which XML cannot carry")


def parse_error_response(
    status: int, body: bytes | str, *, content_type: str = "", reason: str = ""
) -> ProviderError:
    """The :class:`ProviderError` for an error response of HTTP ``status``.

    Understands Twilio's legacy body (``code``, ``message``, ``more_info``, ``status``) and an
    RFC 9457 problem body (``type``, ``title``, ``status``, ``detail``, ``instance``, and
    perhaps ``code``; without one the code is the trailing digits of ``type``). Anything else
    gives a message with the HTTP status and reason phrase only: an unknown body is not echoed.
    """
    data = json_body(body)
    if not isinstance(data, dict):
        return ProviderError(PROVIDER, reason_phrase(status, reason), status=status)
    is_problem = "problem+json" in content_type.lower() or (
        "message" not in data and ("type" in data or "title" in data)
    )
    if is_problem:
        return _from_problem(status, reason, data)
    code = _as_code(data.get("code"))
    message = text_of(data.get("message"))
    detail = text_of(data.get("detail"))
    if detail and detail != message:
        message = f"{message}: {detail}" if message else detail
    return ProviderError(
        PROVIDER,
        clip(message) or reason_phrase(status, reason),
        status=status,
        code=code,
        more_info=text_of(data.get("more_info")) or None,
    )


def _from_problem(status: int, reason: str, data: Mapping[str, Any]) -> ProviderError:
    problem_type = text_of(data.get("type"))
    title = text_of(data.get("title"))
    detail = text_of(data.get("detail"))
    code = _as_code(data.get("code"))
    if code is None and problem_type:
        digits = _TRAILING_DIGITS.search(problem_type)
        code = int(digits.group(1)) if digits else None
    message = title_detail(title, detail)
    more_info = text_of(data.get("more_info")) or None
    if more_info is None and problem_type.startswith(("http://", "https://")):
        more_info = problem_type  # RFC 9457: the type URI should document the problem
    return ProviderError(
        PROVIDER,
        clip(message) or reason_phrase(status, reason),
        status=status,
        code=code,
        more_info=more_info,
    )


def _as_code(value: object) -> int | str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        return int(text) if text.isdigit() else clip(text, 64)
    return None


class TwilioRestClient(RestClient):
    """A small client for Twilio's 2010-04-01 Calls API.

    Authenticates with HTTP basic auth as (``account_sid``, ``auth_token``) or as
    (``api_key``, ``api_secret``): exactly one pair. Every request has ``timeout=timeout_s``.
    Retries (``retries`` at most, exponential backoff from ``backoff_s`` up to
    ``backoff_max_s``, Retry-After respected but capped there) are split by what is safe:

    - creating a call is retried only on 429 (Twilio never processed it) and on connection
      errors where the request never left; a 5xx or a read timeout may mean the call exists,
      so it is reported, not repeated;
    - hanging up is idempotent: 429, 500, 502, 503, 504 and read errors are retried too.

    The session (``http``), the observer (``on_request``) and ``close()`` / ``with`` are
    :class:`~actors.providers._rest.RestClient`'s.
    """

    provider = PROVIDER
    retry_policies = {
        "create_call": AT_MOST_ONCE,  # a 5xx or a lost answer may mean the call exists
        "hang_up": IDEMPOTENT,  # ending a call twice does no harm
        "update_call": AT_MOST_ONCE,  # new TwiML twice would run it twice
    }

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        api_base_url: str = "https://api.twilio.com",
        **options: Unpack[RestOptions],
    ) -> None:
        if not account_sid:
            raise ValueError("account_sid is required")
        if not _ACCOUNT_SID.fullmatch(account_sid):
            raise ValueError("account_sid must be 'AC' followed by 32 hex digits")
        if auth_token and (api_key or api_secret):
            raise ValueError("give auth_token, or api_key with api_secret, not both")
        if auth_token:
            username, password, self._auth_kind = account_sid, auth_token, "auth_token"
        elif api_key and api_secret:
            username, password, self._auth_kind = api_key, api_secret, "api_key"
        elif api_key:
            raise ValueError("api_secret is required with api_key")
        elif api_secret:
            raise ValueError("api_key is required with api_secret")
        else:
            raise ValueError("auth_token (or api_key and api_secret) is required")
        super().__init__(api_base_url=api_base_url, auth=(username, password), **options)
        self.account_sid = account_sid
        self._account_path = f"/{API_VERSION}/Accounts/{account_sid}"

    def __repr__(self) -> str:
        return (
            f"TwilioRestClient(account_sid={self.account_sid!r}, "
            f"api_base_url={self._origin!r}, auth={self._auth_kind!r})"
        )

    def create_call(
        self,
        *,
        to: str,
        from_: str,
        twiml: str,
        status_callback: str | None = None,
        status_callback_events: Sequence[str] = (),
        status_callback_method: str | None = None,
        timeout_s: int | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Place an outbound call that runs ``twiml``; return Twilio's Call resource.

        ``timeout_s`` is Twilio's ``Timeout``: how long the call rings before Twilio gives up
        (5 to 600 seconds; Twilio's default is 60). ``extra`` adds parameters as they are
        (machine detection's: ``MachineDetection``, ``AsyncAmd``...).

        The result has at least ``sid``. Raises :class:`ProviderError` for any refusal or
        transport failure; a failure after the request was sent is never retried, since the
        call may exist (look for it, or let it time out, rather than dial twice).
        """
        form: list[tuple[str, str]] = [("To", to), ("From", from_), ("Twiml", twiml)]
        if status_callback is not None:
            form.append(("StatusCallback", status_callback))
        # Twilio wants one StatusCallbackEvent key per event, not a joined list.
        form.extend(("StatusCallbackEvent", event) for event in status_callback_events)
        if status_callback_method is not None:
            form.append(("StatusCallbackMethod", status_callback_method))
        if timeout_s is not None:
            form.append(("Timeout", str(timeout_s)))
        form.extend((extra or {}).items())
        response = self._account_request("create_call", "Calls.json", form)
        call = self._json_object(response, "POST Calls.json")
        if not isinstance(call.get("sid"), str):
            raise ProviderError(
                PROVIDER,
                "POST Calls.json: the response has no call sid",
                status=response.status_code,
            )
        logger.info("twilio call %s created", call["sid"])
        return call

    def hang_up(self, call_sid: str) -> bool:
        """End the call ``call_sid``: True if this hung it up, False if it had already ended.

        "Already ended" is a 404 / code 20404 (Twilio no longer knows the call) or code 21220
        (Twilio's answer to updating a call that is not in progress). Anything else raises
        :class:`ProviderError`.
        """
        if not _CALL_SID.fullmatch(call_sid):
            raise ValueError("call_sid must be 'CA' followed by 32 hex digits")
        name = f"Calls/{call_sid}.json"
        response = self._account_request("hang_up", name, [("Status", "completed")])
        if response.ok:
            logger.info("twilio call %s hung up", call_sid)
            return True
        error = self.parse_error(response)
        if response.status_code == 404 or error.code in ALREADY_ENDED_CODES:
            logger.info("twilio call %s had already ended (%s)", call_sid, error.code or 404)
            return False
        raise error

    def update_call(
        self, call_sid: str, *, twiml: str | None = None, url: str | None = None
    ) -> bool:
        """Give call ``call_sid`` new instructions: the ``twiml`` document, or the TwiML that
        ``url`` answers (exactly one). The call leaves the verb it is in (a stream ends) and
        obeys them. True if Twilio took them; False if the call had already ended (as in
        :meth:`hang_up`). Anything else raises :class:`ProviderError`; never retried past a
        lost answer (the update may have been made)."""
        if not _CALL_SID.fullmatch(call_sid):
            raise ValueError("call_sid must be 'CA' followed by 32 hex digits")
        if (twiml is None) == (url is None):
            raise ValueError("give twiml or url, exactly one")
        form = [("Twiml", twiml)] if twiml is not None else [("Url", url or "")]
        response = self._account_request("update_call", f"Calls/{call_sid}.json", form)
        if response.ok:
            logger.info("twilio call %s updated", call_sid)
            return True
        error = self.parse_error(response)
        if response.status_code == 404 or error.code in ALREADY_ENDED_CODES:
            return False
        raise error

    def parse_error(self, response: requests.Response) -> ProviderError:
        return parse_error_response(
            response.status_code,
            response.content,
            content_type=response.headers.get("Content-Type", ""),
            reason=response.reason or "",
        )

    def _account_request(
        self, operation: str, name: str, form: list[tuple[str, str]]
    ) -> requests.Response:
        """POST the form to the account's resource ``name`` (``Calls.json``...)."""
        path = f"{self._account_path}/{name}"
        return self._request(operation, "POST", path, what=name, form=form)


class TwilioProvider(GatewayProvider[TwilioProviderConfig, TwilioRestClient]):
    """The ``twilio`` provider: a call per session, its audio through the media gateway.

    ``open`` places the call (ringing at most ``ring_timeout_s``) with TwiML that streams it
    to the gateway's ``/twilio`` with the session id and its **stream token** as custom
    parameters, and tells the connector to dial the gateway's ``/sessions/{id}`` with the
    session's **hop token**, which the TwiML never carries (:mod:`actors.signing`): whoever
    reads a call's TwiML can at most offer one provider stream, never open the session's hop.
    The REST client is made on first use, so that an embedded emulator starts only when a
    Twilio session is created.
    """

    def _make_client(self) -> TwilioRestClient:
        c = self.config
        where = f"providers.{self.name}"
        if c.api_base_url == "emulator":
            emulator = self._infrastructure.twilio_emulator()
            return TwilioRestClient(
                account_sid=emulator.account_sid,
                auth_token=emulator.auth_token,
                api_base_url=emulator.base_url,
                **self._rest_options(),
            )
        if c.account_sid is None:
            raise ConfigError("required for the Twilio API", key_path=f"{where}.account_sid")
        if not c.auth_token and not (c.api_key and c.api_secret):
            raise ConfigError(
                "set auth_token, or api_key and api_secret", key_path=f"{where}.auth_token"
            )
        return TwilioRestClient(
            account_sid=c.account_sid,
            auth_token=c.auth_token,
            api_key=c.api_key,
            api_secret=c.api_secret,
            api_base_url=c.api_base_url,
            **self._rest_options(),
        )

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        to, from_ = call_ends("twilio", self.name, request, configured_from=self.config.from_number)
        gateway = self._infrastructure.gateway()
        # A credential of this TwiML's own (actors.signing). The application's own parameters
        # come back in Started.parameters; ours win.
        parameters = nonced_parameters(gateway, session_id, request.parameters)
        stream_url = gateway.public_url.rstrip("/") + "/twilio"
        redirect = self._infrastructure.reattach_url(session_id)
        progress = self._infrastructure.progress_urls(self.config)
        told = progress.stream_url if progress is not None else None
        if redirect is None:
            twiml = build_stream_twiml(stream_url, parameters, status_callback=told)
        else:  # a cluster's: back to a webhook if the gateway dies, to another gateway
            from ..webhooks.twilio import connect_twiml  # noqa: PLC0415 (it imports this module)

            twiml = connect_twiml(
                stream_url, parameters, redirect_url=redirect, status_callback=told
            )
        extra = _amd_form(request.machine_detection, progress)
        status_callback = self.config.status_callback
        events: tuple[str, ...] = self.config.status_callback_events
        if progress is not None:  # ours: every event; the configured URL gets them forwarded
            status_callback, events = progress.status_url, PROGRESS_EVENTS
        rest = self._rest()
        call = rest.create_call(
            to=to,
            from_=from_,
            twiml=twiml,
            status_callback=status_callback,
            status_callback_events=events,
            timeout_s=request.timeout
            if request.timeout is not None
            else self.config.ring_timeout_s,
            extra=extra,
        )
        call_sid = str(call["sid"])
        logger.info("session %s: Twilio call %s placed to %s", session_id, call_sid, to)
        return self._plan(session_id, gateway, call_sid)

    def answer(
        self,
        session_id: str,
        call_sid: str,
        parameters: Mapping[str, str],
        redirect_url: str | None,
    ) -> tuple[SessionPlan, str]:
        """Inbound call ``call_sid`` accepted as ``session_id``: the plan to carry it, and the TwiML
        that answers its voice webhook (``<Connect><Stream>`` to the gateway with the
        session's stream token and ``parameters``, then ``<Redirect>`` to ``redirect_url``)."""
        from ..webhooks.twilio import connect_twiml  # noqa: PLC0415 (it imports this module)

        gateway = self._infrastructure.gateway()
        params = call_parameters(gateway, session_id, parameters)
        stream_url = gateway.public_url.rstrip("/") + "/twilio"
        twiml = connect_twiml(
            stream_url, params, redirect_url=redirect_url, status_callback=self._stream_status()
        )
        return self._plan(session_id, gateway, call_sid), twiml

    def restream_twiml(self, session_id: str, parameters: Mapping[str, str]) -> str:
        """``<Response><Connect><Stream>`` that streams a live call again to the gateway for
        ``session_id`` (after a call update: ``send_dtmf``), with a stream credential of its
        own (a fresh nonce: the gateway pairs each once) and the application's
        ``parameters`` again."""
        gateway = self._infrastructure.gateway()
        stream_url = gateway.public_url.rstrip("/") + "/twilio"
        return build_stream_twiml(
            stream_url,
            nonced_parameters(gateway, session_id, parameters),
            status_callback=self._stream_status(),
        )

    def _stream_status(self) -> str | None:
        """The runtime webhook's ``<Stream statusCallback>``, when it takes progress."""
        progress = self._infrastructure.progress_urls(self.config)
        return None if progress is None else progress.stream_url

    def update_call(
        self, call_sid: str, *, twiml: str | None = None, url: str | None = None
    ) -> bool:
        """New TwiML for a live call (:meth:`TwilioRestClient.update_call`)."""
        return self._rest().update_call(call_sid, twiml=twiml, url=url)

    def restream(self, session_id: str) -> str:
        """The TwiML that streams a call back to ``session_id`` through this session's
        gateway (a cluster's: the stream ended with its gateway, the ``<Redirect>`` after it
        brought the call back), with a stream credential of its own (a fresh nonce), then
        the ``<Redirect>`` again."""
        from ..webhooks.twilio import connect_twiml  # noqa: PLC0415 (it imports this module)

        gateway = self._infrastructure.gateway()
        parameters = nonced_parameters(gateway, session_id)
        stream_url = gateway.public_url.rstrip("/") + "/twilio"
        redirect = self._infrastructure.reattach_url(session_id)
        return connect_twiml(stream_url, parameters, redirect_url=redirect)

    def _codec(self, session_id: str) -> TwilioCodec:
        return TwilioCodec(session_id=session_id, hidden_parameters=frozenset({"token", "nonce"}))

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        if plan.call_id is None:
            return
        if self._rest().hang_up(plan.call_id):
            logger.info("session %s: Twilio call %s hung up", session_id, plan.call_id)
        else:
            logger.info("session %s: Twilio call %s had already ended", session_id, plan.call_id)


#: The status callback events a call subscribes to when the runtime takes its progress.
PROGRESS_EVENTS = ("initiated", "ringing", "answered", "completed")


def _amd_form(
    machine_detection: str | Mapping[str, str] | None, progress: ProgressUrls | None
) -> dict[str, str]:
    """Twilio's machine detection parameters for ``create_session(machine_detection=...)``;
    an ``AsyncAmd`` verdict goes to the runtime's webhook unless a callback is given."""
    if machine_detection is None:
        return {}
    if isinstance(machine_detection, str):
        return {"MachineDetection": machine_detection}
    form = {"MachineDetection": "Enable", **dict(machine_detection)}
    asynchronous = form.get("AsyncAmd") == "true"
    if asynchronous and "AsyncAmdStatusCallback" not in form and progress is not None:
        form["AsyncAmdStatusCallback"] = progress.amd_url
    return form
