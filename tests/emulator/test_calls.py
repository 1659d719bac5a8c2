"""The emulator's outbound calls as Twilio runs them (issue 13): numbers that are busy, do not
answer, answer late or are machines; the status callbacks in Twilio's order, signed; machine
detection; the REST update that leaves the stream for new TwiML (a transfer, DTMF).

Real servers on loopback: the emulator, the runtime's webhook server (its status callback,
which checks every signature) or a recording one (tests/hooks.py), and for the update tests
the whole service with its embedded emulator and gateway.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from actors import CallStatus, Started, Stopped, TransportService
from actors.config import EmulatorConfig, parse_config
from actors.emulator.media import MediaDialer
from actors.emulator.numbers import Behaviour, behaviour_for, behaviour_problem
from actors.emulator.phone import TwilioEmulator
from actors.emulator.twiml import (
    Connect,
    Dial,
    DialTarget,
    Hangup,
    Pause,
    Play,
    Redirect,
    Reject,
    Say,
    TwiMLError,
    Unsupported,
    parse_twiml,
)
from actors.errors import ConfigError
from actors.gateway import ServerThread
from actors.webhooks.inbound import InboundQueue
from actors.webhooks.server import WebhookConfig, WebhookServer
from actors.webhooks.twilio import StatusEvent
from tests._provider_calls import running
from tests.conftest import fast_config
from tests.hooks import Recorder

pytestmark = pytest.mark.timeout(60)

ACCOUNT = "AC" + "3" * 32
TOKEN = "emulator-calls-token"
FROM = "+15550199"
HANG_UP = "<Response><Hangup/></Response>"
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


class Statuses:
    """The runtime's webhook server as the status callback: every event it verified."""

    def __init__(self) -> None:
        self.events: list[StatusEvent] = []
        self._changed = threading.Condition()
        config = WebhookConfig(accounts={ACCOUNT: TOKEN})
        self.server = WebhookServer(config, InboundQueue(), on_status=self._on_status)

    def _on_status(self, event: StatusEvent) -> bool:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        return True

    def until_final(self, call_sid: str, timeout: float = 10.0) -> list[StatusEvent]:
        final = {"completed", "busy", "no-answer", "failed", "canceled"}
        with self._changed:
            assert self._changed.wait_for(
                lambda: any(e.call_id == call_sid and e.status in final for e in self.events),
                timeout,
            ), f"no final status for {call_sid}: {self.events}"
            return [e for e in self.events if e.call_id == call_sid]


@contextmanager
def emulated(**config: Any) -> Iterator[tuple[TwilioEmulator, Statuses]]:
    statuses = Statuses()
    emulator = TwilioEmulator(EmulatorConfig(**config), {ACCOUNT: TOKEN}, amd_s=0.05)
    with statuses.server, emulator:
        yield emulator, statuses


def create(emulator: TwilioEmulator, **form: Any) -> dict[str, Any]:
    form.setdefault("From", FROM)
    response = requests.post(
        f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
        data=form,
        auth=(ACCOUNT, TOKEN),
        timeout=5,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


# -- the pure parts -------------------------------------------------------------------------


def test_twiml_becomes_actions() -> None:
    actions = parse_twiml(
        "<Response><Say>hi</Say><Play digits='ww12#'/><Play>https://x/a.wav</Play>"
        "<Pause length='0.5'/><Connect action='/after'><Stream url='wss://gw/twilio' "
        "statusCallback='https://h/s'><Parameter name='session' value='s1'/></Stream></Connect>"
        "<Dial callerId='+15550000'><Number>+15550111</Number><Sip>sip:a@b</Sip></Dial>"
        "<Dial>+15550112</Dial><Redirect method='GET'>/next</Redirect><Gather/><Hangup/>"
        "<Reject reason='busy'/></Response>"
    )
    assert [type(a) for a in actions] == [
        Say, Play, Play, Pause, Connect, Dial, Dial, Redirect, Unsupported, Hangup, Reject,
    ]  # fmt: skip
    assert actions[1] == Play("", "ww12#")
    connect = actions[4]
    assert isinstance(connect, Connect) and connect.action == "/after"
    assert dict(connect.stream.parameters) == {"session": "s1"}
    assert connect.stream.status_callback == "https://h/s"
    assert actions[5] == Dial(
        (DialTarget("number", "+15550111"), DialTarget("sip", "sip:a@b")), caller_id="+15550000"
    )
    assert actions[6] == Dial((DialTarget("number", "+15550112"),))
    assert actions[7] == Redirect("/next", "GET")
    assert Reject().status == "no-answer" and Reject("busy").status == "busy"
    for bad in ("<Response><Dial/></Response>", "<Response><Pause length='x'/></Response>",
                "<Response><Reject reason='maybe'/></Response>", "<Say/>", "not xml"):  # fmt: skip
        with pytest.raises(TwiMLError):
            parse_twiml(bad)


def test_behaviours_by_number_and_prefix() -> None:
    table = {"+15550100": "busy", "+1555020*": "machine:0.5", "+155502*": "no-answer"}
    assert behaviour_for(table, "+15550100") == Behaviour("busy")
    assert behaviour_for(table, "+15550201") == Behaviour("machine", 0.5)  # the longest prefix
    assert behaviour_for(table, "+15550299") == Behaviour("no-answer")
    assert behaviour_for(table, "+15550999") == Behaviour("human")
    assert Behaviour("machine").answered_by("DetectMessageEnd") == "machine_end_beep"
    assert Behaviour("machine").answered_by("Enable") == "machine_start"
    assert Behaviour("human").answered_by(None) is None
    for bad in ("robot", "answer-late", "human:-1", "busy:soon"):
        assert behaviour_problem(bad) is not None
    with pytest.raises(ConfigError, match=r"emulator\.behaviours"):
        parse_config({"emulator": {"behaviours": {"+15550100": "robot"}}})
    with pytest.raises(ConfigError, match=r"emulator\.voice_url"):
        parse_config({"emulator": {"voice_url": "ftp://x"}})


# -- behaviours and their status callbacks --------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "form", "expected"),
    [
        ("human", {}, ["initiated", "ringing", "in-progress", "completed"]),
        ("answer-late:0.3", {}, ["initiated", "ringing", "in-progress", "completed"]),
        ("busy", {}, ["initiated", "busy"]),
        ("failed", {}, ["initiated", "failed"]),
        ("no-answer", {"Timeout": "1"}, ["initiated", "ringing", "no-answer"]),
        ("answer-late:3", {"Timeout": "1"}, ["initiated", "ringing", "no-answer"]),
    ],
)
def test_each_behaviour_reports_twilios_status_callbacks_in_order(
    spec: str, form: dict[str, str], expected: list[str]
) -> None:
    to = "+15550123"
    with emulated(behaviours={to: spec}) as (emulator, statuses):
        call = create(
            emulator,
            To=to,
            Twiml=HANG_UP,
            StatusCallback=statuses.server.status_url,
            StatusCallbackEvent=ALL_EVENTS,
            **form,
        )
        events = statuses.until_final(call["sid"])
        assert emulator.wait_ended(call["sid"], 5).status == expected[-1]
    assert [e.status for e in events] == expected
    assert [e.sequence for e in events] == list(range(len(expected)))
    for event in events:
        assert event.fields["CallbackSource"] == "call-progress-events"
        assert event.fields["Direction"] == "outbound-api"
        assert (event.fields["To"], event.fields["From"]) == (to, FROM)
        assert event.fields["Timestamp"]
        assert ("CallDuration" in event.fields) == (event is events[-1])
        assert "AnsweredBy" not in event.fields  # detection was not asked for
    counters = statuses.server.counters.snapshot()
    assert counters["bad_signature"] == 0 and counters["status"] == len(expected)


def test_only_completed_without_events_and_a_get_callback_signed_over_its_url() -> None:
    with Recorder(TOKEN) as hooks, emulated() as (emulator, statuses):
        quiet = create(
            emulator, To="+15550124", Twiml=HANG_UP, StatusCallback=statuses.server.status_url
        )
        got = create(
            emulator,
            To="+15550125",
            Twiml=HANG_UP,
            StatusCallback=hooks.url + "/status?who=me",
            StatusCallbackMethod="GET",
            StatusCallbackEvent=["initiated", "completed"],
        )
        assert [e.status for e in statuses.until_final(quiet["sid"])] == ["completed"]
        hits = hooks.wait_for(lambda h: len(h) == 2)
    assert [(h.method, h.fields["CallStatus"], h.fields["who"]) for h in hits] == [
        ("GET", "initiated", "me"),
        ("GET", "completed", "me"),
    ]
    assert all(h.signed for h in hits)
    assert all(h.fields["CallSid"] == got["sid"] for h in hits)


def test_machine_detection_says_who_answered() -> None:
    human, machine, fax = "+15550131", "+15550132", "+15550133"
    behaviours = {human: "human", machine: "machine", fax: "fax"}
    cases = [
        (human, "Enable", "human"),
        (machine, "Enable", "machine_start"),
        (machine, "DetectMessageEnd", "machine_end_beep"),
        (fax, "DetectMessageEnd", "fax"),
    ]
    with emulated(behaviours=behaviours) as (emulator, statuses):
        for to, mode, expected in cases:
            call = create(
                emulator,
                To=to,
                Twiml=HANG_UP,
                MachineDetection=mode,
                StatusCallback=statuses.server.status_url,
                StatusCallbackEvent=["answered", "completed"],
            )
            events = statuses.until_final(call["sid"])
            assert [(e.status, e.fields["AnsweredBy"]) for e in events] == [
                ("in-progress", expected),
                ("completed", expected),
            ], (to, mode)
            assert emulator.api.call(call["sid"]).resource()["answered_by"] == expected


def test_async_machine_detection_calls_its_own_callback() -> None:
    machine = "+15550134"
    with Recorder(TOKEN) as hooks, emulated(behaviours={machine: "machine"}) as (emulator, _):
        call = create(
            emulator,
            To=machine,
            Twiml='<Response><Pause length="0.5"/></Response>',
            MachineDetection="Enable",
            AsyncAmd="true",
            AsyncAmdStatusCallback=hooks.url + "/amd",
        )
        (hit,) = hooks.wait_for(lambda h: len(h) == 1)
        assert emulator.wait_ended(call["sid"], 5).answered_by == "machine_start"
    assert hit.path == "/amd" and hit.signed
    assert hit.fields["AnsweredBy"] == "machine_start"
    assert hit.fields["CallSid"] == call["sid"]
    assert int(hit.fields["MachineDetectionDuration"]) >= 0


def test_a_hang_up_while_ringing_is_canceled() -> None:
    with emulated(answer_after_s=30) as (emulator, statuses):
        call = create(
            emulator,
            To="+15550135",
            Twiml=HANG_UP,
            StatusCallback=statuses.server.status_url,
            StatusCallbackEvent=ALL_EVENTS,
        )
        response = requests.post(
            f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{call['sid']}.json",
            data={"Status": "canceled"},
            auth=(ACCOUNT, TOKEN),
            timeout=5,
        )
        assert response.status_code == 200
        events = statuses.until_final(call["sid"])
        emulator.wait_ended(call["sid"], 5)
    assert [e.status for e in events] == ["initiated", "ringing", "canceled"]


# -- the REST update: leave the stream for new TwiML ----------------------------------------


@pytest.fixture
def service() -> Iterator[TransportService]:
    config = dataclasses.replace(fast_config(), emulator=EmulatorConfig(media="echo"))
    with TransportService(config) as svc:
        yield svc


def update(service: TransportService, call_sid: str, **form: str) -> requests.Response:
    endpoint = service.infrastructure.twilio_emulator()
    return requests.post(
        f"{endpoint.base_url}/2010-04-01/Accounts/{endpoint.account_sid}/Calls/{call_sid}.json",
        data=form,
        auth=(endpoint.account_sid, endpoint.auth_token),
        timeout=5,
    )


def emulator_of(service: TransportService) -> TwilioEmulator:
    return running(service, "emulator", TwilioEmulator)


def streaming_call(service: TransportService) -> tuple[str, str]:
    info = service.create_session(provider="twilio", to="+15550140", from_=FROM)
    assert info.call_id is not None
    message = service.read_websocket_message(info.session_id, timeout=5)
    while isinstance(message, CallStatus):  # the call's progress comes before its stream
        message = service.read_websocket_message(info.session_id, timeout=5)
    assert isinstance(message, Started)
    return info.session_id, info.call_id


def read_to_the_end(service: TransportService, session_id: str) -> list[object]:
    seen: list[object] = []
    while (message := service.read_websocket_message(session_id, timeout=5)) is not None:
        seen.append(message)
    return seen


def test_an_update_with_a_dial_ends_the_stream_and_is_recorded_as_a_transfer(
    service: TransportService,
) -> None:
    session_id, call_sid = streaming_call(service)
    twiml = (
        "<Response><Dial callerId='+15550199'><Sip>sip:agent@example.com</Sip></Dial></Response>"
    )
    assert update(service, call_sid, Twiml=twiml).status_code == 200
    emulator = emulator_of(service)
    call = emulator.wait_ended(call_sid, 5)
    media = emulator.call_media(call_sid)
    assert media is not None and media.ended.is_set() and media.hung_up  # the phone left it
    assert any(isinstance(m, Stopped) for m in read_to_the_end(service, session_id))
    assert call.transfers == [
        Dial((DialTarget("sip", "sip:agent@example.com"),), caller_id="+15550199")
    ]
    assert call.documents[-1] == twiml
    assert call.status == "completed"  # nothing after the <Dial>: the call ends


def test_play_digits_is_recorded_as_dtmf_and_a_url_update_is_fetched_signed(
    service: TransportService,
) -> None:
    endpoint = service.infrastructure.twilio_emulator()
    answer = "<Response><Play digits='ww123#'/><Redirect>/more</Redirect></Response>"
    more = "<Response><Play digits='9'/></Response>"
    with Recorder(endpoint.auth_token, {"/dtmf": answer, "/more": more}) as hooks:
        session_id, call_sid = streaming_call(service)
        assert update(service, call_sid, Url=hooks.url + "/dtmf").status_code == 200
        call = emulator_of(service).wait_ended(call_sid, 5)
        hits = hooks.wait_for(lambda h: len(h) == 2)
    assert call.dtmf_played == ["ww123#", "9"]
    assert [(h.path, h.signed, h.fields["CallStatus"]) for h in hits] == [
        ("/dtmf", True, "in-progress"),
        ("/more", True, "in-progress"),  # the relative <Redirect>, against the document's URL
    ]
    assert any(isinstance(m, Stopped) for m in read_to_the_end(service, session_id))


def test_an_update_with_twiml_the_emulator_cannot_obey_is_refused(
    service: TransportService,
) -> None:
    _, call_sid = streaming_call(service)
    bad = update(service, call_sid, Twiml="<Response><Dial/></Response>")
    assert (bad.status_code, bad.json()["code"]) == (400, 12100)
    wrong = update(service, call_sid, Url="https://example.com/x", Method="PUT")
    assert (wrong.status_code, wrong.json()["code"]) == (400, 20001)
    assert emulator_of(service).api.call(call_sid).status == "in-progress"  # undisturbed


def test_a_streams_status_callback_hears_it_start_and_stop(echo_server: ServerThread) -> None:
    with Recorder(TOKEN) as hooks, emulated() as (emulator, _):
        twiml = (
            f'<Response><Connect><Stream url="{echo_server.url}" name="main" '
            f'statusCallback="{hooks.url}/stream"/></Connect></Response>'
        )
        call = create(emulator, To="+15550141", Twiml=twiml)
        hooks.wait_for(lambda h: len(h) == 1)
        hang_up = requests.post(
            f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{call['sid']}.json",
            data={"Status": "completed"},
            auth=(ACCOUNT, TOKEN),
            timeout=5,
        )
        assert hang_up.status_code == 200
        hits = hooks.wait_for(lambda h: len(h) == 2)
    assert [h.fields["StreamEvent"] for h in hits] == ["stream-started", "stream-stopped"]
    assert all(h.signed and h.fields["StreamName"] == "main" for h in hits)
    assert hits[0].fields["StreamSid"].startswith("MZ")


def test_a_hang_up_right_after_dialling_is_not_lost(echo_server: ServerThread) -> None:
    """An update or hang-up that comes before the stream's task has started still ends it
    (it was lost: the stream then ran until max_call_s)."""
    dialer = MediaDialer(EmulatorConfig(), {ACCOUNT: TOKEN})
    dialer.start()
    try:
        media = dialer.dial(
            call_sid="CA" + "5" * 32, account_sid=ACCOUNT, to="+15550142", url=echo_server.url,
            parameters={},
        )  # fmt: skip
        dialer.hang_up(media.call_sid)  # before the loop has run the call's first step
        assert media.ended.wait(5)
    finally:
        dialer.stop()
