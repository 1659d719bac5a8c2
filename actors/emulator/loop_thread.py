"""An asyncio loop on a thread of its own, started and stopped from other threads: what the
emulated phones (:mod:`actors.emulator.phone_loop`) and Twilio's call flows
(:class:`~actors.emulator.calls.CallFlows`) each run their calls on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import abstractmethod
from collections.abc import Callable
from typing import Self

from ..gateway._ws import run
from ..startable import Startable

__all__ = ["LoopThread"]


class LoopThread(Startable):
    """An event loop on the thread ``thread_name``: ``start()`` returns once it runs
    (``TimeoutError`` naming ``label`` if it does not within ``timeout``); ``stop()`` tells it
    to stop and joins it within ``timeout``. A subclass writes :meth:`_wind_down`, what the
    loop does once told to stop, and hands work to the loop with :meth:`_soon`."""

    def __init__(self, thread_name: str, label: str) -> None:
        self._label = label
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self, timeout: float = 5.0) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self._label} did not start")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _soon(self, action: Callable[[], object]) -> None:
        """Run ``action`` on the loop, unless the loop is gone."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                loop.call_soon_threadsafe(action)

    def _run(self) -> None:
        run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        await self._stopping.wait()
        await self._wind_down()

    @abstractmethod
    async def _wind_down(self) -> None:
        """End what runs on the loop (on the loop, once ``stop()`` was called)."""
