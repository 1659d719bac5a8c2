"""Issue 13 through the facade: inbound calls accepted with ``accept_session``, call progress
as messages, machine detection, call control. Real servers on loopback: the service's own
webhook, gateway and embedded Twilio emulator (the caller, and the callee of outbound calls)."""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
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
    Started,
    TransportService,
    default_config,
)
from actors.config import EmulatorConfig, InboundConfig, TwilioProviderConfig
from actors.emulator.phone import TwilioEmulator
from actors.signing import twilio_signature
from tests.hooks import Recorder

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


def make_service(**inbound: Any) -> TransportService:
    config = dataclasses.replace(
        default_config(),
        emulator=EmulatorConfig(behaviours=BEHAVIOURS),
        inbound=InboundConfig(**inbound),
    )
    return TransportService(config)


@pytest.fixture
def service() -> Iterator[TransportService]:
    with make_service() as svc:
        yield svc


def emulator_of(service: TransportService) -> TwilioEmulator:
    service.infrastructure.twilio_emulator()
    emulator = service.infrastructure.running["emulator"]
    assert isinstance(emulator, TwilioEmulator)
    return emulator


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
    with make_service() as svc:
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
    with make_service(max_sessions=1, queue_timeout_s=0.5) as svc:
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


def test_send_dtmf_plays_the_digits_into_the_call(service: TransportService) -> None:
    sid, call_sid = _live_call(service)
    with pytest.raises(ValueError):
        service.send_dtmf(sid, "12x")
    service.send_dtmf(sid, "12w#")
    assert events(read_until(service, sid, Close))[-1] == Close(1000, "dtmf")
    assert emulator_of(service).wait_ended(call_sid, 5).dtmf_played == ["12w#"]
    service.end_session(sid)
    with pytest.raises(SessionClosed):
        service.send_dtmf(sid, "1")


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
