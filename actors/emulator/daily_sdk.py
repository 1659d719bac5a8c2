"""A stand-in of Daily's Python SDK (``daily-python``) that joins the emulator's rooms.

A room made by :class:`~actors.emulator.daily.DailyApiServer` has no counterpart at Daily, so
the real SDK could not join it. :class:`EmulatedDaily` follows the part of the SDK's interface
that :mod:`actors.dailycall` uses, names and signatures as in ``daily/__init__.pyi``
(``Daily.init``, ``Daily.create_microphone_device``, ``CallClient.join/leave/release/
set_audio_renderer/update_subscription_profiles/participants``, ``EventHandler`` callbacks,
``VirtualMicrophoneDevice.write_frames``, ``AudioData``), and plays the rest of the room:

- a dial-out (``POST /rooms/{name}/dialOut/start``) puts a phone in the room at once, as if it
  answered; stopping the dial-out hangs it up; deleting the room ejects everyone;
- a remote participant echoes what it hears (what the session writes to its microphone comes
  back through the session's renderer for that participant), and keeps it (:meth:`heard`);
- :meth:`EmulatedDaily.add_participant`, :meth:`remove_participant` and :meth:`say` let a test
  or a demo play other participants.

Like the SDK, it calls back from a thread of its own (one per emulator), never from the
caller's. Unlike the SDK it does not pace the microphone at real time, and renders audio only
when a participant speaks (the SDK renders every 20 ms, silence included).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, cast

from ..audio import resample
from ..startable import Startable
from .daily import DailyApiServer, DialOutSession, EmulatedRoom

__all__ = [
    "AudioData",
    "CallClient",
    "DailyEmulator",
    "EmulatedDaily",
    "EventHandler",
    "VirtualMicrophoneDevice",
    "VirtualSpeakerDevice",
]

logger = logging.getLogger(__name__)

_HEARD_KEPT = 10 << 20  # bytes of audio kept per emulated participant (5 min at 16 kHz)


class AudioData:
    """What an audio renderer is given, as the SDK's ``AudioData``: mono PCM16."""

    def __init__(self, frames: bytes, sample_rate: int) -> None:
        self._frames = frames
        self._rate = sample_rate

    @property
    def bits_per_sample(self) -> int:
        return 16

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def num_channels(self) -> int:
        return 1

    @property
    def num_audio_frames(self) -> int:
        return len(self._frames) // 2

    @property
    def audio_frames(self) -> bytes:
        return self._frames


class EventHandler:
    """The SDK's ``EventHandler``: every callback does nothing unless overridden."""

    def on_participant_joined(self, participant: Mapping[str, Any]) -> None: ...

    def on_participant_left(self, participant: Mapping[str, Any], reason: str) -> None: ...

    def on_participant_updated(self, participant: Mapping[str, Any]) -> None: ...

    def on_call_state_updated(self, state: str) -> None: ...

    def on_error(self, message: str) -> None: ...


class _VirtualDevice:
    """What the SDK's virtual devices have in common: a name, a sample rate, channels."""

    def __init__(self, name: str, sample_rate: int, channels: int) -> None:
        self._name = name
        self._rate = sample_rate
        self._channels = channels

    @property
    def name(self) -> str:
        return self._name

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def channels(self) -> int:
        return self._channels


class VirtualMicrophoneDevice(_VirtualDevice):
    """The SDK's virtual microphone: what is written goes into the room of every client that
    joined with it (``client_settings.inputs.microphone.settings.deviceId``)."""

    def __init__(self, sdk: EmulatedDaily, name: str, sample_rate: int, channels: int) -> None:
        super().__init__(name, sample_rate, channels)
        self._sdk = sdk

    def write_frames(self, frames: bytes, completion: Callable[[int], None] | None = None) -> int:
        count = len(frames) // (2 * self._channels)
        self._sdk._spoken(self, bytes(frames))
        if completion is not None:
            self._sdk._post(completion, count)
        return count


class VirtualSpeakerDevice(_VirtualDevice):
    """The SDK's virtual speaker (unused by sessions, which render per participant)."""

    def read_frames(
        self, num_frames: int, completion: Callable[[bytes], None] | None = None
    ) -> bytes:
        return bytes(2 * self._channels * num_frames)


@dataclass
class _Remote:
    """A participant the emulator plays (a dialled phone, a guest)."""

    id: str
    user_name: str
    echo: bool
    dial_out: str | None = None
    heard: bytearray = field(default_factory=bytearray)

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "info": {"isLocal": False, "userName": self.user_name}}


class CallClient:
    """The SDK's ``CallClient``, in an emulated room (see :class:`EmulatedDaily`)."""

    _sdk: EmulatedDaily  # set on the subclass each EmulatedDaily makes

    def __init__(self, event_handler: EventHandler | None = None) -> None:
        self._handler = event_handler if event_handler is not None else EventHandler()
        self._released = False
        self._state = "initialized"
        self._room: str | None = None
        self._local_id = str(uuid.uuid4())
        self._user_name = "guest"
        self._mic: str | None = None
        self._renderers: dict[str, tuple[Callable[[str, AudioData, str], None], int]] = {}

    def _check(self) -> None:
        if self._released:
            raise RuntimeError("this object has already been released")

    def set_user_name(self, user_name: str) -> None:
        self._check()
        self._user_name = user_name

    def update_subscription_profiles(
        self,
        profile_settings: Mapping[str, Any],
        completion: Callable[[str | None], None] | None = None,
    ) -> None:
        self._check()  # every participant's audio is always there to render
        if completion is not None:
            self._sdk._post(completion, None)

    def update_subscriptions(
        self,
        participant_settings: Mapping[str, Any] | None = None,
        profile_settings: Mapping[str, Any] | None = None,
        completion: Callable[[str | None], None] | None = None,
    ) -> None:
        self._check()
        if completion is not None:
            self._sdk._post(completion, None)

    def set_audio_renderer(  # noqa: PLR0917 (the SDK's signature)
        self,
        participant_id: str,
        callback: Callable[[str, AudioData, str], None],
        audio_source: str = "microphone",
        sample_rate: int = 16000,
        callback_interval_ms: int = 20,
        logging_interval_ms: int = 10000,
    ) -> None:
        self._check()
        with self._sdk._lock:
            self._renderers[participant_id] = (callback, sample_rate)

    def join(
        self,
        meeting_url: str,
        meeting_token: str | None = None,
        client_settings: Mapping[str, Any] | None = None,
        completion: Callable[[Mapping[str, Any] | None, str | None], None] | None = None,
    ) -> None:
        self._check()
        self._mic = _microphone_of(client_settings)
        self._sdk._join(self, meeting_url, meeting_token, completion)

    def leave(self, completion: Callable[[str | None], None] | None = None) -> None:
        self._check()
        self._sdk._leave(self, "left", completion)

    def release(self) -> None:
        if not self._released:
            self._sdk._leave(self, "left", None)
            self._released = True

    def participants(self) -> Mapping[str, Any]:
        self._check()
        return self._sdk._participants(self)


def _microphone_of(settings: Mapping[str, Any] | None) -> str | None:
    try:
        name = settings["inputs"]["microphone"]["settings"]["deviceId"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


class _Statics:
    """The SDK's ``Daily`` class of static methods, bound to one emulator."""

    def __init__(self, sdk: EmulatedDaily) -> None:
        self._sdk = sdk

    def init(self, worker_threads: int = 2, log_level: Any = None) -> None:
        """Nothing to start: the emulator's dispatcher runs while the emulator does."""

    def deinit(self) -> None: ...

    def create_microphone_device(
        self,
        device_name: str,
        sample_rate: int = 16000,
        channels: int = 1,
        non_blocking: bool = False,
    ) -> VirtualMicrophoneDevice:
        mic = VirtualMicrophoneDevice(self._sdk, device_name, sample_rate, channels)
        with self._sdk._lock:
            self._sdk._mics[device_name] = mic
        return mic

    def create_speaker_device(
        self,
        device_name: str,
        sample_rate: int = 16000,
        channels: int = 1,
        non_blocking: bool = False,
    ) -> VirtualSpeakerDevice:
        return VirtualSpeakerDevice(device_name, sample_rate, channels)

    def select_speaker_device(self, device_name: str) -> None: ...


class EmulatedDaily(Startable):
    """The SDK stand-in of one emulated Daily: ``.Daily``, ``.CallClient``, ``.EventHandler``
    and ``.AudioData`` as the ``daily`` module has them, and controls for the far end.

    ``start()`` starts the thread that runs every callback; ``stop()`` ends it (bounded).
    """

    EventHandler = EventHandler
    AudioData = AudioData

    def __init__(self, server: DailyApiServer) -> None:
        self.server = server
        self.Daily = _Statics(self)
        # A CallClient class of this emulator's own, so that CallClient(event_handler=...) has
        # exactly the SDK's signature.
        self.CallClient = cast(type[CallClient], type("CallClient", (CallClient,), {"_sdk": self}))
        self._lock = threading.RLock()
        self._mics: dict[str, VirtualMicrophoneDevice] = {}
        self._clients: dict[str, list[CallClient]] = {}  # room name -> joined clients
        self._remotes: dict[str, dict[str, _Remote]] = {}  # room name -> participant id -> it
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        server.on_dial_out = self._dialled
        server.on_dial_out_stop = self._dial_out_stopped
        server.on_room_deleted = self._room_deleted

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._dispatch, name="daily-emulator-sdk", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        thread = self._thread
        if thread is not None:
            self._calls.put(None)
            thread.join(timeout)
            self._thread = None

    def _dispatch(self) -> None:
        while (call := self._calls.get()) is not None:
            function, args = call
            try:
                function(*args)
            except Exception:
                logger.exception("emulated daily: a callback failed")

    def _post(self, function: Callable[..., Any], *args: Any) -> None:
        self._calls.put((function, args))

    # -- the far end --------------------------------------------------------------------------

    def add_participant(
        self,
        room: str,
        user_name: str = "guest",
        *,
        echo: bool = True,
        dial_out: str | None = None,
    ) -> str:
        """Put a participant in ``room`` (echoing what it hears unless ``echo=False``); every
        client in the room is told. Returns its id."""
        remote = _Remote(str(uuid.uuid4()), user_name, echo, dial_out)
        with self._lock:
            self._remotes.setdefault(room, {})[remote.id] = remote
            clients = list(self._clients.get(room, ()))
        for client in clients:
            self._post(client._handler.on_participant_joined, remote.resource())
        logger.info("emulated daily room %s: %s joined", room, user_name)
        return remote.id

    def remove_participant(self, room: str, participant_id: str, reason: str = "leftCall") -> None:
        """Take a participant out of ``room``; every client in the room is told."""
        with self._lock:
            remote = self._remotes.get(room, {}).pop(participant_id, None)
            clients = list(self._clients.get(room, ()))
        if remote is None:
            return
        for client in clients:
            self._post(client._handler.on_participant_left, remote.resource(), reason)
        logger.info("emulated daily room %s: %s left (%s)", room, remote.user_name, reason)

    def say(self, room: str, participant_id: str, pcm: bytes, sample_rate: int) -> None:
        """``participant_id`` says ``pcm`` (PCM16 at ``sample_rate``) to the room."""
        with self._lock:
            clients = list(self._clients.get(room, ()))
        for client in clients:
            self._render(client, participant_id, pcm, sample_rate)

    def participants_in(self, room: str) -> list[str]:
        """The ids of the participants the emulator plays in ``room``."""
        with self._lock:
            return list(self._remotes.get(room, {}))

    def clients_in(self, room: str) -> int:
        """How many clients (sessions) have joined ``room`` and not left it."""
        with self._lock:
            return len(self._clients.get(room, ()))

    def heard(self, room: str, participant_id: str) -> bytes:
        """Everything ``participant_id`` heard in ``room`` (PCM16 at the microphones' rate)."""
        with self._lock:
            remote = self._remotes.get(room, {}).get(participant_id)
            return bytes(remote.heard) if remote is not None else b""

    def _dialled(self, session: DialOutSession) -> None:
        self.add_participant(session.room, session.to, dial_out=session.session_id)

    def _dial_out_stopped(self, session: DialOutSession) -> None:
        with self._lock:
            found = [
                r.id
                for r in self._remotes.get(session.room, {}).values()
                if r.dial_out == session.session_id
            ]
        for participant_id in found:
            self.remove_participant(session.room, participant_id, "hangup")

    def _room_deleted(self, room: EmulatedRoom) -> None:
        with self._lock:
            self._remotes.pop(room.name, None)
            clients = self._clients.pop(room.name, [])
        for client in clients:
            client._state = "left"
            client._room = None
            self._post(client._handler.on_error, "the room was deleted")
            self._post(client._handler.on_call_state_updated, "left")

    # -- what CallClient and the microphone do -------------------------------------------------

    def _join(
        self,
        client: CallClient,
        url: str,
        token: str | None,
        completion: Callable[[Mapping[str, Any] | None, str | None], None] | None,
    ) -> None:
        def fail(why: str) -> None:
            self._post(client._handler.on_error, why)
            self._post(client._handler.on_call_state_updated, "left")
            if completion is not None:
                self._post(completion, None, why)

        room = self.server.room_of_url(url)
        if room is None:
            fail(f"no such room: {url}")
            return
        problem = self.server.check_token(token, room)
        if problem is not None:
            fail(problem)
            return
        properties = self.server.token_properties(token) if token else None
        if properties and isinstance(properties.get("user_name"), str):
            client._user_name = properties["user_name"]
        with self._lock:
            present = len(self._clients.get(room.name, ())) + len(self._remotes.get(room.name, {}))
            limit = room.properties.get("max_participants")
            if isinstance(limit, int) and present >= limit:
                full = True
            else:
                full = False
                self._clients.setdefault(room.name, []).append(client)
                client._room = room.name
                client._state = "joined"
        if full:
            fail("the room is full")
            return
        self._post(client._handler.on_call_state_updated, "joining")
        self._post(client._handler.on_call_state_updated, "joined")
        if completion is not None:
            data = {
                "participants": {"local": self._local(client)},
                "meetingSession": {"id": room.id},
            }
            self._post(completion, data, None)

    def _leave(
        self, client: CallClient, state: str, completion: Callable[[str | None], None] | None
    ) -> None:
        with self._lock:
            joined = client._room is not None
            if joined:
                clients = self._clients.get(client._room or "", [])
                if client in clients:
                    clients.remove(client)
                client._room = None
            client._state = state
        if joined:
            self._post(client._handler.on_call_state_updated, "leaving")
            self._post(client._handler.on_call_state_updated, "left")
        if completion is not None:
            self._post(completion, None)

    def _participants(self, client: CallClient) -> dict[str, Any]:
        with self._lock:
            remotes = list(self._remotes.get(client._room or "", {}).values())
        found: dict[str, Any] = {"local": self._local(client)}
        for remote in remotes:
            found[remote.id] = remote.resource()
        return found

    @staticmethod
    def _local(client: CallClient) -> dict[str, Any]:
        return {"id": client._local_id, "info": {"isLocal": True, "userName": client._user_name}}

    def _spoken(self, mic: VirtualMicrophoneDevice, pcm: bytes) -> None:
        """Audio written to ``mic``: every participant in the rooms it is in hears it, and
        those that echo say it back."""
        with self._lock:
            rooms = {
                c._room
                for clients in self._clients.values()
                for c in clients
                if c._mic == mic.name and c._room is not None
            }
            echoes: list[tuple[str, str]] = []
            for room in rooms:
                for remote in self._remotes.get(room or "", {}).values():
                    remote.heard += pcm
                    del remote.heard[:-_HEARD_KEPT]  # a long call keeps its last minutes
                    if remote.echo:
                        echoes.append((room or "", remote.id))
        for room, participant_id in echoes:
            self.say(room, participant_id, pcm, mic.sample_rate)

    def _render(self, client: CallClient, participant_id: str, pcm: bytes, rate: int) -> None:
        with self._lock:
            renderer = client._renderers.get(participant_id)
        if renderer is None:
            return
        callback, wanted = renderer
        data = pcm if wanted == rate else resample(pcm, rate, wanted)
        self._post(callback, participant_id, AudioData(data, wanted), "microphone")


class DailyEmulator(Startable):
    """The local Daily: its REST API (:class:`DailyApiServer`) and the SDK stand-in that joins
    its rooms (:class:`EmulatedDaily`), started and stopped together."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None):
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.server = DailyApiServer([self.api_key], host=host, port=port)
        self.sdk = EmulatedDaily(self.server)

    @property
    def api_url(self) -> str:
        return self.server.api_url

    def start(self) -> Self:
        self.server.start()
        self.sdk.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.stop(timeout)
        self.sdk.stop(timeout)
