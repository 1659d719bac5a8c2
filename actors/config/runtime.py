"""The ``runtime`` and ``supervisor`` sections: limits and timeouts of a session, and how it is
restarted."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._fields import _POSITIVE, _fraction, _limit, _one_of, _optional_positive

__all__ = [
    "DEFAULT_RECONNECT_WINDOW_S",
    "RuntimeConfig",
    "SupervisorConfig",
]


_RESTART_TYPES = ("transient", "permanent", "temporary")
_OVERFLOW_OUT = ("drop_oldest", "raise")
_OVERFLOW_IN = ("drop_oldest", "drop_newest")

#: The reconnect window of a session dialled directly (no gateway resume window to match).
DEFAULT_RECONNECT_WINDOW_S = 10.0


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
