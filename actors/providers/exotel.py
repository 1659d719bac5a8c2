"""Exotel's control plane for AgentStream: place a call whose answered audio streams to us.

Checked against Exotel's pages (developer.exotel.com: "AgentStream developer guide" (Connect
Voice AI), "Working with the Stream and Voicebot Applet", "Voice v1 API", "Error Code
Dictionary"; Exotel's launch post of the Connect Voice AI API):

- ``POST /v1/Accounts/{sid}/Calls/connect``, HTTP basic auth as (API key, API token), a form:
  ``From`` (the number dialled), ``CallerId`` (your ExoPhone), ``StreamUrl`` (``ws://`` or
  ``wss://``, at most 600 characters), ``StreamType=bidirectional``, and optionally
  ``StatusCallback``, ``StatusCallbackEvents[]`` and ``TimeLimit``. The answer is a Call
  object with its ``Sid``.
- Where sources disagree: the developer guide writes the path and keys in lower case
  (``/v1/accounts/{sid}/calls/connect``, ``streamurl``...), the launch post and the v1 API
  reference capitalise them as every v1 API does; the capitalised form is sent. The v1 API
  answers XML unless the path ends ``.json``, so ``Calls/connect.json`` is asked for; the
  Call object comes as ``{"Call": {"Sid": ...}}`` (v1) or ``{"call": {"sid": ...}}`` (the
  guide's example): both are read.
- The stream URL carries the sample rate (``?sample-rate=8000|16000|24000``) and at most three
  custom parameters (256 characters in all), which come back in ``start.custom_parameters``.
  With the gateway's Exotel credentials set it also carries ``user:password@``, which Exotel
  sends as ``Authorization: Basic``.
- **No REST hang-up**: the v1 Calls API has none (only the v2 Legs API's calls have a
  hang-up action). The session ends by closing its stream, which hands the call back to its
  flow; a call placed by Calls/connect has no flow after the stream, so it ends.
- Errors: ``{"RestException": {"Status", "Message", "Code"}}`` (:func:`parse_error_response`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Unpack
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import requests

from ..codecs.exotel import ExotelCodec
from ..config import ExotelProviderConfig
from ..errors import ConfigError, ProviderError
from ..messages import SessionRequest
from ..signing import inbound_token
from . import SessionPlan
from ._gateway import GatewayProvider, call_ends
from ._http import AT_MOST_ONCE, clip, json_body, reason_phrase
from ._rest import RestClient, RestOptions
from ._streamed import audio_policy, call_parameters

__all__ = [
    "ExotelProvider",
    "ExotelRestClient",
    "applet_url",
    "parse_error_response",
    "stream_url",
]

logger = logging.getLogger(__name__)

PROVIDER = "exotel"
MAX_CUSTOM_PARAMETERS: Final = 3
MAX_CUSTOM_CHARS: Final = 256
MAX_STREAM_URL: Final = 600
_SID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
#: Stream parameters that are ours, not the application's: never in ``Started.parameters``.
_HIDDEN: Final = frozenset({"token", "sample-rate", "inbound_token"})


def stream_url(
    public_url: str,
    parameters: dict[str, str],
    *,
    sample_rate: int,
    basic_auth: tuple[str, str] | None = None,
) -> str:
    """The ``StreamUrl`` of a call: the gateway's ``/exotel`` with the sample rate and the
    custom parameters in its query (at most three, 256 characters), and ``user:password@``
    when the gateway checks Exotel's Basic auth. ``ValueError`` past Exotel's limits."""
    if len(parameters) > MAX_CUSTOM_PARAMETERS:
        raise ValueError(
            f"Exotel carries at most {MAX_CUSTOM_PARAMETERS} custom parameters on a stream "
            "(session and token are two of them)"
        )
    custom = urlencode(parameters)
    if len(custom) > MAX_CUSTOM_CHARS:
        raise ValueError(f"Exotel's custom parameters are at most {MAX_CUSTOM_CHARS} characters")
    parts = urlsplit(public_url.rstrip("/") + "/exotel")
    netloc = parts.netloc
    if basic_auth is not None:
        user, password = (quote(value, safe="") for value in basic_auth)
        netloc = f"{user}:{password}@{netloc}"
    query = urlencode({"sample-rate": str(sample_rate)}) + "&" + custom
    url = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    if len(url) > MAX_STREAM_URL:
        raise ValueError(f"Exotel's StreamUrl is at most {MAX_STREAM_URL} characters")
    return url


def applet_url(
    public_url: str,
    entry: str,
    secret: str,
    *,
    sample_rate: int,
    basic_auth: tuple[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
) -> str:
    """The URL a Voicebot applet holds for inbound calls of provider entry ``entry``: the
    gateway's ``/exotel`` with ``?sample-rate=``, ``inbound=<entry>`` and the entry's standing
    inbound token under the gateway's ``secret`` (two of Exotel's three custom parameters:
    ``parameters`` may add one), and ``user:password@`` when the gateway checks Basic auth.
    It is a credential: keep it as secret as the gateway's. ``ValueError`` past Exotel's
    limits."""
    routing = {"inbound": entry, "inbound_token": inbound_token(secret, entry)}
    return stream_url(
        public_url,
        {**dict(parameters or {}), **routing},
        sample_rate=sample_rate,
        basic_auth=basic_auth,
    )


def parse_error_response(status: int, body: bytes | str, *, reason: str = "") -> ProviderError:
    """The :class:`ProviderError` for Exotel's ``RestException`` body (``Message``, ``Code``);
    an unknown body is not echoed."""
    data = json_body(body)
    exception = data.get("RestException") if isinstance(data, dict) else None
    if not isinstance(exception, dict):
        return ProviderError(PROVIDER, reason_phrase(status, reason), status=status)
    message = exception.get("Message")
    code = exception.get("Code")
    if isinstance(code, str):
        code = clip(code.strip(), 64) or None
    elif not isinstance(code, int) or isinstance(code, bool):
        code = None
    text = clip(message.strip()) if isinstance(message, str) else ""
    return ProviderError(PROVIDER, text or reason_phrase(status, reason), status=status, code=code)


def _call_of(data: dict[str, Any]) -> dict[str, Any] | None:
    """The Call object of an answer, its keys in lower case (v1 and the guide differ)."""
    for key, value in data.items():
        if key.lower() == "call" and isinstance(value, dict):
            return {str(k).lower(): v for k, v in value.items()}
    return None


class ExotelRestClient(RestClient):
    """Exotel's v1 Calls API for one account: place a call that streams to a WebSocket.

    Placing a call is retried only on 429 (it may otherwise exist). The API token is only in
    the ``Authorization`` header, never in a log line, an error or the repr.
    """

    provider = PROVIDER
    retry_policies = {"create_call": AT_MOST_ONCE}

    def __init__(
        self,
        *,
        account_sid: str,
        api_key: str,
        api_token: str,
        api_base_url: str = "https://api.exotel.com",
        **options: Unpack[RestOptions],
    ) -> None:
        if not account_sid or not _SID.fullmatch(account_sid):
            raise ValueError("account_sid is required (letters, digits, '_', '.', '-')")
        if not api_key or not api_token:
            raise ValueError("api_key and api_token are required")
        super().__init__(api_base_url=api_base_url, auth=(api_key, api_token), **options)
        self.account_sid = account_sid

    def __repr__(self) -> str:
        return f"ExotelRestClient(account_sid={self.account_sid!r}, api={self._origin!r})"

    def connect_stream(
        self,
        *,
        to: str,
        caller_id: str,
        stream_url: str,
        status_callback: str | None = None,
        status_callback_events: Sequence[str] = (),
        time_limit_s: int | None = None,
    ) -> dict[str, Any]:
        """Dial ``to`` and, once answered, stream the call bidirectionally to ``stream_url``;
        the Call object, keys in lower case (``sid`` at least)."""
        form: list[tuple[str, str]] = [
            ("From", to),
            ("CallerId", caller_id),
            ("StreamUrl", stream_url),
            ("StreamType", "bidirectional"),
        ]
        if status_callback is not None:
            form.append(("StatusCallback", status_callback))
        form.extend(("StatusCallbackEvents[]", event) for event in status_callback_events)
        if time_limit_s is not None:
            form.append(("TimeLimit", str(time_limit_s)))
        path = f"/v1/Accounts/{self.account_sid}/Calls/connect.json"
        response = self._request("create_call", "POST", path, what="Calls/connect", form=form)
        call = _call_of(self._json_object(response, "POST Calls/connect"))
        if call is None or not isinstance(call.get("sid"), str):
            raise ProviderError(
                PROVIDER,
                "POST Calls/connect: the response has no call sid",
                status=response.status_code,
            )
        logger.info("exotel call %s created", call["sid"])
        return call

    def parse_error(self, response: requests.Response) -> ProviderError:
        return parse_error_response(
            response.status_code, response.content, reason=response.reason or ""
        )


class ExotelProvider(GatewayProvider[ExotelProviderConfig, ExotelRestClient]):
    """The ``exotel`` provider: a call per session (Calls/connect with a bidirectional
    stream to the gateway's ``/exotel``), its audio through the media gateway. Hanging up is
    closing the stream: the session's end does it (Exotel has no REST hang-up for it)."""

    def _make_client(self) -> ExotelRestClient:
        c = self.config
        where = f"providers.{self.name}"
        if c.api_base_url == "emulator":
            emulator = self._infrastructure.exotel_emulator()
            sid, key, token = emulator.account_sid, emulator.api_key, emulator.api_token
            base = emulator.base_url
        else:
            for name in ("account_sid", "api_key", "api_token"):
                if not getattr(c, name):
                    raise ConfigError("required for Exotel's API", key_path=f"{where}.{name}")
            sid, key, token = c.account_sid or "", c.api_key or "", c.api_token or ""
            base = c.api_base_url
        return ExotelRestClient(
            account_sid=sid,
            api_key=key,
            api_token=token,
            api_base_url=base,
            **self._rest_options(),
        )

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        to, caller_id = call_ends(
            "exotel",
            self.name,
            request,
            configured_from=self.config.caller_id,
            from_key="caller_id",
            to_example="+91...",
            from_hint=" (your ExoPhone)",
        )
        gateway = self._infrastructure.gateway()
        c = self.config
        url = stream_url(
            gateway.public_url,
            call_parameters(gateway, session_id, request.parameters),
            sample_rate=c.sample_rate,
            basic_auth=gateway.exotel_auth,
        )
        call = self._rest().connect_stream(
            to=to,
            caller_id=caller_id,
            stream_url=url,
            # The runtime's webhook takes the call's progress, unless you name your own.
            status_callback=c.status_callback
            or self._infrastructure.exotel_status_url(c, session_id),
            status_callback_events=c.status_callback_events or ("terminal",),
            time_limit_s=c.time_limit_s,
        )
        sid = str(call["sid"])
        logger.info("session %s: Exotel call %s placed to %s", session_id, sid, to)
        return self._plan(session_id, gateway, sid)

    def answer(
        self,
        session_id: str,
        call_sid: str,
        parameters: Mapping[str, str],
        redirect_url: str | None = None,
    ) -> tuple[SessionPlan, str]:
        """Inbound call ``call_sid`` (a stream an applet dialled, waiting at the gateway)
        accepted as ``session_id``: the plan, and the gateway's answer (JSON: the session and
        its stream token, with which the waiting stream pairs). ``parameters`` and
        ``redirect_url`` are other providers'."""
        gateway = self._infrastructure.gateway()
        routing = call_parameters(gateway, session_id, None)
        return self._plan(session_id, gateway, call_sid), json.dumps(routing)

    def _codec(self, session_id: str) -> ExotelCodec:
        c = self.config
        return ExotelCodec(
            audio=audio_policy(c.audio_encoding, c.audio_sample_rate),
            min_chunk_ms=c.min_chunk_ms,
            session_id=session_id,
            hidden_parameters=_HIDDEN,
        )

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        # Nothing over REST: the session's end closes its stream, and that ends the call.
        logger.info(
            "session %s: Exotel call %s ends with its stream (no REST hang-up)",
            session_id,
            plan.call_id,
        )
