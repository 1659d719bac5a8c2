"""What every emulated call does, from its creation to its end: :class:`CallFlows`.

An **outbound** call (created over the API) is ``initiated``, then its number answers per its
behaviour (:mod:`actors.emulator.numbers`): it rings (``ringing``) and is answered
(``in-progress``), or ends ``busy``, ``no-answer`` (rang past its ``Timeout``) or ``failed``.
When answered, machine detection runs if the call asked for it (``MachineDetection``): in the
foreground by default (the TwiML waits for the verdict, and ``AnsweredBy`` is on the
``answered`` callback and on the TwiML request), or with ``AsyncAmd=true`` in the background
(the TwiML runs at once; the verdict goes to ``AsyncAmdStatusCallback``). Then the call obeys
its ``Twiml``, or the TwiML its ``Url`` answers.

An **inbound** call (placed by the emulator, :mod:`actors.emulator.inbound`) asks its voice URL
with ``CallStatus=ringing`` and obeys the answer: a first ``<Reject>`` ends it unanswered,
anything else answers it. A voice URL that fails (no answer within the webhook timeout, an
HTTP error, TwiML that cannot be parsed) ends an unanswered inbound call ``failed``, an
answered call ``completed`` (Twilio says "an application error has occurred" and hangs up);
the failure is in ``call.errors``.

The verbs are :mod:`actors.emulator.twiml`'s. A REST update with ``Twiml`` or ``Url`` makes
the call leave the verb it is in (a stream gets ``stop`` and is closed) and obey the new
document. Whatever the call does is recorded on it (``documents``, ``transfers``,
``dtmf_played``, ``errors``, ``answered_by``).

The status callbacks, machine detection's and the streams' callbacks are
:mod:`actors.emulator.progress`'s; they go out from
:class:`~actors.emulator.callbacks.CallbackSender`'s lanes, in order per call.

All calls are tasks on one asyncio loop on one thread (``emulator-calls``); webhooks are
fetched on the sender's lanes, never on this loop or on the API's request threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import urljoin

from ..config import EmulatorConfig
from .callbacks import CallbackSender
from .inbound import request_fields
from .loop_thread import LoopThread
from .media import MediaDialer
from .numbers import Behaviour, behaviour_for
from .progress import Progress
from .rest import EmulatedCall, TwilioApiServer
from .twiml import (
    Action,
    Connect,
    Dial,
    Hangup,
    Pause,
    Play,
    Redirect,
    Reject,
    Say,
    StreamTarget,
    TwiMLError,
    Unsupported,
    parse_twiml,
)

__all__ = ["CallFlows"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60  # Twilio's Timeout when a create gives none
AMD_S = 0.1  # how long the emulated machine detection takes
#: How long ``<Play digits>`` takes per key: a short tone each; ``w`` and ``W`` are
#: Twilio's half-second and one-second pauses.
KEY_S = 0.05
PAUSE_S = {"w": 0.5, "W": 1.0}
_MAX_DOCUMENTS = 100  # TwiML documents one call may fetch (a <Redirect> loop ends there)
_DONE_KEPT = 10_000


class _Flow:
    """One call's progress on the loop: what interrupts it, and what it is in."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()  # an update arrived
        self.pending: tuple[str, str, str] | None = None  # ("twiml", doc, "") | ("url", u, m)
        self.leaving = False  # we asked the stream to end: go on with the new document
        self.in_stream = False


_Body = Callable[[_Flow], Coroutine[Any, Any, None]]


class CallFlows(LoopThread):
    """Runs the emulated calls of ``api``, playing their media with ``media``."""

    def __init__(
        self,
        config: EmulatorConfig,
        api: TwilioApiServer,
        media: MediaDialer,
        sender: CallbackSender,
        *,
        amd_s: float = AMD_S,
    ) -> None:
        super().__init__("emulator-calls", "emulator call loop")
        self.config = config
        self.api = api
        self.media = media
        self.sender = sender
        self.amd_s = amd_s
        self._flows: dict[str, _Flow] = {}  # loop thread only
        self._side: set[asyncio.Task[None]] = set()  # background machine detection
        self.progress = Progress(sender)
        self._done: OrderedDict[str, threading.Event] = OrderedDict()
        self._done_lock = threading.Lock()

    def done(self, sid: str) -> threading.Event:
        """Set once call ``sid``'s flow is over (it has ended, and its TwiML stopped)."""
        with self._done_lock:
            event = self._done.get(sid)
            if event is None:
                event = self._done[sid] = threading.Event()
                while len(self._done) > _DONE_KEPT:
                    self._done.popitem(last=False)
            return event

    # -- the API's hooks (its threads) --------------------------------------------------------

    def created(self, call: EmulatedCall) -> None:
        """An outbound call was created: it is initiated, and rings unless it cannot."""
        behaviour = behaviour_for(self.config.behaviours, call.to)
        self.done(call.sid)
        self.api.mutate(call.sid, lambda c: self.progress.event(c, "initiated"))
        if behaviour.kind in ("busy", "failed"):
            self._spawn(call.sid, self._outbound(call.sid, behaviour))
            return
        self.api.transition(call.sid, "ringing")
        # Picked up at once, with no detection to wait for: in progress before the API's
        # caller hears back, as the emulator always did.
        if self._ring_s(behaviour) == 0 and behaviour.answers and call.machine_detection is None:
            self.api.transition(call.sid, "in-progress")
        self._spawn(call.sid, self._outbound(call.sid, behaviour))

    def inbound(self, call: EmulatedCall) -> None:
        """The emulator placed ``call`` to its voice URL: ask it, and obey."""
        self.done(call.sid)
        self.api.mutate(call.sid, lambda c: self.progress.event(c, "ringing"))
        self._spawn(call.sid, self._inbound(call.sid))

    def updated(self, call: EmulatedCall) -> None:
        """New ``Twiml`` or ``Url`` on ``call``: leave the current verb for it."""
        snapshot = self.api.mutate(call.sid, lambda c: None)
        if snapshot is None:
            return
        twiml, url, method = snapshot.twiml, snapshot.url, snapshot.method
        pending = ("twiml", twiml, "") if twiml else ("url", url or "", method)
        self._soon(functools.partial(self._interrupt, call.sid, pending))

    def hung_up(self, call: EmulatedCall) -> None:
        """The call was ended over the API: stop its flow and its media."""
        self.media.hang_up(call.sid)
        self._soon(functools.partial(self._cancel, call.sid))

    def status_changed(self, call: EmulatedCall) -> None:
        """The API changed ``call``'s status (its lock held): queue the status callback."""
        self.progress.status_changed(call)

    # -- the loop ------------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        tasks = [flow.task for flow in self._flows.values() if flow.task is not None]
        tasks += list(self._side)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, sid: str, body: _Body) -> None:
        self._soon(functools.partial(self._start_flow, sid, body))

    def _start_flow(self, sid: str, body: _Body) -> None:
        flow = _Flow(sid)
        self._flows[sid] = flow
        flow.task = asyncio.get_running_loop().create_task(self._guard(flow, body(flow)))

    async def _guard(self, flow: _Flow, body: Coroutine[Any, Any, None]) -> None:
        try:
            await body
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("emulator: call %s failed", flow.sid)
            self._finish(flow.sid, "failed")
        finally:
            self._flows.pop(flow.sid, None)
            self.done(flow.sid).set()

    def _interrupt(self, sid: str, pending: tuple[str, str, str]) -> None:
        flow = self._flows.get(sid)
        if flow is None:
            return
        flow.pending = pending
        flow.wake.set()
        if flow.in_stream:
            flow.leaving = True
            self.media.hang_up(sid)

    def _cancel(self, sid: str) -> None:
        flow = self._flows.get(sid)
        if flow is not None and flow.task is not None:
            flow.task.cancel()

    def _finish(self, sid: str, status: str) -> None:
        if self.api.transition(sid, status) is not None:
            logger.info("emulator: call %s ended %s", sid, status)

    def _note(self, sid: str, change: Callable[[EmulatedCall], None]) -> None:
        self.api.mutate(sid, change)

    def _document(self, sid: str, document: str) -> None:
        self.api.mutate(sid, lambda c: c.documents.append(document))

    def _stream_event(self, sid: str, stream: StreamTarget, event: str, error: str = "") -> None:
        media = self.media.media(sid)
        call = self.api.mutate(sid, lambda c: None)
        if media is not None and call is not None:
            self.progress.stream(call, stream, media.stream_sid, event, error)

    def _ring_s(self, behaviour: Behaviour) -> float:
        return self.config.answer_after_s if behaviour.ring_s is None else behaviour.ring_s

    # -- the flows ----------------------------------------------------------------------------

    def _outbound(self, sid: str, behaviour: Behaviour) -> _Body:
        async def flow_body(flow: _Flow) -> None:
            call = self.api.call(sid)
            ring = self._ring_s(behaviour)
            limit = float(call.timeout_s if call.timeout_s is not None else DEFAULT_TIMEOUT_S)
            if behaviour.kind in ("busy", "failed"):
                await asyncio.sleep(ring)
                return self._finish(sid, behaviour.kind)
            if behaviour.kind == "no-answer" or ring > limit:
                await asyncio.sleep(limit)
                return self._finish(sid, "no-answer")
            await asyncio.sleep(ring)
            if call.machine_detection is not None:
                verdict = behaviour.answered_by(call.machine_detection)
                if call.async_amd:
                    side = asyncio.get_running_loop().create_task(self._async_amd(sid, verdict))
                    self._side.add(side)
                    side.add_done_callback(self._side.discard)
                else:
                    await asyncio.sleep(self.amd_s)
                    self._note(sid, lambda c: setattr(c, "answered_by", verdict))
            self.api.transition(sid, "in-progress")
            actions: Iterable[Action] | None = ()
            # Updated while it rang (flow.pending): the new document replaces the first.
            if flow.pending is None and call.twiml:
                self._document(sid, call.twiml)
                actions = self._parsed(sid, call.twiml)
            elif flow.pending is None:
                actions = await self._fetch(sid, call.url or "", call.method)
            await self._obey(flow, actions or (), call.url or "")

        return flow_body

    async def _async_amd(self, sid: str, verdict: str | None) -> None:
        await asyncio.sleep(self.amd_s)
        call = self.api.mutate(sid, lambda c: setattr(c, "answered_by", verdict))
        if call is not None and not call.ended:
            self.progress.amd(call, verdict, int(self.amd_s * 1000))

    def _inbound(self, sid: str) -> _Body:
        async def flow_body(flow: _Flow) -> None:
            call = self.api.call(sid)
            actions = await self._fetch(sid, call.url or "", call.method)
            if actions is None:
                return self._finish(sid, "failed")
            await self._obey(flow, actions, call.url or "")

        return flow_body

    async def _fetch(self, sid: str, url: str, method: str) -> tuple[Action, ...] | None:
        """The TwiML ``url`` answers (recorded on the call), or ``None`` (error recorded)."""
        call = self.api.mutate(sid, lambda c: None)
        if call is None:
            return None
        if len(call.documents) >= _MAX_DOCUMENTS:
            self._note(sid, lambda c: c.errors.append(f"more than {_MAX_DOCUMENTS} documents"))
            return None
        fields: dict[str, str] = {}
        self.api.mutate(sid, lambda c: fields.update(request_fields(c)))  # a consistent copy
        future = self.sender.fetch(sid, call.account_sid, url, fields, method)
        result = await asyncio.wrap_future(future)
        if not result.ok:
            why = f"{url}: {result.error or f'HTTP {result.status}'}"
            self._note(sid, lambda c: c.errors.append(why))
            return None
        self._document(sid, result.body)
        return self._parsed(sid, result.body)

    def _parsed(self, sid: str, document: str) -> tuple[Action, ...] | None:
        try:
            return parse_twiml(document)
        except TwiMLError as exc:
            why = f"TwiML refused: {exc}"
            self._note(sid, lambda c: c.errors.append(why))
            logger.warning("emulator: call %s: %s", sid, why)
            return None

    def _answer(self, sid: str) -> None:
        call = self.api.mutate(sid, lambda c: None)
        if call is not None and call.status == "ringing":
            self.api.transition(sid, "in-progress")

    async def _obey(self, flow: _Flow, actions: Iterable[Action], base: str) -> None:
        """Run ``actions``, then whatever updates and redirects bring; end the call after."""
        sid = flow.sid
        queue: deque[Action] = deque(actions)
        first = True
        while True:
            if flow.pending is not None:
                kind, value, method = flow.pending
                flow.pending = None
                flow.wake.clear()
                if kind == "twiml":
                    self._document(sid, value)
                    queue = deque(self._parsed(sid, value) or ())
                else:
                    queue = deque(await self._fetch(sid, value, method) or ())
                    base = value
                continue
            if not queue:
                break
            action = queue.popleft()
            if isinstance(action, Reject):
                status = action.status if first and self._ringing(sid) else "completed"
                return self._finish(sid, status)
            if isinstance(action, Hangup):
                break
            first = False
            if not isinstance(action, Redirect):
                self._answer(sid)
            follow = await self._verb(flow, action)
            if follow == "hung-up":
                break
            if isinstance(follow, tuple):  # a URL to fetch instead of the rest
                url, method = follow
                base = urljoin(base, url)
                queue = deque(await self._fetch(sid, base, method) or ())
        self._finish(sid, "completed")

    def _ringing(self, sid: str) -> bool:
        call = self.api.mutate(sid, lambda c: None)
        return call is not None and call.status == "ringing"

    async def _verb(self, flow: _Flow, action: Action) -> tuple[str, str] | str | None:
        """Do one verb: ``None`` (go on), ``"hung-up"``, or ``(url, method)`` to obey next."""
        sid = flow.sid
        if isinstance(action, Connect):
            how = await self._connect(flow, action.stream)
            if how == "hung-up":
                return how
            if how == "ended" and action.action is not None:
                return action.action, action.method
        elif isinstance(action, Say):
            logger.info("emulator: call %s <Say> %.60r (not spoken)", sid, action.text)
        elif isinstance(action, Play):
            if action.digits is not None:
                digits = action.digits
                logger.info("emulator: call %s <Play digits=%r>", sid, digits)
                try:  # the keys take their time to play, unless an update cuts them short
                    async with asyncio.timeout(sum(PAUSE_S.get(k, KEY_S) for k in digits)):
                        await flow.wake.wait()
                    logger.info("emulator: call %s: <Play digits> cut short", sid)
                except TimeoutError:
                    self._note(sid, lambda c: c.dtmf_played.append(digits))
            else:
                logger.info("emulator: call %s <Play> %.80s (not played)", sid, action.url)
        elif isinstance(action, Pause):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(action.length_s):
                    await flow.wake.wait()
        elif isinstance(action, Redirect):
            return action.url, action.method
        elif isinstance(action, Dial):
            self._note(sid, lambda c: c.transfers.append(action))
            targets = ", ".join(f"{t.kind} {t.target}" for t in action.targets)
            logger.info("emulator: call %s <Dial> %s (recorded as a transfer)", sid, targets)
            if action.action is not None:
                return action.action, action.method
        elif isinstance(action, Unsupported):
            logger.info("emulator: call %s: <%s> is not emulated; skipped", sid, action.verb)
        return None

    async def _connect(self, flow: _Flow, stream: StreamTarget) -> str:
        """Stream the call until the stream ends: ``"ended"`` (the far side closed it, or it
        could not be dialled: the next verb), ``"left"`` (an update), ``"hung-up"``."""
        sid = flow.sid
        call = self.api.call(sid)
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()

        def on_end() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ended.set)

        party = call.from_ if call.direction == "inbound" else call.to
        flow.in_stream = True
        media = None
        try:
            media = self.media.dial(
                call_sid=sid,
                account_sid=call.account_sid,
                to=party,
                url=stream.url,
                parameters=stream.parameters,
                on_end=on_end,
                answer_after_s=0.0,
                on_start=lambda: self._stream_event(sid, stream, "stream-started"),
            )
            await ended.wait()
        except asyncio.CancelledError:  # hung up over the API
            self.media.hang_up(sid)
            if media is not None and media.started.is_set():
                self._stream_event(sid, stream, "stream-stopped")
            raise
        finally:
            flow.in_stream = False
        if media.started.is_set():
            self._stream_event(sid, stream, "stream-stopped")
        elif media.errors:  # it could not be dialled: Twilio says so, then goes on
            self._stream_event(sid, stream, "stream-error", media.errors[-1])
        if flow.leaving:
            flow.leaving = False
            return "left"
        return "hung-up" if media.hung_up else "ended"
