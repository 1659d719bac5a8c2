"""The emulator as a caller (issue 13): it asks a voice URL, signed, and obeys the TwiML.

Real servers on loopback: the emulator, the runtime's webhook server with an
:class:`~actors.webhooks.inbound.InboundQueue` accepted from a thread, a media gateway, and a
session hop dialled with its hop credential, as the connector dials it; or a recording
webhook (tests/hooks.py) serving fixed TwiML.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket as wsc

from actors import cli
from actors.config import EmulatorConfig, GatewayConfig
from actors.emulator.phone import TwilioEmulator
from actors.emulator.twiml import Dial, DialTarget
from actors.gateway.server import MediaGateway
from actors.signing import hop_token, stream_token
from actors.webhooks.inbound import InboundQueue, InboundSettings, PendingCall
from actors.webhooks.server import WebhookConfig, WebhookServer
from actors.webhooks.twilio import InboundCall, connect_twiml, hangup_twiml
from tests.hooks import Recorder

pytestmark = pytest.mark.timeout(60)

ACCOUNT = "AC" + "4" * 32
TOKEN = "emulator-inbound-token"
SECRET = "emulator-inbound-gateway-secret"
OURS, CALLER = "+15550100", "+15550177"


@contextmanager
def runtime(
    on_reattach: Any = None, **settings: float
) -> Iterator[tuple[TwilioEmulator, WebhookServer, MediaGateway]]:
    gateway = MediaGateway(
        GatewayConfig(secret=SECRET, twilio_auth_token=TOKEN, pair_timeout_s=5.0)
    )
    queue = InboundQueue(InboundSettings(**settings))  # type: ignore[arg-type]
    webhook = WebhookServer(
        WebhookConfig(accounts={ACCOUNT: TOKEN}), queue, on_reattach=on_reattach
    )
    emulator = TwilioEmulator(EmulatorConfig(media="echo"), {ACCOUNT: TOKEN})
    with gateway, webhook, emulator:
        yield emulator, webhook, gateway


def accept_in_a_thread(
    webhook: WebhookServer, answer: Any
) -> tuple[threading.Thread, list[PendingCall]]:
    taken: list[PendingCall] = []

    def accept() -> None:
        pending = webhook.queue.accept(timeout=5)
        taken.append(pending)
        answer(pending)

    thread = threading.Thread(target=accept)
    thread.start()
    return thread, taken


def hop(gateway: MediaGateway, session_id: str) -> wsc.WebSocket:
    ws = wsc.WebSocket()
    ws.connect(
        f"{gateway.url}/sessions/{session_id}",
        header=[f"Authorization: Bearer {hop_token(SECRET, session_id)}", "X-Resume-From: 0"],
        timeout=5,
    )
    return ws


def next_event(ws: wsc.WebSocket, name: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(ws.recv())
        if frame["event"] == name:
            return frame


def test_an_inbound_call_is_accepted_streamed_both_ways_and_hung_up() -> None:
    session_id = "inbound-session-1"
    with runtime() as (emulator, webhook, gateway):
        stream_url = gateway.public_url + "/twilio"
        redirect = f"{webhook.voice_url}?reattach={session_id}"

        def answer(pending: PendingCall) -> None:
            params = {"session": session_id, "token": stream_token(SECRET, session_id)}
            pending.answer(connect_twiml(stream_url, params, redirect_url=redirect), session_id)

        acceptor, taken = accept_in_a_thread(webhook, answer)
        call = emulator.place_inbound_call(
            OURS, CALLER, voice_url=webhook.voice_url, caller_name="Ada", forwarded_from="+15550001"
        )
        acceptor.join(5)
        (pending,) = taken
        info = pending.call
        assert (info.direction, info.from_, info.to, info.call_id) == (
            "inbound",
            CALLER,
            OURS,
            call.sid,
        )
        assert info.fields["CallerName"] == "Ada" and info.fields["ForwardedFrom"] == "+15550001"
        assert info.call_status == "ringing" and info.fields["ApiVersion"] == "2010-04-01"
        session = hop(gateway, session_id)
        try:
            start = next_event(session, "start")
            assert start["start"]["callSid"] == call.sid
            assert start["start"]["customParameters"]["session"] == session_id
            frames = [bytes([n]) * 160 for n in range(1, 26)]
            for frame in frames:
                payload = base64.b64encode(frame).decode()
                media_out = {"event": "media", "streamSid": start["streamSid"]}
                session.send(json.dumps({**media_out, "media": {"payload": payload}}))
            echoed = b""
            while len(echoed) < sum(map(len, frames)):
                media = next_event(session, "media")
                echoed += base64.b64decode(media["media"]["payload"])
            assert echoed.strip(b"\xff").startswith(frames[0])  # ours, echoed back in order
            assert b"".join(frames) in echoed
            assert emulator.api.call(call.sid).status == "in-progress"
            hang_up = requests.post(
                f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.sid}.json",
                data={"Status": "completed"},
                auth=(ACCOUNT, TOKEN),
                timeout=5,
            )
            assert hang_up.status_code == 200
            next_event(session, "stop")
        finally:
            session.close()
        ended = emulator.wait_ended(call.sid, 5)
    assert ended.status == "completed"
    assert ended.direction == "inbound" and ended.resource()["direction"] == "inbound"
    assert webhook.counters.snapshot()["reattach"] == 0  # a hang-up runs nothing after


def test_a_stream_the_far_side_closes_goes_on_to_the_redirect_after_it() -> None:
    session_id = "inbound-session-2"
    reattached: list[InboundCall] = []

    def on_reattach(call: InboundCall) -> str:
        reattached.append(call)
        return hangup_twiml()

    with runtime(on_reattach=on_reattach) as (emulator, webhook, gateway):
        redirect = f"{webhook.voice_url}?reattach={session_id}"

        def answer(pending: PendingCall) -> None:
            params = {"session": session_id, "token": stream_token(SECRET, session_id)}
            twiml = connect_twiml(gateway.public_url + "/twilio", params, redirect_url=redirect)
            pending.answer(twiml, session_id)

        acceptor, _ = accept_in_a_thread(webhook, answer)
        call = emulator.place_inbound_call(OURS, CALLER, voice_url=webhook.voice_url)
        acceptor.join(5)
        session = hop(gateway, session_id)
        next_event(session, "start")
        session.close()  # 1000: the gateway closes the provider stream; the call stays on
        ended = emulator.wait_ended(call.sid, 5)
    assert [c.reattach for c in reattached] == [session_id]
    assert reattached[0].call_id == call.sid
    assert ended.status == "completed" and len(ended.documents) == 2


def test_a_refused_or_unaccepted_call_ends_busy() -> None:
    with runtime(queue_timeout_s=0.3, answer_timeout_s=1.0) as (emulator, webhook, _):
        acceptor, _ = accept_in_a_thread(webhook, lambda pending: pending.refuse())
        refused = emulator.place_inbound_call(OURS, CALLER, voice_url=webhook.voice_url)
        acceptor.join(5)
        assert emulator.wait_ended(refused.sid, 5).status == "busy"
        unaccepted = emulator.place_inbound_call(OURS, CALLER, voice_url=webhook.voice_url)
        call = emulator.wait_ended(unaccepted.sid, 5)
    assert call.status == "busy" and call.started_at is None  # never answered
    counters = webhook.counters.snapshot()
    assert (counters["refused_failed"], counters["refused_timeout"]) == (1, 1)


def test_redirect_is_followed_and_dial_recorded_as_a_transfer() -> None:
    answers = {
        "/voice": "<Response><Say>hello</Say><Redirect>/next?step=2</Redirect></Response>",
        "/next": "<Response><Dial><Sip>sip:desk@example.com</Sip></Dial><Hangup/></Response>",
    }
    with Recorder(TOKEN, answers) as hooks:
        emulator = TwilioEmulator(EmulatorConfig(voice_url=hooks.url + "/voice"), {ACCOUNT: TOKEN})
        with emulator:
            call = emulator.place_inbound_call(OURS, CALLER)  # to emulator.voice_url
            ended = emulator.wait_ended(call.sid, 5)
        hits = hooks.wait_for(lambda h: len(h) == 2)
    assert [(h.path, h.method, h.signed) for h in hits] == [
        ("/voice", "POST", True),
        ("/next?step=2", "POST", True),
    ]
    assert [h.fields["CallStatus"] for h in hits] == ["ringing", "in-progress"]
    assert all(h.fields["Direction"] == "inbound" for h in hits)
    assert ended.transfers == [Dial((DialTarget("sip", "sip:desk@example.com"),))]
    assert ended.status == "completed" and ended.documents == list(answers.values())


def test_reject_rejected_is_no_answer_and_a_silent_voice_url_fails_in_time() -> None:
    answers = {"/reject": "<Response><Reject/></Response>", "/slow": "<Response/>"}
    with Recorder(TOKEN, answers, delay={"/slow": 3.0}) as hooks:
        emulator = TwilioEmulator(EmulatorConfig(), {ACCOUNT: TOKEN}, webhook_timeout_s=0.5)
        with emulator:
            rejected = emulator.place_inbound_call(OURS, CALLER, voice_url=hooks.url + "/reject")
            slow = emulator.place_inbound_call(OURS, CALLER, voice_url=hooks.url + "/slow")
            assert emulator.wait_ended(rejected.sid, 5).status == "no-answer"
            failed = emulator.wait_ended(slow.sid, 2)  # 0.5 s, not the 3 s it would take
    assert failed.status == "failed" and "timed out" in failed.errors[0]


def test_the_api_places_an_inbound_call_for_another_process() -> None:
    with Recorder(TOKEN) as hooks:
        emulator = TwilioEmulator(EmulatorConfig(), {ACCOUNT: TOKEN})
        with emulator:
            url = f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Emulator/InboundCalls.json"
            form = {"To": OURS, "From": CALLER, "Url": hooks.url + "/in", "CallerName": "Bo"}
            placed = requests.post(url, data=form, auth=(ACCOUNT, TOKEN), timeout=5)
            assert placed.status_code == 201, placed.text
            resource = placed.json()
            assert (resource["direction"], resource["status"]) == ("inbound", "ringing")
            assert emulator.wait_ended(resource["sid"], 5).status == "completed"
            no_url = requests.post(url, data={"To": OURS, "From": CALLER}, auth=(ACCOUNT, TOKEN))
            assert (no_url.status_code, no_url.json()["code"]) == (400, 21205)
            wrong = requests.post(url, data=form, auth=(ACCOUNT, "not-the-token"), timeout=5)
            assert wrong.status_code == 401
        (hit,) = hooks.wait_for(lambda h: len(h) == 1)
    assert hit.signed and hit.fields["CallerName"] == "Bo"
    assert hit.fields["CallSid"] == resource["sid"]


def test_the_standalone_emulator_dials_in(tmp_path: Path) -> None:
    """``transport-actors emulator --dial-in 2``: two signed calls to emulator.voice_url."""
    with Recorder(TOKEN) as hooks:
        config = tmp_path / "c.yaml"
        config.write_text(
            f"providers: {{twilio: {{account_sid: {ACCOUNT}, auth_token: {TOKEN}}}}}\n"
            f"emulator: {{voice_url: '{hooks.url}/voice'}}\n",
            encoding="utf-8",
        )
        argv = [sys.executable, "-m", "actors.cli", "emulator", "-c", str(config), "--dial-in", "2"]
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            try:
                hits = hooks.wait_for(lambda h: len(h) == 2, timeout=20)
            finally:
                child.send_signal(signal.SIGTERM)
                out, err = child.communicate(timeout=20)
        assert child.returncode == 0, err
    assert out.count("inbound call CA") == 2
    assert all(h.signed and h.fields["Direction"] == "inbound" for h in hits)
    assert {h.fields["To"] for h in hits} == {"+15550100"}


def test_dial_in_needs_a_voice_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulator", "--dial-in", "1"]) == 2
    assert "emulator.voice_url" in capsys.readouterr().err
