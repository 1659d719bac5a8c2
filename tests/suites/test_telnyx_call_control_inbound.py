"""Telnyx inbound calls answered with Call Control (``providers.telnyx.inbound: call_control``),
through the facade, on loopback: the emulator (a Call Control App) posts ``call.initiated``
(``direction: incoming``), signed with Ed25519, to the runtime's ``/telnyx/events``; the
webhook answers 200 at once and queues the call; ``accept_session`` takes it and answers with
``actions/answer`` carrying the stream (the routing values in ``client_state``); the emulated
caller then streams to the gateway. A call nobody takes is rejected (``actions/reject``)."""

from __future__ import annotations

import base64
import dataclasses
import json
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
    Mark,
    Started,
    TransportService,
    default_config,
)
from actors.config import InboundConfig, TelnyxProviderConfig
from actors.emulator.telnyx import TelnyxEmulator
from actors.pubkey import new_ed25519_key, sign_ed25519
from tests._provider_calls import read_until, running

pytestmark = pytest.mark.timeout(60)

OURS, CALLER = "+15550100", "+15550177"


def make_service(**inbound: Any) -> TransportService:
    config = default_config()
    telnyx = config.providers["telnyx"]
    assert isinstance(telnyx, TelnyxProviderConfig)
    providers = {**config.providers, "telnyx": dataclasses.replace(telnyx, inbound="call_control")}
    config = dataclasses.replace(config, providers=providers, inbound=InboundConfig(**inbound))
    return TransportService(config)


@pytest.fixture
def service() -> Iterator[TransportService]:
    with make_service() as svc:
        yield svc


def emulator_of(service: TransportService) -> TelnyxEmulator:
    service.infrastructure.telnyx_emulator()
    return running(service, "telnyx", TelnyxEmulator)


def _commands(service: TransportService, operation: str) -> list[int]:
    return [r.status for r in emulator_of(service).api.requests if r.operation == operation]


def test_an_incoming_call_is_answered_with_a_command_and_streams(service: TransportService) -> None:
    call_id = service.infrastructure.place_inbound("telnyx", OURS, CALLER)
    info = service.accept_session(timeout=5, provider="telnyx")
    assert (info.direction, info.call_id, info.from_, info.to) == ("inbound", call_id, CALLER, OURS)
    assert info.fields["event_type"] == "call.initiated"
    sid = info.session_id
    seen = read_until(service, sid, Started)
    started = seen[-1]
    assert isinstance(started, Started) and started.call_id == call_id
    assert dict(started.parameters) == {"direction": "inbound", "session": sid}  # no token
    assert _commands(service, "answer") == [200]
    call = emulator_of(service).call(call_id)
    assert call.stream_url.endswith("/telnyx") and call.client_state
    service.write_websocket_message(sid, Binary(b"\x11" * 160))
    service.write_websocket_message(sid, Mark("m"))
    seen += read_until(service, sid, Mark)
    # call.answered comes as a webhook of its own: it may trail the media.
    while not any(isinstance(m, CallStatus) and m.status == "in-progress" for m in seen):
        seen += read_until(service, sid, CallStatus)
    # Call Control commands work on it: DTMF, and a transfer that hands the call on.
    service.send_dtmf(sid, "5")
    assert call.dtmf_sent == ["5"]
    service.transfer(sid, "+15550111")
    assert read_until(service, sid, Close)[-1] == Close(1000, "transferred")
    service.end_session(sid)
    assert _commands(service, "hangup") == []
    assert service.metrics()['transport_inbound_webhooks_total{outcome="accepted"}'] == 1


def test_a_call_nobody_takes_is_rejected_busy() -> None:
    with make_service(queue_timeout_s=0.2) as svc:
        call_id = svc.infrastructure.place_inbound("telnyx", OURS, CALLER)
        call = emulator_of(svc).wait_ended(call_id, 5)
        assert call.outcome == "busy" and call.answered is False
        assert _commands(svc, "reject") == [200]
        assert _commands(svc, "answer") == []
        assert svc.metrics()['transport_inbound_webhooks_total{outcome="refused_timeout"}'] == 1


def test_a_forged_call_initiated_is_refused_and_queues_nothing(service: TransportService) -> None:
    emulator_of(service)  # the emulator's key is the one the webhook trusts
    key, _ = new_ed25519_key()  # not Telnyx's
    event = {
        "data": {
            "event_type": "call.initiated",
            "payload": {
                "call_control_id": "v3:forged",
                "direction": "incoming",
                "from": CALLER,
                "to": OURS,
            },
        }
    }
    body = json.dumps(event).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(sign_ed25519(key, stamp.encode() + b"|" + body)).decode()
    url = service.infrastructure.webhook().public_url + "/telnyx/events"
    headers = {
        "telnyx-signature-ed25519": signature,
        "telnyx-timestamp": stamp,
        "Content-Type": "application/json",
    }
    assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 403
    assert service.metrics()['transport_inbound_webhooks_total{outcome="bad_signature"}'] == 1
    assert service.infrastructure.webhook().queue.load() == 0


def test_a_caller_gone_before_the_answer_is_passed_over(service: TransportService) -> None:
    call_id = service.infrastructure.place_inbound("telnyx", OURS, CALLER)
    # The caller hangs up at once: its call.initiated still comes (it is on its way), but the
    # answer finds the call over (422 / 90018), and accept_session waits for the next call.
    emulator_of(service).api.ended(call_id)
    with pytest.raises(AcceptTimeout):
        service.accept_session(timeout=2, provider="telnyx")
    assert _commands(service, "answer") == [422]
    assert service.sessions() == []
