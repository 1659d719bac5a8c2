"""The supervisor actor: spawns, watches and restarts connectors; owns the session registry.

pykka has no supervision, so this is built here, after Erlang/OTP: every connector reports its
exit (``ConnectorExited``) exactly once, and the supervisor alone decides what follows. The
decision table, in order:

==============================  ===========================================================
the session is ...              then
==============================  ===========================================================
``CLOSING`` (being ended)       ``CLOSED``; the session is forgotten
a re-stream is expected and     ``RECONNECTING``; a new connector redials at once (its
the stream ended ("call         handshake says so: the gateway waits for the call's new
ended")                         stream until the mark's deadline); no budget is spent
the policy says it ends it      ``CLOSING`` -> ``CLOSED``; the reader gets ``Close`` + ``None``
``CONNECTING`` (first dial)     ``FAILED``; ``create_session`` raises ``ConnectionFailed``
policy says restart             ``RECONNECTING``; a new connector dials after the backoff
policy says give up             ``FAILED``; the reader gets ``Close(1011, why)`` + ``None``
==============================  ===========================================================

Which budget the policy applies depends on the exit (see :mod:`actors.policy`): a crash of our
own code counts against the restart intensity (``max_restarts`` within ``within_s``); a lost
connection or a failed redial against the reconnect window (time without a connection). A
redial is spawned with the window's deadline, which bounds its dial as well as its backoff.

Every lifecycle change of every session happens here, on the supervisor's thread, so the
state table of :mod:`actors.lifecycle` is only ever driven from one place; so does every
change to a session's supervision history (:class:`~actors.policy.Supervision`: restarts,
exits, the outage, how long the last connection was up). Blocking work never runs here: a
restart's backoff is waited out by the new connection's dial thread, and stopping a
connector (which joins threads) is done by whoever asked for the session to end.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from .connection import SharedIo
from .connector import Connector, ConnectorExited, ConnectorOpened
from .errors import ConnectionFailed
from .exits import Exit, ExitKind
from .lifecycle import SessionState
from .messages import INTERNAL_ERROR, MAX_CLOSE_CODE, MIN_CLOSE_CODE, PROTOCOL_ERROR, Close
from .policy import RestartPolicy
from .session import SessionRecord
from .wire.constants import STREAM_ENDED

if TYPE_CHECKING:
    from .metrics import ServiceMetrics

__all__ = ["EndSession", "Register", "SessionStatusOf", "Supervisor"]

logger = logging.getLogger(__name__)

_RESTREAM_STEADY_S = 1.0  # a hop up this long before "call ended" is redialled at once
_RESTREAM_RETRY_S = 0.1


@dataclass(frozen=True, slots=True)
class Register:
    """Take charge of a new session and start its first connector."""

    record: SessionRecord


@dataclass(frozen=True, slots=True)
class EndSession:
    """Stop supervising a session: no more restarts. Replies with its live connector, if any."""

    session_id: str


@dataclass(frozen=True, slots=True)
class SessionStatusOf:
    """Ask for a session's status when it has no connector to ask."""

    session_id: str


class Supervisor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        policy: RestartPolicy,
        *,
        shared: SharedIo | None,
        shutdown_timeout_s: float,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.shared = shared
        self.shutdown_timeout_s = shutdown_timeout_s
        self.metrics = metrics
        self.sessions: dict[str, SessionRecord] = {}
        self._current: dict[str, tuple[int, pykka.ActorRef[Any]]] = {}

    def on_start(self) -> None:
        threading.current_thread().name = "supervisor"

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ConnectorExited | ConnectorOpened | Register):
            # A tell: an exception here would kill the supervisor and orphan every session.
            # Contain it to the one session it concerns.
            session_id = (
                message.record.session_id if isinstance(message, Register) else message.session_id
            )
            try:
                if isinstance(message, ConnectorExited):
                    self._exited(message)
                elif isinstance(message, ConnectorOpened):
                    self._opened(message)
                else:
                    self.sessions[session_id] = message.record
                    self._spawn(message.record, generation=1, delay_s=0.0)
            except Exception as exc:
                self._abandon(session_id, exc)
        elif isinstance(message, EndSession):
            return self._end(message.session_id)
        elif isinstance(message, SessionStatusOf):
            record = self.sessions.get(message.session_id)
            return None if record is None else record.status()
        else:
            raise TypeError(f"supervisor got an unexpected message: {type(message).__name__}")
        return None

    def on_stop(self) -> None:
        # The facade ends every session before stopping us; anything left is aborted, bounded.
        for session_id in list(self._current):
            ref = self._current.pop(session_id)[1]
            with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                ref.stop(block=True, timeout=self.shutdown_timeout_s)

    # -- handlers ------------------------------------------------------------------------------

    def _spawn(
        self,
        record: SessionRecord,
        generation: int,
        delay_s: float,
        deadline: float = float("inf"),
    ) -> None:
        ref = Connector.start(
            record,
            self.actor_ref,
            generation=generation,
            shared=self.shared,
            shutdown_timeout_s=self.shutdown_timeout_s,
            dial_delay_s=delay_s,
            dial_deadline=deadline,
            metrics=self.metrics,
        )
        self._current[record.session_id] = (generation, ref)

    def _opened(self, message: ConnectorOpened) -> None:
        record = self.sessions.get(message.session_id)
        if record is None or not self._is_current(message.session_id, message.generation):
            return
        if record.state in (SessionState.CONNECTING, SessionState.RECONNECTING):
            if record.state is SessionState.RECONNECTING and self.metrics is not None:
                self.metrics.reconnected(record.provider)
            record.supervision.opened(time.monotonic())
            record.lifecycle.move(SessionState.OPEN, f"connector {message.generation} connected")

    def _end(self, session_id: str) -> pykka.ActorRef[Any] | None:
        record = self.sessions.get(session_id)
        if record is None:
            return None
        current = self._current.get(session_id)
        if current is None:  # nothing running: forget it now
            if not record.state.is_final:
                record.lifecycle.try_move(SessionState.CLOSING, "end_session")
                record.lifecycle.try_move(SessionState.CLOSED, "end_session")
            self._forget(record)
            return None
        record.lifecycle.try_move(SessionState.CLOSING, "end_session")
        return current[1]

    def _exited(self, message: ConnectorExited) -> None:
        record = self.sessions.get(message.session_id)
        if record is None or not self._is_current(message.session_id, message.generation):
            return
        del self._current[message.session_id]
        exit = message.exit
        history = record.supervision
        now = time.monotonic()
        up_for = history.exited(exit, now)
        policy = history.policy or self.policy
        state = record.state
        restream = record.restream_left(now)
        if state is SessionState.CLOSING:
            record.lifecycle.move(SessionState.CLOSED, str(exit))
            self._forget(record)
        elif restream is not None and _stream_ended(exit) and state is not SessionState.CONNECTING:
            # The call's stream ended for a call update that streams it again (send_dtmf):
            # redial at once; the gateway waits for the new stream until the mark's deadline.
            if state is SessionState.OPEN:
                record.lifecycle.move(SessionState.RECONNECTING, "the call streams again")
            logger.info(
                "session %s: the call's stream ended for a re-stream; redialling (%.1f s left)",
                record.session_id,
                restream,
            )
            # At once after a stream that lasted; a hop that keeps being told "call ended"
            # (the gateway would not re-open the call) redials no faster than 10 times a second.
            delay = 0.0 if up_for >= _RESTREAM_STEADY_S else _RESTREAM_RETRY_S
            self._spawn(record, message.generation + 1, delay, now + restream)
        elif policy.ends_session(exit):
            record.lifecycle.move(SessionState.CLOSING, str(exit))
            record.lifecycle.move(SessionState.CLOSED, str(exit))
            record.inbox.close(_reader_close(exit))
            self._forget(record)
        elif state is SessionState.CONNECTING:
            self._fail(
                record,
                exit,
                ConnectionFailed(
                    record.safe_url, exit.reason or str(exit.kind), session_id=record.session_id
                ),
            )
        else:
            decision = history.decide(policy, exit, now, up_for)
            if decision.restart:
                if self.metrics is not None:
                    self.metrics.restarted(record.provider, exit.kind.name.lower())
                if state is SessionState.OPEN:
                    record.lifecycle.move(SessionState.RECONNECTING, decision.why)
                logger.warning(
                    "session %s: restarting in %.3f s: %s",
                    record.session_id,
                    decision.delay_s,
                    decision.why,
                )
                self._spawn(record, message.generation + 1, decision.delay_s, decision.deadline)
            else:
                self._fail(
                    record,
                    exit,
                    ConnectionFailed(record.safe_url, decision.why, session_id=record.session_id),
                )

    # -- helpers -------------------------------------------------------------------------------

    def _is_current(self, session_id: str, generation: int) -> bool:
        current = self._current.get(session_id)
        return current is not None and current[0] == generation

    def _fail(self, record: SessionRecord, exit: Exit, error: ConnectionFailed) -> None:
        record.supervision.failed(exit, error)
        record.lifecycle.move(SessionState.FAILED, error.reason)
        logger.error("session %s: failed: %s", record.session_id, error.reason)
        if self.metrics is not None:
            self.metrics.session_failed(record.provider)
        record.inbox.close(Close(INTERNAL_ERROR, error.reason))
        self._forget(record)

    def _abandon(self, session_id: str, exc: Exception) -> None:
        """Our own handling of a session failed (a bug): fail that session, keep the rest."""
        logger.exception("session %s: supervisor failed handling it; abandoning it", session_id)
        record = self.sessions.get(session_id)
        if record is None:
            return
        why = f"internal error: {type(exc).__name__}: {exc}"
        record.supervision.abandoned(why)
        record.lifecycle.abandon(why)
        if self.metrics is not None:
            self.metrics.session_failed(record.provider)
        record.inbox.close(Close(INTERNAL_ERROR, "internal error"))
        current = self._current.pop(session_id, None)
        if current is not None:  # its exit report will find it no longer current
            with contextlib.suppress(pykka.ActorDeadError):
                current[1].stop(block=False)
        self._forget(record)

    def _forget(self, record: SessionRecord) -> None:
        """The session is over: count what will never be sent, and drop it from the registry."""
        record.discard_unsent()
        self.sessions.pop(record.session_id, None)


def _stream_ended(exit: Exit) -> bool:
    """Whether the gateway closed the hop because the provider stream had ended."""
    return (
        exit.kind is ExitKind.PEER_CLOSED
        and exit.close_code == 1000
        and exit.reason == STREAM_ENDED
    )


def _reader_close(exit: Exit) -> Close:
    """The ``Close`` a reader gets for an exit that ended its session. A peer's close code
    outside what RFC 6455 defines (it may send any 16 bits) is reported as the protocol error
    it is, rather than refused by ``Close``'s validation here, on the supervisor's thread."""
    code = exit.close_code
    reason = exit.reason or str(exit.kind)
    if not MIN_CLOSE_CODE <= code <= MAX_CLOSE_CODE:
        return Close(PROTOCOL_ERROR, f"the peer closed with an invalid code {code}: {reason}")
    return Close(code, reason)
