"""Exotel inbound calls end to end: the emulated Voicebot applet dials the gateway itself.

A caller dials an ExoPhone whose flow's Voicebot applet holds the gateway's URL
(``service.infrastructure.exotel_applet_url``: ``?sample-rate=``, ``inbound=<entry>`` and
the entry's inbound token, Basic credentials in the userinfo). The emulator's phone dials it
with no session, as Exotel does: the gateway checks the Basic auth, then the inbound token,
then offers the call to the runtime's inbound queue; ``accept_session(provider="exotel")``
takes it, and the waiting stream pairs with the new session. Nothing here is mocked.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from actors import AcceptTimeout, Audio, Binary, Dtmf, Mark, Started, TransportService
from actors.config import ExotelProviderConfig, GatewayConfig, InboundConfig, TransportConfig
from actors.emulator.exotel import ExotelEmulator
from actors.gateway.server import MediaGateway
from actors.lifecycle import SessionState
from actors.redaction import redact_url
from actors.streamed_calls import SIGNATURE_HEADER, InboundStream, desk_request
from tests._provider_calls import read_until, running, write_across_a_cut
from tests.conftest import eventually
from tests.pcm_calls import config, pcm_frames, peak_hz
from tests.processes import free_port
from tests.proxy import TcpProxy

EXOPHONE, CALLER = "08047491899", "+919876543210"
BASIC = GatewayConfig(exotel_username="exotel", exotel_password="pw-of-the-test")


def exotel() -> ExotelProviderConfig:
    return ExotelProviderConfig(name="exotel", api_base_url="emulator", caller_id=EXOPHONE)


def inbound_config(**inbound: object) -> TransportConfig:
    base = config(exotel(), BASIC)
    return dataclasses.replace(base, inbound=InboundConfig(**inbound))  # type: ignore[arg-type]


@pytest.fixture
def service() -> Iterator[TransportService]:
    with TransportService(inbound_config()) as svc:
        yield svc


def emulator_of(service: TransportService) -> ExotelEmulator:
    return running(service, "exotel", ExotelEmulator)


def counters(service: TransportService) -> dict[str, int]:
    webhook = service.infrastructure.webhook_started()
    assert webhook is not None
    return webhook.counters.snapshot()


def rejected(service: TransportService) -> dict[str, int]:
    stats = service.infrastructure.gateway_stats()
    assert stats is not None
    return stats.rejected


def test_the_applet_url_carries_the_rate_the_entry_and_its_credentials(
    service: TransportService,
) -> None:
    url = service.infrastructure.exotel_applet_url("exotel", {"campaign": "c1"})
    parts = urlsplit(url)
    assert parts.path == "/exotel" and (parts.username, parts.password) == (
        "exotel",
        "pw-of-the-test",
    )
    query = dict(parse_qsl(parts.query))
    assert query.keys() == {"sample-rate", "campaign", "inbound", "inbound_token"}
    assert (query["sample-rate"], query["inbound"]) == ("8000", "exotel")
    safe = redact_url(url)  # what may be printed: no password, no token
    assert "pw-of-the-test" not in safe and query["inbound_token"] not in safe


def test_an_inbound_call_becomes_a_session_with_audio_marks_and_dtmf(
    service: TransportService,
) -> None:
    call_sid = service.infrastructure.place_inbound("exotel", to=EXOPHONE, from_=CALLER)
    info = service.accept_session(timeout=5, provider="exotel")
    assert (info.direction, info.from_, info.to, info.call_id) == (
        "inbound",
        CALLER,
        EXOPHONE,
        call_sid,
    )
    sid = info.session_id
    started = read_until(service, sid, Started)[-1]
    assert isinstance(started, Started) and started.call_id == call_sid
    assert (started.media_format.encoding, started.media_format.sample_rate) == ("pcm16", 8000)
    assert dict(started.parameters) == {"inbound": "exotel"}  # the inbound token is hidden
    frames = pcm_frames(700.0, 1.0, 8000)
    for frame in frames:
        service.write_websocket_message(sid, Binary(frame))
    service.write_websocket_message(sid, Mark("played"))
    back = read_until(service, sid, Mark)
    echoed = b"".join(m.data for m in back if isinstance(m, Audio))
    assert peak_hz(echoed[-8000:], 8000) == pytest.approx(700.0, abs=5.0)  # the tone came back
    emulator = emulator_of(service)
    media = emulator.call_media(call_sid)
    assert media is not None and media.errors == [] and media.marks_echoed == ["played"]
    assert peak_hz(bytes(media.recording), 8000) == pytest.approx(700.0, abs=5.0)
    emulator.send_dtmf(call_sid, "7")
    assert [m for m in read_until(service, sid, Dtmf) if isinstance(m, Dtmf)] == [Dtmf("7")]
    assert counters(service)["accepted"] == 1
    service.end_session(sid)  # closes the stream: the call goes back to Exotel's flow
    assert emulator.wait_ended(call_sid, 5).status == "completed"
    assert service.status(sid).state is SessionState.CLOSED


def test_a_call_over_capacity_is_closed_cleanly_and_counted() -> None:
    with TransportService(inbound_config(max_sessions=1)) as service:
        first = service.infrastructure.place_inbound("exotel", to=EXOPHONE, from_=CALLER)
        info = service.accept_session(timeout=5, provider="exotel")
        assert info.call_id == first
        second = service.infrastructure.place_inbound("exotel", to=EXOPHONE, from_="+919800000002")
        emulator = emulator_of(service)
        ended = emulator.wait_ended(second, 5)  # refused at once: its stream is closed
        assert ended.media is not None and ended.media.close_code == 1000
        assert counters(service)["refused_busy"] == 1
        assert rejected(service).get("inbound_refused") == 1
        service.end_session(info.session_id)


def test_a_call_nobody_accepts_is_closed_after_the_queue_timeout() -> None:
    cfg = inbound_config(queue_timeout_s=0.3, answer_timeout_s=0.3)
    with TransportService(cfg) as service:
        call_sid = service.infrastructure.place_inbound("exotel", to=EXOPHONE, from_=CALLER)
        ended = emulator_of(service).wait_ended(call_sid, 5)
        assert ended.media is not None and ended.media.close_code == 1000
        assert counters(service)["refused_timeout"] == 1
        with pytest.raises(AcceptTimeout):  # nothing is left for a late acceptor
            service.accept_session(timeout=0.2, provider="exotel")


def test_a_caller_who_hangs_up_before_an_answer_is_abandoned(service: TransportService) -> None:
    call_sid = service.infrastructure.place_inbound("exotel", to=EXOPHONE, from_=CALLER)
    emulator = emulator_of(service)
    media = emulator.call_media(call_sid)
    assert media is not None and media.started.wait(5)
    assert eventually(lambda: service.infrastructure.webhook_started() is not None, 5)
    webhook = service.infrastructure.webhook_started()
    assert webhook is not None
    assert eventually(lambda: webhook.queue.load() == 1, 5)  # offered, waiting
    emulator.hang_up(call_sid)  # stop, then close: before anyone accepted
    assert eventually(lambda: counters(service)["abandoned"] == 1, 5)
    assert webhook.queue.load() == 0
    with pytest.raises(AcceptTimeout):
        service.accept_session(timeout=0.2, provider="exotel")


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("token", "bad_token"),  # another inbound token (not under the gateway's secret)
        ("entry", "bad_token"),  # the token of one entry claimed for another
        ("basic", "bad_basic_auth"),  # the right URL with another password
    ],
)
def test_a_forged_applet_url_is_refused_before_anything_is_offered(
    service: TransportService, forge: str, reason: str
) -> None:
    url = service.infrastructure.exotel_applet_url("exotel")
    if forge == "token":
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        url = url.replace(query["inbound_token"], "A" * len(query["inbound_token"]))
    elif forge == "entry":
        url = url.replace("inbound=exotel", "inbound=other")
    else:
        url = url.replace("pw-of-the-test", "guessed")
    service.infrastructure.exotel_emulator()
    emulator = emulator_of(service)
    call = emulator.place_inbound_call(url, EXOPHONE, CALLER)
    assert emulator.wait_ended(call.sid, 5) is call
    assert call.media is not None
    if reason == "bad_token":  # the stream opened, and was closed on its start
        assert call.media.close_code == 1008
    else:  # refused at the handshake: the phone never streamed
        assert call.media.close_code is None and "401" in " ".join(call.media.errors)
    assert eventually(lambda: rejected(service).get(reason) == 1, 5)
    webhook = service.infrastructure.webhook_started()
    assert webhook is None or webhook.counters.snapshot()["accepted"] == 0
    with pytest.raises(AcceptTimeout):
        service.accept_session(timeout=0.2, provider="exotel")


def test_a_standalone_gateway_posts_its_inbound_streams_to_the_runtime_signed() -> None:
    secret = "shared-secret-of-the-test"
    port = free_port()  # the runtime's webhook, which the gateway must know beforehand
    webhook = f"http://127.0.0.1:{port}"
    standalone = dataclasses.replace(BASIC, embedded=False, secret=secret, inbound_url=webhook)
    with MediaGateway(standalone) as gateway:
        hop = dataclasses.replace(BASIC, embedded=False, url=gateway.url, secret=secret)
        cfg = dataclasses.replace(
            config(exotel(), hop), inbound=InboundConfig(listen=f"127.0.0.1:{port}")
        )
        with TransportService(cfg) as service:
            call_sid = service.infrastructure.place_inbound("exotel", EXOPHONE, CALLER)
            info = service.accept_session(timeout=5, provider="exotel")
            assert (info.call_id, info.from_, info.to) == (call_sid, CALLER, EXOPHONE)
            sid = info.session_id
            read_until(service, sid, Started)
            for frame in pcm_frames(500.0, 0.5, 8000):
                service.write_websocket_message(sid, Binary(frame))
            service.write_websocket_message(sid, Mark("m"))
            assert read_until(service, sid, Mark)[-1] == Mark("m")
            assert gateway.stats().pairings == 1
            # What the gateway posts is signed with the shared secret: a forgery is refused.
            call = InboundStream("exotel", "exotel", "forged-call", CALLER, EXOPHONE)
            body, _ = desk_request("another-secret-entirely", "offer", call, time.time())
            forged = requests.post(
                webhook + "/exotel/inbound",
                data=body,
                headers={SIGNATURE_HEADER: desk_request(secret, "offer", call, 0.0)[1]},
                timeout=5,
            )
            assert forged.status_code == 403
            stale_body, stale_signature = desk_request(secret, "offer", call, time.time() - 3600)
            stale = requests.post(
                webhook + "/exotel/inbound",
                data=stale_body,
                headers={SIGNATURE_HEADER: stale_signature},
                timeout=5,
            )
            assert stale.status_code == 403  # a replay of an old request
            assert counters(service)["bad_signature"] == 2 and counters(service)["accepted"] == 1
            service.end_session(sid)


def test_an_inbound_calls_dropped_session_hop_resumes_with_nothing_lost_or_doubled() -> None:
    secret = "shared-secret-of-the-test"
    port = free_port()
    webhook = f"http://127.0.0.1:{port}"
    standalone = GatewayConfig(embedded=False, secret=secret, inbound_url=webhook)
    with MediaGateway(standalone) as gateway, TcpProxy(gateway._server.port) as proxy:
        hop = GatewayConfig(embedded=False, url=proxy.url, public_url=gateway.url, secret=secret)
        cfg = dataclasses.replace(
            config(exotel(), hop), inbound=InboundConfig(listen=f"127.0.0.1:{port}")
        )
        with TransportService(cfg) as service:
            call_sid = service.infrastructure.place_inbound("exotel", EXOPHONE, CALLER)
            info = service.accept_session(timeout=5, provider="exotel")
            sid = info.session_id
            read_until(service, sid, Started)
            sent = [bytes([i, 0]) * 160 for i in range(100)]  # each 20 ms frame its own
            write_across_a_cut(service, sid, proxy, sent)
            back = read_until(service, sid, Mark)
            assert [m.data for m in back if isinstance(m, Audio)] == sent  # both ways, once
            assert service.status(sid).restarts == 1 and proxy.connections == 2
            media = emulator_of(service).call_media(call_sid)
            assert media is not None and bytes(media.recording) == b"".join(sent)
            assert gateway.stats().resumes == 1
            service.end_session(sid)


def test_a_standalone_gateway_without_inbound_url_refuses_inbound_streams() -> None:
    secret = "shared-secret-of-the-test"
    with MediaGateway(GatewayConfig(embedded=False, secret=secret)) as gateway:
        hop = GatewayConfig(embedded=False, url=gateway.url, secret=secret)
        with TransportService(config(exotel(), hop)) as service:
            call_sid = service.infrastructure.place_inbound("exotel", EXOPHONE, CALLER)
            ended = emulator_of(service).wait_ended(call_sid, 5)
            assert ended.media is not None, ended
            assert ended.media.close_code == 1008, ended.media.errors
            assert gateway.stats().rejected.get("inbound_off") == 1
            assert counters(service)["accepted"] == 0  # nothing reached the queue
