"""Metrics: ``/metrics`` scraped over real HTTP during real sessions, and ``service.metrics()``.

Traffic counters are read from the sessions at scrape time, so once the traffic is done they
must equal, exactly, what was sent and received: by the test, by the session's own status, by
the media gateway and by the emulated phone.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import (
    Audio,
    Binary,
    ConfigError,
    ConnectionFailed,
    Mark,
    ProviderError,
    ServiceClosed,
    Started,
    Text,
    TransportService,
)
from actors.config import EmulatorConfig, MetricsConfig, TransportConfig
from actors.emulator.phone import TwilioEmulator
from actors.gateway import ServerThread
from actors.gateway.server import MediaGateway
from actors.lifecycle import SessionState
from actors.metrics import sample_key
from actors.session import SessionRecord

from ._provider_calls import read_until
from .conftest import eventually, fast_config
from .processes import free_port
from .proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
TO, FROM = "+15550100", "+15550199"
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metrics_config(**emulator: object) -> TransportConfig:
    return dataclasses.replace(
        fast_config(),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
        emulator=EmulatorConfig(**emulator),  # type: ignore[arg-type]
    )


def scrape(url: str) -> dict[str, float]:
    """GET /metrics and parse the text format into {sample_key: value}, leaving out the
    ``_created`` timestamps (as ``service.metrics()`` does)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, f"not a sample: {line!r}"
        if match["name"].endswith("_created"):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        samples[sample_key(match["name"], labels)] = float(match["value"])
    return samples


def key(name: str, **labels: str) -> str:
    return sample_key(name, labels)


def record_of(service: TransportService, session_id: str) -> SessionRecord:
    return service._sessions[session_id].record


@pytest.fixture
def metrics_service() -> Iterator[TransportService]:
    service = TransportService(metrics_config())
    try:
        yield service
    finally:
        service.close()


# -- traffic ----------------------------------------------------------------------------------


def test_scraped_counters_equal_the_frames_sent_and_received(
    metrics_service: TransportService, echo_server: ServerThread
) -> None:
    service = metrics_service
    url = service.metrics_url
    assert url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url)
    assert not url.endswith(":0/metrics")  # the port actually bound, not the one asked for
    sid = service.create_session(provider="websocket", url=echo_server.url).session_id
    payloads = [bytes([i]) * (100 + i) for i in range(40)]
    for payload in payloads:
        service.write_websocket_message(sid, Binary(payload))
    service.write_websocket_message(sid, Text("last"))
    echoed = [service.read_websocket_message(sid, timeout=5) for _ in range(len(payloads) + 1)]
    assert echoed == [*map(Binary, payloads), Text("last")]

    # During the run: the traffic is done, the session is live.
    during = scrape(url)
    frames, size = len(payloads) + 1, sum(map(len, payloads)) + len(b"last")
    ws = {"provider": "websocket"}
    assert during[key("transport_frames_total", direction="out", **ws)] == frames
    assert during[key("transport_frames_total", direction="in", **ws)] == frames
    assert during[key("transport_bytes_total", direction="out", **ws)] == size
    assert during[key("transport_bytes_total", direction="in", **ws)] == size
    assert during[key("transport_sessions_created_total", **ws)] == 1
    assert during[key("transport_sessions_active", **ws)] == 1
    assert during[key("transport_sessions", state="open", **ws)] == 1
    assert during[key("transport_frames_queued", direction="out", **ws)] == 0
    assert during[key("transport_websocket_connect_seconds_count", **ws)] == 1
    assert 0 < during[key("transport_websocket_connect_seconds_sum", **ws)] < 5
    for reason in ("inbox_full", "malformed"):
        assert (
            during[key("transport_frames_dropped_total", direction="in", reason=reason, **ws)] == 0
        )
    status = service.status(sid)
    assert (status.frames_out, status.frames_in) == (frames, frames)
    assert service.metrics() == during  # the snapshot is what /metrics shows

    # After the end: the counts are kept in the running totals, the session is gone.
    service.end_session(sid)
    after = scrape(url)
    assert after[key("transport_frames_total", direction="out", **ws)] == frames
    assert after[key("transport_frames_total", direction="in", **ws)] == frames
    assert after[key("transport_bytes_total", direction="in", **ws)] == size
    assert after[key("transport_sessions_ended_total", **ws)] == 1
    assert after[key("transport_sessions_active", **ws)] == 0
    assert key("transport_sessions", state="open", **ws) not in after


def test_a_call_is_counted_as_the_phone_and_the_gateway_saw_it(
    metrics_service: TransportService,
) -> None:
    service = metrics_service
    assert service.metrics_url is not None
    info = service.create_session(provider="twilio", to=TO, from_=FROM)
    sid = info.session_id
    assert info.call_id is not None
    read_until(service, sid, Started)
    for i in range(25):
        service.write_websocket_message(sid, Binary(bytes([i]) * 160))
    service.write_websocket_message(sid, Mark("played"))
    back = read_until(service, sid, Mark)
    emulator = service.infrastructure.running["emulator"]
    assert isinstance(emulator, TwilioEmulator)
    media = emulator.call_media(info.call_id)
    assert media is not None
    sent_out = 25 + 1  # 25 media frames and a mark

    scraped = scrape(service.metrics_url)
    tw = {"provider": "twilio"}
    frames_out = scraped[key("transport_frames_total", direction="out", **tw)]
    frames_in = scraped[key("transport_frames_total", direction="in", **tw)]
    assert frames_out == sent_out
    assert media.frames_received == 25  # the phone got every media frame...
    assert media.marks_echoed == ["played"]  # ... and the mark, played back
    audio_in = sum(isinstance(m, Audio) for m in back)
    assert audio_in == media.frames_sent == 25  # the echo: all of it, before the mark
    # In: Twilio's `connected` (the codec keeps it to itself), `start`, the audio, the mark.
    assert frames_in == 1 + 1 + audio_in + 1
    gateway = service.infrastructure.running["gateway"]
    assert isinstance(gateway, MediaGateway)
    stats = gateway.stats()
    assert scraped[key("transport_gateway_frames_total", direction="to_provider")] == frames_out
    assert stats.frames_to_provider == frames_out
    assert scraped[key("transport_gateway_frames_total", direction="to_session")] == frames_in
    assert scraped["transport_gateway_pairings_total"] == 1
    assert scraped["transport_gateway_calls_active"] == 1
    assert scraped["transport_gateway_resumes_total"] == 0
    assert scraped[key("transport_gateway_buffered_frames", direction="to_provider")] == 0
    # REST: the call was created (201); not hung up yet.
    create = key(
        "transport_rest_request_seconds_count", operation="create_call", status="201", **tw
    )
    assert scraped[create] == 1
    assert not any("hang_up" in name for name in scraped)

    service.end_session(sid)
    after = service.metrics()
    # One hang-up: 200, or 400 (Twilio's 21220, "not in progress") when the phone saw the
    # stream close and completed the call first; either way the call is over.
    hang_ups = {
        name: value
        for name, value in after.items()
        if name.startswith("transport_rest_request_seconds_count{") and "hang_up" in name
    }
    assert len(hang_ups) == 1 and sum(hang_ups.values()) == 1, hang_ups
    (status,) = re.findall(r'status="(\d+)"', next(iter(hang_ups)))
    assert status in ("200", "400")
    assert after[create] == 1
    bucket = key(
        "transport_rest_request_seconds_bucket", operation="hang_up", status=status, le="+Inf", **tw
    )
    assert after[bucket] == 1
    assert after[key("transport_sessions_created_total", **tw)] == 1
    assert after[key("transport_sessions_ended_total", **tw)] == 1
    assert after[key("transport_sessions_active", **tw)] == 0
    assert after[key("transport_frames_total", direction="out", **tw)] == sent_out
    # The gateway lets go of the call on its own loop, a moment after the session's end.
    assert media.ended.wait(5)
    assert eventually(lambda: service.metrics()["transport_gateway_calls_active"] == 0)


def test_a_refused_call_is_labelled_with_its_status(metrics_service: TransportService) -> None:
    with pytest.raises(ProviderError) as info:
        metrics_service.create_session(provider="twilio", to="not-a-number", from_=FROM)
    status = info.value.status
    assert status is not None and 400 <= status < 500
    snapshot = metrics_service.metrics()
    count = key(
        "transport_rest_request_seconds_count",
        operation="create_call",
        provider="twilio",
        status=str(status),
    )
    assert snapshot[count] == 1
    assert key("transport_sessions_created_total", provider="twilio") not in snapshot


def test_drops_are_counted_as_the_status_counts_them(echo_server: ServerThread) -> None:
    config = dataclasses.replace(metrics_config(), runtime=fast_config(inbox_max=3).runtime)
    with TransportService(config) as service:
        sid = service.create_session(provider="websocket", url=echo_server.url).session_id
        for i in range(20):
            service.write_websocket_message(sid, Binary(bytes([i]) * 10))
        record = record_of(service, sid)
        # Nothing is read: the echoes overflow the inbox of 3, the oldest dropped each time.
        assert eventually(lambda: record.traffic.frames_in == 20)
        status = service.status(sid)
        assert status.dropped_in == 20 - 3
        assert (
            service.metrics()[
                key(
                    "transport_frames_dropped_total",
                    direction="in",
                    provider="websocket",
                    reason="inbox_full",
                )
            ]
            == status.dropped_in
        )
        assert (
            service.metrics()[key("transport_frames_queued", direction="in", provider="websocket")]
            == 3
        )
        service.end_session(sid)


def test_restarts_reconnects_and_failures_are_counted(echo_server: ServerThread) -> None:
    with (
        TcpProxy(echo_server.port) as proxy,
        TransportService(metrics_config()) as service,
    ):
        sid = service.create_session(provider="websocket", url=proxy.url).session_id
        record = record_of(service, sid)
        proxy.cut()  # a reset: the connection is lost, the supervisor redials
        assert record.lifecycle.wait_until(
            lambda: record.restarts == 1 and record.state is SessionState.OPEN, 10
        )
        ws = {"provider": "websocket"}
        snapshot = service.metrics()
        assert (
            snapshot[key("transport_session_restarts_total", reason="connection_lost", **ws)] == 1
        )
        assert snapshot[key("transport_session_reconnects_total", **ws)] == 1
        assert snapshot[key("transport_websocket_connect_seconds_count", **ws)] == 2
        service.end_session(sid)

        refused = f"ws://127.0.0.1:{free_port()}/nobody-here"
        with pytest.raises(ConnectionFailed):
            service.create_session(provider="websocket", url=refused)
        snapshot = service.metrics()
        assert snapshot[key("transport_sessions_failed_total", **ws)] == 1
        assert snapshot[key("transport_sessions_created_total", **ws)] == 1  # the first only
        assert snapshot[key("transport_sessions_ended_total", **ws)] == 1
        assert snapshot[key("transport_sessions_active", **ws)] == 0


# -- the endpoint and the snapshot ------------------------------------------------------------


def test_each_service_has_its_own_registry(echo_server: ServerThread) -> None:
    with (
        TransportService(metrics_config()) as first,
        TransportService(metrics_config()) as second,
    ):
        assert first.metrics_url != second.metrics_url
        sid = first.create_session(provider="websocket", url=echo_server.url).session_id
        first.write_websocket_message(sid, Binary(b"x"))
        assert first.read_websocket_message(sid, timeout=5) == Binary(b"x")
        out = key("transport_frames_total", direction="out", provider="websocket")
        assert first.metrics()[out] == 1
        assert out not in second.metrics()
        assert out not in scrape(second.metrics_url or "")
        first.end_session(sid)


def test_no_listen_no_server_but_a_snapshot(echo_server: ServerThread) -> None:
    with TransportService(fast_config()) as service:
        assert service.metrics_url is None
        assert (
            key("transport_sessions_created_total", provider="websocket") not in service.metrics()
        )
        sid = service.create_session(provider="websocket", url=echo_server.url).session_id
        assert service.metrics()[key("transport_sessions_active", provider="websocket")] == 1
        service.end_session(sid)
    with pytest.raises(ServiceClosed):
        service.metrics()


def test_the_endpoint_serves_only_metrics_and_stops_with_the_service() -> None:
    service = TransportService(metrics_config())
    url = service.metrics_url
    assert url is not None
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url.removesuffix("/metrics") + "/other", timeout=5)
        assert info.value.code == 404
        info.value.close()
        assert scrape(url) == scrape(url)  # nothing happens between two scrapes
    finally:
        service.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_a_port_already_taken_is_a_config_error_naming_the_key() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = dataclasses.replace(
            fast_config(), metrics=MetricsConfig(listen=f"127.0.0.1:{port}")
        )
        with pytest.raises(ConfigError) as info:
            TransportService(config)
    assert info.value.key_path == "metrics.listen"
    assert "cannot serve metrics there" in info.value.why


def test_the_standalone_gateway_serves_its_metrics(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "gateway: {listen: '127.0.0.1:0', secret: gateway-secret-for-metrics}\n"
        "metrics: {listen: '127.0.0.1:0'}\n",
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "actors.cli", "gateway", "-c", str(path)]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        lines = []
        while line := child.stdout.readline():
            lines.append(line)
            if line.startswith("ready"):
                break
        found = re.search(r"metrics at (http://\S+)", "".join(lines))
        try:
            assert found is not None, lines
            scraped = scrape(found.group(1))
            assert scraped["transport_gateway_pairings_total"] == 0
            assert scraped["transport_gateway_calls_active"] == 0
            assert not any(name.startswith("transport_sessions") for name in scraped)
        finally:
            child.terminate()
            rest, err = child.stdout.read(), child.stderr.read()
        assert child.wait(timeout=20) == 0, err
    assert "media gateway stopped" in rest
