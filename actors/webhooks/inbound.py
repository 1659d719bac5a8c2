"""Where a webhook thread hands an inbound call to an application thread: :class:`InboundQueue`.

The webhook thread calls :meth:`InboundQueue.offer` and blocks; an application thread's
:meth:`InboundQueue.accept` (like a socket's ``accept``) takes the call and gets a
:class:`PendingCall`, sets up a session for it and :meth:`PendingCall.answer` s with the
document (TwiML) that streams the call to that session; the webhook thread wakes and sends it.
Nothing else ever reaches the caller as silence:

- past capacity (``max_sessions`` calls waiting, being accepted or live), ``offer`` refuses at
  once with the configured refusal (``refused_busy``);
- a call no thread takes within ``queue_timeout_s`` is refused (``refused_timeout``); one
  taken but not answered by ``queue_timeout_s + answer_timeout_s`` after it arrived is refused
  too, and the late ``answer`` returns ``False`` so that the acceptor ends the session it made
  (an acceptor always gets at least ``answer_timeout_s``).

Twilio gives up on a voice webhook that has not answered within 15 seconds
(https://www.twilio.com/docs/api/errors/31408: "a hard 15-second upper timeout" on call
processing requests), and the caller hears silence meanwhile. The defaults (5 s + 5 s) keep
the worst case at 10 s, inside that bound with room for the network; the two may not add up
to 14 s or more (:class:`InboundSettings` refuses it).

Idempotency per call id: Twilio may deliver the same webhook twice. A repeat while the first
is still waiting waits for the same answer; a repeat afterwards gets the same answer again
(``duplicate``); no repeat ever yields a second session. Once the service says the call has
ended (:meth:`InboundQueue.ended`), a replay of its webhook is refused (``replayed``). Live
calls are remembered for as long as they are live; ended and refused ones for
``recent_ttl_s``, at most ``recent_max`` of them (the oldest are forgotten first). A replay
older than that is treated as a new call: Twilio's signature has no timestamp to tell.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from ..errors import AcceptTimeout, ServiceClosed
from .twilio import InboundCall

__all__ = ["Answer", "Counters", "InboundQueue", "InboundSettings", "PendingCall"]

#: Twilio's limit on a call-processing webhook's answer; the two waits stay below it.
TWILIO_WEBHOOK_LIMIT_S = 15.0
_MARGIN_S = 1.0

COUNTER_NAMES = (
    "accepted",
    "refused_busy",
    "refused_timeout",
    "refused_failed",
    "abandoned",
    "duplicate",
    "replayed",
    "bad_signature",
    "unknown_account",
    "bad_request",
    "too_large",
    "bad_method",
    "not_found",
    "overloaded",
    "reattach",
    "status",
    "status_unknown",
)


class Counters:
    """Thread-safe counters for metrics, by name (:data:`COUNTER_NAMES` start at zero)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """The ``inbound:`` section: capacity, the two waits, and how long call ids are kept."""

    max_sessions: int = 100
    queue_timeout_s: float = 5.0
    answer_timeout_s: float = 5.0
    recent_ttl_s: float = 3600.0
    recent_max: int = 10_000

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if self.queue_timeout_s <= 0 or self.answer_timeout_s <= 0:
            raise ValueError("queue_timeout_s and answer_timeout_s must be positive")
        if self.queue_timeout_s + self.answer_timeout_s > TWILIO_WEBHOOK_LIMIT_S - _MARGIN_S:
            raise ValueError(
                "queue_timeout_s + answer_timeout_s must stay under "
                f"{TWILIO_WEBHOOK_LIMIT_S - _MARGIN_S:g} s: Twilio stops waiting at "
                f"{TWILIO_WEBHOOK_LIMIT_S:g} s"
            )
        if self.recent_ttl_s <= 0 or self.recent_max < 1:
            raise ValueError("recent_ttl_s and recent_max must be positive")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the webhook sends back: HTTP ``status``, the ``body`` (TwiML), the ``outcome`` it is
    counted under, and the session it names (``None`` for a refusal)."""

    status: int
    body: str
    outcome: str
    session_id: str | None = None


class _State(Enum):
    WAITING = "waiting"  # offered, no thread has taken it
    CLAIMED = "claimed"  # accept() took it; the acceptor is setting the session up
    LIVE = "live"  # answered with a stream to a session, not ended yet
    REFUSED = "refused"
    ENDED = "ended"


class _Entry:
    __slots__ = (
        "answer",
        "arrived_at",
        "call",
        "done",
        "expires_at",
        "provider",
        "refusal",
        "state",
    )

    def __init__(self, call: InboundCall, provider: str, arrived_at: float, refusal: str) -> None:
        self.call = call
        self.refusal = refusal
        self.provider = provider
        self.arrived_at = arrived_at
        self.state = _State.WAITING
        self.answer: Answer | None = None
        self.done = threading.Event()
        self.expires_at = 0.0


class PendingCall:
    """A call taken by :meth:`InboundQueue.accept`: answer it with a stream, or refuse it.

    ``arrived_at`` is when its webhook arrived (``time.monotonic()``), ``accepted_at`` when
    ``accept`` took it.
    """

    def __init__(self, queue: InboundQueue, entry: _Entry) -> None:
        self._queue = queue
        self._entry = entry
        self.call = entry.call
        self.provider = entry.provider
        self.arrived_at = entry.arrived_at
        self.accepted_at = time.monotonic()

    def answer(self, document: str, session_id: str) -> bool:
        """Send ``document`` (streaming the call to ``session_id``) as the webhook's answer.

        ``False`` when it is too late (the answer wait passed, the caller hung up, the queue
        closed): the webhook was answered with the refusal, so end the session made for it.
        """
        return self._queue._resolve(
            self._entry, Answer(200, document, "accepted", session_id), _State.LIVE
        )

    def refuse(self) -> None:
        """Answer with the refusal: no session could be made for the call."""
        self._queue._resolve(self._entry, Answer(200, self._entry.refusal, "refused_failed"))


class InboundQueue:
    """The hand-off of inbound calls from webhook threads to accepting threads; thread-safe."""

    def __init__(self, settings: InboundSettings | None = None, counters: Counters | None = None):
        self.settings = settings or InboundSettings()
        self.counters = counters or Counters()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._waiting: list[_Entry] = []  # in arrival order
        self._calls: dict[str, _Entry] = {}  # waiting, claimed, live: never forgotten early
        self._recent: OrderedDict[str, _Entry] = OrderedDict()  # refused, ended: TTL'd
        self._closed = False

    # -- the webhook side ------------------------------------------------------------------

    def offer(
        self,
        call: InboundCall,
        refusal: str,
        *,
        provider: str = "twilio",
        arrived_at: float | None = None,
    ) -> Answer:
        """Block until ``call`` is accepted and answered, or refused; return the answer.

        ``refusal`` is the document a refused call gets (e.g. ``<Reject reason="busy"/>``).
        """
        s = self.settings
        now = time.monotonic()
        with self._lock:  # one critical section: two deliveries at once make one entry
            self._expire(now)
            known = self._calls.get(call.call_id) or self._recent.get(call.call_id)
            if known is not None:
                repeat = self._repeat(known, refusal)
                if repeat is not None:
                    return repeat
            else:
                entry = _Entry(call, provider, now if arrived_at is None else arrived_at, refusal)
                if self._closed or len(self._calls) >= s.max_sessions:
                    self.counters.add("refused_busy")
                    answer = Answer(200, refusal, "refused_busy")
                    self._finish(entry, answer, _State.REFUSED, now)
                    return answer
                self._calls[call.call_id] = entry
                self._waiting.append(entry)
                self._arrived.notify_all()
        if known is not None:  # a repeat of a call still in progress: wait for its answer
            known.done.wait(s.queue_timeout_s + s.answer_timeout_s)
            return known.answer or Answer(200, refusal, "refused_timeout")
        if not entry.done.wait(s.queue_timeout_s):
            with self._lock:
                if entry.state is _State.WAITING:  # nobody took it: refuse it, atomically
                    self._waiting.remove(entry)
                    self.counters.add("refused_timeout")
                    self._finish(entry, Answer(200, refusal, "refused_timeout"), _State.REFUSED)
        if not entry.done.wait(s.answer_timeout_s):  # taken: the acceptor gets a bound too
            self._resolve(entry, Answer(200, refusal, "refused_timeout"))
        return self._answer_of(entry)

    def ended(self, call_id: str) -> bool:
        """The call is over (its session ended, or Twilio said so): free its capacity, refuse
        any replay of its webhook, and refuse it now if it was still waiting. ``False`` for a
        call this queue does not know."""
        with self._lock:
            entry = self._calls.get(call_id) or self._recent.get(call_id)
            if entry is None:
                return False
            if entry.state in (_State.WAITING, _State.CLAIMED):
                if entry.state is _State.WAITING:
                    self._waiting.remove(entry)
                self.counters.add("abandoned")
                self._finish(entry, Answer(200, entry.refusal, "abandoned"), _State.ENDED)
            elif entry.state is not _State.ENDED:
                # The answer stays: a webhook thread just woken by it may not have read it yet.
                answer = entry.answer or Answer(200, entry.refusal, "ended")
                self._finish(entry, answer, _State.ENDED)
            return True

    def session_of(self, call_id: str) -> str | None:
        """The session a live call was answered with, if it is live."""
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None or entry.state is not _State.LIVE or entry.answer is None:
                return None
            return entry.answer.session_id

    # -- the application side --------------------------------------------------------------

    def accept(self, timeout: float | None = None, provider: str | None = None) -> PendingCall:
        """Take the oldest waiting call (of ``provider``, if given), blocking up to ``timeout``
        seconds (``None``: until one comes): :class:`AcceptTimeout` when none does,
        :class:`ServiceClosed` once the queue is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self._closed:
                    raise ServiceClosed()
                for entry in self._waiting:
                    if provider is None or entry.provider == provider:
                        self._waiting.remove(entry)
                        entry.state = _State.CLAIMED
                        return PendingCall(self, entry)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise AcceptTimeout(timeout or 0.0, provider)
                self._arrived.wait(remaining)

    def load(self) -> int:
        """Calls waiting, being accepted or live: what ``max_sessions`` bounds."""
        with self._lock:
            return len(self._calls)

    def close(self) -> None:
        """Refuse every call still waiting or being accepted; wake every ``accept``."""
        with self._lock:
            self._closed = True
            for entry in list(self._calls.values()):
                if entry.state in (_State.WAITING, _State.CLAIMED):
                    self._finish(entry, Answer(200, entry.refusal, "closed"), _State.REFUSED)
            self._waiting.clear()
            self._arrived.notify_all()

    # -- internals (under the lock unless said) --------------------------------------------

    def _repeat(self, entry: _Entry, refusal: str) -> Answer | None:
        """The answer to a repeated webhook, or ``None``: wait for the first one's."""
        if entry.state is _State.ENDED:
            self.counters.add("replayed")
            return Answer(200, refusal, "replayed")
        self.counters.add("duplicate")
        return entry.answer if entry.state in (_State.LIVE, _State.REFUSED) else None

    def _resolve(self, entry: _Entry, answer: Answer, state: _State = _State.REFUSED) -> bool:
        """Settle a claimed call (from any thread, lock not held); ``False`` if already settled."""
        with self._lock:
            if entry.state is not _State.CLAIMED:
                return False
            self.counters.add(answer.outcome)
            self._finish(entry, answer, state)
            return True

    def _finish(
        self, entry: _Entry, answer: Answer, state: _State, now: float | None = None
    ) -> None:
        entry.answer = answer
        entry.state = state
        call_id = entry.call.call_id
        if state in (_State.REFUSED, _State.ENDED):
            self._calls.pop(call_id, None)
            entry.expires_at = (now or time.monotonic()) + self.settings.recent_ttl_s
            self._recent.pop(call_id, None)
            self._recent[call_id] = entry
            while len(self._recent) > self.settings.recent_max:
                self._recent.popitem(last=False)
        entry.done.set()

    def _expire(self, now: float) -> None:
        while self._recent:
            call_id, entry = next(iter(self._recent.items()))
            if entry.expires_at > now:
                break
            del self._recent[call_id]

    @staticmethod
    def _answer_of(entry: _Entry) -> Answer:
        assert entry.answer is not None  # set before done is
        return entry.answer
