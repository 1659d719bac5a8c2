"""``TransportService``: the synchronous facade applications call from their own threads.

It talks to the actors only through pykka: ``create_session`` registers the session with the
supervisor (an ask) and waits for its first connection to open; ``status`` is an ask;
``end_session`` asks the supervisor to stop supervising, then stops the connector (which
closes its connection). Reads and writes need no actor: a read takes from the session's
inbox, a write is admitted by the session's record and encoded into its outbox, and both
queues outlive connector restarts. Every method is safe to call from many threads at once,
and every ask has a timeout.

**Which thread runs what.** (As pykka's docs say of each hook which thread runs it.)

- *The application's threads* run every method here. A write is admitted and encoded on
  the caller's thread, under the session record's lock (which keeps the order of writes and
  the codec's state), into the outbox, and sent from there on the same thread, as far as
  the socket takes it without blocking (``WebSocketConnection.pump``). A read waits on the
  inbox. Ending a session stops its connector and joins it, bounded, on the caller's thread.
- *The I/O loop thread* (``ws-io``, one per service, :class:`~actors.transport.ioloop.IoLoop`)
  owns every open WebSocket: it reads and parses what arrives on any socket and calls the
  connection's ``on_frame`` (the connector's codec decodes there, straight into the inbox),
  sends what a socket did not take at once, and on every tick sends keepalive pings and
  cuts off silent peers and unanswered closes; it calls ``on_exit`` once a connection it
  holds ends.
- *A short-lived dial thread* (``ws-dial-<id>``, one per connection) waits out the restart
  backoff, dials under the handshake deadline (a timer thread enforces it), hands the socket
  to the loop and calls ``on_open``; a dial that fails calls ``on_exit`` there.
- *The connector's actor thread* (``connector-<id>``, one per incarnation) runs
  ``on_start`` (attach to the record, make and start the connection, replay held writes),
  handles ``Close`` (it asks the connection to close), ``GetStatus`` and the connection's
  events, and runs ``on_stop`` / ``on_failure`` (detach, close the connection within
  ``shutdown_timeout_s``, report the exit). It never dials and never carries a frame.
- *The supervisor's actor thread* (``supervisor``) handles every connector's open and exit
  report: it alone moves the lifecycle, decides restarts and writes the supervision history.
- *A Daily call* runs a runner thread (joins, turns the SDK's events into frames:
  ``on_open``, ``on_frame``, ``on_exit``) and a writer thread that plays the outbox into
  Daily's microphone, which blocks at real time; the SDK's own threads only queue events.
- Around them: the threads of the embedded gateway (asyncio) and emulators, started on first
  use, and of the ``/metrics`` server.

Each service keeps its metrics (:mod:`actors.metrics`) in a registry of its own: ``metrics()``
returns a snapshot, and with ``metrics.listen`` configured the service serves them over HTTP at
``metrics_url`` until :meth:`TransportService.close`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any

import pykka

from .calls import CallPlane, dial_twiml, restream_window_s
from .config import (
    DEFAULT_RECONNECT_WINDOW_S,
    SupervisorConfig,
    TransportConfig,
    default_config,
    load_config,
)
from .connection import SharedIo
from .connector import GetStatus
from .embedded import EmbeddedInfrastructure
from .errors import (
    ConfigError,
    ConnectionFailed,
    Draining,
    ReadTimeout,
    ServiceClosed,
    SessionClosed,
    SessionNotFound,
    TransportError,
)
from .lifecycle import SessionState
from .messages import Message, SessionInfo, SessionRequest, SessionStatus
from .metrics import MetricsServer, ServiceMetrics
from .policy import IntensityPolicy
from .providers import (
    CallControl,
    GatewayEndpoint,
    Provider,
    Redirect,
    SendDigits,
    SessionPlan,
    Transfer,
    provider_for,
)
from .queues import Empty
from .session import SessionRecord
from .startable import Closable
from .supervisor import EndSession, Register, SessionStatusOf, Supervisor
from .webhooks.twilio import validate_twiml

if TYPE_CHECKING:
    from .clustering import NodeCluster

__all__ = ["TransportService"]

logger = logging.getLogger(__name__)

_ENDED_KEPT = 10_000  # final statuses remembered after end_session, oldest forgotten first
_FINAL = frozenset({SessionState.CLOSED, SessionState.FAILED})
_LEFT_CONNECTING = frozenset(set(SessionState) - {SessionState.CONNECTING})
_REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(SessionRequest))


@dataclass(slots=True)
class _Handle:
    record: SessionRecord
    provider: Provider
    plan: SessionPlan
    created: bool = False  # create_session returned it (counted as created, then as ended)
    ended: threading.Event = dataclasses.field(default_factory=threading.Event)
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # on SessionInfo

    def info(self) -> SessionInfo:
        return dataclasses.replace(self.record.info(), **self.details)


class TransportService(Closable):
    """Create, read, write, inspect and end sessions; one connector actor per session.

    Use it as a context manager, or call :meth:`close`, so that every session is ended and
    every thread, socket and actor is released.
    """

    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config if config is not None else default_config()
        runtime = self.config.runtime
        sup = self.config.supervisor
        self._infrastructure = EmbeddedInfrastructure(self.config)
        self._calls = CallPlane(self.config, self._infrastructure)
        self._calls.provider_of = self._provider  # rejects what the inbound queue refused
        self._metrics = ServiceMetrics(self._infrastructure.gateway_stats, self._calls.snapshot)
        # First, so that a port already taken fails before any thread has started.
        self._metrics_server: MetricsServer | None = None
        listen = self.config.metrics.listen
        if listen is not None:
            try:
                self._metrics_server = self._metrics.serve(listen)
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve metrics there: {exc.strerror or exc}",
                    file=self.config.source,
                    key_path="metrics.listen",
                ) from None
        # One thread reads every session's socket and keeps time for all of them: its tick
        # bounds how late a silent peer or an unanswered close is noticed.
        deadlines = [runtime.shutdown_timeout_s]
        if runtime.ping_interval_s > 0:
            deadlines.append(runtime.ping_timeout_s)
        try:
            self._shared = SharedIo(tick_s=min(1.0, max(0.02, min(deadlines) / 5)))
            self._supervisor = Supervisor.start(
                _policy(sup),
                shared=self._shared,
                shutdown_timeout_s=runtime.shutdown_timeout_s,
                metrics=self._metrics,
            )
        except BaseException:
            if self._metrics_server is not None:
                self._metrics_server.stop()
            raise
        self._lock = threading.Lock()
        self._sessions: dict[str, _Handle] = {}
        self._ended: OrderedDict[str, SessionStatus] = OrderedDict()
        # Being ended (end_session or close in progress): still answered for, as ending.
        self._ending: dict[str, _Handle] = {}
        self._providers: dict[str, Provider] = {}
        self._policies: dict[tuple[SupervisorConfig, bool], IntensityPolicy] = {}
        self._closing = False  # close() has begun: no new session
        self._closed = False  # close() is done: every method raises ServiceClosed
        self._closed_event = threading.Event()
        self._draining = False  # drain(): no new session
        self._cluster: NodeCluster | None = None
        self._cluster = _join_cluster(self)  # a runtime node of a cluster (cluster:), or None

    def _policy_for(self, config: SupervisorConfig, behind_gateway: bool) -> IntensityPolicy:
        """The restart policy of a session (one per provider and kind, built once)."""
        key = (config, behind_gateway)
        with self._lock:
            policy = self._policies.get(key)
            if policy is None:
                window = (
                    self.config.gateway.resume_window_s
                    if behind_gateway
                    else DEFAULT_RECONNECT_WINDOW_S
                )
                policy = self._policies[key] = _policy(config, window)
            return policy

    @classmethod
    def from_yaml(cls, path: str | PathLike[str]) -> TransportService:
        """A service configured from a YAML file (see :mod:`actors.config`)."""
        return cls(load_config(path))

    # -- the contract --------------------------------------------------------------------------

    def create_session(
        self, request: SessionRequest | Mapping[str, Any] | None = None, /, **fields: Any
    ) -> SessionInfo:
        """Create a session and its connector; return once its connection is open.

        ``request`` (a :class:`SessionRequest` or a mapping) and ``fields`` name the provider
        and its settings: ``provider``, ``url``, ``headers``, ``subprotocols``, ``to``,
        ``from_``, ``parameters``; ``fields`` win. Raises ``ConfigError`` for an unknown
        provider, ``ProviderError`` if the provider refuses, ``ConnectionFailed`` if the
        connection does not open within ``runtime.connect_timeout_s``. A session whose socket
        opened and dropped again at once is returned all the same: it is being redialled (or
        has ended, and its reader gets ``Close``); ``status()`` tells which.
        """
        self._check_open(creating=True)
        req = _make_request(request, fields)
        name = req.provider or self._default_provider()
        provider = self._provider(name)
        if self._draining:
            raise Draining
        session_id = secrets.token_urlsafe(16)
        chosen: list[GatewayEndpoint] = []
        if self._cluster is None:
            plan = provider.open(session_id, req)
        else:  # a gateway from the registry; the hop names the lease's epoch
            with self._cluster.placing(chosen):
                plan = provider.open(session_id, req)
            plan = _with_epoch(plan, 1) if chosen else plan
        details = {"from_": req.from_, "to": req.to}
        info = self._start(name, provider, session_id, plan, details=details)
        handle = self._sessions.get(session_id)
        assert info is not None
        if self._cluster is not None and chosen and handle is not None:
            self._cluster.leased(handle.record, name, chosen[0], to=req.to, **{"from": req.from_})
        outcome = None if handle is None else self._calls.ended_before_stream(handle.record)
        if outcome is not None:  # Twilio said busy (...) before we returned: say so
            self.end_session(session_id)
            raise SessionClosed(session_id, outcome)
        return info

    def accept_session(
        self, timeout: float | None = None, provider: str | None = None
    ) -> SessionInfo:
        """The next inbound call, as a session, like a socket's ``accept``: blocks up to
        ``timeout`` seconds (``None``: until a call comes) for a call to the voice webhook
        (of ``provider``, if given), answers it with a stream to a new session, and returns
        once that session's connection is open. ``direction`` is ``"inbound"``; ``from_``,
        ``to``, ``call_id`` and the webhook's ``fields`` are on the info. Raises
        ``AcceptTimeout`` (a ``TimeoutError``) when no call comes, ``ServiceClosed`` once the
        service closes. Thread-safe: each call goes to exactly one accepting thread."""
        _check_timeout(timeout)
        self._check_open(creating=True)
        return self._calls.accept(self._start, self._provider, timeout, provider)

    def transfer(self, session_id: str, to: str, *, caller_id: str | None = None) -> None:
        """Move the session's call out of its stream to ``to`` (an E.164 number or a ``sip:``
        URI; ``caller_id``: the number shown): Twilio's ``<Dial>``, Telnyx's ``transfer``
        command, Plivo's transfer to a ``<Dial>``. The session ends with ``Close(1000,
        "transferred")``, and ending it leaves the call up (it is the transfer's).
        ``SessionClosed`` if the call has ended; ``UnsupportedMessage`` where the provider (or
        the call) cannot."""
        dial = dial_twiml(to, caller_id)  # checks to and caller_id
        handle = self._control(session_id)
        if isinstance(handle.provider, CallControl):
            command = Transfer(to, caller_id)
            self._calls.command(handle.record, handle.provider, handle.plan, command, "transferred")
        else:
            self._calls.control(handle.record, handle.provider, dial, "transferred")

    def redirect(self, session_id: str, twiml: str) -> None:
        """Give the session's call the document ``twiml`` (the provider's XML: TwiML, Plivo
        XML; checked: well-formed, root ``<Response>``); it leaves its stream, and the session
        ends with ``Close(1000, "redirected")``; ending it leaves the call to that document (no
        hang-up). ``SessionClosed`` if the call has ended; ``UnsupportedMessage`` where the
        provider (or the call) takes no document (a Telnyx Call Control call)."""
        document = validate_twiml(twiml)
        handle = self._control(session_id)
        if isinstance(handle.provider, CallControl):
            command = Redirect(document)
            self._calls.command(handle.record, handle.provider, handle.plan, command, "redirected")
        else:
            self._calls.control(handle.record, handle.provider, document, "redirected")

    def send_dtmf(self, session_id: str, digits: str) -> None:
        """Play ``digits`` (0-9, ``*``, ``#``; ``w``/``W`` pause) into the call; the session
        stays open. On Twilio, with ``<Play digits>``: a call update always ends the stream,
        so the update streams the call again to the same session after the digits: the reader
        sees ``Stopped``, then a new ``Started`` (a new ``stream_sid``), and audio goes on both
        ways; writes made in between wait for the new stream. If the call does not stream
        again in time (a few seconds plus the digits' length), the session ends with
        ``Close(1008, ...)`` saying so. On Telnyx and Plivo, with their DTMF commands: the
        stream goes on. ``ValueError`` for other keys; ``SessionClosed`` if the call has
        ended; ``UnsupportedMessage`` where the provider (or the call) cannot."""
        restream_window_s(digits)  # checks the digits before anything is done
        handle = self._control(session_id)
        if isinstance(handle.provider, CallControl):
            command = SendDigits(digits)
            self._calls.command(handle.record, handle.provider, handle.plan, command, None)
            return
        after = self._calls.reattach_url(session_id)
        self._calls.dtmf(handle.record, handle.provider, digits, after)

    def save_state(self, session_id: str, data: bytes) -> None:
        """Keep ``data`` (at most ``cluster.max_state_bytes``) with the session's lease: a node
        that takes the session over after this one died gets the last saved blob in
        ``accept_session(...).state`` (``resumed=True``). Queued, never waits on Redis; a
        later save replaces an unwritten one. Without a cluster it only checks the session."""
        handle = self._handle(session_id, ended_ok=False)
        assert handle is not None
        if self._cluster is not None and session_id in self._cluster.member.sessions():
            self._cluster.member.save_state(session_id, bytes(data))

    def drain(self, timeout: float | None = 0.0) -> bool:
        """Take no new call from now on (``create_session`` raises ``Draining``, inbound calls
        go to other nodes, or are refused), and wait up to ``timeout`` seconds (``None``: as
        long as it takes) for the sessions in progress to end. Whether none is left."""
        _check_timeout(timeout)
        self._check_open()
        self._draining = True
        self._calls.draining = True
        if self._cluster is not None:
            self._cluster.drain()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._sessions:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._closed_event.wait(0.05)
        return True

    def cluster_status(self) -> dict[str, Any] | None:
        """This node's view of itself in the cluster (connection, sessions, counters, renew
        latency), or ``None`` without a ``cluster`` section."""
        return None if self._cluster is None else self._cluster.status()

    @property
    def voice_url(self) -> str:
        """The URL of the voice webhook (``inbound:``; started if need be): point a Twilio
        number's voice URL at it (through ``inbound.public_url``)."""
        self._check_open()
        return self._infrastructure.webhook().voice_url

    def _control(self, session_id: str) -> _Handle:
        handle = self._handle(session_id, ended_ok=False)
        assert handle is not None
        return handle

    def _start(
        self,
        name: str,
        provider: Provider,
        session_id: str,
        plan: SessionPlan,
        *,
        details: Mapping[str, Any],
        registered: Callable[[], bool] | None = None,
        prepare: Callable[[SessionRecord], None] | None = None,
    ) -> SessionInfo | None:
        """Register a session set up by its provider, wait for its connection; its info.
        ``registered`` runs once the connector is dialling (an inbound call is answered
        then); if it says False (too late), the session is ended and None returned."""
        runtime = self.config.runtime
        own = self.config.provider(name).supervisor or self.config.supervisor
        # Behind the gateway a redial is worth making only while the gateway holds the call.
        behind_gateway = plan.dial.resume_frames > 0
        record = SessionRecord(
            session_id,
            name,
            plan.codec,
            plan.dial,
            inbox_max=runtime.inbox_max,
            outbound_max=runtime.outbound_max,
            inbound_overflow=runtime.inbound_overflow,
            outbound_overflow=runtime.outbound_overflow,
            call_id=plan.call_id,
            connect=plan.connect,
            policy=self._policy_for(own, behind_gateway),
        )
        handle = _Handle(record, provider, plan, details=details)
        if prepare is not None:  # before the first dial (a cluster's takeover resumes)
            prepare(record)
        self._metrics.track(record)
        self._calls.track(record, name)
        with self._lock:
            closed = self._closing
            if not closed:
                self._sessions[session_id] = handle
        if closed:  # closed while the provider was setting up: undo, outside the lock
            self._metrics.retire(record)
            provider.hang_up(session_id, plan)
            raise ServiceClosed
        try:
            self._ask(Register(record))
        except TransportError:
            with self._lock:
                self._sessions.pop(session_id, None)
            self._metrics.retire(record)
            provider.hang_up(session_id, plan)
            raise
        if registered is not None and not registered():
            self.end_session(session_id)
            return None
        wait_s = runtime.connect_timeout_s + runtime.ask_timeout_s
        state = record.lifecycle.wait_for(_LEFT_CONNECTING, wait_s)
        if state is not SessionState.FAILED and state is not SessionState.CONNECTING:
            # It connected. (It may have dropped again already: status() says so.)
            with self._lock:
                # Counted as created only if still ours: a close() meanwhile ends it uncounted.
                handle.created = session_id in self._sessions
            if handle.created:
                self._metrics.session_created(name)
            logger.info("session %s: created (%s, %s)", session_id, name, record.safe_url)
            return handle.info()
        failure = record.failure or ConnectionFailed(
            record.safe_url, f"not connected within {wait_s:g} s", session_id=session_id
        )
        with self._lock:
            self._sessions.pop(session_id, None)
        self._teardown([handle])
        raise failure

    def read_websocket_message(
        self, session_id: str, timeout: float | None = None
    ) -> Message | None:
        """The session's next inbound message, in order.

        Blocks up to ``timeout`` seconds (``None``: until one arrives) and raises
        ``ReadTimeout`` if none does. Returns ``None`` once the session has ended and every
        message has been read.
        """
        _check_timeout(timeout)
        handle = self._handle(session_id, ended_ok=True)
        if handle is None:
            return None
        try:
            return handle.record.inbox.get(timeout)
        except Empty:
            raise ReadTimeout(session_id, timeout or 0.0) from None

    def write_websocket_message(self, session_id: str, message: Message) -> None:
        """Queue ``message`` for sending; messages of one session leave in the order written.

        Data is encoded on the caller's thread into the session's outbox and sent from there,
        on this thread too, as far as the socket takes it without blocking (a Daily call's
        writer thread plays it instead); a ``Close`` is told to the session's connector. (The
        session record admits the write: :meth:`~actors.session.SessionRecord.write`.)

        Raises ``UnsupportedMessage`` at once for a type the provider cannot carry,
        ``SessionClosed`` once the session has ended, and ``QueueFull`` for audio written to a
        full queue when ``runtime.outbound_overflow`` is ``raise`` (by default the oldest
        queued audio is dropped instead, and counted). Other messages are never refused.
        """
        handle = self._handle(session_id, ended_ok=False)
        assert handle is not None
        handle.record.write(message)

    def is_websocket_connected(self, session_id: str) -> bool:
        """Whether the session's WebSocket is open right now."""
        return self.status(session_id).connected

    def status(self, session_id: str) -> SessionStatus:
        """State, provider, connection, restarts, traffic counters and the last error.

        A session being ended (``end_session`` or ``close`` in progress) is ``CLOSING`` until
        its end is done; an ended session's final status (``CLOSED``, or ``FAILED``) is kept
        (the last 10,000 sessions ended): ``SessionNotFound`` only for an id this service
        never created, or one forgotten since."""
        self._check_open()
        _check_id(session_id)
        ending: _Handle | None = None
        with self._lock:
            handle = self._sessions.get(session_id)
            if handle is None:
                final = self._ended.get(session_id)
                if final is not None:
                    return final
                ending = self._ending.get(session_id)
                if ending is None:
                    raise SessionNotFound(session_id)
        if ending is not None:  # being ended: CLOSING until its end is done, then final
            ended = ending.record.status()
            if not ended.state.is_final:
                ended = dataclasses.replace(ended, state=SessionState.CLOSING)
            return ended
        assert handle is not None
        record = handle.record
        ref = record.connector
        if ref is not None:
            try:
                status = ref.ask(GetStatus(), timeout=self.config.runtime.ask_timeout_s)
                assert isinstance(status, SessionStatus)
                return status
            except pykka.ActorDeadError:
                pass
            except pykka.Timeout:
                raise TransportError(
                    f"session {session_id!r}: connector did not answer within "
                    f"{self.config.runtime.ask_timeout_s:g} s"
                ) from None
        answer: SessionStatus | None = self._ask(SessionStatusOf(session_id))
        return answer if answer is not None else record.status()

    def sessions(self) -> list[SessionInfo]:
        """Every session created and not yet ended, oldest first."""
        self._check_open()
        with self._lock:
            return [h.info() for h in self._sessions.values()]

    def end_session(self, session_id: str) -> None:
        """End a session: hang up the provider side (not a call ``transfer`` or ``redirect``
        gave to other TwiML), close its connection, stop the connector.

        When it returns, no thread, socket or actor of the session remains. Ending a session
        that has ended is a no-op; ending one whose end another thread has begun waits for
        that end (bounded by ``shutdown_timeout_s + ask_timeout_s``) and returns, raising
        nothing. Meanwhile, from every thread: reads return what was left, then ``None``;
        writes raise ``SessionClosed``; ``status`` says ``CLOSING``.
        """
        self._check_open()
        _check_id(session_id)
        with self._lock:
            handle = self._sessions.pop(session_id, None)
            if handle is None:
                if session_id in self._ended:
                    return
                handle = self._ending.get(session_id)
                if handle is None:
                    raise SessionNotFound(session_id)
                ours = False
            else:
                self._begin_end(handle)
                ours = True
        if not ours:  # another thread is ending it: wait for that end
            handle.ended.wait(self._end_bound_s())
            return
        self._teardown([handle])

    def close(self) -> None:
        """End every session, then stop the supervisor. Idempotent."""
        with self._lock:
            if self._closing:
                first = False
            else:
                first = self._closing = True
                handles = list(self._sessions.values())
                self._sessions.clear()
                for handle in handles:
                    self._begin_end(handle)
        if not first:  # another thread is closing it: wait for that, bounded
            self._closed_event.wait(self._end_bound_s() * 2)
            return
        if self._cluster is not None:
            self._cluster.drain()  # no call is placed here meanwhile
        try:
            self._teardown(handles)
        finally:
            self._closed = True  # from now on every method raises ServiceClosed
            timeout = self.config.runtime.shutdown_timeout_s + self.config.runtime.ask_timeout_s
            try:
                self._supervisor.stop(block=True, timeout=timeout)
            except (pykka.Timeout, pykka.ActorDeadError):
                logger.warning("supervisor did not stop within %.1f s", timeout)
            self._shared.close()
            self._calls.close()
            for provider in self._providers.values():
                try:
                    provider.close()
                except Exception:
                    logger.exception("closing provider %s failed", provider.name)
            try:
                self._infrastructure.stop()
                if self._cluster is not None:
                    self._cluster.close()
            finally:
                if self._metrics_server is not None:
                    self._metrics_server.stop()
                self._closed_event.set()

    def metrics(self) -> dict[str, float]:
        """A snapshot of this service's metrics: every sample ``/metrics`` shows, keyed by
        :func:`actors.metrics.sample_key` (``'transport_frames_total{direction="out",
        provider="twilio"}'``). Traffic counters are read from the sessions now, so the
        snapshot is exact for traffic that is done."""
        self._check_open()
        return self._metrics.snapshot()

    @property
    def metrics_url(self) -> str | None:
        """Where ``/metrics`` is served (``http://127.0.0.1:PORT/metrics``), or None when
        ``metrics.listen`` is not configured."""
        server = self._metrics_server
        return None if server is None else server.url

    @property
    def infrastructure(self) -> EmbeddedInfrastructure:
        """The gateway and emulator this service runs (started on first use)."""
        return self._infrastructure

    # -- internals -----------------------------------------------------------------------------

    def _check_open(self, *, creating: bool = False) -> None:
        if self._closed or (creating and self._closing):
            raise ServiceClosed

    def _end_quietly(self, session_id: str) -> None:
        """End a session another node took over (its call goes on there)."""
        with contextlib.suppress(TransportError):
            self.end_session(session_id)

    def _handle(self, session_id: str, *, ended_ok: bool) -> _Handle | None:
        self._check_open()
        _check_id(session_id)
        handle = self._sessions.get(session_id)  # a dict read is atomic; no lock on hot paths
        if handle is not None:
            return handle
        with self._lock:
            handle = self._ending.get(session_id)
            if handle is not None:  # being ended: reads drain its inbox, writes are refused
                return handle
            final = self._ended.get(session_id)
        if final is not None:
            if ended_ok:
                return None
            why = "ended by end_session"
            if final.state is SessionState.FAILED:
                why = f"FAILED: {final.last_error}; then ended by end_session"
            raise SessionClosed(session_id, why)
        raise SessionNotFound(session_id)

    def _begin_end(self, handle: _Handle) -> None:
        """Mark a session as being ended (the caller holds ``_lock``)."""
        handle.record.mark_ending()
        self._ending[handle.record.session_id] = handle

    def _end_bound_s(self) -> float:
        runtime = self.config.runtime
        return runtime.shutdown_timeout_s + 2 * runtime.ask_timeout_s + 1.0

    def _ask(self, message: object) -> Any:
        timeout = self.config.runtime.ask_timeout_s
        try:
            return self._supervisor.ask(message, timeout=timeout)
        except pykka.ActorDeadError:
            raise ServiceClosed from None
        except pykka.Timeout:
            raise TransportError(f"supervisor did not answer within {timeout:g} s") from None

    def _default_provider(self) -> str:
        names = list(self.config.providers)
        if len(names) == 1:
            return names[0]
        if "websocket" in names:
            return "websocket"
        raise ConfigError(
            f"create_session needs provider=...; configured providers: {', '.join(names)}",
            file=self.config.source,
            key_path="providers",
        )

    def _provider(self, name: str) -> Provider:
        with self._lock:
            provider = self._providers.get(name)
            if provider is None:
                provider = provider_for(
                    self.config.provider(name),
                    self.config.runtime,
                    self._infrastructure,
                    on_request=self._metrics.rest_observer(name),
                )
                self._providers[name] = provider
            return provider

    def _teardown(self, handles: list[_Handle]) -> None:
        """End sessions: stop supervising, stop connectors (in parallel), hang up, forget."""
        runtime = self.config.runtime
        stopping = []
        for handle in handles:
            try:
                ref = self._ask(EndSession(handle.record.session_id))
            except TransportError:
                ref = None
            if ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    stopping.append(ref.stop(block=False))
        deadline = time.monotonic() + runtime.shutdown_timeout_s + runtime.ask_timeout_s
        for future in stopping:
            with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        errors: list[TransportError] = []
        for handle in handles:
            record = handle.record
            if (
                record.lifecycle.wait_for(_FINAL, max(0.0, deadline - time.monotonic()))
                not in _FINAL
            ):
                logger.warning("session %s: did not stop within the deadline", record.session_id)
            thread = record.connector_thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
            record.inbox.discard()
            # The supervisor counts what was never sent just after the final state is set: an
            # ask queued behind that makes the counters below final.
            with contextlib.suppress(TransportError):
                self._ask(SessionStatusOf(record.session_id))
            # Its threads are gone: its counters are final.
            self._metrics.retire(record)
            if handle.created:
                self._metrics.session_ended(record.provider)
            try:
                kept = self._calls.keeps_call(record) or (
                    self._cluster is not None and self._cluster.keeps_call(record)
                )
                if not kept:
                    handle.provider.hang_up(record.session_id, handle.plan)
            except TransportError as exc:
                errors.append(exc)
            self._calls.ended(record)
            if self._cluster is not None:
                self._cluster.ended(record)
            final = record.status(connected=False)
            with self._lock:
                self._ended[record.session_id] = final
                while len(self._ended) > _ENDED_KEPT:
                    self._ended.popitem(last=False)
                self._ending.pop(record.session_id, None)
            handle.ended.set()
            logger.info(
                "session %s: ended %s: frames in %d, out %d; dropped in %d, out %d; restarts %d",
                record.session_id,
                final.state.name,
                final.frames_in,
                final.frames_out,
                final.dropped_in,
                final.dropped_out,
                final.restarts,
            )
        if errors:
            raise errors[0]


def _join_cluster(service: TransportService) -> NodeCluster | None:
    """The service's node in the cluster (``cluster:``), started; ``None`` without one (no
    Redis then: the module that imports it is never loaded)."""
    if service.config.cluster is None:
        return None
    from .clustering import NodeCluster  # noqa: PLC0415 (redis only with a cluster section)

    try:
        cluster = NodeCluster(
            service.config,
            service._infrastructure,
            provider_of=service._provider,
            end_quietly=service._end_quietly,
        )
    except BaseException:
        service.close()
        raise
    service._calls.cluster = cluster
    return cluster


def _with_epoch(plan: SessionPlan, epoch: int) -> SessionPlan:
    from .clustering import with_epoch  # noqa: PLC0415

    return with_epoch(plan, epoch)


def _policy(
    config: SupervisorConfig, window_s: float = DEFAULT_RECONNECT_WINDOW_S
) -> IntensityPolicy:
    if config.reconnect_window_s is not None:
        window_s = config.reconnect_window_s
    return IntensityPolicy(
        max_restarts=config.max_restarts,
        within_s=config.within_s,
        backoff_initial_s=config.backoff_initial_s,
        backoff_max_s=config.backoff_max_s,
        backoff_multiplier=config.backoff_multiplier,
        backoff_jitter=config.backoff_jitter,
        reset_after_s=config.reset_after_s,
        restart=config.restart,
        reconnect_window_s=window_s,
    )


def _make_request(
    request: SessionRequest | Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> SessionRequest:
    for name in fields:
        if name not in _REQUEST_FIELDS:
            close = difflib.get_close_matches(name, _REQUEST_FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"create_session() got an unknown field {name!r}{hint}")
    if request is None:
        return SessionRequest(**fields)
    if isinstance(request, SessionRequest):
        return dataclasses.replace(request, **fields)
    if not isinstance(request, Mapping):  # typed, but callers are not all type-checked
        kind = type(request).__name__  # type: ignore[unreachable]
        raise TypeError(f"create_session() takes a SessionRequest or a mapping, not {kind}")
    return _make_request(None, {**request, **fields})


def _check_id(session_id: object) -> None:
    if not isinstance(session_id, str):
        raise TypeError(f"a session id is a str, not {type(session_id).__name__}")


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0 or timeout > threading.TIMEOUT_MAX:
        raise ValueError(
            f"timeout must be between 0 and {threading.TIMEOUT_MAX:g} seconds, got {timeout!r}"
        )
