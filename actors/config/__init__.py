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
      vonage:                       # VonageProviderConfig (type: vonage): application_id,
                                    # private_key | private_key_file, signature_secret,
                                    # api_base_url (or emulator), from_number, event_url,
                                    # sample_rate (8000|16000), audio_encoding (provider |
                                    # pcm16 | audio/x-mulaw), audio_sample_rate, ring_timeout_s
      exotel:                       # ExotelProviderConfig (type: exotel): account_sid, api_key,
                                    # api_token, api_base_url (or emulator), caller_id,
                                    # status_callback(_events), sample_rate, audio_encoding,
                                    # audio_sample_rate, min_chunk_ms, time_limit_s
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
      media: echo                   # echo | tone | wav | silence | reflect: what each call plays
      tone_hz: 440.0, wav: null, numbers: {"+15550100": tone}, max_call_s: 3600.0
      answer_after_s: 0.0           # every call rings this long before it is answered
      voice_url: null               # the URL inbound calls ask (http/https; `emulator --dial-in`)
      behaviours: {"+15550100": busy, "+1555020*": "machine:0.5"}  # number or prefix* ->
                                    # human | answer-late:<s> | machine | fax | busy | no-answer
                                    # | failed [:<ring seconds>] (actors.emulator.numbers)
    metrics:                        # MetricsConfig: Prometheus metrics
      listen: null                  # host:port to serve /metrics on (port 0: any free port);
                                    # null: no HTTP server (TransportService.metrics() still works)
    cluster:                        # ClusterConfig; absent/null: one process, no Redis
      redis_url: redis://127.0.0.1:6379/0, node_id: null (<hostname>-<pid>), capacity: 100,
      lease_s: 2.0, lease_renew_s: null (lease_s / 4), heartbeat_s: 0.5, ttl_s: 2.0,
      redis_timeout_s: 1.0, key_prefix: "ta:{default}", on_redis_down: fail (or local),
      max_state_bytes: 65536
    inbound:                        # InboundConfig: the webhook (voice URL, status callbacks)
      enabled: true                 # start it on first use (accept_session, a Twilio call)
      listen: 127.0.0.1:0           # where it binds; port 0 = any free port
      public_url: null              # https:// URL Twilio calls (and signs), up to the path
      max_sessions: 16              # inbound calls waiting, being accepted or live (int >= 1;
                                    # a cluster node: >= cluster.capacity)
      queue_timeout_s: 5.0, answer_timeout_s: 5.0   # then refused; together < 14 s
      refusal_twiml: '<Response><Reject reason="busy" /></Response>'
      max_connections: 64, request_timeout_s: 5.0, max_body_bytes: 65536,
      recent_ttl_s: 3600.0, recent_max: 10000   # call ids kept to refuse replays

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

Where things are: a module per section (``runtime`` with ``supervisor``, ``providers``,
``gateway``, ``emulator``, ``metrics``, ``inbound``) and the whole file (``transport``); reading
a file (``_loader``: the size and alias limits), validating what it holds (``_validate``: a parser
per field type, ``${VAR}`` expansion), the fields' checks (``_fields``) and masked printing
(``_redacted``). Everything public is imported from here.

To add a section: write a module with a frozen dataclass whose fields use the types in
``_validate._PARSERS`` (or further dataclasses), add it as a field of
:class:`TransportConfig`, and put it in ``config/transport.yaml``. A provider type is one more
dataclass in ``providers`` and one more entry in its ``_PROVIDER_TYPES``.
"""

from __future__ import annotations

from ._loader import MAX_CONFIG_BYTES, MAX_YAML_NODES, load_config, parse_config
from .cluster import ClusterConfig
from .emulator import EmulatorConfig
from .gateway import MIN_SECRET_BYTES, RING_MARGIN_S, GatewayConfig
from .inbound import InboundConfig
from .metrics import MetricsConfig
from .providers import (
    DailyProviderConfig,
    ExotelProviderConfig,
    PlivoProviderConfig,
    ProviderConfig,
    TelnyxProviderConfig,
    TwilioProviderConfig,
    VonageProviderConfig,
    WebSocketProviderConfig,
)
from .runtime import DEFAULT_RECONNECT_WINDOW_S, RuntimeConfig, SupervisorConfig
from .transport import TransportConfig, default_config

__all__ = [
    "DEFAULT_RECONNECT_WINDOW_S",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_NODES",
    "MIN_SECRET_BYTES",
    "RING_MARGIN_S",
    "ClusterConfig",
    "DailyProviderConfig",
    "EmulatorConfig",
    "ExotelProviderConfig",
    "GatewayConfig",
    "InboundConfig",
    "MetricsConfig",
    "PlivoProviderConfig",
    "ProviderConfig",
    "RuntimeConfig",
    "SupervisorConfig",
    "TelnyxProviderConfig",
    "TransportConfig",
    "TwilioProviderConfig",
    "VonageProviderConfig",
    "WebSocketProviderConfig",
    "default_config",
    "load_config",
    "parse_config",
]
