"""Issue 13 through the facade: inbound calls accepted with ``accept_session``, call progress
as messages, machine detection, call control. Real servers on loopback: the service's own
webhook, gateway and embedded Twilio emulator (the caller, and the callee of outbound calls)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import statistics
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from actors import (
    AcceptTimeout,
    Binary,
    CallStatus,
    Close,
    MachineDetected,
    SessionClosed,
    SessionState,
    Started,
    Stopped,
    StreamError,
    TransportService,
    default_config,
)
from actors.calls import restream_window_s
from actors.config import GatewayConfig, InboundConfig, TwilioProviderConfig
from actors.emulator.phone import TwilioEmulator
from actors.gateway.server import MediaGateway
from actors.providers.twilio import TwilioRestClient
from actors.signing import stream_nonce, stream_token, twilio_signature
from tests._provider_calls import inbound_service, running
from tests.conftest import eventually
from tests.gateway.sides import closed_with
from tests.gateway.test_security import provider
from tests.hooks import Recorder
from tests.proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

OURS, CALLER, FROM = "+15550100", "+15550177", "+15550199"
BEHAVIOURS = {
    "+15550101": "busy:1",
    "+15550106": "busy",
    "+15550102": "no-answer",
    "+15550103": "failed:1",
    "+15550104": "answer-late:30",
    "+15550105": "machine",
}


@pytest.fixture
def service() -> Iterator[TransportService]:
    with inbound_service(BEHAVIOURS) as svc:
        yield svc


def emulator_of(service: TransportService) -> TwilioEmulator:
    service.infrastructure.twilio_emulator()
    return running(service, "emulator", TwilioEmulator)


def read_until(
    service: TransportService, sid: str, kind: type | tuple[type, ...], timeout: float = 5.0
) -> list[Any]:
    seen: list[Any] = []
    while True:
        message = service.read_websocket_message(sid, timeout=timeout)
        seen.append(message)
        if message is None or isinstance(message, kind):
            return seen


def events(seen: list[Any]) -> list[Any]:
    return [m for m in seen if not isinstance(m, Binary)]


# -- inbound ---------------------------------------------------------------------------------


def test_an_inbound_call_is_accepted_streamed_both_ways_and_ended(
    service: TransportService,
) -> None:
    call_sid = service.infrastructure.dial_in(OURS, CALLER, caller_name="Ada")
    info = service.accept_session(timeout=5)
    assert (info.direction, info.from_, info.to, info.call_id) == (
        "inbound",
        CALLER,
        OURS,
        call_sid,
    )
    assert info.fields["CallerName"] == "Ada" and info.fields["CallStatus"] == "ringing"
    assert service.sessions()[0].direction == "inbound"
    sid = info.session_id
    frames = [bytes([n]) * 160 for n in range(1, 11)]
    for frame in frames:
        service.write_websocket_message(sid, Binary(frame))
    started = read_until(service, sid, Started)[-1]
    assert started.call_id == call_sid
    echoed = b""
    while frames[-1] not in echoed:  # the emulator echoes what it hears, in order
        message = service.read_websocket_message(sid, timeout=5)
        assert message is not None
        if isinstance(message, Binary):
            echoed += message.data
    assert b"".join(frames) in echoed
    service.end_session(sid)
    emulator = emulator_of(service)
    assert emulator.wait_ended(call_sid, 5).status == "completed"
    assert service.metrics()['transport_inbound_webhooks_total{outcome="accepted"}'] == 1


def test_accept_times_out_and_a_plain_service_starts_no_webhook() -> None:
    with inbound_service(BEHAVIOURS) as svc:
        assert "webhook" not in svc.infrastructure.running
        with pytest.raises(AcceptTimeout):
            svc.accept_session(timeout=0.05)
        assert "webhook" in svc.infrastructure.running


def signed_post(
    service: TransportService, fields: dict[str, str], *, good: bool = True
) -> requests.Response:
    url = service.voice_url
    token = service.infrastructure.twilio_emulator().auth_token
    signature = twilio_signature(token if good else "not-the-token", url, fields)
    return requests.post(url, data=fields, headers={"X-Twilio-Signature": signature}, timeout=10)


def webhook_fields(service: TransportService, call_sid: str) -> dict[str, str]:
    return {
        "AccountSid": service.infrastructure.twilio_emulator().account_sid,
        "CallSid": call_sid,
        "From": CALLER,
        "To": OURS,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


def test_a_webhook_without_a_valid_signature_is_refused_403(service: TransportService) -> None:
    fields = webhook_fields(service, "CA" + "1" * 32)
    assert signed_post(service, fields, good=False).status_code == 403
    unsigned = requests.post(service.voice_url, data=fields, timeout=5)
    assert unsigned.status_code == 403
    with pytest.raises(AcceptTimeout):  # nothing reached the queue
        service.accept_session(timeout=0.05)
    assert service.metrics()['transport_inbound_webhooks_total{outcome="bad_signature"}'] == 2


def test_a_duplicate_webhook_gets_the_same_answer_and_no_second_session(
    service: TransportService,
) -> None:
    fields = webhook_fields(service, "CA" + "2" * 32)
    answers: list[requests.Response] = []
    first = threading.Thread(target=lambda: answers.append(signed_post(service, fields)))
    first.start()
    info = service.accept_session(timeout=5)
    first.join(10)
    again = signed_post(service, fields)
    assert answers[0].status_code == again.status_code == 200
    assert answers[0].text == again.text and info.session_id in again.text
    with pytest.raises(AcceptTimeout):
        service.accept_session(timeout=0.2)
    assert len(service.sessions()) == 1
    service.end_session(info.session_id)
    replay = signed_post(service, fields)  # after the call ended: refused
    assert "Reject" in replay.text
    counts = service.metrics()
    assert counts['transport_inbound_webhooks_total{outcome="duplicate"}'] == 1
    assert counts['transport_inbound_webhooks_total{outcome="replayed"}'] == 1


def test_past_capacity_a_caller_gets_busy() -> None:
    with inbound_service(BEHAVIOURS, max_sessions=1, queue_timeout_s=0.5) as svc:
        emulator = emulator_of(svc)
        first = svc.infrastructure.dial_in(OURS, CALLER)
        info = svc.accept_session(timeout=5)
        second = svc.infrastructure.dial_in(OURS, "+15550178")
        assert emulator.wait_ended(second, 5).status == "busy"
        unaccepted_after = svc.metrics()['transport_inbound_webhooks_total{outcome="refused_busy"}']
        assert unaccepted_after == 1
        svc.end_session(info.session_id)
        assert emulator.wait_ended(first, 5).status == "completed"
        third = svc.infrastructure.dial_in(OURS, CALLER)  # capacity is free again; no acceptor
        assert emulator.wait_ended(third, 5).status == "busy"
        assert svc.metrics()['transport_inbound_webhooks_total{outcome="refused_timeout"}'] == 1


# -- outbound progress -----------------------------------------------------------------------


class _Ends(logging.Handler):
    """When the emulator (Twilio) ended each call: its log line's time (the call's
    ``ended_at`` is kept to whole seconds, as Twilio's RFC 2822 dates are)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg in ("emulator: call %s ended %s", "emulated call %s ended (%s)"):
            self.at[str(record.args[0])] = record.created  # type: ignore[index]


@pytest.fixture
def ends() -> Iterator[_Ends]:
    handler = _Ends()
    log = logging.getLogger("actors.emulator")
    level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _ended_at(ends: _Ends, emulator: TwilioEmulator, call_sid: str) -> float:
    emulator.wait_ended(call_sid, 10)
    return ends.at[call_sid]


@pytest.mark.parametrize(
    ("to", "outcome", "ring"),
    [("+15550101", "busy", None), ("+15550102", "no-answer", 5), ("+15550103", "failed", None)],
)
def test_an_unanswered_call_ends_its_session_with_its_outcome_within_a_second(
    service: TransportService, ends: _Ends, to: str, outcome: str, ring: int | None
) -> None:
    info = service.create_session(provider="twilio", to=to, from_=FROM, timeout=ring)
    seen = events(read_until(service, info.session_id, Close, timeout=10))
    ended = time.time()
    statuses = [m.status for m in seen if isinstance(m, CallStatus)]
    assert statuses[-1] == outcome and statuses[0] == "initiated"
    assert seen[-1] == Close(1000, outcome)
    assert service.read_websocket_message(info.session_id, timeout=1) is None
    took = ended - _ended_at(ends, emulator_of(service), info.call_id or "")
    print(f"\n{outcome}: Twilio's end -> the session's Close: {took * 1000:.1f} ms")
    assert took < 1.0
    with pytest.raises(SessionClosed):
        service.transfer(info.session_id, "+15550111")
    service.end_session(info.session_id)


def test_a_busy_line_at_once_ends_the_session_or_create_session_says_busy(
    service: TransportService,
) -> None:
    for _ in range(3):
        try:
            info = service.create_session(provider="twilio", to="+15550106", from_=FROM)
        except SessionClosed as exc:  # Twilio said so before create_session returned
            assert exc.reason == "busy" and "busy" in str(exc)
            continue
        assert events(read_until(service, info.session_id, Close))[-1] == Close(1000, "busy")
        service.end_session(info.session_id)
    assert service.sessions() == []


def test_a_call_canceled_while_ringing_ends_its_session_canceled(
    service: TransportService, ends: _Ends
) -> None:
    info = service.create_session(provider="twilio", to="+15550104", from_=FROM)
    assert [m.status for m in events(read_until(service, info.session_id, CallStatus))] == [
        "initiated"
    ]
    emulator = emulator_of(service)
    endpoint = service.infrastructure.twilio_emulator()
    url = f"{emulator.url}/2010-04-01/Accounts/{endpoint.account_sid}/Calls/{info.call_id}.json"
    auth = (endpoint.account_sid, endpoint.auth_token)
    assert requests.post(url, data={"Status": "canceled"}, auth=auth, timeout=5).ok
    seen = events(read_until(service, info.session_id, Close))
    took = time.time() - _ended_at(ends, emulator, info.call_id or "")
    assert [m.status for m in seen if isinstance(m, CallStatus)][-1] == "canceled"
    assert seen[-1] == Close(1000, "canceled") and took < 1.0
    service.end_session(info.session_id)


def test_an_answered_call_reports_its_progress_in_order_with_its_media(
    service: TransportService,
) -> None:
    info = service.create_session(provider="twilio", to=OURS, from_=FROM)
    seen: list[Any] = []
    while not (
        any(isinstance(m, Started) for m in seen)
        and any(isinstance(m, CallStatus) and m.status == "in-progress" for m in seen)
    ):
        seen += events(read_until(service, info.session_id, (Started, CallStatus)))
    progress = [m for m in seen if isinstance(m, CallStatus)]
    # In Twilio's order (the callbacks are HTTP: the stream may start before "answered" lands).
    assert [m.status for m in progress] == ["initiated", "ringing", "in-progress"]
    assert [m.sequence for m in progress] == [0, 1, 2]
    assert info.direction == "outbound" and info.to == OURS


@pytest.mark.parametrize(
    ("detection", "verdict"),
    [
        ("Enable", "machine_start"),
        ({"MachineDetection": "DetectMessageEnd", "AsyncAmd": "true"}, "machine_end_beep"),
    ],
)
def test_machine_detection_reaches_the_application(
    service: TransportService, detection: Any, verdict: str
) -> None:
    info = service.create_session(
        provider="twilio", to="+15550105", from_=FROM, machine_detection=detection
    )
    seen = events(read_until(service, info.session_id, MachineDetected))
    assert seen[-1].answered_by == verdict and seen[-1].machine
    call = emulator_of(service).api.call(info.call_id or "")
    assert call.machine_detection == (
        detection if isinstance(detection, str) else "DetectMessageEnd"
    )


def test_the_configured_status_callback_still_gets_every_callback_forwarded_signed() -> None:
    with Recorder("unknown-yet") as hook:
        twilio = TwilioProviderConfig(
            name="twilio",
            api_base_url="emulator",
            status_callback=hook.url + "/progress",
            status_callback_events=("initiated", "ringing", "answered", "completed"),
        )
        config = dataclasses.replace(default_config(), providers={"twilio": twilio})
        with TransportService(config) as svc:
            hook.token = svc.infrastructure.twilio_emulator().auth_token
            info = svc.create_session(provider="twilio", to=OURS, from_=FROM)
            read_until(svc, info.session_id, Started)
            svc.end_session(info.session_id)
            hits = hook.wait_for(
                lambda h: any(x.fields.get("CallStatus") == "completed" for x in h)
            )
    statuses = [hit.fields["CallStatus"] for hit in hits]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert all(hit.signed for hit in hits)


# -- control ---------------------------------------------------------------------------------


def _live_call(service: TransportService) -> tuple[str, str]:
    info = service.create_session(provider="twilio", to=OURS, from_=FROM)
    read_until(service, info.session_id, Started)
    return info.session_id, info.call_id or ""


def _hang_ups(service: TransportService) -> float:
    """REST hang-ups the service has sent (any status)."""
    return sum(
        value
        for name, value in service.metrics().items()
        if name.startswith("transport_rest_request_seconds_count{") and "hang_up" in name
    )


def test_transfer_dials_the_target_and_ends_the_session_transferred(
    service: TransportService,
) -> None:
    sid, call_sid = _live_call(service)
    with pytest.raises(ValueError, match=r"E\.164"):
        service.transfer(sid, '+1555"/><Hangup/>')
    service.transfer(sid, "sip:desk@example.com", caller_id=FROM)
    assert events(read_until(service, sid, Close))[-1] == Close(1000, "transferred")
    with pytest.raises(SessionClosed):
        service.transfer(sid, "+15550111")
    call = emulator_of(service).wait_ended(call_sid, 5)
    (dial,) = call.transfers
    assert [(t.kind, t.target) for t in dial.targets] == [("sip", "sip:desk@example.com")]
    service.end_session(sid)
    # The call is the <Dial>'s now: ending the session must not hang it up (on Twilio a
    # hang-up would cut the transfer; the emulator has ended the call already, so count).
    assert _hang_ups(service) == 0
    # The call is the <Dial>'s now: ending the session posted no hang-up (Status=completed).
    updates = [r for r in emulator_of(service).api.requests if r.operation == "update"]
    assert len(updates) == 1


def test_redirect_runs_the_given_twiml_and_ends_the_session_redirected(
    service: TransportService,
) -> None:
    sid, call_sid = _live_call(service)
    with pytest.raises(ValueError):
        service.redirect(sid, "<Nope/>")
    twiml = "<Response><Say>goodbye</Say><Hangup/></Response>"
    service.redirect(sid, twiml)
    assert events(read_until(service, sid, Close))[-1] == Close(1000, "redirected")
    assert emulator_of(service).wait_ended(call_sid, 5).documents[-1] == twiml
    service.end_session(sid)
    assert _hang_ups(service) == 0  # the call runs the given TwiML, not our hang-up


def _echoed(service: TransportService, sid: str, frames: list[bytes]) -> list[Any]:
    """Write ``frames`` and read until the emulator's echo of the last has come back."""
    for frame in frames:
        service.write_websocket_message(sid, Binary(frame))
    seen: list[Any] = []
    echoed = b""
    while frames[-1] not in echoed:  # the emulator echoes what it hears, in order
        message = service.read_websocket_message(sid, timeout=5)
        assert message is not None and not isinstance(message, Close), seen[-5:]
        seen.append(message)
        if isinstance(message, Binary):
            echoed += message.data
    assert b"".join(frames) in echoed
    return seen


def test_send_dtmf_plays_the_digits_and_the_session_streams_on(
    service: TransportService,
) -> None:
    sid, call_sid = _live_call(service)
    emulator = emulator_of(service)
    first = emulator.call_media(call_sid)
    assert first is not None
    _echoed(service, sid, [b"\x01" * 160])
    with pytest.raises(ValueError):
        service.send_dtmf(sid, "12x")
    began = time.monotonic()
    service.send_dtmf(sid, "12w#")
    seen = read_until(service, sid, (Started, Close), timeout=10)
    assert Stopped() in seen and isinstance(seen[-1], Started), events(seen)
    restarted = seen[-1]
    assert (restarted.call_id, restarted.stream_id != first.stream_sid) == (call_sid, True)
    print(f"\nsend_dtmf('12w#') -> new Started: {(time.monotonic() - began) * 1000:.0f} ms")
    assert emulator.api.call(call_sid).dtmf_played == ["12w#"]  # played before the stream
    # Audio both ways after the digits, on the same session.
    frames = [bytes([n]) * 160 for n in range(2, 12)]
    _echoed(service, sid, frames)
    second = emulator.call_media(call_sid)
    assert second is not None and second is not first and second.frames_received >= 10
    assert service.is_websocket_connected(sid) and service.status(sid).state is SessionState.OPEN
    # Again: every DTMF streams the call anew, with a credential of its own.
    service.send_dtmf(sid, "9")
    assert isinstance(read_until(service, sid, (Started, Close), timeout=10)[-1], Started)
    _echoed(service, sid, [b"\x33" * 160])
    assert emulator.api.call(call_sid).dtmf_played == ["12w#", "9"]
    service.end_session(sid)
    assert emulator.wait_ended(call_sid, 5).status == "completed"
    with pytest.raises(SessionClosed):
        service.send_dtmf(sid, "1")


def test_a_hang_up_ends_a_session_at_once_even_after_a_dtmf(service: TransportService) -> None:
    sid, call_sid = _live_call(service)
    service.send_dtmf(sid, "5")
    assert isinstance(read_until(service, sid, (Started, Close), timeout=10)[-1], Started)
    emulator = emulator_of(service)
    began = time.monotonic()
    emulator.media.hang_up(call_sid)  # the callee hangs up: the stream ends, so does the call
    seen = read_until(service, sid, Close, timeout=5)
    took = time.monotonic() - began
    assert seen[-1] == Close(1000, "call ended") and service.read_websocket_message(sid) is None
    print(f"\nhang-up after a DTMF -> Close: {took * 1000:.0f} ms")
    assert took < 1.0
    service.end_session(sid)


def test_send_dtmf_on_an_inbound_call_keeps_its_session_too(service: TransportService) -> None:
    call_sid = service.infrastructure.dial_in(OURS, CALLER)
    info = service.accept_session(timeout=5)
    sid = info.session_id
    first = read_until(service, sid, Started)[-1]
    service.send_dtmf(sid, "#")
    again = read_until(service, sid, (Started, Close), timeout=10)[-1]
    assert isinstance(again, Started) and again.parameters == first.parameters
    assert again.parameters["direction"] == "inbound" and again.call_id == call_sid
    _echoed(service, sid, [b"\x21" * 160])
    assert emulator_of(service).api.call(call_sid).dtmf_played == ["#"]
    service.end_session(sid)


def test_a_dtmf_during_the_last_ones_digits_streams_once_and_a_hang_up_still_ends_at_once(
    service: TransportService,
) -> None:
    sid, call_sid = _live_call(service)
    service.send_dtmf(sid, "WW1")
    assert Stopped() in read_until(service, sid, Stopped, timeout=5)
    service.send_dtmf(sid, "2")  # between two streams: the digits cut short, one stream
    assert isinstance(read_until(service, sid, (Started, Close), timeout=10)[-1], Started)
    _echoed(service, sid, [b"\x31" * 160])
    emulator = emulator_of(service)
    assert emulator.api.call(call_sid).dtmf_played == ["2"]
    began = time.monotonic()
    emulator.media.hang_up(call_sid)
    assert read_until(service, sid, Close, timeout=10)[-1] == Close(1000, "call ended")
    assert time.monotonic() - began < 1.0
    service.end_session(sid)


def test_a_call_hung_up_during_the_digits_ends_its_session_at_once(
    service: TransportService,
) -> None:
    sid, call_sid = _live_call(service)
    service.send_dtmf(sid, "WW1")  # two seconds of pauses: the call is between two streams
    assert Stopped() in read_until(service, sid, Stopped, timeout=5)
    endpoint = service.infrastructure.twilio_emulator()
    other = TwilioRestClient(  # someone else ends the call (a supervisor's console...)
        account_sid=endpoint.account_sid,
        auth_token=endpoint.auth_token,
        api_base_url=endpoint.base_url,
    )
    with other:
        began = time.monotonic()
        assert other.hang_up(call_sid)
    seen = read_until(service, sid, Close, timeout=10)
    took = time.monotonic() - began
    assert seen[-1] == Close(1000, "completed") and took < 1.0, (seen[-1], took)
    assert emulator_of(service).wait_ended(call_sid, 5).dtmf_played == []  # cut short
    service.end_session(sid)


_SECRET = "dtmf-test-gateway-secret-0123"


@contextlib.contextmanager
def _unreachable_after_dtmf(
    *, webhook: bool = False
) -> Iterator[tuple[TransportService, MediaGateway, TcpProxy]]:
    """A service whose gateway Twilio (the emulator) reaches through a proxy the test can
    close to new connections; by default no webhook (no status callback, no
    ``<Redirect>``, no stream status callback)."""
    with (
        MediaGateway(GatewayConfig(embedded=False, secret=_SECRET)) as gateway,
        TcpProxy(gateway._server.port) as proxy,
    ):
        config = dataclasses.replace(
            default_config(),
            gateway=GatewayConfig(
                embedded=False, url=gateway.url, public_url=proxy.url, secret=_SECRET
            ),
            inbound=InboundConfig(enabled=webhook),
        )
        with TransportService(config) as svc:
            yield svc, gateway, proxy


def test_a_dtmf_whose_call_never_streams_again_ends_the_session_by_the_deadline() -> None:
    with _unreachable_after_dtmf() as (svc, _, proxy):
        sid, call_sid = _live_call(svc)
        proxy.reject_new = True  # Twilio cannot reach the gateway any more
        began = time.monotonic()
        svc.send_dtmf(sid, "1")
        seen = read_until(svc, sid, Close, timeout=15)
        took = time.monotonic() - began
        close = seen[-1]
        assert close.code == 1008 and "re-stream" in close.reason, close
        assert Stopped() in seen and svc.read_websocket_message(sid) is None
        window = restream_window_s("1")
        assert window - 1.0 < took < window + 2.0, took
        assert emulator_of(svc).api.call(call_sid).dtmf_played == ["1"]
        svc.end_session(sid)


def test_after_a_dtmf_an_old_stream_credential_is_refused_and_only_a_fresh_one_pairs() -> None:
    with _unreachable_after_dtmf() as (svc, gateway, proxy):
        sid, call_sid = _live_call(svc)
        first_twiml = emulator_of(svc).api.call(call_sid).documents[0]
        proxy.reject_new = True  # the emulator's re-stream never arrives: we play Twilio
        svc.send_dtmf(sid, "1")
        assert Stopped() in read_until(svc, sid, Stopped, timeout=5)
        # The session's redial has re-opened the call: it waits for a new stream.
        eventually(lambda: gateway.stats().session_hops == 2 and gateway.calls_active == 1)
        parameters = {
            p.get("name"): p.get("value") or ""
            for p in ET.fromstring(first_twiml).iter("Parameter")
        }
        assert parameters["nonce"]
        with provider(gateway.url, sid, parameters["token"], parameters["nonce"]) as (ws, _):
            code, reason = closed_with(ws)
        assert (code, "used already" in reason) == (1008, True)
        assert gateway.stats().rejected["duplicate_stream"] == 1
        nonce = stream_nonce()  # what the TwiML of a re-stream carries: a nonce of its own
        with provider(gateway.url, sid, stream_token(_SECRET, sid, nonce), nonce) as (ws, tw):
            started = read_until(svc, sid, (Started, Close), timeout=5)[-1]
            assert isinstance(started, Started) and started.stream_id == tw.stream_sid
            ws.send(tw.media(b"\x55" * 160, 0))
            audio = read_until(svc, sid, Binary, timeout=5)[-1]
            assert audio.data == b"\x55" * 160
            svc.write_websocket_message(sid, Binary(b"\x66" * 160))
            frame = json.loads(ws.recv(timeout=5))
            assert frame["event"] == "media" and frame["streamSid"] == tw.stream_sid
            assert svc.status(sid).state is SessionState.OPEN
        svc.end_session(sid)


# -- <Stream statusCallback> ------------------------------------------------------------------


def test_our_streams_report_to_our_webhook_signed_and_a_forged_report_is_refused(
    service: TransportService,
) -> None:
    sid, call_sid = _live_call(service)
    emulator = emulator_of(service)
    stream_url = service.voice_url.replace("/twilio/voice", "/twilio/stream")
    (stream,) = ET.fromstring(emulator.api.call(call_sid).documents[0]).iter("Stream")
    assert (stream.get("statusCallback"), stream.get("statusCallbackMethod")) == (
        stream_url,
        "POST",
    )
    started = 'transport_stream_events_total{event="stream-started"}'
    assert eventually(lambda: service.metrics().get(started) == 1)
    service.send_dtmf(sid, "1")  # the re-stream reports too
    assert isinstance(read_until(service, sid, (Started, Close), timeout=10)[-1], Started)
    (restream,) = ET.fromstring(emulator.api.call(call_sid).twiml or "").iter("Stream")
    assert restream.get("statusCallback") == stream_url
    stopped = 'transport_stream_events_total{event="stream-stopped"}'
    assert eventually(lambda: service.metrics().get(started) == 2)
    assert service.metrics().get(stopped) == 1
    forged = {
        "AccountSid": service.infrastructure.twilio_emulator().account_sid,
        "CallSid": call_sid,
        "StreamSid": "MZ" + "2" * 32,
        "StreamEvent": "stream-error",
        "StreamError": "forged",
    }
    signature = twilio_signature("not-the-auth-token", stream_url, forged)
    response = requests.post(
        stream_url, data=forged, headers={"X-Twilio-Signature": signature}, timeout=5
    )
    assert response.status_code == 403
    assert service.metrics()['transport_inbound_webhooks_total{outcome="bad_signature"}'] == 1
    _echoed(service, sid, [b"\x12" * 160])  # no StreamError, no end: the session goes on
    assert 'transport_stream_events_total{event="stream-error"}' not in service.metrics()
    service.end_session(sid)


def test_a_stream_error_reaches_the_application_and_ends_the_session_at_once() -> None:
    with _unreachable_after_dtmf(webhook=True) as (svc, _, proxy):
        sid, call_sid = _live_call(svc)
        proxy.reject_new = True
        began = time.monotonic()
        svc.send_dtmf(sid, "1")
        seen = read_until(svc, sid, Close, timeout=10)
        took = time.monotonic() - began
        errors = [m for m in seen if isinstance(m, StreamError)]
        assert len(errors) == 1 and errors[0].fields["CallSid"] == call_sid
        assert "dialling the stream failed" in errors[0].error
        assert seen[-1].reason.startswith("stream error: dialling the stream failed"), seen[-1]
        assert took < restream_window_s("1") - 2.0, took  # not the deadline: at once
        print(f"\nsend_dtmf -> StreamError -> Close: {took * 1000:.0f} ms")
        metric = 'transport_stream_events_total{event="stream-error"}'
        assert svc.metrics()[metric] == 1
        svc.end_session(sid)


# -- figures ---------------------------------------------------------------------------------


def test_accept_latency_over_100_calls(service: TransportService) -> None:
    assert service.voice_url.endswith("/twilio/voice")  # the webhook runs before the clock
    latencies: list[float] = []
    for _ in range(100):
        began = time.monotonic()  # the emulator posts its webhook from here: an upper bound
        call_sid = service.infrastructure.dial_in(OURS, CALLER)
        info = service.accept_session(timeout=5)
        latencies.append(time.monotonic() - began)
        assert info.call_id == call_sid
        service.end_session(info.session_id)
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"\ndial-in -> accept_session returned: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert p99 < 1.0
