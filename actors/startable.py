"""Two shapes for what must be ended: started and stopped (:class:`Startable`), or used and
closed (:class:`Closable`); ``with`` works the same way on both.

A server on its own thread, an emulated API: each is started, then stopped within a bound,
and a ``with`` block is the same as ``start()`` on entry and ``stop()`` on the way out
(whatever ended the block). :class:`Startable` writes that once; a subclass writes ``start``
(returning itself once it runs, so that ``with X().start() as x`` and ``with X() as x`` read
alike) and ``stop`` (idempotent, bounded, safe on something never started).

Something usable from the moment it is made (a REST client, the service) has only ``close``:
:class:`Closable` makes ``with`` close it on the way out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["Closable", "Startable"]


class Startable(ABC):
    """Something started and stopped: ``with`` starts it and stops it again."""

    @abstractmethod
    def start(self) -> Self:
        """Start; return once it runs (a failure to start raises here)."""

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> None:
        """Stop within about ``timeout`` seconds; does nothing if not running."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Closable(ABC):
    """Something usable once made and closed when done with: ``with`` closes it again."""

    @abstractmethod
    def close(self) -> None:
        """Release what it holds; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
