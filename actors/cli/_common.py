"""What every ``transport-actors`` command shares: the program name and exit codes, the
signal handling that lets a command end its sessions before it exits, the config lookup, the
argument checks, and the logging set-up."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..config import TransportConfig, default_config, load_config
from ..logs import JsonFormatter, TextFormatter

PROG = "transport-actors"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")
_READ_POLL_S = 0.05  # how often a reader looks up from its inbox to check whether to stop
_JOIN_S = 5.0  # bound on joining one of our threads
_START_S = 10.0  # how long calls may take to start streaming
_MARK_EVERY = 50  # frames between marks (1 s at 20 ms)
_DEMO_TO, _DEMO_FROM = "+15550100", "+15550199"


# -- signals ----------------------------------------------------------------------------------


class _Signals:
    """While active, SIGINT (Ctrl-C) and SIGTERM set ``stop`` and are remembered instead of
    raising ``KeyboardInterrupt`` at whatever line runs, or killing the process: the command
    notices at its next check and ends every session on its way out. Python runs signal
    handlers in the main thread only; elsewhere (a command run from another thread) this
    does nothing."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: int | None = None  # the first signal
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
        self.stop.set()

    @property
    def interrupted(self) -> bool:
        return self.received == signal.SIGINT

    @property
    def terminated(self) -> bool:
        return self.received == signal.SIGTERM


# -- shared by the commands -------------------------------------------------------------------


def _config(args: argparse.Namespace) -> TransportConfig:
    """The config named by ``-c``, else the embedded default; ``ConfigError`` reaches main()."""
    path: str | None = args.config
    return load_config(path) if path is not None else default_config()


def _wait_for(stop: threading.Event) -> None:
    """Block until ``stop`` is set (by Ctrl-C or SIGTERM, through :class:`_Signals`)."""
    try:
        while not stop.wait(0.5):  # short waits: a signal's handler runs between them
            pass
    except KeyboardInterrupt:  # run outside the main thread, Ctrl-C still raises
        pass


def _positive(kind: Callable[[str], float], minimum: float = 0.0) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value <= minimum:
            raise argparse.ArgumentTypeError(f"must be > {minimum:g}, got {text}")
        return value

    return parse


def _start_logging(level: str, log_format: str) -> Callable[[], None]:
    """Log to stderr at ``level`` in ``log_format``; returns what undoes it (``main`` may run
    more than once in a process: the tests call it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)

    def stop() -> None:
        handler.flush()
        root.removeHandler(handler)
        root.setLevel(previous)

    return stop
