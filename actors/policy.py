"""When a connector exits, what the supervisor does: restart it (after how long) or give up.

The supervisor asks its session's :class:`RestartPolicy` two questions, in order:

1. :meth:`~RestartPolicy.ends_session`: does this exit end the session cleanly, whatever the
   budget? It depends on the **restart type** (Erlang/OTP's names):

   - ``transient`` (the default): restart after a failure (a crash, a lost connection, a silent
     peer, a close code that means "try again": 1001, 1006, 1011-1014); end after a normal
     close (ours, or the peer's on purpose) and after a protocol error a redial would repeat;
   - ``permanent``: restart after anything but a close we asked for (``end_session``, a
     written ``Close``): a peer that hangs up is dialled again;
   - ``temporary``: never restart; every exit ends the session.

2. :meth:`~RestartPolicy.decide`: restart now, later, or give up? At most ``max_restarts``
   within a sliding ``within_s`` window; the n-th restart in the window waits
   ``backoff_initial_s * backoff_multiplier**n``, capped at ``backoff_max_s``, less a random
   share of up to ``backoff_jitter`` of it (so that many sessions dropped at once do not
   redial in lockstep). A connection that stayed up for ``reset_after_s`` proves the trouble
   is over: its exit starts the count afresh.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from .exits import Exit, ExitKind

__all__ = [
    "RESTART_TYPES",
    "IntensityPolicy",
    "RestartDecision",
    "RestartPolicy",
    "ends_session",
]

RESTART_TYPES = ("transient", "permanent", "temporary")

# Close codes after which a session is worth redialling: the peer (or something between us)
# failed or is going away (1001: a server shutting down), rather than decided to end the
# conversation.
_RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def ends_session(exit: Exit) -> bool:
    """Whether an exit ends a ``transient`` session for good, whatever the policy's budget.

    We closed it; the peer closed it on purpose; or the peer broke the protocol (an oversized
    frame, invalid UTF-8), which a redial would only repeat.
    """
    if exit.kind is ExitKind.NORMAL or exit.kind is ExitKind.PROTOCOL_ERROR:
        return True
    if exit.kind is ExitKind.PEER_CLOSED:
        return exit.code not in _RETRYABLE_CLOSE_CODES
    return False


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    delay_s: float = 0.0
    why: str = ""


class RestartPolicy(Protocol):
    def ends_session(self, exit: Exit) -> bool:
        """Whether ``exit`` ends the session cleanly (no restart, not a failure)."""
        ...

    def decide(
        self, restart_times: deque[float], exit: Exit, now: float, up_for_s: float = 0.0
    ) -> RestartDecision:
        """Restart or give up, given the times of this session's earlier restarts (oldest
        first, trimmed in place) and how long the connection that ended had been open."""
        ...


@dataclass(frozen=True, slots=True)
class IntensityPolicy:
    """Restart type, restart intensity (sliding window) and backoff with jitter and reset."""

    max_restarts: int = 3
    within_s: float = 30.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.0  # 0..1: the share of each delay that is randomised away
    reset_after_s: float = float("inf")  # up this long: earlier restarts are forgiven
    restart: str = "transient"
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"restart must be one of {', '.join(RESTART_TYPES)}")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ValueError("backoff_jitter must be between 0 and 1")

    def ends_session(self, exit: Exit) -> bool:
        if self.restart == "temporary":
            return True
        if self.restart == "permanent":
            return exit.kind is ExitKind.NORMAL
        return ends_session(exit)

    def decide(
        self, restart_times: deque[float], exit: Exit, now: float, up_for_s: float = 0.0
    ) -> RestartDecision:
        if up_for_s >= self.reset_after_s:
            restart_times.clear()
        while restart_times and now - restart_times[0] > self.within_s:
            restart_times.popleft()
        recent = len(restart_times)
        if recent >= self.max_restarts:
            return RestartDecision(
                False,
                why=f"{recent} restarts within {self.within_s:g} s (max_restarts="
                f"{self.max_restarts}); last exit: {exit}",
            )
        delay = min(self.backoff_max_s, self.backoff_initial_s * self.backoff_multiplier**recent)
        if self.backoff_jitter:
            delay -= delay * self.backoff_jitter * self.rng.random()
        return RestartDecision(True, delay, f"restart {recent + 1} of {self.max_restarts}: {exit}")
