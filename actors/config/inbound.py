"""The ``inbound`` section: the webhook that answers Twilio's voice URL and status callbacks.

The webhook server (:mod:`actors.webhooks.server`) starts on first use: the first
``accept_session``, the first Twilio ``create_session`` that points its status callback at it,
or the first read of ``TransportService.voice_url``; a service that only places WebSocket
sessions never starts it. ``enabled: false`` never starts it (``accept_session`` then raises
``ConfigError``, and outbound calls get no call progress unless they name their own callback).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ._fields import _POSITIVE, _host_port, _http_url_or, _limit

__all__ = ["DEFAULT_REFUSAL_TWIML", "InboundConfig"]

#: What a call no thread accepts in time (or past capacity) is answered: a busy signal.
DEFAULT_REFUSAL_TWIML = '<Response><Reject reason="busy" /></Response>'


def _optional_http_url(value: str | None) -> str | None:
    return None if value is None else _http_url_or()(value)


def _twiml(value: str) -> str | None:
    # Imported here: the webhooks package imports the providers, which import this package.
    from ..webhooks.twilio import validate_twiml  # noqa: PLC0415

    try:
        validate_twiml(value)
    except ValueError as exc:
        return f"expected a TwiML document (<Response>...</Response>): {exc}"
    return None


def _total_wait(config: InboundConfig) -> str | None:
    # Twilio gives up on a voice webhook after 15 s: both waits together stay under 14 s.
    if config.queue_timeout_s + config.answer_timeout_s > 14.0:
        return "queue_timeout_s + answer_timeout_s must stay under 14 s (Twilio stops at 15 s)"
    return None


@dataclass(frozen=True, slots=True)
class InboundConfig:
    """Inbound calls and call progress: where the webhook listens, what Twilio calls it as,
    capacity and waits (:class:`~actors.webhooks.inbound.InboundSettings`), and its HTTP bounds
    (:class:`~actors.webhooks.server.WebhookConfig`)."""

    enabled: bool = True  # start the webhook server on first use (false: never)
    listen: str = field(default="127.0.0.1:0", metadata={"check": _host_port})
    # What Twilio is configured to call (and signs), up to the path: https://voice.example.com.
    # null: the listening address (reachable by the embedded emulator only).
    public_url: str | None = field(default=None, metadata={"check": _optional_http_url})
    max_sessions: int = field(default=100, metadata=_limit(">=", 1))
    queue_timeout_s: float = field(default=5.0, metadata=_POSITIVE)
    answer_timeout_s: float = field(default=5.0, metadata=_POSITIVE)
    refusal_twiml: str = field(default=DEFAULT_REFUSAL_TWIML, metadata={"check": _twiml})
    max_connections: int = field(default=64, metadata=_limit(">=", 1))
    request_timeout_s: float = field(default=5.0, metadata=_POSITIVE)
    max_body_bytes: int = field(default=65536, metadata=_limit(">=", 1024))
    recent_ttl_s: float = field(default=3600.0, metadata=_POSITIVE)
    recent_max: int = field(default=10_000, metadata=_limit(">=", 1))

    def __post_init__(self) -> None:
        # The loader names the file; this catches the pair (and a config built in code).
        problem = _total_wait(self)
        if problem is not None:
            raise ConfigError(problem, key_path="inbound.answer_timeout_s")
