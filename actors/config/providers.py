"""The ``providers`` section: one entry per provider, of one of the types in
``_PROVIDER_TYPES`` (a new provider type is one more dataclass here and one more entry
there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..checks import header_problem, subprotocol_problem
from ..errors import ConfigError
from ..wire.constants import ACCOUNT_SID
from ._fields import _CODE_ONLY, _POSITIVE, _header_item, _http_url_or, _limit, _one_of, _ws_url
from ._redacted import _safe_repr
from .runtime import SupervisorConfig

__all__ = [
    "DailyProviderConfig",
    "ExotelProviderConfig",
    "PlivoProviderConfig",
    "ProviderConfig",
    "TelnyxProviderConfig",
    "TwilioProviderConfig",
    "VonageProviderConfig",
    "WebSocketProviderConfig",
]


_PRIVACY = ("private", "public")
# What an application reads and writes on a Daily session (actors.audio's names).
_DAILY_ENCODINGS = ("pcm16", "audio/l16", "audio/x-mulaw", "audio/x-alaw")
_DAILY_RATES = (8000, 16000, 24000, 48000)  # what Daily's audio devices take


def _account_sid(value: str | None) -> str | None:
    if value is None or ACCOUNT_SID.fullmatch(value):
        return None
    return "expected an Account SID: AC followed by 32 hex digits"


def _ring_timeout(value: int) -> str | None:
    return None if 5 <= value <= 600 else "must be between 5 and 600 (Twilio's Timeout, seconds)"


@dataclass(frozen=True, slots=True)
class WebSocketProviderConfig:
    """A provider that dials ``url`` (or the URL given to ``create_session``) directly."""

    name: str = field(metadata=_CODE_ONLY)  # the key under `providers:`
    type: str = "websocket"
    url: str | None = field(default=None, metadata={"check": _ws_url})  # default ws(s):// URL
    # Values are secrets. No CR/LF: each name an HTTP token, each value free of control chars.
    headers: Mapping[str, str] = field(
        default_factory=dict, repr=False, metadata={"check_each": _header_item}
    )
    subprotocols: tuple[str, ...] = field(default=(), metadata={"check_each": subprotocol_problem})
    supervisor: SupervisorConfig | None = None  # this provider's own policy (else the default)

    __repr__ = _safe_repr

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        # The loader names the file and key first; this catches a config built in code.
        where = f"providers.{self.name}"
        for name, value in self.headers.items():
            if (problem := header_problem(name, value)) is not None:
                raise ConfigError(problem, key_path=f"{where}.headers")
        for index, protocol in enumerate(self.subprotocols):
            if (problem := subprotocol_problem(protocol)) is not None:
                raise ConfigError(problem, key_path=f"{where}.subprotocols[{index}]")


@dataclass(frozen=True, slots=True)
class TwilioProviderConfig:
    """Twilio: calls created and hung up over its REST API, audio through the media gateway.

    Authenticate with ``account_sid`` + ``auth_token``, or ``account_sid`` + ``api_key`` +
    ``api_secret``. ``api_base_url: emulator`` sends the REST calls to the embedded emulator
    instead, which needs no credentials.
    """

    name: str = field(metadata=_CODE_ONLY)
    type: str = "twilio"
    account_sid: str | None = field(default=None, metadata={"check": _account_sid})
    auth_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    api_secret: str | None = field(default=None, repr=False)
    api_base_url: str = field(
        default="https://api.twilio.com", metadata={"check": _http_url_or("emulator")}
    )
    from_number: str | None = None  # the default `From` of create_session
    status_callback: str | None = None  # Twilio posts call progress here
    status_callback_events: tuple[str, ...] = ()  # initiated, ringing, answered, completed
    timeout_s: float = field(default=10.0, metadata=_POSITIVE)  # every REST request
    retries: int = field(default=3, metadata=_limit(">=", 0))  # 429 (and 5xx on hang-up)
    backoff_s: float = field(default=0.5, metadata=_POSITIVE)  # first retry delay, then doubled
    supervisor: SupervisorConfig | None = None  # this provider's own policy (else the default)
    # How long a call rings before Twilio gives up on it (create_call's `Timeout`, 5..600 s).
    ring_timeout_s: int = field(default=60, metadata={"check": _ring_timeout})

    __repr__ = _safe_repr

    def __post_init__(self) -> None:
        object.__setattr__(self, "status_callback_events", tuple(self.status_callback_events))


def _daily_rate(value: int) -> str | None:
    if value in _DAILY_RATES:
        return None
    return f"expected one of: {', '.join(str(rate) for rate in _DAILY_RATES)} (Hz)"


@dataclass(frozen=True, slots=True)
class DailyProviderConfig:
    """Daily: a room per session over Daily's REST API (with a dial-out when ``to`` is given),
    joined with Daily's SDK (the ``daily`` extra), audio through a virtual microphone and an
    audio renderer.

    ``api_base_url: emulator`` sends the REST calls to the embedded emulator, and joins its
    rooms with its stand-in of the SDK: no account, no network, no extra.
    """

    name: str = field(metadata=_CODE_ONLY)
    type: str = "daily"
    api_key: str | None = field(default=None, repr=False)
    api_base_url: str = field(
        default="https://api.daily.co/v1", metadata={"check": _http_url_or("emulator")}
    )
    caller_id: str | None = None  # default dial-out callerId: the id of a purchased number
    room_privacy: str = field(default="private", metadata={"check": _one_of(*_PRIVACY)})
    room_ttl_s: float = field(default=3600.0, metadata=_POSITIVE)  # room and token `exp`
    max_participants: int = field(default=4, metadata=_limit(">=", 2))
    # What the application writes and reads: PCM16 (or G.711) at `sample_rate`.
    audio_encoding: str = field(default="pcm16", metadata={"check": _one_of(*_DAILY_ENCODINGS)})
    sample_rate: int = field(default=16000, metadata={"check": _daily_rate})
    user_name: str = "transport-actors"  # the session's name in the room
    timeout_s: float = field(default=10.0, metadata=_POSITIVE)  # every REST request
    retries: int = field(default=3, metadata=_limit(">=", 0))  # 429 and 5xx, where safe
    backoff_s: float = field(default=0.5, metadata=_POSITIVE)  # first retry delay, then doubled
    supervisor: SupervisorConfig | None = None  # this provider's own policy (else the default)

    __repr__ = _safe_repr


# -- Vonage and Exotel (issue 16): linear PCM on the wire ---------------------------------------

# What an application on a Vonage or Exotel session reads and writes: `provider` (the wire's
# own PCM16, nothing converted), or PCM16 / mu-law at `audio_sample_rate` (actors.codecs.pcm).
_PCM_ENCODINGS = ("provider", "pcm16", "audio/x-mulaw")
_PCM_RATES = (8000, 16000, 24000)


def _pcm_rate(value: int) -> str | None:
    return None if value in _PCM_RATES else "expected one of: 8000, 16000, 24000 (Hz)"


def _vonage_rate(value: int) -> str | None:
    # Vonage's NCCO content-type: audio/l16;rate=8000 or 16000 (its OpenAPI's enum).
    return None if value in (8000, 16000) else "expected 8000 or 16000 (Hz)"


def _ringing_timer(value: int) -> str | None:
    return None if 1 <= value <= 120 else "must be between 1 and 120 (Vonage's ringing_timer)"


def _vonage_lead(value: int) -> str | None:
    # Vonage buffers 1024 frames (about 20 s); the lead stays well under it.
    if value == 0 or 20 <= value <= 10_000:
        return None
    return "must be 0 (no pacing) or between 20 and 10000 (Vonage buffers about 20 s)"


def _check_audio(where: str, encoding: str, rate: int) -> None:
    if encoding == "audio/x-mulaw" and rate != 8000:
        raise ConfigError("mu-law is 8000 Hz only", key_path=f"{where}.audio_sample_rate")


@dataclass(frozen=True, slots=True)
class VonageProviderConfig:
    """Vonage Voice API: calls created (``POST /v1/calls`` with an NCCO ``connect`` to a
    ``websocket``) and hung up over REST, authenticated by JWTs signed with the application's
    private key; the call's audio (16-bit PCM at ``sample_rate``) through the media gateway.

    ``api_base_url: emulator`` uses the embedded Vonage emulator: no account, no key.
    """

    name: str = field(metadata=_CODE_ONLY)
    type: str = "vonage"
    application_id: str | None = None
    private_key: str | None = field(default=None, repr=False)  # PEM text (or private_key_file)
    private_key_file: str | None = None  # the private.key Vonage's dashboard gave
    signature_secret: str | None = field(default=None, repr=False)  # signed webhooks' key
    api_base_url: str = field(
        default="https://api.nexmo.com", metadata={"check": _http_url_or("emulator")}
    )
    from_number: str | None = None  # the default `from` (E.164, with or without +)
    event_url: str | None = None  # call progress events (else the application's own)
    sample_rate: int = field(default=16000, metadata={"check": _vonage_rate})  # on the wire
    audio_encoding: str = field(default="provider", metadata={"check": _one_of(*_PCM_ENCODINGS)})
    audio_sample_rate: int = field(default=16000, metadata={"check": _pcm_rate})
    ring_timeout_s: int = field(default=60, metadata={"check": _ringing_timer})
    # Outbound audio goes at most this far ahead of real time (ms; 0: as written, unpaced).
    max_lead_ms: int = field(default=1000, metadata={"check": _vonage_lead})
    timeout_s: float = field(default=10.0, metadata=_POSITIVE)  # every REST request
    retries: int = field(default=3, metadata=_limit(">=", 0))
    backoff_s: float = field(default=0.5, metadata=_POSITIVE)
    supervisor: SupervisorConfig | None = None

    __repr__ = _safe_repr

    def __post_init__(self) -> None:
        _check_audio(f"providers.{self.name}", self.audio_encoding, self.audio_sample_rate)


@dataclass(frozen=True, slots=True)
class ExotelProviderConfig:
    """Exotel AgentStream (the Voicebot's bidirectional stream): calls placed with the
    calls-connect API (``StreamUrl`` to the gateway's ``/exotel``, ``StreamType:
    bidirectional``), HTTP basic auth as ``api_key`` / ``api_token``; base64 PCM16 at
    ``sample_rate`` through the media gateway. Exotel has no REST hang-up for such a call:
    ending the session closes the stream, which ends it (see the README).

    ``api_base_url: emulator`` uses the embedded Exotel emulator.
    """

    name: str = field(metadata=_CODE_ONLY)
    type: str = "exotel"
    account_sid: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    # Singapore; Mumbai is https://api.in.exotel.com
    api_base_url: str = field(
        default="https://api.exotel.com", metadata={"check": _http_url_or("emulator")}
    )
    caller_id: str | None = None  # your ExoPhone, the call's CallerId
    status_callback: str | None = None
    status_callback_events: tuple[str, ...] = ()  # answered, terminal (ringing: newer docs)
    sample_rate: int = field(default=8000, metadata={"check": _pcm_rate})  # ?sample-rate=
    audio_encoding: str = field(default="provider", metadata={"check": _one_of(*_PCM_ENCODINGS)})
    audio_sample_rate: int = field(default=8000, metadata={"check": _pcm_rate})
    # Outbound audio is sent in chunks of at least this much (Exotel: 100 ms and up).
    min_chunk_ms: int = field(default=100, metadata=_limit(">=", 100))
    time_limit_s: int = field(default=3600, metadata=_limit(">=", 1))  # TimeLimit, <= 14400
    timeout_s: float = field(default=10.0, metadata=_POSITIVE)
    retries: int = field(default=3, metadata=_limit(">=", 0))
    backoff_s: float = field(default=0.5, metadata=_POSITIVE)
    supervisor: SupervisorConfig | None = None

    __repr__ = _safe_repr

    def __post_init__(self) -> None:
        object.__setattr__(self, "status_callback_events", tuple(self.status_callback_events))
        _check_audio(f"providers.{self.name}", self.audio_encoding, self.audio_sample_rate)


def _telnyx_ring(value: int) -> str | None:
    return None if 5 <= value <= 600 else "must be between 5 and 600 (Telnyx's timeout_secs)"


@dataclass(frozen=True, slots=True)
class TelnyxProviderConfig:
    """Telnyx: calls placed and hung up over Call Control v2 (``POST /v2/calls``, Bearer
    ``api_key``, from the Call Control App ``connection_id``), audio through the media gateway
    (``stream_bidirectional_mode: rtp`` in ``codec``). ``public_key`` (the portal's base64
    Ed25519 key) verifies Telnyx's webhooks. ``inbound`` says how inbound calls are answered
    (``texml`` or ``call_control``). ``api_base_url: emulator`` uses the embedded emulator
    instead: no account."""

    name: str = field(metadata=_CODE_ONLY)
    type: str = "telnyx"
    api_key: str | None = field(default=None, repr=False)
    api_base_url: str = field(
        default="https://api.telnyx.com/v2", metadata={"check": _http_url_or("emulator")}
    )
    connection_id: str | None = None  # the Call Control App's id
    from_number: str | None = None  # the default `from` of create_session
    codec: str = field(default="PCMU", metadata={"check": _one_of("PCMU", "PCMA")})
    public_key: str | None = field(default=None, repr=False)  # webhooks' Ed25519 key (base64)
    webhook_url: str | None = None  # Telnyx posts this call's events here (else the App's)
    # How inbound calls are answered: a TeXML voice URL (/telnyx/voice, answered with
    # <Connect><Stream>), or Call Control (call.initiated at /telnyx/events, answered with
    # actions/answer): only a Call Control call takes transfer and send_dtmf.
    inbound: str = field(default="texml", metadata={"check": _one_of("texml", "call_control")})
    ring_timeout_s: int = field(default=30, metadata={"check": _telnyx_ring})  # timeout_secs
    timeout_s: float = field(default=10.0, metadata=_POSITIVE)  # every REST request
    retries: int = field(default=3, metadata=_limit(">=", 0))  # 429 (and 5xx on hang-up)
    backoff_s: float = field(default=0.5, metadata=_POSITIVE)  # first retry delay, then doubled
    supervisor: SupervisorConfig | None = None  # this provider's own policy (else the default)

    __repr__ = _safe_repr


def _optional_http_url(value: str | None) -> str | None:
    return None if value is None else _http_url_or()(value)


_PLIVO_CONTENT_TYPES = (
    "audio/x-mulaw;rate=8000",
    "audio/x-l16;rate=8000",
    "audio/x-l16;rate=16000",
)


@dataclass(frozen=True, slots=True)
class PlivoProviderConfig:
    """Plivo: calls placed over ``POST /v1/Account/{auth_id}/Call/`` (basic auth) and hung up
    with ``DELETE``, audio through the media gateway. The call's ``answer_url`` must answer
    the ``<Stream>`` XML (:func:`actors.webhooks.plivo.stream_xml`) for the ``session`` and
    ``token`` query values the runtime appends. ``api_base_url: emulator`` uses the embedded
    emulator instead (which takes the answer XML inline): no account, no answer URL."""

    name: str = field(metadata=_CODE_ONLY)
    type: str = "plivo"
    auth_id: str | None = None  # MA... or SA... (a subaccount)
    auth_token: str | None = field(default=None, repr=False)
    api_base_url: str = field(
        default="https://api.plivo.com", metadata={"check": _http_url_or("emulator")}
    )
    from_number: str | None = None  # the default `from` of create_session
    answer_url: str | None = field(default=None, metadata={"check": _optional_http_url})
    hangup_url: str | None = field(default=None, metadata={"check": _optional_http_url})
    # Always sent: Plivo's pages disagree on the default (audio/x-l16 or audio/x-mulaw).
    content_type: str = field(
        default="audio/x-mulaw;rate=8000", metadata={"check": _one_of(*_PLIVO_CONTENT_TYPES)}
    )
    timeout_s: float = field(default=10.0, metadata=_POSITIVE)  # every REST request
    retries: int = field(default=3, metadata=_limit(">=", 0))  # 429 (and 5xx on hang-up)
    backoff_s: float = field(default=0.5, metadata=_POSITIVE)  # first retry delay, then doubled
    supervisor: SupervisorConfig | None = None  # this provider's own policy (else the default)

    __repr__ = _safe_repr


ProviderConfig = (
    WebSocketProviderConfig
    | TwilioProviderConfig
    | DailyProviderConfig
    | VonageProviderConfig
    | ExotelProviderConfig
    | TelnyxProviderConfig
    | PlivoProviderConfig
)
_PROVIDER_TYPES: dict[str, type[Any]] = {
    "websocket": WebSocketProviderConfig,
    "twilio": TwilioProviderConfig,
    "daily": DailyProviderConfig,
    "vonage": VonageProviderConfig,
    "exotel": ExotelProviderConfig,
    "telnyx": TelnyxProviderConfig,
    "plivo": PlivoProviderConfig,
}


def _default_providers() -> Mapping[str, ProviderConfig]:
    return {
        "websocket": WebSocketProviderConfig(name="websocket"),
        "twilio": TwilioProviderConfig(name="twilio", api_base_url="emulator"),
        "daily": DailyProviderConfig(name="daily", api_base_url="emulator"),
        "telnyx": TelnyxProviderConfig(name="telnyx", api_base_url="emulator"),
        "plivo": PlivoProviderConfig(name="plivo", api_base_url="emulator"),
        "vonage": VonageProviderConfig(name="vonage", api_base_url="emulator"),
        "exotel": ExotelProviderConfig(name="exotel", api_base_url="emulator"),
    }
