"""Issues 15 and 16 through the facade: inbound calls of Telnyx, Plivo, Vonage and Exotel (its
applet dials the gateway itself) accepted with
``accept_session(provider=...)``, and the call progress of all four providers (Exotel too) as
``CallStatus``. Real servers on loopback: the service's webhook, gateway and each provider's
embedded emulator (the caller, or the callee of outbound calls)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from actors import (
    AcceptTimeout,
    Binary,
    CallStatus,
    Close,
    Started,
    TransportService,
    UnsupportedMessage,
)
from actors.pubkey import new_ed25519_key, sign_ed25519, webhook_token
from actors.webhooks.plivo import NONCE_HEADER, SIGNATURE_HEADER, signature_v3
from tests._provider_calls import inbound_service

pytestmark = pytest.mark.timeout(60)

OURS, CALLER, FROM = "+15550100", "+15550177", "+15550199"
BEHAVIOURS = {"+15550101": "busy:0.2", "+15550102": "no-answer:0.3", "+15550103": "failed:0.2"}
#: The bytes of 20 ms of each provider's own audio (mu-law 8 kHz; Vonage's PCM16 at 16 kHz).
FRAME = {"telnyx": 160, "plivo": 160, "vonage": 640, "exotel": 320}  # Exotel: PCM16 at 8 kHz


@pytest.fixture
def service() -> Iterator[TransportService]:
    with inbound_service(BEHAVIOURS) as svc:
        yield svc


def emulator(service: TransportService, provider: str) -> Any:
    start = getattr(service.infrastructure, f"{provider}_emulator")
    start()
    return service.infrastructure.running[provider]


def read_until(service: TransportService, sid: str, kind: type, timeout: float = 5.0) -> list[Any]:
    seen: list[Any] = []
    while True:
        message = service.read_websocket_message(sid, timeout=timeout)
        if not isinstance(message, Binary):
            seen.append(message)
        if message is None or isinstance(message, kind):
            return seen


# -- inbound ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["telnyx", "plivo", "vonage", "exotel"])
def test_an_inbound_call_is_accepted_streamed_both_ways_and_ended(
    service: TransportService, provider: str
) -> None:
    call_id = service.infrastructure.place_inbound(provider, OURS, CALLER)
    with pytest.raises(AcceptTimeout):  # another provider's calls are not this one's
        service.accept_session(timeout=0.3, provider="twilio")
    info = service.accept_session(timeout=5, provider=provider)
    assert (info.direction, info.provider, info.call_id) == ("inbound", provider, call_id)
    assert info.from_.lstrip("+") == CALLER.lstrip("+") and info.to.lstrip("+") == OURS[1:]
    sid = info.session_id
    size = FRAME[provider]
    frames = [bytes([n, 0]) * (size // 2) for n in range(1, 11)]
    for frame in frames:
        service.write_websocket_message(sid, Binary(frame))
    started = [m for m in read_until(service, sid, Started) if isinstance(m, Started)]
    assert started and "token" not in started[0].parameters
    echoed = b""
    while frames[-1] not in echoed:  # the emulated caller echoes what it hears, in order
        message = service.read_websocket_message(sid, timeout=5)
        assert message is not None
        if isinstance(message, Binary):
            assert len(message.data) == size
            echoed += message.data
    assert b"".join(frames) in echoed
    service.end_session(sid)
    ended = emulator(service, provider).wait_ended(call_id, 5)
    assert getattr(ended, "outcome", None) or ended.status == "completed"
    counts = service.metrics()
    assert counts['transport_inbound_webhooks_total{outcome="accepted"}'] == 1


@pytest.mark.parametrize("provider", ["telnyx", "plivo", "vonage", "exotel"])
def test_an_inbound_call_nobody_accepts_is_refused_the_providers_way(provider: str) -> None:
    with inbound_service(BEHAVIOURS, queue_timeout_s=0.2) as svc:
        call_id = svc.infrastructure.place_inbound(provider, OURS, CALLER)
        call = emulator(svc, provider).wait_ended(call_id, 5)
        if provider == "vonage":  # no reject action: a talk, then the NCCO ends the call
            assert [action["action"] for action in call.ncco] == ["talk"]
        elif provider == "exotel":  # the applet's stream is closed: back to Exotel's flow
            assert call.media is not None and call.media.close_code == 1000
        else:  # TeXML <Reject reason="busy"/>, Plivo <Hangup reason="busy"/>
            assert call.outcome == "busy"
        assert svc.metrics()['transport_inbound_webhooks_total{outcome="refused_timeout"}'] == 1


def test_forged_webhooks_are_refused_before_they_reach_the_queue(
    service: TransportService,
) -> None:
    base = service.voice_url.rsplit("/twilio/voice", 1)[0]
    form = {"CallSid": "v3:forged", "From": CALLER, "To": OURS, "CallUUID": "u-1"}
    body = urlencode(form).encode()
    emulator(service, "telnyx")  # its key is known from here on: a forged signature is not it
    other_key, _ = new_ed25519_key()
    stamp = str(int(time.time()))
    forged = base64.b64encode(sign_ed25519(other_key, stamp.encode() + b"|" + body)).decode()
    telnyx = requests.post(
        base + "/telnyx/voice",
        data=body,
        headers={
            "telnyx-signature-ed25519": forged,
            "telnyx-timestamp": stamp,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=5,
    )
    emulator(service, "plivo")
    url = base + "/plivo/answer"
    nonce = "12345"
    plivo = requests.post(
        url,
        data=form,
        headers={
            SIGNATURE_HEADER: signature_v3("not-the-token", "POST", url, nonce, list(form.items())),
            NONCE_HEADER: nonce,
        },
        timeout=5,
    )
    emulator(service, "vonage")
    payload = json.dumps({"uuid": "u-2", "from": CALLER, "to": OURS}).encode()
    token = webhook_token("not-the-signature-secret-of-this-app-0123", payload)
    vonage = requests.post(
        base + "/vonage/answer",
        data=payload,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=5,
    )
    unsigned = requests.post(base + "/vonage/answer", data=payload, timeout=5)
    exotel = requests.post(
        base + "/exotel/status?session=s1&sig=" + "0" * 64,
        data={"CallSid": "c1", "Status": "busy"},
        timeout=5,
    )
    statuses = [r.status_code for r in (telnyx, plivo, vonage, unsigned, exotel)]
    assert statuses == [403, 403, 403, 403, 403]
    with pytest.raises(AcceptTimeout):  # nothing reached the queue
        service.accept_session(timeout=0.05)
    assert service.metrics()['transport_inbound_webhooks_total{outcome="bad_signature"}'] == 5


def test_a_repeated_plivo_answer_webhook_gets_the_same_answer(service: TransportService) -> None:
    token = emulator(service, "plivo").auth_token
    url = service.voice_url.rsplit("/twilio/voice", 1)[0] + "/plivo/answer"
    form = [("CallUUID", "c0ffee-1"), ("From", CALLER), ("To", OURS), ("Direction", "inbound")]

    def post() -> requests.Response:
        headers = {
            SIGNATURE_HEADER: signature_v3(token, "POST", url, "77", form),
            NONCE_HEADER: "77",
        }
        return requests.post(url, data=form, headers=headers, timeout=10)

    answers: list[requests.Response] = []
    first = threading.Thread(target=lambda: answers.append(post()))
    first.start()
    info = service.accept_session(timeout=5, provider="plivo")
    first.join(10)
    again = post()
    assert answers[0].text == again.text and "<Stream" in again.text
    assert len(service.sessions()) == 1
    service.end_session(info.session_id)
    assert "Hangup" in post().text  # a replay after the call ended is refused


# -- outbound progress -----------------------------------------------------------------------


class _Ends(logging.Handler):
    """When each emulator ended each call (its log line's time)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "emulated call %s ended (%s)":
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


@pytest.mark.parametrize("provider", ["telnyx", "plivo", "vonage", "exotel"])
@pytest.mark.parametrize(
    ("to", "outcome"), [("+15550101", "busy"), ("+15550102", "no-answer"), ("+15550103", "failed")]
)
def test_an_unanswered_call_ends_its_session_with_its_outcome_within_a_second(
    service: TransportService, ends: _Ends, provider: str, to: str, outcome: str
) -> None:
    info = service.create_session(provider=provider, to=to, from_=FROM)
    seen = read_until(service, info.session_id, Close, timeout=10)
    closed = time.time()
    statuses = [m.status for m in seen if isinstance(m, CallStatus)]
    assert statuses[-1] == outcome and seen[-1] == Close(1000, outcome)
    assert service.read_websocket_message(info.session_id, timeout=1) is None
    ended = emulator(service, provider).wait_ended(info.call_id or "", 5)
    assert ended is not None
    took = closed - ends.at[info.call_id or ""]
    print(
        f"\n{provider} {outcome}: the emulator's end -> the session's Close: {took * 1000:.1f} ms"
    )
    assert took < 1.0
    service.end_session(info.session_id)


@pytest.mark.parametrize("provider", ["telnyx", "plivo", "vonage"])
def test_an_answered_call_reports_its_progress_with_its_media(
    service: TransportService, provider: str
) -> None:
    info = service.create_session(provider=provider, to=OURS, from_=FROM)
    seen: list[Any] = []
    while not (
        any(isinstance(m, Started) for m in seen)
        and any(isinstance(m, CallStatus) and m.status == "in-progress" for m in seen)
    ):
        seen += read_until(service, info.session_id, (Started, CallStatus))  # type: ignore[arg-type]
    assert "client_state" not in next(m for m in seen if isinstance(m, CallStatus)).fields
    service.end_session(info.session_id)
    ended = emulator(service, provider).wait_ended(info.call_id or "", 5)
    assert getattr(ended, "outcome", "completed") == "completed"


# -- call control on inbound calls --------------------------------------------------------------


def test_an_inbound_plivo_call_takes_dtmf_and_a_transfer(service: TransportService) -> None:
    call_id = service.infrastructure.place_inbound("plivo", OURS, CALLER)
    info = service.accept_session(timeout=5, provider="plivo")
    sid = info.session_id
    read_until(service, sid, Started)
    plivo = emulator(service, "plivo")
    service.send_dtmf(sid, "7#")
    assert plivo.call(call_id).dtmf_sent == ["7#"]  # by its CallUUID: an inbound call's id
    service.transfer(sid, "sip:desk@example.com")
    assert read_until(service, sid, Close)[-1] == Close(1000, "transferred")
    assert plivo.wait_ended(call_id, 5).transfers == [[("sip", "sip:desk@example.com")]]
    service.end_session(sid)
    assert [r for r in plivo.api.requests if r.operation == "hangup"] == []


def test_call_control_a_provider_lacks_is_unsupported_at_once(service: TransportService) -> None:
    service.infrastructure.place_inbound("vonage", OURS, CALLER)
    info = service.accept_session(timeout=5, provider="vonage")
    sid = info.session_id
    read_until(service, sid, Started)
    for control in (
        lambda: service.transfer(sid, "+15550111"),
        lambda: service.redirect(sid, "<Response/>"),
        lambda: service.send_dtmf(sid, "1"),
    ):
        with pytest.raises(UnsupportedMessage, match="call control"):
            control()
    assert service.status(sid).state.name == "OPEN"  # nothing happened to the call
    service.end_session(sid)


def test_a_call_back_after_its_stream_is_authenticated_and_without_a_cluster_ended(
    service: TransportService,
) -> None:
    """``?reattach=`` on Telnyx's voice URL, Plivo's answer URL and Vonage's event URL (where a
    cluster's calls come back after their gateway died): a forged request is refused as any
    other; a signed one, with no cluster to stream the call again, gets the document that
    ends the call."""
    base = service.voice_url.rsplit("/twilio/voice", 1)[0]
    form = {"CallSid": "v3:c1", "CallUUID": "u-1", "From": CALLER, "To": OURS}
    body = urlencode(form).encode()
    telnyx = emulator(service, "telnyx")
    plivo = emulator(service, "plivo")
    vonage = emulator(service, "vonage")
    other_key, _ = new_ed25519_key()
    stamp = str(int(time.time()))

    def telnyx_post(key: Any) -> requests.Response:
        signature = base64.b64encode(sign_ed25519(key, stamp.encode() + b"|" + body)).decode()
        headers = {
            "telnyx-signature-ed25519": signature,
            "telnyx-timestamp": stamp,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        url = base + "/telnyx/voice?reattach=s1"
        return requests.post(url, data=body, headers=headers, timeout=5)

    def plivo_post(token: str) -> requests.Response:
        url = base + "/plivo/answer?reattach=s1"
        signature = signature_v3(token, "POST", url, "77", list(form.items()))
        headers = {SIGNATURE_HEADER: signature, NONCE_HEADER: "77"}
        return requests.post(url, data=form, headers=headers, timeout=5)

    payload = json.dumps({"uuid": "leg-1", "status": "disconnected", "to": OURS}).encode()

    def vonage_post(secret: str) -> requests.Response:
        token = webhook_token(secret, payload, {"application_id": vonage.application_id})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return requests.post(
            base + "/vonage/event?reattach=s1", data=payload, headers=headers, timeout=5
        )

    forged = [telnyx_post(other_key), plivo_post("not-it"), vonage_post("not-it-" + "0" * 32)]
    assert [r.status_code for r in forged] == [403, 403, 403]
    signed = [
        telnyx_post(telnyx._signing_key),
        plivo_post(plivo.auth_token),
        vonage_post(vonage.signature_secret),
    ]
    assert [r.status_code for r in signed] == [200, 200, 200]
    assert "<Hangup" in signed[0].text and "<Hangup" in signed[1].text
    assert json.loads(signed[2].text) == []  # nothing left to run: the call ends
    assert service.metrics()['transport_inbound_webhooks_total{outcome="reattach"}'] == 3
