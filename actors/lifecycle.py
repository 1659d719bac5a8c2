"""The session lifecycle: a small state machine, its whole table in one place.

::

    CONNECTING ──▶ OPEN ◀──▶ RECONNECTING
        │          │  │            │
        │          │  ▼            │
        ├──────────┼▶ CLOSING ◀────┤
        │          │  │            │
        ▼          ▼  ▼            ▼
      FAILED  FAILED  CLOSED     FAILED

``CONNECTING`` is the first dial; ``RECONNECTING`` a redial after the session's hop dropped
(its connector crashed or the socket was lost); ``CLOSING`` an orderly end in progress (the
application ended it, or the peer closed normally); ``CLOSED`` and ``FAILED`` are final.
``FAILED`` means the session could not be (re)established: the first dial failed, or the restart
policy gave up (from ``OPEN`` when the exit that used up the budget came while open, from
``RECONNECTING`` when a redial failed). Every other change raises
:class:`~actors.errors.IllegalTransition`.

Like h11's ``_state.py``, this module decides nothing about *when* to move; it only says which
moves are legal and records them. The supervisor alone drives it, on its own thread; anyone
may read it or wait for a state.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable

from .errors import IllegalTransition

__all__ = ["SessionLifecycle", "SessionState"]

logger = logging.getLogger(__name__)


class SessionState(enum.Enum):
    """Where a session is in its life."""

    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    RECONNECTING = "RECONNECTING"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    def __str__(self) -> str:
        return self.value


_S = SessionState
_FINAL = frozenset({_S.CLOSED, _S.FAILED})

#: The only legal moves. Everything not listed here is a bug.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    _S.CONNECTING: frozenset({_S.OPEN, _S.CLOSING, _S.FAILED}),
    _S.OPEN: frozenset({_S.RECONNECTING, _S.CLOSING, _S.FAILED}),
    _S.RECONNECTING: frozenset({_S.OPEN, _S.CLOSING, _S.FAILED}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
    _S.FAILED: frozenset(),
}


class SessionLifecycle:
    """The current state of one session, changed only along :data:`TRANSITIONS`.

    Thread-safe: moved by the supervisor, read and waited on from any thread.
    Every change is logged with the session id.
    """

    __slots__ = ("_changed", "_lock", "_state", "session_id")

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self._state = SessionState.CONNECTING
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    @property
    def state(self) -> SessionState:
        return self._state

    def move(self, new: SessionState, why: str = "") -> SessionState:
        """Move to ``new``; return the state left. Raise ``IllegalTransition`` if forbidden."""
        with self._lock:
            old = self._state
            if new not in TRANSITIONS[old]:
                raise IllegalTransition(self.session_id, str(old), str(new))
            self._state = new
            self._changed.notify_all()
        logger.info("session %s: %s -> %s%s", self.session_id, old, new, f" ({why})" if why else "")
        return old

    def abandon(self, why: str) -> None:
        """Force ``FAILED`` whatever the state: the supervisor's last resort when its own
        handling of this session raised, so that nobody waits forever on a final state."""
        with self._lock:
            old = self._state
            if old.is_final:
                return
            self._state = SessionState.FAILED
            self._changed.notify_all()
        logger.error("session %s: %s -> FAILED (abandoned: %s)", self.session_id, old, why)

    def try_move(self, new: SessionState, why: str = "") -> bool:
        """Move to ``new`` if that is legal now; return whether it moved.

        For the places where two parties may race to end a session (the peer closes while the
        application calls ``end_session``): the first one wins, the second is a no-op.
        """
        try:
            self.move(new, why)
        except IllegalTransition:
            return False
        return True

    def wait_for(self, states: frozenset[SessionState], timeout: float | None) -> SessionState:
        """Block until the state is one of ``states`` or the timeout passes; return the state."""
        self.wait_until(lambda: self._state in states, timeout)
        return self._state

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``predicate()`` holds, re-checking it at every transition; return it."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)
