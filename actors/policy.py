"""When a connector exits, what the supervisor does: restart it (after how long) or give up.

This is the seam for the full policy of DESIGN §5 (restart types, jitter, reset after a stable
period): the supervisor only ever asks :meth:`RestartPolicy.decide`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .exits import Exit, ExitKind

__all__ = ["IntensityPolicy", "RestartDecision", "RestartPolicy", "ends_session"]

# Close codes after which a session is worth redialling: the peer (or something between us)
# failed or is going away (1001: a server shutting down), rather than decided to end the
# conversation.
_RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def ends_session(exit: Exit) -> bool:
    """Whether an exit ends the session for good, whatever the policy's budget.

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
    def decide(self, restart_times: deque[float], exit: Exit, now: float) -> RestartDecision:
        """Restart or not, given the times of this session's earlier restarts (oldest first)."""
        ...


@dataclass(frozen=True, slots=True)
class IntensityPolicy:
    """At most ``max_restarts`` within a sliding ``within_s`` window, with exponential backoff.

    The n-th restart inside the window waits ``backoff_initial_s * backoff_multiplier**n``,
    capped at ``backoff_max_s``.
    """

    max_restarts: int = 3
    within_s: float = 30.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    backoff_multiplier: float = 2.0

    def decide(self, restart_times: deque[float], exit: Exit, now: float) -> RestartDecision:
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
        return RestartDecision(True, delay, f"restart {recent + 1} of {self.max_restarts}: {exit}")
