"""Everything that runs in the background has one shape (actors/startable.py): ``with`` is
``start()`` on the way in and ``stop()`` on the way out, however the block ends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from actors.config import EmulatorConfig
from actors.emulator import DailyApiServer, TwilioApiServer
from actors.emulator.daily_sdk import DailyEmulator
from actors.emulator.media import MediaDialer
from actors.emulator.phone import TwilioEmulator
from actors.gateway import ServerThread, echo
from actors.startable import Closable, Startable

pytestmark = pytest.mark.timeout(30)

ACCOUNT = "AC" + "0123456789abcdef" * 2


def refuses(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` any more."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: ServerThread(echo),
        lambda: TwilioApiServer({ACCOUNT: "token"}),
        lambda: DailyApiServer(["key"]),
        DailyEmulator,
    ],
    ids=["ServerThread", "TwilioApiServer", "DailyApiServer", "DailyEmulator"],
)
def test_with_starts_and_stops_even_when_the_block_raises(make: Callable[[], Startable]) -> None:
    thing = make()
    assert isinstance(thing, Startable)
    with pytest.raises(RuntimeError, match="the block failed"), thing as started:
        assert started is thing  # start() returns the object itself
        server = getattr(thing, "server", thing)  # DailyEmulator: its REST API
        port = server.port
        assert port and not refuses(port)
        raise RuntimeError("the block failed")
    assert refuses(port)


def test_a_startable_must_say_how_it_starts_and_stops() -> None:
    class Half(Startable):
        def stop(self, timeout: float = 5.0) -> None:
            pass

    with pytest.raises(TypeError, match="start"):
        Half()  # type: ignore[abstract]


def test_the_twilio_emulator_is_startable() -> None:
    emulator = TwilioEmulator(EmulatorConfig(), {ACCOUNT: "token"})
    assert isinstance(emulator, Startable)
    with pytest.raises(RuntimeError, match="the block failed"), emulator as started:
        assert started is emulator
        port = emulator.api.port
        assert port and not refuses(port)
        assert media_loop_running()
        raise RuntimeError("the block failed")
    assert refuses(port)
    assert not media_loop_running()


def test_the_media_dialer_is_startable() -> None:
    dialer = MediaDialer(EmulatorConfig(), {ACCOUNT: "token"})
    assert isinstance(dialer, Startable)
    with dialer as started:
        assert started is dialer
        assert media_loop_running()
    assert not media_loop_running()
    dialer.stop()  # stopping again does nothing


def media_loop_running() -> bool:
    return any(t.name == "emulator-media" for t in threading.enumerate())


def test_a_closable_must_say_how_it_closes() -> None:
    class Nothing(Closable):
        pass

    with pytest.raises(TypeError, match="close"):
        Nothing()  # type: ignore[abstract]

    class Counted(Closable):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    with pytest.raises(RuntimeError), Counted() as counted:
        raise RuntimeError("the block failed")
    assert counted.closed == 1
