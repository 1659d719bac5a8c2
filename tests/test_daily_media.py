"""A Daily call as a session's connection (actors.dailycall).

What Daily's SDK (daily-python, the ``daily`` extra) can do without a network runs for real
here: ``Daily.init()``, virtual microphone and speaker devices, a ``CallClient`` created, given
a renderer and released, and a join with no route to Daily, which must fail in bounded time.

The event flow of a call (joined, audio both ways, marks, the far end hanging up, a deleted
room) cannot run against Daily here, so it runs through ``actors.emulator.daily_sdk``: a
**stand-in of the SDK's interface** (``CallClient``, ``EventHandler``, virtual devices,
``AudioData``), not of our code, joined to the emulator's rooms. The connection, the codec,
the outbox and the REST client under test are the real ones. The stand-in is held to the
SDK's signatures by ``test_the_stand_in_has_the_sdks_signatures``.
"""

from __future__ import annotations

import inspect
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from actors import ConfigError, ConnectionFailed, TransportService
from actors.codecs import Frame
from actors.codecs.daily import DailyCodec
from actors.config import DailyProviderConfig, TransportConfig
from actors.connection import ConnectionContext, DialOptions, Traffic
from actors.dailycall import DailyCall, DailyConnection, _ensure_initialised, _events_class
from actors.emulator.daily import DailyApiServer
from actors.emulator.daily_sdk import DailyEmulator
from actors.exits import Exit, ExitKind
from actors.messages import Audio, Binary, Mark, Message, Started, Stopped
from actors.providers.daily import DailyRestClient
from actors.queues import Keep, Outbox

from .conftest import eventually, fast_config

ROOM = "media-room-1"
WAIT = 5.0


@pytest.fixture
def emulator() -> Iterator[DailyEmulator]:
    with DailyEmulator() as emu:
        yield emu


@pytest.fixture
def rest(emulator: DailyEmulator) -> Iterator[DailyRestClient]:
    with DailyRestClient(api_key=emulator.api_key, api_base_url=emulator.api_url) as client:
        yield client


@dataclass
class Call:
    """One DailyConnection with what a connector would give it, recorded for the test."""

    connection: DailyConnection
    codec: DailyCodec
    outbox: Outbox[Frame | Keep]
    traffic: Traffic
    opened: threading.Event = field(default_factory=threading.Event)
    messages: queue.Queue[Message] = field(default_factory=queue.Queue)
    exits: queue.Queue[Exit] = field(default_factory=queue.Queue)

    def write(self, message: Message) -> None:
        self.outbox.put_many(self.codec.encode(message))

    def started(self) -> None:
        """What the connector does when the codec says the call started."""
        self.outbox.put_many(self.codec.flush(), droppable=False)

    def next(self) -> Message:
        return self.messages.get(timeout=WAIT)

    def exit(self) -> Exit:
        return self.exits.get(timeout=WAIT)


def make_call(emulator: DailyEmulator, url: str, token: str, rate: int = 16000) -> Call:
    codec = DailyCodec(room=ROOM, encoding="pcm16", sample_rate=rate)
    outbox: Outbox[Frame | Keep] = Outbox(1000)
    traffic = Traffic()
    opened = threading.Event()
    messages: queue.Queue[Message] = queue.Queue()
    exits: queue.Queue[Exit] = queue.Queue()

    def on_frame(frame: Frame) -> None:
        for message in codec.decode(frame):
            messages.put(message)

    connection = DailyCall(sdk=emulator.sdk, token=token, sample_rate=rate)(
        ConnectionContext(
            DialOptions(url=url, connect_timeout_s=2.0, close_timeout_s=1.0),
            session_id="test-session",
            outbox=outbox,
            traffic=traffic,
            on_open=lambda subprotocol: opened.set(),
            on_frame=on_frame,
            on_exit=exits.put,
        )
    )
    return Call(connection, codec, outbox, traffic, opened, messages, exits)


def room_and_token(rest: DailyRestClient, dial_out: bool = True) -> tuple[str, str]:
    exp = int(time.time()) + 600
    room = rest.create_room(ROOM, properties={"exp": exp, "enable_dialout": dial_out})
    return str(room["url"]), rest.create_meeting_token(ROOM, exp=exp)


def pcm(value: int, ms: int = 20, rate: int = 16000) -> bytes:
    return bytes([value, 0]) * (rate * ms // 1000)


# -- the event flow, through the stand-in of the SDK -------------------------------------------


def test_a_call_joins_carries_audio_both_ways_and_ends_when_the_phone_hangs_up(
    emulator: DailyEmulator, rest: DailyRestClient
) -> None:
    url, token = room_and_token(rest)
    rest.start_dial_out(ROOM, "+15550100")  # the emulated phone answers (just after)
    assert eventually(lambda: len(emulator.sdk.participants_in(ROOM)) == 1)
    (phone,) = emulator.sdk.participants_in(ROOM)
    call = make_call(emulator, url, token)
    call.write(Binary(pcm(1)))  # before the call has started: held
    call.connection.start()
    assert call.opened.wait(WAIT)
    assert emulator.sdk.clients_in(ROOM) == 1
    started = call.next()
    assert isinstance(started, Started)
    assert (started.stream_id, started.tracks) == (ROOM, (phone,))
    assert started.media_format.encoding == "pcm16" and started.media_format.sample_rate == 16000
    call.started()
    call.write(Binary(pcm(2, ms=60)))  # 60 ms: played 20 ms at a time
    call.write(Mark("after-two"))

    seen: list[Message] = []
    while not any(isinstance(m, Mark) for m in seen) or sum(
        len(m.data) for m in seen if isinstance(m, Audio)
    ) < len(pcm(1)) + len(pcm(2, ms=60)):
        seen.append(call.next())
    heard = b"".join(m.data for m in seen if isinstance(m, Audio))
    assert heard == pcm(1) + pcm(2, ms=60)  # the phone echoed it, in order
    assert {m.track for m in seen if isinstance(m, Audio)} == {phone}
    assert [m.name for m in seen if isinstance(m, Mark)] == ["after-two"]
    assert emulator.sdk.heard(ROOM, phone) == pcm(1) + pcm(2, ms=60)
    assert (call.traffic.frames_out, call.traffic.bytes_out) == (2, len(heard))

    emulator.sdk.say(ROOM, phone, pcm(7, ms=40), 16000)
    said = call.next()
    assert isinstance(said, Audio) and said.data == pcm(7, ms=40)

    emulator.sdk.remove_participant(ROOM, phone, "hangup")
    assert isinstance(call.next(), Stopped)
    assert call.exit() == Exit(ExitKind.PEER_CLOSED, 1000, "the call ended: hangup")
    assert call.connection.join(WAIT)
    assert emulator.sdk.clients_in(ROOM) == 0  # it left the call
    assert call.connection.done and not call.connection.connected


def test_request_close_plays_what_is_queued_then_leaves(
    emulator: DailyEmulator, rest: DailyRestClient
) -> None:
    url, token = room_and_token(rest, dial_out=False)
    guest = emulator.sdk.add_participant(ROOM, "guest", echo=False)
    call = make_call(emulator, url, token)
    call.connection.start()
    assert isinstance(call.next(), Started)
    call.started()
    for value in range(5):
        call.write(Binary(pcm(value)))
    call.connection.close(1000, "bye", timeout=WAIT)
    assert call.exit() == Exit(ExitKind.NORMAL, 1000, "bye")
    assert emulator.sdk.heard(ROOM, guest) == b"".join(pcm(v) for v in range(5))
    assert emulator.sdk.clients_in(ROOM) == 0
    assert call.connection.join(WAIT)


def test_a_refused_join_is_a_failed_handshake(
    emulator: DailyEmulator, rest: DailyRestClient
) -> None:
    url, _ = room_and_token(rest)
    other = rest.create_meeting_token("another-room", exp=int(time.time()) + 60)
    call = make_call(emulator, url, other)
    call.connection.start()
    exit = call.exit()
    assert exit.kind is ExitKind.HANDSHAKE_FAILED
    assert exit.reason == "Daily refused the join: the meeting token is for another room"
    assert other not in exit.reason
    assert not call.opened.is_set()
    assert call.connection.join(WAIT)


def test_a_deleted_room_ends_the_call_as_lost(
    emulator: DailyEmulator, rest: DailyRestClient
) -> None:
    url, token = room_and_token(rest, dial_out=False)
    call = make_call(emulator, url, token)
    call.connection.start()
    assert call.opened.wait(WAIT)
    assert rest.delete_room(ROOM)
    exit = call.exit()
    assert (exit.kind, exit.code) == (ExitKind.CONNECTION_LOST, 1006)
    assert "the room was deleted" in exit.reason
    assert call.connection.join(WAIT)


def test_abort_while_joined_stops_at_once(emulator: DailyEmulator, rest: DailyRestClient) -> None:
    url, token = room_and_token(rest, dial_out=False)
    call = make_call(emulator, url, token)
    call.connection.start()
    assert call.opened.wait(WAIT)
    crash = Exit(ExitKind.CRASH, 1011, "boom")
    call.connection.abort(crash)
    assert call.exit() == crash  # the first cause recorded wins
    assert call.connection.join(WAIT)
    assert emulator.sdk.clients_in(ROOM) == 0


# -- Daily's SDK for real (what works without a network) ---------------------------------------


def test_the_sdk_inits_and_makes_devices_and_clients_without_a_network() -> None:
    daily = pytest.importorskip("daily")
    _ensure_initialised(daily)
    _ensure_initialised(daily)  # once per process: a second call does nothing
    mic = daily.Daily.create_microphone_device(
        "test-daily-media-mic", sample_rate=16000, channels=1, non_blocking=False
    )
    assert (mic.name, mic.sample_rate, mic.channels) == ("test-daily-media-mic", 16000, 1)
    assert mic.write_frames(pcm(0)) >= 0  # not in a call: taken and dropped, never blocks
    speaker = daily.Daily.create_speaker_device("test-daily-media-speaker", sample_rate=8000)
    assert speaker.sample_rate == 8000
    events: queue.SimpleQueue[tuple[object, ...]] = queue.SimpleQueue()
    client = daily.CallClient(event_handler=_events_class(daily, events.put)())
    client.set_user_name("transport-actors-test")
    client.set_audio_renderer("someone", lambda *args: None, sample_rate=16000)
    client.release()
    with pytest.raises(RuntimeError, match="released"):
        client.leave()


def test_the_stand_in_has_the_sdks_signatures(emulator: DailyEmulator) -> None:
    daily = pytest.importorskip("daily")
    stand_in = emulator.sdk

    def parameters(function: object) -> list[tuple[str, object]]:
        found = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        return [(p.name, p.default) for p in found if p.name != "self"]

    for name in (
        "join",
        "leave",
        "release",
        "set_user_name",
        "set_audio_renderer",
        "update_subscription_profiles",
        "update_subscriptions",
        "participants",
    ):
        assert parameters(getattr(stand_in.CallClient, name)) == parameters(
            getattr(daily.CallClient, name)
        ), name
    for name in ("create_microphone_device", "create_speaker_device", "select_speaker_device"):
        assert parameters(getattr(stand_in.Daily, name)) == parameters(
            getattr(daily.Daily, name)
        ), name
    for kind in ("VirtualMicrophoneDevice", "VirtualSpeakerDevice"):
        method = "write_frames" if kind.endswith("Microphone" + "Device") else "read_frames"
        ours = getattr(sys.modules["actors.emulator.daily_sdk"], kind)
        assert parameters(getattr(ours, method)) == parameters(
            getattr(getattr(daily, kind), method)
        )
    for name in (
        "on_participant_joined",
        "on_participant_left",
        "on_call_state_updated",
        "on_error",
    ):
        assert parameters(getattr(stand_in.EventHandler, name)) == parameters(
            getattr(daily.EventHandler, name)
        ), name


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_joining_with_no_route_to_daily_fails_in_bounded_time() -> None:
    pytest.importorskip("daily")
    # Daily's REST API is the emulator's; the media is the real SDK, which cannot reach Daily
    # from here (or finds no such room there): the join must fail, and fail in time.
    with DailyApiServer(["test-key"]) as api:
        config = TransportConfig(
            runtime=fast_config().runtime,
            supervisor=fast_config().supervisor,
            providers={
                "daily": DailyProviderConfig(
                    name="daily", api_key="test-key", api_base_url=api.api_url, retries=0
                )
            },
        )
        started = time.monotonic()
        with TransportService(config) as service:
            with pytest.raises(ConnectionFailed) as info:
                service.create_session(provider="daily")
            failed_after = time.monotonic() - started
            # connect_timeout_s (2 s) + ask_timeout_s (2 s) is what create_session allows.
            assert failed_after < 4.0 + 1.0, failed_after
            reason = info.value.reason
            assert reason.startswith("Daily did not confirm the join within 2 s") or (
                reason.startswith(("cannot reach Daily", "Daily refused the join"))
            ), reason
            assert "test-key" not in str(info.value)
            assert api.rooms == {}  # the failed session's room was deleted
        # The SDK keeps trying to reach Daily for a while and its client cannot be released
        # sooner; the runner thread waits for it on its own. Nothing may be left after that.
        for thread in threading.enumerate():
            if thread.name.startswith("daily-runner-"):
                thread.join(60.0)
                assert not thread.is_alive()


def test_a_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "daily", None)  # `import daily` raises ImportError
    with DailyApiServer(["test-key"]) as api:
        providers = {
            "daily": DailyProviderConfig(name="daily", api_key="test-key", api_base_url=api.api_url)
        }
        with TransportService(TransportConfig(providers=providers)) as service:
            with pytest.raises(ConfigError) as info:
                service.create_session(provider="daily")
        assert info.value.key_path == "providers.daily"
        assert "pip install 'transport-actors[daily]'" in info.value.why
        assert api.requests == []  # no room was made that could not be joined
