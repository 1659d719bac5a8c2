"""The only YAML reader: one YAML file -> validated, frozen config objects.

The schema (every key optional; an empty file, or a null section, means the defaults)::

    runtime:                        # RuntimeConfig
      connect_timeout_s: 5.0        # WebSocket dial + handshake deadline          (> 0)
      ask_timeout_s: 5.0            # every pykka ask made by the facade           (> 0)
      inbox_max: 10000              # inbound messages buffered per session        (int > 0)
      outbound_max: 10000           # outbound frames queued per session           (int > 0)
      outbound_overflow: drop_oldest  # full: drop_oldest (audio, counted) | raise (QueueFull)
      inbound_overflow: drop_oldest   # full: drop_oldest | drop_newest (audio, counted)
      max_message_bytes: 1048576    # larger inbound frames are refused (1009)     (int > 0)
      ping_interval_s: 10.0         # keepalive ping period; 0 disables pings      (>= 0)
      ping_timeout_s: 5.0           # no pong within this => connection dead       (> 0)
      shutdown_timeout_s: 2.0       # bounded stop: abort socket, join threads     (> 0)
    supervisor:                     # SupervisorConfig
      max_restarts: 3               # restarts allowed within `within_s`           (int >= 0)
      within_s: 30.0                # the sliding window                           (> 0)
      backoff_initial_s: 0.05       # first restart delay                          (> 0)
      backoff_max_s: 2.0            # cap on the restart delay                     (> 0)
      backoff_multiplier: 2.0       # delay growth per consecutive restart         (>= 1)
      backoff_jitter: 0.2           # share of each delay randomised away          (0..1)
      reset_after_s: 60.0           # up this long: earlier restarts forgiven      (> 0)
      restart: transient            # transient | permanent | temporary (actors.policy)
    providers:                      # name -> provider; replaces the default set as a whole
      <name>:                       # letters, digits, '_' and '-'
        type: websocket             # defaults to <name> when <name> is a known type
        url: wss://host/path        # optional ws:// or wss:// URL; empty string = not set
        headers: {Name: value}      # str -> str, sent with the handshake; values are secrets
        subprotocols: [a, b]        # list of str
        supervisor: {restart: permanent}  # optional: this provider's own supervisor section
      twilio:                       # TwilioProviderConfig (type: twilio)
        account_sid: AC...          # with auth_token, or with api_key + api_secret
        auth_token: ${TWILIO_AUTH_TOKEN}
        api_base_url: https://api.twilio.com   # or `emulator`: the embedded emulator
        from_number: "+15550199"    # default From; status_callback, status_callback_events,
                                    # timeout_s, retries, backoff_s
        ring_timeout_s: 60          # create_call's Timeout: how long a call rings (5..600)
      daily:                        # DailyProviderConfig (type: daily)
        api_key: ${DAILY_API_KEY}   # Bearer key of Daily's REST API
        api_base_url: https://api.daily.co/v1  # or `emulator`: the embedded emulator
        caller_id: null             # dial-out callerId (a purchased number's id); room_privacy,
                                    # room_ttl_s, max_participants, audio_encoding, sample_rate,
                                    # user_name, timeout_s, retries, backoff_s
    gateway:                        # GatewayConfig: the media gateway
      embedded: true                # run it inside the service (else: dial `url`)
      listen: 127.0.0.1:0           # where it binds; port 0 = any free port
      url: null                     # where sessions dial it (default: from `listen`)
      public_url: null              # the ws(s):// URL providers dial (default: `url`)
      secret: null                  # HMAC key of session tokens (embedded default: random)
      resume_window_s: 10.0, pair_timeout_s: 75.0, buffer_frames: 1000,
      max_message_bytes: 65536, twilio_auth_token: null (set: validate X-Twilio-Signature;
                                    # unset: the auth_token of the file's Twilio providers)
      handshake_timeout_s: 5.0, start_timeout_s: 5.0, pending_max_bytes: 8192,
      max_connections: 4000, max_pending: 1000, max_pending_per_address: 32
    emulator:                       # EmulatorConfig: the local Twilio
      listen: 127.0.0.1:0
      media: echo                   # echo | tone | wav | silence: what each call plays
      tone_hz: 440.0, wav: null, numbers: {"+15550100": tone}, max_call_s: 3600.0
      answer_after_s: 0.0           # every call rings this long before it is answered
    metrics:                        # MetricsConfig: Prometheus metrics
      listen: null                  # host:port to serve /metrics on (port 0: any free port);
                                    # null: no HTTP server (TransportService.metrics() still works)

The default ``providers`` is ``{websocket: {type: websocket}, twilio: {api_base_url:
emulator}, daily: {api_base_url: emulator}}``. Float fields accept integers;
integer fields accept only integers (no bools, no floats).

Every string value may use ``${VAR}`` and ``${VAR:-default}`` (the default applies when VAR is
unset or empty); ``$${`` is a literal ``${``. Expansion happens after YAML parsing, so an
environment value can never add structure. A number field whose whole value is one reference
(``ask_timeout_s: ${ASK_TIMEOUT:-5}``) takes the expanded text as a number. Keys are not expanded.

Every problem raises :class:`~actors.errors.ConfigError` with the file, the dotted key path
(``providers.echo.subprotocols[1]``) and what was expected. Values that may be secret (header
values, keys that look secret, anything that came from the environment) are never echoed;
:meth:`TransportConfig.redacted` masks them for printing, and shows a value that came from the
environment as the ``${VAR}`` text it was written as.

To add a section: write a frozen dataclass whose fields use the types in ``_PARSERS`` (or
further dataclasses), add it as a field of :class:`TransportConfig`, and put it in
``config/transport.yaml``. A provider type is one more entry in ``_PROVIDER_TYPES``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from types import MappingProxyType
from typing import Any, get_type_hints
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError
from .redaction import MASK, is_secret_key, redact_url

__all__ = [
    "DailyProviderConfig",
    "EmulatorConfig",
    "GatewayConfig",
    "MetricsConfig",
    "ProviderConfig",
    "RuntimeConfig",
    "SupervisorConfig",
    "TransportConfig",
    "TwilioProviderConfig",
    "WebSocketProviderConfig",
    "default_config",
    "load_config",
    "parse_config",
]

# `$${` (escape), `${NAME}` / `${NAME:-default}`, or a bare `${` (malformed: no name matched).
_REF = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\})?")
_WHOLE_REF = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?::-[^}]*)?\}")
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9_-]+")
_MEDIA_MODES = ("echo", "tone", "wav", "silence", "reflect")
_RESTART_TYPES = ("transient", "permanent", "temporary")
_OVERFLOW_OUT = ("drop_oldest", "raise")
_OVERFLOW_IN = ("drop_oldest", "drop_newest")
_PRIVACY = ("private", "public")
# What an application reads and writes on a Daily session (actors.audio's names).
_DAILY_ENCODINGS = ("pcm16", "audio/l16", "audio/x-mulaw", "audio/x-alaw")
_DAILY_RATES = (8000, 16000, 24000, 48000)  # what Daily's audio devices take


def _redact_text(text: str) -> str:
    return redact_url(text) if "://" in text else text


def _plain(value: Any, key: str, path: str, templates: Mapping[str, str]) -> Any:
    """``value`` as plain dicts/lists/scalars (the YAML shape), with secrets masked and values
    that came from the environment shown as the ``${VAR}`` template they were written as."""
    if path in templates:
        return templates[path]
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), f.name, _join(path, f.name), templates)
            for f in fields(value)
            if f.metadata.get("yaml", True)
        }
    if key == "headers":
        return dict.fromkeys(value, MASK)
    if value is not None and is_secret_key(key):
        return MASK
    if isinstance(value, Mapping):
        return {k: _plain(v, k, _join(path, k), templates) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v, "", f"{path}[{i}]", templates) for i, v in enumerate(value)]
    return _redact_text(value) if isinstance(value, str) else value


def _safe_repr(self: Any) -> str:
    """A dataclass ``__repr__`` that masks secret-looking fields and URL credentials."""

    def show(name: str, value: object) -> str:
        if value is not None and is_secret_key(name):
            return repr(MASK)
        return repr(_redact_text(value) if isinstance(value, str) else value)

    shown = (f"{f.name}={show(f.name, getattr(self, f.name))}" for f in fields(self) if f.repr)
    return f"{type(self).__name__}({', '.join(shown)})"


# ---- field metadata: {"check": value -> problem | None}, {"yaml": False} (not a YAML key) ----


def _limit(op: str, bound: float, note: str = "") -> dict[str, Any]:
    def check(value: float) -> str | None:
        ok = value > bound if op == ">" else value >= bound
        return None if ok else f"must be {op} {bound:g}{note}"

    return {"check": check}


def _ws_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
        ok = parts.scheme in ("ws", "wss") and bool(parts.hostname)
    except ValueError:  # bad IPv6 literal or port
        ok = False
    return None if ok else "expected a ws:// or wss:// URL with a host"


def _host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return "expected host:port (port 0: any free port)"
    return None


def _optional_host_port(value: str | None) -> str | None:
    return None if value is None else _host_port(value)


def _http_url_or(*words: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in words:
            return None
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        extra = "".join(f" or {word!r}" for word in words)
        return None if ok else f"expected an http:// or https:// URL{extra}"

    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"expected one of: {', '.join(choices)}"

    return check


def _media_map(value: Mapping[str, str]) -> str | None:
    wrong = [number for number, mode in value.items() if mode not in _MEDIA_MODES]
    if wrong:
        return f"the mode of {wrong[0]!r} must be one of: {', '.join(_MEDIA_MODES)}"
    return None


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be between 0 and 1"


def _account_sid(value: str | None) -> str | None:
    if value is None or re.fullmatch(r"AC[0-9a-fA-F]{32}", value):
        return None
    return "expected an Account SID: AC followed by 32 hex digits"


_POSITIVE = _limit(">", 0)
_CODE_ONLY = {"yaml": False}


def _ring_timeout(value: int) -> str | None:
    return None if 5 <= value <= 600 else "must be between 5 and 600 (Twilio's Timeout, seconds)"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Limits and timeouts of the session runtime."""

    connect_timeout_s: float = field(default=5.0, metadata=_POSITIVE)  # WebSocket dial + handshake
    ask_timeout_s: float = field(default=5.0, metadata=_POSITIVE)  # every pykka ask of the facade
    inbox_max: int = field(default=10_000, metadata=_POSITIVE)  # inbound messages per session
    outbound_max: int = field(default=10_000, metadata=_POSITIVE)  # outbound frames per session
    # Full outbox: drop the oldest audio frame (counted), or refuse the write (QueueFull).
    outbound_overflow: str = field(
        default="drop_oldest", metadata={"check": _one_of(*_OVERFLOW_OUT)}
    )
    # Full inbox: drop the oldest or the newest audio message (counted).
    inbound_overflow: str = field(default="drop_oldest", metadata={"check": _one_of(*_OVERFLOW_IN)})
    max_message_bytes: int = field(default=1_048_576, metadata=_POSITIVE)  # larger: close 1009
    ping_interval_s: float = field(default=10.0, metadata=_limit(">=", 0, " (0 disables pings)"))
    ping_timeout_s: float = field(default=5.0, metadata=_POSITIVE)  # no pong within: dead
    shutdown_timeout_s: float = field(default=2.0, metadata=_POSITIVE)  # bounded stop


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """The restart policy: at most ``max_restarts`` within ``within_s``, with backoff."""

    max_restarts: int = field(default=3, metadata=_limit(">=", 0))  # within the window below
    within_s: float = field(default=30.0, metadata=_POSITIVE)  # sliding window
    backoff_initial_s: float = field(default=0.05, metadata=_POSITIVE)
    backoff_max_s: float = field(default=2.0, metadata=_POSITIVE)
    backoff_multiplier: float = field(default=2.0, metadata=_limit(">=", 1))
    backoff_jitter: float = field(default=0.2, metadata={"check": _fraction})
    reset_after_s: float = field(default=60.0, metadata=_POSITIVE)  # up this long: count afresh
    restart: str = field(default="transient", metadata={"check": _one_of(*_RESTART_TYPES)})


@dataclass(frozen=True, slots=True)
class WebSocketProviderConfig:
    """A provider that dials ``url`` (or the URL given to ``create_session``) directly."""

    name: str = field(metadata=_CODE_ONLY)  # the key under `providers:`
    type: str = "websocket"
    url: str | None = field(default=None, metadata={"check": _ws_url})  # default ws(s):// URL
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # values are secrets
    subprotocols: tuple[str, ...] = ()
    supervisor: SupervisorConfig | None = None  # this provider's own policy (else the default)

    __repr__ = _safe_repr

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))


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


ProviderConfig = WebSocketProviderConfig | TwilioProviderConfig | DailyProviderConfig
_PROVIDER_TYPES: dict[str, type[Any]] = {
    "websocket": WebSocketProviderConfig,
    "twilio": TwilioProviderConfig,
    "daily": DailyProviderConfig,
}


def _default_providers() -> Mapping[str, ProviderConfig]:
    return {
        "websocket": WebSocketProviderConfig(name="websocket"),
        "twilio": TwilioProviderConfig(name="twilio", api_base_url="emulator"),
        "daily": DailyProviderConfig(name="daily", api_base_url="emulator"),
    }


#: How much longer than the longest ring timeout the gateway waits for a provider stream.
RING_MARGIN_S = 15.0
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The media gateway: providers dial its ``/{provider}`` side, sessions its
    ``/sessions/{id}`` side, and it relays between them (DESIGN section 6).

    Everything a connection does before it is authenticated (a session hop by its token, a
    provider stream by its ``start`` event) is bounded: ``handshake_timeout_s``,
    ``start_timeout_s``, ``pending_max_bytes`` (which is also the largest frame until then),
    ``max_pending`` in all and ``max_pending_per_address`` from one address;
    ``max_connections`` caps every connection, authenticated or not.
    """

    embedded: bool = True  # run it inside the service, on its own thread and event loop
    listen: str = field(default="127.0.0.1:0", metadata={"check": _host_port})
    url: str | None = field(default=None, metadata={"check": _ws_url})  # where sessions dial
    public_url: str | None = field(default=None, metadata={"check": _ws_url})  # providers dial
    secret: str | None = field(default=None, repr=False)  # HMAC key of session tokens
    resume_window_s: float = field(default=10.0, metadata=_POSITIVE)
    # How long one side waits for the other; at least the longest ring timeout of the
    # file's Twilio providers + RING_MARGIN_S (see provider_wait_s).
    pair_timeout_s: float = field(default=75.0, metadata=_POSITIVE)
    buffer_frames: int = field(default=1000, metadata=_POSITIVE)  # per session and direction
    max_message_bytes: int = field(default=65_536, metadata=_POSITIVE)
    # Validate X-Twilio-Signature with this; unset: with the auth_token of the file's Twilio
    # providers (if any).
    twilio_auth_token: str | None = field(default=None, repr=False)
    handshake_timeout_s: float = field(default=5.0, metadata=_POSITIVE)  # TCP accept -> 101
    start_timeout_s: float = field(default=5.0, metadata=_POSITIVE)  # 101 -> `start` event
    pending_max_bytes: int = field(default=8192, metadata=_limit(">=", 1024))  # until authed
    max_connections: int = field(default=4000, metadata=_POSITIVE)  # all, both sides
    max_pending: int = field(default=1000, metadata=_POSITIVE)  # not yet authenticated
    max_pending_per_address: int = field(default=32, metadata=_POSITIVE)
    # Filled in by TransportConfig from the providers of the same file (not YAML keys).
    inherited_auth_tokens: tuple[str, ...] = field(
        default=(), repr=False, compare=False, metadata=_CODE_ONLY
    )
    longest_ring_s: float = field(default=0.0, compare=False, metadata=_CODE_ONLY)

    __repr__ = _safe_repr

    @property
    def signature_tokens(self) -> tuple[str, ...]:
        """The auth tokens ``X-Twilio-Signature`` is checked with (empty: not checked)."""
        if self.twilio_auth_token:
            return (self.twilio_auth_token,)
        return self.inherited_auth_tokens

    @property
    def provider_wait_s(self) -> float:
        """How long a session hop waits for its provider stream: ``pair_timeout_s``, or the
        longest ring timeout + :data:`RING_MARGIN_S` when that is longer (a phone may ring
        that long before it answers and its stream dials in)."""
        if self.longest_ring_s <= 0:
            return self.pair_timeout_s
        return max(self.pair_timeout_s, self.longest_ring_s + RING_MARGIN_S)

    def security_warnings(self) -> list[str]:
        """What a deployment of this gateway should hear about before it faces the internet
        (printed by ``transport-actors check``, logged as WARNINGs when the gateway starts)."""
        warnings: list[str] = []
        if self.signature_tokens:
            return warnings
        public = self.public_url or self.url or ""
        host = self.listen.rpartition(":")[0].strip("[]")
        exposed = public.startswith("wss://") or host not in _LOOPBACK_HOSTS
        if exposed:
            warnings.append(
                "gateway: X-Twilio-Signature is not validated (no gateway.twilio_auth_token, "
                "and no Twilio provider with an auth_token in this file): anyone who learns a "
                "call's stream URL and token can stream into it"
            )
        return warnings


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """The local Twilio emulator: a REST API, and a media dialer that plays each call."""

    listen: str = field(default="127.0.0.1:0", metadata={"check": _host_port})
    media: str = field(default="echo", metadata={"check": _one_of(*_MEDIA_MODES)})
    tone_hz: float = field(default=440.0, metadata=_POSITIVE)
    wav: str | None = None  # the file `media: wav` plays
    # To number -> media mode, for the calls that should not use `media`
    numbers: Mapping[str, str] = field(default_factory=dict, metadata={"check": _media_map})
    max_call_s: float = field(default=3600.0, metadata=_POSITIVE)  # then it hangs up
    # Every call rings this long before it is answered (past the call's Timeout: no-answer).
    answer_after_s: float = field(default=0.0, metadata=_limit(">=", 0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", MappingProxyType(dict(self.numbers)))

    def media_for(self, to: str) -> str:
        return self.numbers.get(to, self.media)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics: ``listen`` set serves ``/metrics`` there (the runtime and the
    embedded gateway); null serves nothing (``TransportService.metrics()`` works either way)."""

    listen: str | None = field(default=None, metadata={"check": _optional_host_port})


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """A whole deployment: runtime limits, supervisor policy, providers by name."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=_default_providers)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    emulator: EmulatorConfig = field(default_factory=EmulatorConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    source: str | None = field(default=None, compare=False, metadata=_CODE_ONLY)
    # key path -> the text as written, for every value expanded from the environment
    templates: Mapping[str, str] = field(
        default_factory=dict, compare=False, repr=False, metadata=_CODE_ONLY
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", MappingProxyType(dict(self.providers)))
        object.__setattr__(self, "templates", MappingProxyType(dict(self.templates)))
        # The gateway learns from the Twilio providers of the same file: their auth tokens
        # (to validate X-Twilio-Signature) and how long their calls may ring.
        twilio = [p for p in self.providers.values() if isinstance(p, TwilioProviderConfig)]
        tokens = tuple(dict.fromkeys(p.auth_token for p in twilio if p.auth_token))
        ring = float(max((p.ring_timeout_s for p in twilio), default=0))
        gateway = replace(self.gateway, inherited_auth_tokens=tokens, longest_ring_s=ring)
        object.__setattr__(self, "gateway", gateway)

    def provider(self, name: str) -> ProviderConfig:
        """The provider called ``name``; :class:`ConfigError` if there is none."""
        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(self.providers) or "(none)"
            why = f"unknown provider {name!r}; configured providers: {known}"
            close = difflib.get_close_matches(name, list(self.providers), n=1)
            if close:
                why += f"; did you mean {close[0]!r}?"
            raise ConfigError(why, file=self.source, key_path=f"providers.{name}") from None

    def redacted(self) -> dict[str, Any]:
        """The config as plain nested dicts (the YAML shape) with every secret as ``"***"``."""
        result: dict[str, Any] = _plain(self, "", "", self.templates)
        return result


def default_config() -> TransportConfig:
    """The embedded default; ``config/transport.yaml`` spells out the same values."""
    return TransportConfig()


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> TransportConfig:
    """Read, expand and validate the YAML file at ``path`` (``environ`` defaults to os.environ)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=source) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", file=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc), file=source) from None
    return parse_config(data, source=source, environ=environ)


def parse_config(
    data: object, *, source: str | None = None, environ: Mapping[str, str] | None = None
) -> TransportConfig:
    """Validate what ``yaml.safe_load`` returned; ``source`` names the file in errors."""
    ctx = _Ctx(source, os.environ if environ is None else environ, {})
    config: TransportConfig = _build(TransportConfig, data, "", ctx, source=source)
    return replace(config, templates=ctx.templates)


# ---- the validator ----


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # Only the mark and the problem text: str(exc) would quote the offending line.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return f"invalid YAML: {problem}"
    return f"invalid YAML ({type(exc).__name__})"


@dataclass(frozen=True, slots=True)
class _Ctx:
    file: str | None
    environ: Mapping[str, str]
    templates: dict[str, str]  # filled in by expand(): key path -> text as written

    def error(self, path: str, why: str) -> ConfigError:
        return ConfigError(why, file=self.file, key_path=path)

    def expand(self, raw: str, path: str) -> str:
        def substitute(m: re.Match[str]) -> str:
            if m[0] == "$${":
                return "${"
            name, default = m["name"], m["default"]
            if name is None:
                why = "malformed reference: use ${NAME} or ${NAME:-default}, or $${ for a literal"
                raise self.error(path, why)
            value = self.environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                raise self.error(path, f"environment variable {name!r} is not set")
            return value

        expanded = _REF.sub(substitute, raw)
        if any(m[0] != "$${" for m in _REF.finditer(raw)):
            self.templates[path] = raw
        return expanded


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_secret_path(path: str) -> bool:
    segments = re.split(r"[.\[]", path)
    return "headers" in segments or bool(is_secret_key(segments[-1]))


def _show(raw: object, path: str) -> str:
    """How a bad YAML value appears in a message: never a secret, never an expanded value."""
    kind = "null" if raw is None else type(raw).__name__
    if _is_secret_path(path):
        return f"{kind} (value hidden)"
    if isinstance(raw, str) and _WHOLE_REF.search(raw):
        return f"{raw!r} (from the environment)"
    text = repr(_redact_text(raw) if isinstance(raw, str) else raw)
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({kind})"


def _unknown(key: object, valid: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(valid)}"
    return f"unknown {what} {key!r}; {hint}"


def _mapping(raw: object, path: str, ctx: _Ctx) -> Mapping[Any, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        where = "" if path else " at the top level"
        raise ctx.error(path, f"expected a mapping{where}, got {_show(raw, path)}")
    return raw


def _number(kind: type[int] | type[float], raw: object, path: str, ctx: _Ctx) -> float:
    if kind is float:
        expected = "a number of seconds (float)" if path.endswith("_s") else "a number (float)"
    else:
        expected = "a number of bytes (int)" if path.endswith("_bytes") else "a whole number (int)"
    value = raw
    if isinstance(raw, str) and (ref := _WHOLE_REF.fullmatch(raw)):
        try:
            value = kind(ctx.expand(raw, path))
        except ValueError:
            why = f"environment variable {ref['name']!r} does not hold {expected}"
            raise ctx.error(path, why) from None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and not isinstance(value, int))
    ):
        raise ctx.error(path, f"expected {expected}, got {_show(raw, path)}")
    if not math.isfinite(value):
        raise ctx.error(path, f"expected a finite number, got {_show(raw, path)}")
    return kind(value)


def _string(raw: object, path: str, ctx: _Ctx) -> str:
    if not isinstance(raw, str):
        quote = "; quote it" if isinstance(raw, int | float) else ""
        raise ctx.error(path, f"expected a string (str), got {_show(raw, path)}{quote}")
    return ctx.expand(raw, path)


def _boolean(raw: object, path: str, ctx: _Ctx) -> bool:
    if isinstance(raw, str) and _WHOLE_REF.fullmatch(raw):
        text = ctx.expand(raw, path).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ctx.error(path, "the environment variable does not hold true or false")
    if not isinstance(raw, bool):
        raise ctx.error(path, f"expected true or false, got {_show(raw, path)}")
    return raw


def _optional_string(raw: object, path: str, ctx: _Ctx) -> str | None:
    return None if raw is None else (_string(raw, path, ctx) or None)


def _string_list(raw: object, path: str, ctx: _Ctx) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.error(path, f"expected a list of strings, got {_show(raw, path)}")
    return tuple(_string(item, f"{path}[{i}]", ctx) for i, item in enumerate(raw))


def _string_map(raw: object, path: str, ctx: _Ctx) -> Mapping[str, str]:
    result: dict[str, str] = {}
    for key, value in _mapping(raw, path, ctx).items():
        if not isinstance(key, str) or not key:
            raise ctx.error(_join(path, key), "keys must be non-empty strings")
        result[key] = _string(value, _join(path, key), ctx)
    return MappingProxyType(result)


def _providers(raw: object, path: str, ctx: _Ctx) -> Mapping[str, ProviderConfig]:
    result: dict[str, ProviderConfig] = {}
    for name, body in _mapping(raw, path, ctx).items():
        where = _join(path, name)
        if not isinstance(name, str) or not _PROVIDER_NAME.fullmatch(name):
            raise ctx.error(where, "a provider name uses only letters, digits, '_' and '-'")
        data = _mapping(body, where, ctx)
        types = list(_PROVIDER_TYPES)
        if "type" in data:
            kind = _string(data["type"], f"{where}.type", ctx)
        elif name in _PROVIDER_TYPES:
            kind = name
        else:
            why = f"missing (the name {name!r} is no provider type); expected one of: "
            raise ctx.error(f"{where}.type", why + ", ".join(types))
        if kind not in _PROVIDER_TYPES:
            why = _unknown(data["type"], types, "provider type")
            raise ctx.error(f"{where}.type", why)
        result[name] = _build(_PROVIDER_TYPES[kind], data, where, ctx, name=name)
    return MappingProxyType(result)


def _build(cls: type[Any], raw: object, path: str, ctx: _Ctx, **fixed: Any) -> Any:
    """Build dataclass ``cls`` from a YAML mapping, one field spec (type hint) per key."""
    data = _mapping(raw, path, ctx)
    hints = get_type_hints(cls)
    specs = {f.name: f for f in fields(cls) if f.metadata.get("yaml", True)}
    for key in data:
        if key not in specs:
            raise ctx.error(_join(path, key), _unknown(key, list(specs)))
    kwargs = dict(fixed)
    for key, value in data.items():
        where, hint = _join(path, key), hints[key]
        if isinstance(hint, type) and is_dataclass(hint):
            kwargs[key] = _build(hint, value, where, ctx)
        else:
            kwargs[key] = _PARSERS[hint](value, where, ctx)
        check = specs[key].metadata.get("check")
        if check is not None and (problem := check(kwargs[key])) is not None:
            raise ctx.error(where, f"{problem}, got {_show(value, where)}")
    return cls(**kwargs)


_Parser = Callable[[object, str, _Ctx], Any]
_PARSERS: dict[object, _Parser] = {
    float: lambda raw, path, ctx: _number(float, raw, path, ctx),
    int: lambda raw, path, ctx: _number(int, raw, path, ctx),
    str: _string,
    bool: _boolean,
    str | None: _optional_string,
    tuple[str, ...]: _string_list,
    Mapping[str, str]: _string_map,
    Mapping[str, ProviderConfig]: _providers,
    SupervisorConfig | None: lambda raw, path, ctx: (
        None if raw is None else _build(SupervisorConfig, raw, path, ctx)
    ),
}
