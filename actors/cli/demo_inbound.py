"""``transport-actors demo --inbound``: the demo's traffic over calls that come in.

Emulated callers dial the service's voice webhook (``service.infrastructure.dial_in``, the
embedded emulator posting the webhook as Twilio would); one worker thread per call takes it
with ``accept_session`` and then reads that session, exactly as an application would. From
there the traffic is the outbound demo's (:mod:`~actors.cli.demo`): stamped frames sent at
real time, played and echoed by the caller (the emulator's ``echo`` media), and checked and
timed on the way back, so that both demos measure a round trip the same way. Added: how long
each call took from ``dial_in`` to its ``accept_session`` returning.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

from ..config import TransportConfig
from ..errors import AcceptTimeout, TransportError
from ..service import TransportService
from ._common import _DEMO_TO, _START_S, PROG
from ._measure import _Lane, _latency_rows
from .demo import _Demo, _DemoOptions

logger = logging.getLogger(__name__)

_ACCEPT_POLL_S = 0.25  # how often a worker waiting for a call looks up to check whether to stop


def _caller(n: int) -> str:
    """The number emulated caller ``n`` dials from (one each: their logs tell them apart)."""
    return f"+1555030{n:04d}"


class _InboundDemo(_Demo):
    """The demo with its sessions accepted from emulated callers instead of placed."""

    def __init__(self, options: _DemoOptions, out: TextIO, err: TextIO) -> None:
        super().__init__(options, out, err)
        self._settle = threading.Condition()
        self._settled = 0  # workers that have accepted their call or given up (under _settle)
        self.dialled_ns: dict[str, int] = {}  # call sid -> perf_counter_ns before its dial_in
        self.accepted_ns: dict[str, int] = {}  # call sid -> when its accept_session returned

    def _open_sessions(self, service: TransportService) -> None:
        opts = self.options
        # Started before the clock: the webhook server (voice_url) and the emulated Twilio
        # that places the calls (a real caller's Twilio is up already). The gateway starts on
        # the first call, inside the figure, as in the outbound demo's create_session.
        print(f"{PROG} demo: callers dial {service.voice_url}", file=self.out, flush=True)
        service.infrastructure.twilio_emulator()
        for n in range(opts.sessions):
            worker = threading.Thread(target=self._work, args=(service,), name=f"demo-worker-{n}")
            self.threads.append(worker)
            worker.start()
        for n in range(opts.sessions):
            if self.abort.is_set():
                break
            began = time.perf_counter_ns()  # the emulator posts its webhook from here
            call_sid = service.infrastructure.dial_in(to=_DEMO_TO, from_=_caller(n))
            with self._settle:
                self.dialled_ns[call_sid] = began
        # Every worker settles within its own bounded wait: no deadline needed here.
        with self._settle:
            while self._settled < opts.sessions and not self.abort.is_set():
                self._settle.wait(_ACCEPT_POLL_S)

    def _start_readers(self, service: TransportService) -> None:
        """Nothing to start: each worker reads the session it accepted."""

    def _work(self, service: TransportService) -> None:
        """Accept one call, then read its echoes until the demo is done."""
        try:
            lane = self._accept(service)
        except Exception as exc:  # counted, never an unhandled thread exception
            logger.exception("a demo worker crashed while accepting")
            lane = None
            self.other_errors.append(f"a worker crashed while accepting: {exc!r}")
        finally:
            with self._settle:
                self._settled += 1
                self._settle.notify_all()
        if lane is not None:
            self._read(service, lane)

    def _accept(self, service: TransportService) -> _Lane | None:
        deadline = time.monotonic() + _START_S
        while not self.abort.is_set():
            try:
                info = service.accept_session(
                    timeout=_ACCEPT_POLL_S, provider=self.options.provider
                )
            except AcceptTimeout:
                if time.monotonic() >= deadline:
                    self.other_errors.append(f"a call was not accepted within {_START_S:g} s")
                    return None
                continue
            except TransportError as exc:
                self.other_errors.append(f"accept_session failed: {exc}")
                return None
            accepted = time.perf_counter_ns()
            lane = _Lane(info.session_id)
            with self._settle:  # appended at once: whatever happens next, it is ended
                self.lanes.append(lane)
                if info.call_id is not None:
                    self.accepted_ns[info.call_id] = accepted
            return lane
        return None

    def _path_label(self) -> str:
        return "inbound calls via "

    def _summary_rows(self) -> list[tuple[str, str]]:
        with self._settle:
            waits = [
                at - self.dialled_ns[sid]
                for sid, at in self.accepted_ns.items()
                if sid in self.dialled_ns
            ]
            dialled = len(self.dialled_ns)
        return [
            ("calls dialled", str(dialled)),
            ("calls accepted", str(len(self.lanes))),
            *_latency_rows("accept", waits),
        ]


def _inbound_problem(
    config: TransportConfig, provider: str, sessions: int, calls: bool
) -> str | None:
    """Why ``demo --inbound`` cannot run with this config, if it cannot."""
    if not calls:
        return f"callers dial a twilio provider's webhook; {provider!r} is not one"
    if not config.inbound.enabled:
        return "inbound.enabled is false: there is no webhook to dial"
    if sessions > config.inbound.max_sessions:
        return (
            f"--sessions {sessions} is more than inbound.max_sessions "
            f"({config.inbound.max_sessions}): the rest would be answered busy"
        )
    return None
