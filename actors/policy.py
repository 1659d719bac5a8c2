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

2. How long may it try? That depends on what kind of exit it was:

   - a **lost connection** (reset, silence, a retryable close code, a failed redial) is an
     outage, bounded by **time**: :meth:`~RestartPolicy.redial` keeps redialling for up to
     ``reconnect_window_s`` of time without a connection, counted from the first loss since
     the session was last stable (up for ``reset_after_s``), so that a call rides out a peer
     restarting or a link down for a few seconds, however many redials that takes, and a
     connection that flaps (opens, drops at once) cannot keep a session alive for ever;
   - a **crash** (an exception in the connector's own code) is bounded by **intensity**, as in
     Erlang/OTP: :meth:`~RestartPolicy.decide` allows at most ``max_restarts`` within a
     sliding ``within_s`` window, the guard against a crash loop.

   Either way the n-th consecutive attempt waits ``backoff_initial_s * backoff_multiplier**n``,
   capped at ``backoff_max_s`` (the exponent is capped too: no overflow however large n is),
   less a random share of up to ``backoff_jitter`` of it (so that many sessions dropped at
   once do not redial in lockstep). A redial's wait and its dial never run past the window.
   A connection that stayed up for ``reset_after_s`` proves the trouble is over: its exit
   starts both counts afresh.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from .exits import Exit, ExitKind
from .wire.constants import CloseCode

if TYPE_CHECKING:
    from .errors import TransportError

__all__ = [
    "RESTART_TYPES",
    "IntensityPolicy",
    "Outage",
    "RestartDecision",
    "RestartPolicy",
    "Supervision",
    "ends_session",
]

RESTART_TYPES = ("transient", "permanent", "temporary")

# Close codes after which a session is worth redialling: the peer (or something between us)
# failed or is going away (1001: a server shutting down), rather than decided to end the
# conversation.
_RETRYABLE_CLOSE_CODES = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.ABNORMAL,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.BAD_GATEWAY,
    }
)


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


#: The exits that are a bug in our own code (or a plug-in's), not the network's doing.
CRASHES = frozenset({ExitKind.CRASH, ExitKind.START_CRASH})

#: The words every give-up reason starts with (a reader's Close, ``SessionClosed``).
GAVE_UP = "restart budget ran out"

_EXITS_KEPT = 16  # the last exits a session's status reports


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """Restart (after ``delay_s``) or give up, and why. ``deadline`` (a ``time.monotonic()``
    value) is when the reconnect window closes: the new connection must be open by then."""

    restart: bool
    delay_s: float = 0.0
    why: str = ""
    deadline: float = math.inf


@dataclass(slots=True)
class Outage:
    """One session's time without a connection, for the reconnect window (part of its
    :class:`Supervision`)."""

    down_since: float | None = None  # when the current outage began; None while connected
    down_s: float = 0.0  # earlier outages since the session was last stable
    attempts: int = 0  # redials in the current outage, for the backoff

    def lost(self, now: float, up_for_s: float, reset_after_s: float) -> None:
        """The connection is gone (or a redial failed) at ``now``."""
        if up_for_s >= reset_after_s:
            self.down_s = 0.0
        if self.down_since is None:
            self.down_since = now
            self.attempts = 0

    def restored(self, now: float) -> None:
        """A redial opened: the outage is over (its length still counts until stable)."""
        if self.down_since is not None:
            self.down_s += now - self.down_since
            self.down_since = None

    def down_for(self, now: float) -> float:
        return self.down_s + (0.0 if self.down_since is None else now - self.down_since)


def backoff(initial_s: float, multiplier: float, max_s: float, n: int) -> float:
    """``initial_s * multiplier**n`` capped at ``max_s``, for any ``n`` (no float overflow:
    the exponent stops growing once the cap is reached)."""
    if multiplier > 1.0 and initial_s > 0.0 and max_s > initial_s:
        n = min(n, math.ceil(math.log(max_s / initial_s) / math.log(multiplier)))
    elif multiplier > 1.0:
        n = 0  # already at (or above) the cap
    return min(max_s, initial_s * multiplier**n)


class RestartPolicy(Protocol):
    def ends_session(self, exit: Exit) -> bool:
        """Whether ``exit`` ends the session cleanly (no restart, not a failure)."""
        ...

    def decide(
        self,
        restart_times: deque[float],
        exit: Exit,
        now: float,
        up_for_s: float = 0.0,
        outage: Outage | None = None,
    ) -> RestartDecision:
        """After a crash: restart or give up, given the times of this session's earlier
        crash restarts (oldest first, trimmed in place) and how long the connection that
        ended had been open. A crash takes the connection down too: ``outage``, if given,
        is told so (its time counts against the reconnect window)."""
        ...

    def redial(
        self, outage: Outage, exit: Exit, now: float, up_for_s: float = 0.0
    ) -> RestartDecision:
        """After a lost connection or a failed redial: redial (within the reconnect window,
        which ``outage`` measures and this updates) or give up."""
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
    reconnect_window_s: float = 10.0  # time without a connection before a session FAILs
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"restart must be one of {', '.join(RESTART_TYPES)}")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ValueError("backoff_jitter must be between 0 and 1")
        if not self.reconnect_window_s > 0:
            raise ValueError("reconnect_window_s must be > 0")

    def ends_session(self, exit: Exit) -> bool:
        if self.restart == "temporary":
            return True
        if self.restart == "permanent":
            return exit.kind is ExitKind.NORMAL
        return ends_session(exit)

    def decide(
        self,
        restart_times: deque[float],
        exit: Exit,
        now: float,
        up_for_s: float = 0.0,
        outage: Outage | None = None,
    ) -> RestartDecision:
        if outage is not None:
            outage.lost(now, up_for_s, self.reset_after_s)
        if up_for_s >= self.reset_after_s:
            restart_times.clear()
        while restart_times and now - restart_times[0] > self.within_s:
            restart_times.popleft()
        recent = len(restart_times)
        if recent >= self.max_restarts:
            return RestartDecision(
                False,
                why=f"{GAVE_UP}: {recent} restarts within {self.within_s:g} s (max_restarts="
                f"{self.max_restarts}); last exit: {exit}",
            )
        delay = self._delay(recent)
        return RestartDecision(True, delay, f"restart {recent + 1} of {self.max_restarts}: {exit}")

    def redial(
        self, outage: Outage, exit: Exit, now: float, up_for_s: float = 0.0
    ) -> RestartDecision:
        outage.lost(now, up_for_s, self.reset_after_s)
        window = self.reconnect_window_s
        down = outage.down_for(now)
        left = window - down
        if left <= 0:
            return RestartDecision(
                False,
                why=f"{GAVE_UP}: no connection for {down:.1f} s (reconnect_window_s="
                f"{window:g}); last exit: {exit}",
            )
        attempt = outage.attempts
        outage.attempts += 1
        # Never wait past the window: the last redial is made as it closes (then it fails).
        delay = min(self._delay(attempt), left)
        return RestartDecision(
            True,
            delay,
            f"redial {attempt + 1}, {left:.1f} s left of reconnect_window_s={window:g}: {exit}",
            deadline=now + left,
        )

    def _delay(self, n: int) -> float:
        delay = backoff(self.backoff_initial_s, self.backoff_multiplier, self.backoff_max_s, n)
        if self.backoff_jitter:
            delay -= delay * self.backoff_jitter * self.rng.random()
        return delay


class Supervision:
    """One session's supervision history: what its connectors did, and what its restart
    policy decides on (the crash restarts, the outage, how long the last connection was up).

    **One writer**: the supervisor, on its own thread, through the methods below, each named
    for the event that calls it. Anyone may read it, from any thread, through the properties:
    each is one attribute read (the exits a tuple replaced whole), so a reader never sees a
    half-made change. The session record holds it, so that its status can be read without an
    ask to the supervisor.
    """

    __slots__ = (
        "_connected",
        "_exits",
        "_failure",
        "_last_error",
        "_opened_at",
        "_outage",
        "_restart_times",
        "_restarts",
        "policy",
    )

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        #: The session's own policy (its provider's); ``None``: the supervisor's.
        self.policy: Final = policy
        self._connected = False  # a connector reported its connection open, and no exit since
        self._restarts = 0
        self._restart_times: deque[float] = deque()  # of crash restarts (the intensity)
        self._outage = Outage()  # time without a connection (the reconnect window)
        self._opened_at: float | None = None  # when the current connection opened (monotonic)
        self._exits: tuple[Exit, ...] = ()  # the last _EXITS_KEPT, oldest first
        self._last_error: str | None = None
        self._failure: TransportError | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def restarts(self) -> int:
        """Restarts (crash restarts and redials) so far."""
        return self._restarts

    @property
    def exits(self) -> tuple[Exit, ...]:
        """The last 16 exits of the session's connectors, oldest first."""
        return self._exits

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def failure(self) -> TransportError | None:
        """Why the session never opened, or why its policy gave up."""
        return self._failure

    # -- the supervisor's, on its thread ------------------------------------------------------

    def opened(self, now: float) -> None:
        """A connector's connection opened at ``now`` (monotonic)."""
        self._connected = True
        self._opened_at = now
        self._outage.restored(now)

    def exited(self, exit: Exit, now: float) -> float:
        """A connector exited at ``now``; how long its connection had been up (0: never)."""
        self._connected = False
        self._exits = (*self._exits[1 - _EXITS_KEPT :], exit)
        opened_at, self._opened_at = self._opened_at, None
        return 0.0 if opened_at is None else now - opened_at

    def decide(
        self, policy: RestartPolicy, exit: Exit, now: float, up_for_s: float
    ) -> RestartDecision:
        """Ask ``policy`` whether to restart after ``exit`` (which the session survived the
        first dial of), counting a restart if it says so: a crash against the intensity, a
        lost connection against the reconnect window."""
        if exit.kind in CRASHES:  # a bug: the intensity guards against a crash loop
            decision = policy.decide(self._restart_times, exit, now, up_for_s, self._outage)
            if decision.restart:
                self._restart_times.append(now)
        else:  # the network: bounded by the time the session spends without a connection
            decision = policy.redial(self._outage, exit, now, up_for_s)
        if decision.restart:
            self._restarts += 1
            self._last_error = str(exit)
        return decision

    def failed(self, exit: Exit, failure: TransportError) -> None:
        """The session is ``FAILED``: it never opened, or the policy gave up after ``exit``."""
        self._failure = failure
        self._last_error = str(exit)

    def abandoned(self, why: str) -> None:
        """The supervisor's own handling of the session failed (a bug): why."""
        self._last_error = why
