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
      reconnect_window_s: null      # redial a lost connection for this long, then FAIL (> 0);
                                    # null: the gateway's resume_window_s for a provider behind
                                    # the gateway (twilio), 10 s for one dialled directly
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

Limits: a file over :data:`MAX_CONFIG_BYTES`, or a document that its aliases expand past
:data:`MAX_YAML_NODES` nodes (or that refers to itself), is refused before anything is built
from it; an error quotes at most ~80 characters of any value. Header names and values and
subprotocols may hold no CR, LF or other control character (headers: names are HTTP tokens;
subprotocols are tokens), a URL no space or control character; ``gateway.secret`` is at least
:data:`MIN_SECRET_BYTES` bytes. A ``ws(s)://user:password@host`` URL is dialled with
``Authorization: Basic`` built from its userinfo, which is never sent or shown otherwise.

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

from .checks import QUOTE_LIMIT, header_problem, short_repr, subprotocol_problem, url_text_problem
from .errors import ConfigError
from .redaction import MASK, is_secret_key, redact_text
from .wire.constants import ACCOUNT_SID

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_NODES",
    "MIN_SECRET_BYTES",
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
_BARE_REF = re.compile(r"\$\{[A-Za-z_]\w*\}")  # one reference, no default, nothing else
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9_-]+")
_MEDIA_MODES = ("echo", "tone", "wav", "silence", "reflect")
_RESTART_TYPES = ("transient", "permanent", "temporary")
_OVERFLOW_OUT = ("drop_oldest", "raise")
_OVERFLOW_IN = ("drop_oldest", "drop_newest")
_PRIVACY = ("private", "public")
# What an application reads and writes on a Daily session (actors.audio's names).
_DAILY_ENCODINGS = ("pcm16", "audio/l16", "audio/x-mulaw", "audio/x-alaw")
_DAILY_RATES = (8000, 16000, 24000, 48000)  # what Daily's audio devices take

#: A config file larger than this is refused before it is parsed (a full config is ~7 KB).
MAX_CONFIG_BYTES = 1 << 20
#: A YAML document whose nodes, aliases expanded, outnumber this is refused before it is built
#: (``config/transport.yaml``, every key spelled out, has 153): a few hundred bytes of nested
#: aliases (a "billion laughs") expand to millions, which would cost seconds and gigabytes
#: wherever the value is walked.
MAX_YAML_NODES = 10_000
#: ``gateway.secret`` is an HMAC key: shorter than this is refused (``openssl rand -hex 32``).
MIN_SECRET_BYTES = 16


def _redact_text(text: str) -> str:
    return redact_text(text)


def _plain(value: Any, key: str, path: str, templates: Mapping[str, str]) -> Any:
    """``value`` as plain dicts/lists/scalars (the YAML shape), with secrets masked and values
    that came from the environment shown as the ``${VAR}`` template they were written as.

    The value of a secret-bearing key is masked whole, also when written as a template: its
    literal text (``prefix-${X}``) and its ``${X:-default}`` default are as secret as the
    expansion; only a bare ``${NAME}`` is shown as written. A template elsewhere is shown
    with URL credentials and secret query values masked (``wss://user:***@host/?token=***``).
    """
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), f.name, _join(path, f.name), templates)
            for f in fields(value)
            if f.metadata.get("yaml", True)
        }
    if key == "headers":
        return dict.fromkeys(value, MASK)
    if value is not None and is_secret_key(key):
        # Only a bare `${NAME}` says where the secret comes from without any part of it.
        template = templates.get(path, "")
        return template if _BARE_REF.fullmatch(template) else MASK
    if path in templates:
        return _redact_text(templates[path])
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
    if (problem := url_text_problem(value)) is not None:
        return problem
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
        return f"the mode of {short_repr(wrong[0])} must be one of: {', '.join(_MEDIA_MODES)}"
    return None


def _secret_bytes(value: str | None) -> str | None:
    if value is None or len(value.encode("utf-8")) >= MIN_SECRET_BYTES:
        return None
    return (
        f"must be at least {MIN_SECRET_BYTES} bytes long (e.g. the output of openssl rand -hex 32)"
    )


def _header_item(item: tuple[str, str]) -> str | None:
    return header_problem(*item)


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be between 0 and 1"


def _account_sid(value: str | None) -> str | None:
    if value is None or ACCOUNT_SID.fullmatch(value):
        return None
    return "expected an Account SID: AC followed by 32 hex digits"


_POSITIVE = _limit(">", 0)

#: The reconnect window of a session dialled directly (no gateway resume window to match).
DEFAULT_RECONNECT_WINDOW_S = 10.0


def _optional_positive(value: float | None) -> str | None:
    return None if value is None or value > 0 else "must be > 0 (or null: the default)"


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
    """The restart policy. A lost connection is redialled, with backoff, for up to
    ``reconnect_window_s`` without a connection; a crash of our own code is restarted at most
    ``max_restarts`` times within ``within_s`` (see :mod:`actors.policy`)."""

    max_restarts: int = field(default=3, metadata=_limit(">=", 0))  # within the window below
    within_s: float = field(default=30.0, metadata=_POSITIVE)  # sliding window
    backoff_initial_s: float = field(default=0.05, metadata=_POSITIVE)
    backoff_max_s: float = field(default=2.0, metadata=_POSITIVE)
    backoff_multiplier: float = field(default=2.0, metadata=_limit(">=", 1))
    backoff_jitter: float = field(default=0.2, metadata={"check": _fraction})
    reset_after_s: float = field(default=60.0, metadata=_POSITIVE)  # up this long: count afresh
    restart: str = field(default="transient", metadata={"check": _one_of(*_RESTART_TYPES)})
    # None: the gateway's resume window behind the gateway, DEFAULT_RECONNECT_WINDOW_S else.
    reconnect_window_s: float | None = field(default=None, metadata={"check": _optional_positive})


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
    # HMAC key of session tokens: at least MIN_SECRET_BYTES (16) bytes
    secret: str | None = field(default=None, repr=False, metadata={"check": _secret_bytes})
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
            why = f"unknown provider {short_repr(name)}; configured providers: {known}"
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
        with open(source, "rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=source) from None
    if len(raw) > MAX_CONFIG_BYTES:
        why = f"the file is larger than {MAX_CONFIG_BYTES} bytes (a whole config is a few KB)"
        raise ConfigError(why, file=source)
    try:
        data = _safe_load(raw.decode("utf-8"), source)
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", file=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc), file=source) from None
    return parse_config(data, source=source, environ=environ)


def _safe_load(text: str, source: str) -> object:
    """``yaml.safe_load(text)``, refusing a document that expands past :data:`MAX_YAML_NODES`
    (or refers to itself) before anything is built from it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except RecursionError:  # composing and building recurse once per level of nesting
        raise ConfigError("the document is nested too deeply", file=source) from None
    except ValueError:  # int() past Python's digit limit (sys.get_int_max_str_digits)
        raise ConfigError("invalid YAML: a number too long to read", file=source) from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Count the nodes of the document as if every alias were replaced by a copy of what it
    names; past :data:`MAX_YAML_NODES`, refuse it. Linear in the distinct nodes (each one's
    expanded size is computed once), so a bomb is refused in microseconds."""
    sizes: dict[int, int] = {}  # id(node) -> its expanded size, once known
    entered: set[int] = set()  # the nodes on the current path: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            entered.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children(node))
            if size > MAX_YAML_NODES:
                why = (
                    f"the document expands to more than {MAX_YAML_NODES} nodes through its "
                    "aliases (&anchor/*alias); a config needs a few hundred"
                )
                raise ConfigError(why, file=source)
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in entered:
            raise ConfigError("an alias refers to a node that contains it (a cycle)", file=source)
        entered.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children(node) if id(child) not in sizes)


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
        # A key comes from the file: bounded like any quoted value.
        shown = path if len(path) <= 3 * QUOTE_LIMIT else path[: 3 * QUOTE_LIMIT - 3] + "..."
        return ConfigError(why, file=self.file, key_path=shown)

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
                raise self.error(path, f"environment variable {short_repr(name)} is not set")
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
    if not isinstance(raw, str):
        return f"{short_repr(raw)} ({kind})"  # bounded: `raw` may be an expanded alias bomb
    text = short_repr(_redact_text(raw))  # masked first: a cut could split a URL's password
    return f"{text} (from the environment)" if _WHOLE_REF.search(raw) else f"{text} ({kind})"


def _unknown(key: object, valid: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(valid)}"
    return f"unknown {what} {short_repr(key)}; {hint}"


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
        _check_each(specs[key].metadata.get("check_each"), kwargs[key], where, ctx)
    return cls(**kwargs)


def _check_each(
    check: Callable[[Any], str | None] | None, value: Any, path: str, ctx: _Ctx
) -> None:
    """Field metadata ``check_each``: each item of a mapping (``(key, value)``, named by its
    key) or of a list (named by its index); the problem names what is wrong, never the value."""
    if check is None:
        return
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    for index, item in items:
        problem = check((index, item) if isinstance(value, Mapping) else item)
        if problem is not None:
            where = _join(path, index) if isinstance(value, Mapping) else f"{path}[{index}]"
            raise ctx.error(where, problem)


_Parser = Callable[[object, str, _Ctx], Any]
_PARSERS: dict[object, _Parser] = {
    float: lambda raw, path, ctx: _number(float, raw, path, ctx),
    int: lambda raw, path, ctx: _number(int, raw, path, ctx),
    str: _string,
    bool: _boolean,
    str | None: _optional_string,
    float | None: lambda raw, path, ctx: None if raw is None else _number(float, raw, path, ctx),
    tuple[str, ...]: _string_list,
    Mapping[str, str]: _string_map,
    Mapping[str, ProviderConfig]: _providers,
    SupervisorConfig | None: lambda raw, path, ctx: (
        None if raw is None else _build(SupervisorConfig, raw, path, ctx)
    ),
}
