"""A Daily call as a session's connection: the only module that uses Daily's SDK (``daily``).

Daily carries audio over WebRTC through its SDK (``daily-python``, the ``daily`` extra), whose
native threads call back into Python. :class:`DailyConnection` has the shape of
:class:`~actors.transport.WebSocketConnection` (the contract of :mod:`actors.connection`), so
a connector owns a Daily call the way it owns a socket. It runs two threads, named with the
session id:

- the **runner** creates a virtual microphone and a call client, joins the room with the
  session's meeting token, then turns the SDK's events into the session's inbound frames (see
  :mod:`actors.codecs.daily`): each remote participant's audio, through an audio renderer per
  participant; ``started`` when the first one is in the room; ``stopped`` when the last one
  left, which ends the connection (``closed by peer``). When the connection ends it leaves the
  call and releases the client, and reports how it ended through ``on_exit``, exactly once.
- the **writer** drains the session's outbox into the virtual microphone, 20 ms at a time.
  Daily's microphone takes audio at real time, so the writer blocks in it, never the actor.

The SDK's callbacks run on its own threads. They do one thing only: put the event on the
runner's queue (``SimpleQueue.put``, no locks of ours, no logging, nothing that could block the
SDK or make Python adopt its threads). Everything else happens on the runner.

Joining is bounded by ``connect_timeout_s``. The SDK itself keeps trying to reach Daily for a
while (about 20 s when there is no route) and cannot be made to let go sooner: releasing a
client whose join is still pending blocks until the SDK gives up. The connection reports its
failure at the deadline all the same, and the runner, on its own thread, waits for the SDK to
give up before it releases the client and ends.

The SDK is loaded lazily (:func:`load_sdk`), so that the package works without the extra; the
embedded Daily emulator hands the provider a stand-in that follows the SDK's interface instead.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .codecs.daily import audio_frame, event_frame
from .connection import BoundedClose, ConnectionContext
from .exits import Exit, ExitKind
from .queues import Keep
from .redaction import redact_url
from .wire.constants import CloseCode

__all__ = ["DailyCall", "DailyConnection", "SdkMissing", "load_sdk"]

logger = logging.getLogger(__name__)

_NORMAL_CLOSURE = int(CloseCode.NORMAL_CLOSURE)
_ABNORMAL = int(CloseCode.ABNORMAL)
_INTERNAL_ERROR = int(CloseCode.INTERNAL_ERROR)
_MAX_REASON = 300
_device_numbers = itertools.count(1)
_init_lock = threading.Lock()
_initialised: weakref.WeakSet[Any] = weakref.WeakSet()  # the SDKs whose Daily.init() has run


class SdkMissing(ImportError):
    """Daily's SDK is not installed (``pip install 'transport-actors[daily]'``)."""


def load_sdk() -> Any:
    """The ``daily`` module of daily-python; :class:`SdkMissing` if it is not installed."""
    try:
        return importlib.import_module("daily")
    except ImportError as exc:
        raise SdkMissing(
            "Daily sessions need Daily's SDK: pip install 'transport-actors[daily]' "
            f"(daily-python; {type(exc).__name__}: {exc})"
        ) from None


def _ensure_initialised(sdk: Any) -> None:
    """``Daily.init()`` once per process and SDK; it is never undone (``Daily.deinit()`` would
    pull the native runtime from under every other call in the process)."""
    with _init_lock:
        if sdk in _initialised:
            return
        sdk.Daily.init()
        _initialised.add(sdk)


@dataclass(frozen=True, slots=True)
class DailyCall:
    """How every connector of one Daily session joins its room: the session's
    :class:`~actors.connection.ConnectionFactory` (the room's URL is ``DialOptions.url``).

    ``sdk`` is daily-python's ``daily`` module, or something with its interface (the
    emulator's stand-in); ``sample_rate`` the rate of the microphone and of the renderers.
    """

    sdk: Any = field(repr=False)
    token: str = field(repr=False)
    user_name: str = "transport-actors"
    sample_rate: int = 16000

    def __call__(self, context: ConnectionContext, /) -> DailyConnection:
        return DailyConnection(context, self)


def _participant_id(participant: object) -> str | None:
    if isinstance(participant, Mapping):
        pid = participant.get("id")
        return pid if isinstance(pid, str) else None
    return None


def _is_local(participant: object) -> bool:
    if isinstance(participant, Mapping):
        info = participant.get("info")
        return isinstance(info, Mapping) and info.get("isLocal") is True
    return False


def _events_class(sdk: Any, put: Callable[[tuple[Any, ...]], None]) -> type:
    """A subclass of the SDK's ``EventHandler`` whose callbacks only queue the event.

    They run on the SDK's threads: no logging, no locks of ours, nothing that can raise.
    """

    def on_participant_joined(self: Any, participant: Any) -> None:
        put(("participant-joined", _participant_id(participant), _is_local(participant)))

    def on_participant_left(self: Any, participant: Any, reason: Any) -> None:
        put(("participant-left", _participant_id(participant), str(reason)))

    def on_call_state_updated(self: Any, state: Any) -> None:
        put(("call-state", str(state)))

    def on_error(self: Any, message: Any) -> None:
        put(("error", str(message)))

    return type(
        "DailySessionEvents",
        (sdk.EventHandler,),
        {
            "on_participant_joined": on_participant_joined,
            "on_participant_left": on_participant_left,
            "on_call_state_updated": on_call_state_updated,
            "on_error": on_error,
        },
    )


def _clip(text: str, token: str) -> str:
    text = text.replace(token, "***") if token else text  # whatever the SDK chose to quote
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _join_failure(error: str) -> str:
    """A sentence for a join the SDK refused, with the SDK's own words after it."""
    if "RoomLookup" in error or "RoomInfoFetchFailed" in error:
        return f"cannot reach Daily to look the room up (no route to Daily?): {error}"
    return f"Daily refused the join: {error}"


class DailyConnection(BoundedClose):
    """One join of one session's Daily room, with its runner and writer threads."""

    def __init__(self, context: ConnectionContext, call: DailyCall) -> None:
        # The context's shared I/O and resend log are a WebSocket's: the SDK keeps its own
        # connection alive and tells us through call-state events when it has lost it.
        self.options = context.dial
        self.call = call
        self.session_id = session_id = context.session_id
        self.safe_url = redact_url(context.dial.url)
        self._outbox = context.outbox
        self._traffic = context.traffic
        self._on_open = context.on_open
        self._on_frame = context.on_frame
        self._on_exit = context.on_exit
        self._dial_delay_s = context.dial_delay_s
        # The SDK's callbacks put here; only the runner takes. SimpleQueue.put is reentrant and
        # never blocks, which is all a foreign thread may be asked to do.
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # The writer's wake-up: the outbox sets it after every put (see actors.queues.Outbox),
        # and so does whoever wants the writer to look at _stopping or _close_request.
        self._wake_writer = threading.Event()
        self._close_request: tuple[int, str] | None = None
        self._exit: Exit | None = None  # the first cause recorded wins
        self._done = threading.Event()
        self._last_error = ""
        self.connected = False
        self._joined = False
        self._started = False  # a first remote participant has been announced (``started``)
        self.local_id: str | None = None
        self.remote: set[str] = set()  # remote participants whose audio we render
        self._runner = threading.Thread(
            target=self._run, name=f"daily-runner-{session_id}", daemon=True
        )
        self._writer: threading.Thread | None = None

    # -- control, from any thread -------------------------------------------------------------

    def start(self) -> None:
        self._runner.start()

    def request_close(
        self,
        code: int = _NORMAL_CLOSURE,
        reason: str = "",
        exit: Exit | None = None,
        *,
        flush: bool = True,
    ) -> None:
        """Leave gracefully and return at once: the writer plays what is queued (unless
        ``flush`` is false: then it stays queued, for the session's next connection), then the
        runner leaves the call. ``exit`` is why, when it is not simply ours."""
        with self._lock:
            if exit is not None:
                self._record_exit(exit)
            if self._close_request is None:
                self._close_request = (code, reason)
            self._record_exit(Exit(ExitKind.NORMAL, code, reason))
            joined = self._writer is not None
        if not joined or not flush:
            # Still joining (nothing to flush), or asked not to: the writer stops between two
            # frames and puts back what it had taken; the runner leaves.
            self.abort()
            return
        self._wake_writer.set()

    def abort(self, exit: Exit | None = None) -> None:
        """Stop now: the writer stops between two frames, the runner leaves the call."""
        with self._lock:
            if exit is not None:
                self._record_exit(exit)
            self._stopping.set()
        self._events.put(("stop",))
        self._wake_writer.set()

    def join(self, timeout: float) -> bool:
        """Wait for both threads to end; return whether they did."""
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        for thread in (self._runner, self._writer):
            if thread is not None and thread.ident is not None and thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in (self._runner, self._writer) if t is not None and t.is_alive()]
        if alive:
            logger.warning(
                "session %s: Daily call threads still running after %.2f s: %s",
                self.session_id,
                timeout,
                alive,
            )
        return not alive

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def exit(self) -> Exit | None:
        """How the connection ended (or is ending); ``None`` while it runs."""
        return self._exit

    # -- the runner ----------------------------------------------------------------------------

    def _record_exit(self, exit: Exit) -> None:
        # Caller holds self._lock.
        if self._exit is None:
            self._exit = exit

    def _run(self) -> None:
        exit = Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, "")
        client: Any = None
        try:
            if self._dial_delay_s > 0 and self._stopping.wait(self._dial_delay_s):
                exit = Exit(ExitKind.NORMAL, None, "stopped before joining")
                return
            sdk = self.call.sdk
            _ensure_initialised(sdk)
            mic_name = f"transport-actors-mic-{next(_device_numbers)}"
            mic = sdk.Daily.create_microphone_device(
                mic_name, sample_rate=self.call.sample_rate, channels=1, non_blocking=False
            )
            put = self._events.put
            client = sdk.CallClient(event_handler=_events_class(sdk, put)())
            client.set_user_name(self.call.user_name)
            # Audio only: subscribe to what participants say, not to their cameras.
            client.update_subscription_profiles(
                {"base": {"camera": "unsubscribed", "microphone": "subscribed"}}
            )
            client.join(
                self.options.url,
                meeting_token=self.call.token,
                client_settings={
                    "inputs": {
                        "camera": False,
                        "microphone": {"isEnabled": True, "settings": {"deviceId": mic_name}},
                    }
                },
                completion=lambda data, error: put(("joined", data, error)),
            )
            early: list[tuple[Any, ...]] = []
            failed = self._await_join(early)
            if failed is not None:
                exit = failed
                return
            if self._stopping.is_set():
                exit = Exit(ExitKind.NORMAL, None, "stopped while joining")
                return
            self._joined = True
            # Those already in the room (a dialled phone that answered, after a restart the
            # whole call) get their renderers before we say we are open, so that nothing
            # they say once the application can write is lost.
            for participant in _remote_participants(client.participants(), self.local_id):
                self._add_remote(client, participant)
            self.connected = True
            self._writer = threading.Thread(
                target=self._run_writer, args=(mic,), name=f"daily-writer-{self.session_id}"
            )
            self._writer.daemon = True
            self._writer.start()
            logger.debug("session %s: joined %s", self.session_id, self.safe_url)
            self._on_open(None)
            exit = self._serve(client, early)
        except Exception as exc:
            logger.exception("session %s: the Daily call failed", self.session_id)
            exit = Exit(ExitKind.CRASH, _INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            self._finish(exit, client)

    def _await_join(self, early: list[tuple[Any, ...]]) -> Exit | None:
        """Wait for the join's outcome until ``connect_timeout_s``; an exit if it failed.
        Events that come before it are kept in ``early`` for after."""
        timeout = self.options.connect_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f"Daily did not confirm the join within {timeout:g} s (is Daily reachable?)"
                if self._last_error:
                    why += f"; the SDK said: {self._last_error}"
                return Exit(ExitKind.HANDSHAKE_FAILED, None, why)
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            kind = event[0]
            if kind == "stop":
                return Exit(ExitKind.NORMAL, None, "stopped while joining")
            if kind == "error":
                self._last_error = _clip(str(event[1]), self.call.token)
            elif kind == "joined":
                data, error = event[1], event[2]
                if error:
                    why = _join_failure(_clip(str(error), self.call.token))
                    return Exit(ExitKind.HANDSHAKE_FAILED, None, why)
                self.local_id = _local_id(data)
                return None
            else:
                early.append(event)

    def _serve(self, client: Any, early: list[tuple[Any, ...]]) -> Exit:
        """Turn the SDK's events into inbound frames until the call ends."""
        traffic, on_frame, token = self._traffic, self._on_frame, self.call.token
        get = self._events.get
        while True:
            event = early.pop(0) if early else get()
            kind = event[0]
            if kind == "audio":
                data: bytes = event[2]
                traffic.frames_in += 1
                traffic.bytes_in += len(data)
                on_frame(audio_frame(event[1], data))
            elif kind == "participant-joined":
                if not event[2]:  # not our own
                    self._add_remote(client, event[1])
            elif kind == "participant-left":
                pid, reason = event[1], event[2]
                if pid not in self.remote:
                    continue
                self.remote.discard(pid)
                logger.info("session %s: participant %s left (%s)", self.session_id, pid, reason)
                if not self.remote:
                    on_frame(event_frame("stopped", reason=reason))
                    return Exit(ExitKind.PEER_CLOSED, _NORMAL_CLOSURE, f"the call ended: {reason}")
            elif kind == "call-state":
                if event[1] == "left":
                    why = "Daily ended our part in the call"
                    if self._last_error:
                        why += f": {self._last_error}"
                    return Exit(ExitKind.CONNECTION_LOST, _ABNORMAL, why)
            elif kind == "error":
                self._last_error = _clip(str(event[1]), token)
                logger.warning("session %s: Daily: %s", self.session_id, self._last_error)
            elif kind == "mark":
                on_frame(event_frame("mark", name=event[1]))
            elif kind in ("flushed", "stop"):
                return Exit(ExitKind.NORMAL, None, "left the call")

    def _add_remote(self, client: Any, pid: str | None) -> None:
        """Render a remote participant's audio; the first one starts the call."""
        if pid is None or pid == self.local_id or pid in self.remote:
            return
        self.remote.add(pid)
        client.set_audio_renderer(
            pid,
            self._on_audio,
            audio_source="microphone",
            sample_rate=self.call.sample_rate,
            callback_interval_ms=20,
        )
        logger.info("session %s: participant %s joined", self.session_id, pid)
        if not self._started:
            self._started = True
            self._on_frame(event_frame("started", participant=pid))

    def _on_audio(self, participant_id: Any, audio: Any, source: Any) -> None:
        # The SDK's audio thread, every 20 ms per participant: queue it, nothing else.
        self._events.put(("audio", str(participant_id), audio.audio_frames))

    def _finish(self, exit: Exit, client: Any) -> None:
        """The runner's last act: leave, report the exit exactly once, release the client."""
        with self._lock:
            self._record_exit(exit)
            final = self._exit
            self._stopping.set()
        assert final is not None
        self.connected = False
        self._wake_writer.set()
        writer = self._writer
        if writer is not None:
            writer.join(self.options.close_timeout_s)
        if client is not None and self._joined:
            left = threading.Event()
            with contextlib.suppress(Exception):  # already left (ejected, room deleted)
                client.leave(completion=lambda error: left.set())
                if not left.wait(self.options.close_timeout_s):
                    logger.warning("session %s: Daily did not confirm leaving", self.session_id)
        self._done.set()
        logger.info("session %s: Daily call %s ended: %s", self.session_id, self.safe_url, final)
        self._on_exit(final)
        if client is not None:
            # Blocks while the SDK still works on a join (see the module docstring): this
            # thread waits for it, nobody else does.
            try:
                client.release()
            except Exception:
                logger.exception("session %s: releasing the Daily client failed", self.session_id)

    # -- the writer ----------------------------------------------------------------------------

    def _run_writer(self, mic: Any) -> None:
        outbox, traffic, events = self._outbox, self._traffic, self._events
        step = self.call.sample_rate // 50 * 2  # 20 ms of PCM16
        stopping, wake = self._stopping, self._wake_writer
        outbox.attach(wake.set)
        try:
            while not stopping.is_set():
                wake.wait()
                wake.clear()  # before taking: a put after the take wakes us again
                batch = outbox.take()
                for i, item in enumerate(batch):
                    if stopping.is_set():
                        outbox.requeue_front(batch[i:])
                        return
                    frame = item.frame if isinstance(item, Keep) else item
                    if isinstance(frame, str):
                        self._command(frame)
                        continue
                    traffic.frames_out += 1
                    traffic.bytes_out += len(frame)
                    for start in range(0, len(frame), step):
                        if stopping.is_set():
                            break  # the rest of this frame is not played: stopping anyway
                        mic.write_frames(frame[start : start + step])  # blocks: real time
                if self._close_request is not None and len(outbox) == 0:
                    events.put(("flushed",))
                    return
        except Exception as exc:
            logger.exception("session %s: writing to the Daily microphone failed", self.session_id)
            self.abort(Exit(ExitKind.CRASH, _INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            outbox.detach(wake.set)

    def _command(self, frame: str) -> None:
        command = json.loads(frame)
        if isinstance(command, dict) and isinstance(command.get("mark"), str):
            # Everything written before it has been played into the room (the microphone
            # takes audio at real time): the runner reports the mark.
            self._events.put(("mark", command["mark"]))


def _local_id(data: object) -> str | None:
    if isinstance(data, Mapping):
        participants = data.get("participants")
        if isinstance(participants, Mapping):
            return _participant_id(participants.get("local"))
    return None


def _remote_participants(participants: object, local_id: str | None) -> list[str]:
    """The ids of the remote participants in ``CallClient.participants()``."""
    found: list[str] = []
    if isinstance(participants, Mapping):
        for key, participant in participants.items():
            pid = _participant_id(participant) or (key if isinstance(key, str) else None)
            if key == "local" or pid is None or pid == local_id or _is_local(participant):
                continue
            found.append(pid)
    return found
