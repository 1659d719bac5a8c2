"""Metrics of one service (and of a standalone gateway): the only user of ``prometheus_client``.

Each :class:`ServiceMetrics` has a registry of its own (never prometheus_client's global one),
so that many services can live in one process. What it holds comes in two kinds:

- **Events** (rare: a session created, ended or failed, a connector restarted or reconnected, a
  REST request, a WebSocket connected) are counted where they happen, by the service, the
  supervisor, the connector and the providers' REST clients. None of those modules imports
  ``prometheus_client``: they call the plain methods below, or (the providers) a
  :data:`~actors.providers.RequestObserver` callback made by :meth:`ServiceMetrics.rest_observer`.
- **Traffic** (frames and bytes each way, drops, queue depths, gateway counters) is never
  counted per frame. The I/O threads already keep counters on every session's
  :class:`~actors.session.SessionRecord` (``traffic``, the inbox's and outbox's ``dropped``)
  and the gateway keeps its :class:`~actors.gateway.server.GatewayStats`; collectors read them
  when ``/metrics`` is scraped or :meth:`ServiceMetrics.snapshot` is called. The service
  registers each session with :meth:`ServiceMetrics.track` and, once it has ended (its threads
  are gone), folds its final counts into running totals with :meth:`ServiceMetrics.retire`:
  one lock keeps the two steps atomic against a scrape, so counters never go backwards.

Every metric is named ``transport_...``; the ``provider`` label is the configured provider's
name (``twilio``, ``echo``...). The names and labels are listed in the README ("Metrics and
logs"). :class:`MetricsServer` serves ``/metrics`` over HTTP on a thread of its own.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from .gateway.server import GatewayStats
    from .session import SessionRecord

__all__ = ["ClusterCollector", "GatewayMetrics", "MetricsServer", "ServiceMetrics", "sample_key"]

logger = logging.getLogger(__name__)

# Seconds: a WebSocket dial + handshake on loopback takes about a millisecond, across the
# world a few hundred; a REST request (Twilio's Calls API) tens to hundreds of milliseconds.
_CONNECT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_HTTP_TIMEOUT_S = 5.0  # a scraper that connects and says nothing is dropped after this

# A session's counters, as (family, labels after `provider`) -> value. The families are
# counters; a retired session's last values are added to the running totals.
_Key = tuple[str, tuple[str, ...]]
_FRAMES = "transport_frames"
_BYTES = "transport_bytes"
_RESENT = "transport_frames_resent"
_DROPPED = "transport_frames_dropped"
_LOST = "transport_frames_lost_in_flight"
_COUNTER_HELP = {
    _FRAMES: ("WebSocket data frames carried, by direction (in: received, out: sent)", "direction"),
    _BYTES: ("WebSocket payload bytes carried, by direction", "direction"),
    _RESENT: ("frames sent again after a reconnect (not in transport_frames_total)", None),
    _DROPPED: (
        "frames dropped, by direction and reason (inbox_full, outbox_full: a bounded queue "
        "overflowed; unsent_at_end: still queued when the session ended; malformed: an "
        "inbound frame the codec could not read)",
        "direction,reason",
    ),
    _LOST: (
        "frames sent and never delivered: a connection died with them in flight (not yet "
        "acknowledged by the peer's TCP) and no resume resent them",
        None,
    ),
}


def sample_key(name: str, labels: dict[str, str] | None = None) -> str:
    """The key of one sample in :meth:`ServiceMetrics.snapshot`: its name, then its labels
    sorted by name as in the exposition format (``transport_frames_total{direction="in",
    provider="twilio"}``)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _session_counts(record: SessionRecord) -> dict[_Key, int]:
    """A session's counters: plain attribute reads, no lock (they only ever grow)."""
    t = record.traffic
    codec = record.codec
    return {
        (_FRAMES, ("in",)): t.frames_in,
        (_FRAMES, ("out",)): t.frames_out,
        (_BYTES, ("in",)): t.bytes_in,
        (_BYTES, ("out",)): t.bytes_out,
        (_RESENT, ()): t.frames_resent,
        (_DROPPED, ("in", "inbox_full")): record.inbox.dropped,
        (_DROPPED, ("in", "malformed")): codec.malformed + getattr(codec, "unknown", 0),
        (_DROPPED, ("out", "outbox_full")): record.outbox.dropped,
        (_DROPPED, ("out", "unsent_at_end")): record.unsent_at_end,
        (_LOST, ()): record.lost_in_flight(),
    }


class _Registry:
    """A registry of our own, servable and readable as a snapshot."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def snapshot(self) -> dict[str, float]:
        """Every sample, keyed by :func:`sample_key` (as on ``/metrics``, without the
        ``_created`` timestamps prometheus_client adds to counters and histograms)."""
        result: dict[str, float] = {}
        for metric in self.registry.collect():
            timestamps = metric.type in ("counter", "histogram", "summary")
            for sample in metric.samples:
                if timestamps and sample.name.endswith("_created"):
                    continue
                result[sample_key(sample.name, sample.labels)] = float(sample.value)
        return result

    def serve(self, listen: str) -> MetricsServer:
        """Serve ``/metrics`` on ``listen`` (``host:port``; port 0 picks a free one)."""
        return MetricsServer(self.registry, listen)


class ServiceMetrics(_Registry):
    """The metrics of one :class:`~actors.service.TransportService`.

    ``gateway_stats`` returns the stats of the gateway the service runs (``None`` while it
    runs none); they are read at scrape time.
    """

    def __init__(
        self,
        gateway_stats: Callable[[], GatewayStats | None] | None = None,
        calls: Callable[[], tuple[dict[str, int], dict[str, int], dict[str, int]]] | None = None,
    ) -> None:
        super().__init__()
        r = self.registry
        self._created = Counter(
            "transport_sessions_created",
            "sessions created (create_session returned them)",
            ["provider"],
            registry=r,
        )
        self._ended = Counter(
            "transport_sessions_ended",
            "created sessions ended by end_session or close",
            ["provider"],
            registry=r,
        )
        self._failed = Counter(
            "transport_sessions_failed",
            "sessions that went FAILED: never connected, or the restart policy gave up",
            ["provider"],
            registry=r,
        )
        self._active = Gauge(
            "transport_sessions_active",
            "sessions created and not yet ended (created - ended)",
            ["provider"],
            registry=r,
        )
        self._restarts = Counter(
            "transport_session_restarts",
            "connectors restarted by the supervisor, by the exit that caused it",
            ["provider", "reason"],
            registry=r,
        )
        self._reconnects = Counter(
            "transport_session_reconnects",
            "restarted connectors that connected again (the session is back OPEN)",
            ["provider"],
            registry=r,
        )
        self._connect = Histogram(
            "transport_websocket_connect_seconds",
            "from a connector's start (less any restart backoff) to its connection's open",
            ["provider"],
            buckets=_CONNECT_BUCKETS,
            registry=r,
        )
        self._rest = Histogram(
            "transport_rest_request_seconds",
            "provider REST requests (retries included), by operation and final HTTP status "
            "(`error`: no response)",
            ["provider", "operation", "status"],
            buckets=_REST_BUCKETS,
            registry=r,
        )
        self._lock = threading.Lock()
        self._live: dict[str, SessionRecord] = {}  # by session id
        self._totals: dict[tuple[str, _Key], int] = {}  # (provider, key) -> retired sessions'
        r.register(_SessionCollector(self))
        if gateway_stats is not None:
            r.register(_GatewayCollector(gateway_stats))
        if calls is not None:
            r.register(_CallsCollector(calls))

    # -- sessions (called by the service) --------------------------------------------------

    def track(self, record: SessionRecord) -> None:
        """Count ``record``'s traffic from now on (read at scrape time)."""
        with self._lock:
            self._live[record.session_id] = record

    def retire(self, record: SessionRecord) -> None:
        """The session is over and its threads are gone: keep its final counts in the
        running totals and stop reading it. Idempotent."""
        with self._lock:
            if self._live.pop(record.session_id, None) is None:
                return
            provider = record.provider
            for key, value in _session_counts(record).items():
                slot = (provider, key)
                self._totals[slot] = self._totals.get(slot, 0) + value

    def session_created(self, provider: str) -> None:
        self._created.labels(provider).inc()
        self._active.labels(provider).inc()

    def session_ended(self, provider: str) -> None:
        self._ended.labels(provider).inc()
        self._active.labels(provider).dec()

    # -- supervision (called by the supervisor and the connectors) -------------------------

    def session_failed(self, provider: str) -> None:
        self._failed.labels(provider).inc()

    def restarted(self, provider: str, reason: str) -> None:
        self._restarts.labels(provider, reason).inc()

    def reconnected(self, provider: str) -> None:
        self._reconnects.labels(provider).inc()

    def connected(self, provider: str, seconds: float) -> None:
        self._connect.labels(provider).observe(max(0.0, seconds))

    # -- REST (called by the providers' clients, through a plain callback) -----------------

    def rest_observer(self, provider: str) -> Callable[[str, str, float], None]:
        """A callback ``(operation, status, seconds)`` for one provider's REST client."""
        histogram = self._rest

        def observe(operation: str, status: str, seconds: float) -> None:
            try:
                histogram.labels(provider, operation, status).observe(max(0.0, seconds))
            except Exception:  # a metrics problem must never fail a call
                logger.exception("metrics: recording a %s request failed", provider)

        return observe

    # -- read at scrape time ---------------------------------------------------------------

    def _read_sessions(
        self,
    ) -> tuple[dict[tuple[str, _Key], int], Tally[tuple[str, str]], Tally[tuple[str, str]]]:
        """Counter values (retired totals + live sessions), sessions by (provider, state),
        and queued frames by (provider, direction)."""
        with self._lock:  # against retire(): a session is counted either live or in totals
            counts = dict(self._totals)
            records = list(self._live.values())
            for record in records:
                for key, value in _session_counts(record).items():
                    slot = (record.provider, key)
                    counts[slot] = counts.get(slot, 0) + value
        states: Tally[tuple[str, str]] = Tally()
        queued: Tally[tuple[str, str]] = Tally()
        for record in records:
            states[(record.provider, record.state.name.lower())] += 1
            queued[(record.provider, "in")] += len(record.inbox)
            queued[(record.provider, "out")] += record.queued_out
        return counts, states, queued


class GatewayMetrics(_Registry):
    """The metrics of a standalone media gateway (``transport-actors gateway``); with
    ``cluster`` (a :meth:`ClusterMember.status <actors.cluster.ClusterMember.status>`), its
    membership of the cluster too (``transport_cluster_...``)."""

    def __init__(
        self,
        gateway_stats: Callable[[], GatewayStats | None],
        cluster: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.registry.register(_GatewayCollector(gateway_stats))
        if cluster is not None:
            self.registry.register(ClusterCollector(cluster))


class ClusterCollector:
    """One cluster member's state (``ClusterMember.status()``), read when scraped: never a
    Redis round trip on the scrape's path. Labels ``kind`` (node, gateway) and ``member``."""

    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        s = self._status()
        labels = [str(s["kind"]), str(s["node_id"])]
        names = ["kind", "member"]
        c = "transport_cluster_"
        connected = GaugeMetricFamily(c + "connected", "1 while Redis answers", labels=names)
        connected.add_metric(labels, 1 if s["connected"] else 0)
        draining = GaugeMetricFamily(c + "draining", "1 once draining", labels=names)
        draining.add_metric(labels, 1 if s["draining"] else 0)
        events = CounterMetricFamily(
            c + "events",
            "claims, refused, offers, takeovers, lost, restored, redis_errors, reconnects",
            labels=[*names, "event"],
        )
        for event, n in sorted(s["counters"].items()):
            events.add_metric([*labels, event], n)
        renew = GaugeMetricFamily(
            c + "renew_seconds",
            "lease renewal round trip, recent p50/p99/max (nodes)",
            labels=[*names, "quantile"],
        )
        for quantile in ("p50", "p99", "max"):
            ms = s["renew_ms"][quantile]
            if ms is not None:
                renew.add_metric([*labels, quantile], ms / 1000)
        return [connected, draining, events, renew]


class _SessionCollector:
    """Sessions' traffic, drops, states and queues, read from their records when scraped."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        counts, states, queued = self._metrics._read_sessions()
        families: dict[str, CounterMetricFamily] = {}
        for name, (text, extra) in _COUNTER_HELP.items():
            names = ["provider", *(extra.split(",") if extra else [])]
            families[name] = CounterMetricFamily(name, text, labels=names)
        for (provider, (name, values)), value in sorted(counts.items()):
            families[name].add_metric([provider, *values], value)
        yield from families.values()
        by_state = GaugeMetricFamily(
            "transport_sessions",
            "sessions the service holds, by lifecycle state (connecting, open, reconnecting, "
            "closing, closed, failed)",
            labels=["provider", "state"],
        )
        for (provider, state), n in sorted(states.items()):
            by_state.add_metric([provider, state], n)
        yield by_state
        depth = GaugeMetricFamily(
            "transport_frames_queued",
            "frames queued right now: in, received and not yet read; out, written and not yet sent",
            labels=["provider", "direction"],
        )
        for (provider, direction), n in sorted(queued.items()):
            depth.add_metric([provider, direction], n)
        yield depth


class _CallsCollector:
    """The webhook's inbound counters, the call statuses delivered and the streams' events,
    read when scraped."""

    def __init__(
        self, source: Callable[[], tuple[dict[str, int], dict[str, int], dict[str, int]]]
    ) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        inbound, statuses, streams = self._source()
        webhooks = CounterMetricFamily(
            "transport_inbound_webhooks",
            "voice webhooks and callbacks by outcome (accepted, refused_busy, refused_timeout, "
            "duplicate, replayed, bad_signature, unknown_account, status, status_unknown...)",
            labels=["outcome"],
        )
        for outcome, count in sorted(inbound.items()):
            webhooks.add_metric([outcome], count)
        progress = CounterMetricFamily(
            "transport_call_status",
            "call-progress callbacks delivered to sessions, by CallStatus (stale: out of order)",
            labels=["status"],
        )
        for status, count in sorted(statuses.items()):
            progress.add_metric([status], count)
        stream_events = CounterMetricFamily(
            "transport_stream_events",
            "<Stream statusCallback>s of the runtime's calls, by StreamEvent (stream-started, "
            "stream-stopped, stream-error)",
            labels=["event"],
        )
        for event, count in sorted(streams.items()):
            stream_events.add_metric([event], count)
        return [webhooks, progress, stream_events]


class _GatewayCollector:
    """The media gateway's counters (``MediaGateway.stats()``), read when scraped."""

    def __init__(self, stats: Callable[[], GatewayStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        s = self._stats()
        if s is None:  # no gateway running (yet): nothing to say
            return []
        g = "transport_gateway_"
        calls = GaugeMetricFamily(g + "calls_active", "sessions the gateway is relaying now")
        calls.add_metric([], s.calls_active)
        pairings = CounterMetricFamily(g + "pairings", "provider streams paired with their session")
        pairings.add_metric([], s.pairings)
        hops = CounterMetricFamily(g + "session_hops", "session-side connections accepted")
        hops.add_metric([], s.session_hops)
        resumes = CounterMetricFamily(
            g + "resumes", "session hops that took over from an earlier one (a resumed session)"
        )
        resumes.add_metric([], s.resumes)
        expired = CounterMetricFamily(
            g + "expired", "calls ended because their session stayed away past the resume window"
        )
        expired.add_metric([], s.expired)
        rejected = CounterMetricFamily(
            g + "rejected", "connections or frames refused, by reason", labels=["reason"]
        )
        for reason, n in sorted(s.rejected.items()):
            rejected.add_metric([reason], n)
        frames = CounterMetricFamily(
            g + "frames", "frames relayed, by direction", labels=["direction"]
        )
        frames.add_metric(["to_session"], s.frames_to_session)
        frames.add_metric(["to_provider"], s.frames_to_provider)
        buffered = GaugeMetricFamily(
            g + "buffered_frames",
            "frames held right now: to_session, kept for a session hop to resume from; "
            "to_provider, waiting for the provider stream",
            labels=["direction"],
        )
        buffered.add_metric(["to_session"], s.buffered_to_session)
        buffered.add_metric(["to_provider"], s.waiting_for_provider)
        dropped = CounterMetricFamily(
            g + "frames_dropped",
            "frames the gateway could not deliver: to_session, evicted from the resume buffer "
            "before a hop took them; to_provider, sent while no provider stream was there",
            labels=["direction"],
        )
        dropped.add_metric(["to_session"], s.lost_to_session)
        dropped.add_metric(["to_provider"], s.dropped_to_provider)
        connections = GaugeMetricFamily(
            g + "connections",
            "connections open now, both sides: pending (not yet authenticated, capped by "
            "gateway.max_pending and max_pending_per_address) or authenticated",
            labels=["state"],
        )
        connections.add_metric(["pending"], s.pending)
        connections.add_metric(["authenticated"], s.connections - s.pending)
        return [
            calls,
            pairings,
            hops,
            resumes,
            expired,
            rejected,
            frames,
            buffered,
            dropped,
            connections,
        ]


# -- the HTTP endpoint ------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    # Request threads are not daemons, so server_close() joins them (bounded by the handler's
    # socket timeout): stopping the server leaves no thread behind.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.warning("metrics: a request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    timeout = _HTTP_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics: %s %s", self.address_string(), format % args)


class MetricsServer:
    """``GET /metrics`` for one registry, on a thread of its own; :meth:`stop` ends it all."""

    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        app = make_wsgi_app(registry)

        def route(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "") in ("/metrics", "/metrics/"):
                body: Iterable[bytes] = app(environ, start_response)
                return body
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: the metrics are at /metrics\n"]

        server_class = _Server6 if ":" in host else _Server
        self._httpd = make_server(
            host, int(port), route, server_class=server_class, handler_class=_Handler
        )
        bound_host, bound_port = self._httpd.server_address[:2]
        shown = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{bound_port}/metrics"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http"
        )
        self._thread.daemon = True
        self._thread.start()
        logger.info("metrics: serving %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the socket, and join the server's threads. Idempotent."""
        if not self._thread.is_alive():
            return
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the request threads still running
        self._thread.join(timeout)
