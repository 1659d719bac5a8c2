"""The ``gateway`` section: the media gateway's address, secret, windows and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigError
from ._fields import _CODE_ONLY, _POSITIVE, _host_port, _http_url_or, _limit, _ws_url
from ._redacted import _safe_repr

__all__ = [
    "MIN_SECRET_BYTES",
    "RING_MARGIN_S",
    "GatewayConfig",
]


#: ``gateway.secret`` is an HMAC key: shorter than this is refused (``openssl rand -hex 32``).
MIN_SECRET_BYTES = 16


def _secret_bytes(value: str | None) -> str | None:
    if value is None or len(value.encode("utf-8")) >= MIN_SECRET_BYTES:
        return None
    return (
        f"must be at least {MIN_SECRET_BYTES} bytes long (e.g. the output of openssl rand -hex 32)"
    )


def _gateway_url(value: str | None) -> str | None:
    if (problem := _ws_url(value)) is not None or value is None:
        return problem
    if "@" in urlsplit(value).netloc:
        return "must not hold user:password@ (sessions and providers authenticate by token)"
    return None


#: How much longer than the longest ring timeout the gateway waits for a provider stream.
def _optional_http_url(value: str | None) -> str | None:
    return None if value is None else _http_url_or()(value)


RING_MARGIN_S = 15.0
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The media gateway (:mod:`actors.gateway`): providers dial its ``/{provider}`` side,
    sessions its ``/sessions/{id}`` side, and it relays between them.

    Everything a connection does before it is authenticated (a session hop by its token, a
    provider stream by its ``start`` event) is bounded: ``handshake_timeout_s``,
    ``start_timeout_s``, ``pending_max_bytes`` (which is also the largest frame until then),
    ``max_pending`` in all and ``max_pending_per_address`` from one address;
    ``max_connections`` caps every connection, authenticated or not.
    """

    embedded: bool = True  # run it inside the service, on its own thread and event loop
    listen: str = field(default="127.0.0.1:0", metadata={"check": _host_port})
    url: str | None = field(default=None, metadata={"check": _gateway_url})  # sessions dial
    public_url: str | None = field(default=None, metadata={"check": _gateway_url})  # providers
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
    # Exotel streams (/exotel) must carry Authorization: Basic of these (Exotel's "Basic
    # Auth" option: the applet's URL is wss://user:password@host/...); unset: not checked.
    exotel_username: str | None = None
    exotel_password: str | None = field(default=None, repr=False)
    # A standalone gateway posts the inbound streams it admits (Exotel's applet calls: no
    # session) to the runtime's webhook here (<inbound_url>/exotel/inbound, signed with the
    # secret); unset: a standalone gateway refuses them. The embedded one needs none.
    inbound_url: str | None = field(default=None, metadata={"check": _optional_http_url})
    # Filled in by TransportConfig from the providers of the same file (not YAML keys).
    inherited_auth_tokens: tuple[str, ...] = field(
        default=(), repr=False, compare=False, metadata=_CODE_ONLY
    )
    longest_ring_s: float = field(default=0.0, compare=False, metadata=_CODE_ONLY)

    __repr__ = _safe_repr

    def __post_init__(self) -> None:
        # The loader names the file and key first; this catches a config built in code.
        for name in ("url", "public_url", "secret"):
            value = getattr(self, name)
            check = _gateway_url if name != "secret" else _secret_bytes
            if (problem := check(value)) is not None:
                raise ConfigError(problem, key_path=f"gateway.{name}")
        if bool(self.exotel_username) != bool(self.exotel_password):
            raise ConfigError(
                "exotel_username and exotel_password go together",
                key_path="gateway.exotel_password",
            )

    @property
    def signature_tokens(self) -> tuple[str, ...]:
        """The auth tokens ``X-Twilio-Signature`` is checked with (empty: not checked)."""
        if self.twilio_auth_token:
            return (self.twilio_auth_token,)
        return self.inherited_auth_tokens

    @property
    def exotel_basic_auth(self) -> tuple[str, str] | None:
        """The user and password Exotel's streams must present (``None``: not checked)."""
        if self.exotel_username and self.exotel_password:
            return (self.exotel_username, self.exotel_password)
        return None

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
