"""Telnyx calls end to end through the public facade, on loopback, with no account.

``create_session(provider="telnyx")`` -> the Telnyx provider's Call Control client -> the
emulator's ``POST /calls`` -> the emulated phone dials ``stream_url`` (the gateway's
``/telnyx``) speaking Telnyx's frames, the routing values in ``client_state`` -> the gateway
pairs it with the session -> frames both ways, unchanged.
"""

from __future__ import annotations

import pytest
import requests

from actors import (
    Audio,
    Clear,
    Close,
    Dtmf,
    MachineDetected,
    Mark,
    ProviderError,
    SessionClosed,
    Started,
    Stopped,
    TransportService,
    UnsupportedMessage,
)
from actors.emulator.media import CallMedia
from actors.emulator.telnyx import TelnyxEmulator
from actors.lifecycle import SessionState
from actors.messages import Binary
from actors.providers.telnyx import TelnyxRestClient
from tests._provider_calls import (
    FROM,
    MACHINE,
    PERSON,
    TO,
    read_until,
    resume_after_a_dropped_hop,
    running,
)


def emulator_of(service: TransportService) -> TelnyxEmulator:
    return running(service, "telnyx", TelnyxEmulator)


def media_of(service: TransportService, call_id: str) -> CallMedia | None:
    return emulator_of(service).media.media(call_id)


def test_an_outbound_call_streams_both_ways_with_marks_and_clear(
    service: TransportService,
) -> None:
    info = service.create_session(provider="telnyx", to=TO, from_=FROM, parameters={"who": "t"})
    assert info.call_id is not None and info.call_id.startswith("v3:")
    started = read_until(service, info.session_id, Started)[-1]
    assert isinstance(started, Started)
    assert started.call_id == info.call_id
    assert started.media_format.encoding == "audio/x-mulaw"
    # The application's parameters rode in client_state; the stream token is not shown.
    assert dict(started.parameters) == {"who": "t", "session": info.session_id}
    dial = emulator_of(service).call(info.call_id).request
    assert dial["stream_bidirectional_mode"] == "rtp"
    assert dial["stream_bidirectional_codec"] == "PCMU"
    assert dial["stream_url"].endswith("/telnyx")
    frames = [bytes([i]) * 160 for i in range(1, 26)]
    for frame in frames:
        service.write_websocket_message(info.session_id, Binary(frame))
    service.write_websocket_message(info.session_id, Mark("played"))
    back = read_until(service, info.session_id, Mark)
    assert back[-1] == Mark("played")
    echoed = b"".join(m.data for m in back if isinstance(m, Audio))
    assert echoed == b"".join(frames)  # the echo: every byte, in order
    # A clear while audio is queued: the queued mark comes back at once, the audio does not.
    for _ in range(100):
        service.write_websocket_message(info.session_id, Binary(b"\x05" * 160))
    service.write_websocket_message(info.session_id, Mark("cleared"))
    service.write_websocket_message(info.session_id, Clear())
    assert read_until(service, info.session_id, Mark)[-1] == Mark("cleared")
    media = media_of(service, info.call_id)
    assert media is not None
    assert media.marks_echoed == ["played", "cleared"]
    assert media.clears == 1
    assert len(media.recording) < 160 * 125  # the cleared audio was not all played
    service.end_session(info.session_id)
    assert media.ended.wait(5)
    hang_ups = [r.status for r in emulator_of(service).api.requests if r.operation == "hangup"]
    assert hang_ups in ([200], [422])  # hung up, or over already: the stream closed first
    assert service.status(info.session_id).state is SessionState.CLOSED


def test_dtmf_comes_in_and_cannot_go_out(service: TransportService) -> None:
    info = service.create_session(provider="telnyx", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    emulator_of(service).press(info.call_id, "4#")
    first = read_until(service, info.session_id, Dtmf)[-1]
    second = read_until(service, info.session_id, Dtmf)[-1]
    assert (first, second) == (Dtmf("4"), Dtmf("#"))
    with pytest.raises(UnsupportedMessage):
        service.write_websocket_message(info.session_id, Dtmf("1"))  # Telnyx cannot carry it
    service.end_session(info.session_id)


def test_a_hang_up_of_an_ended_call_counts_as_success(service: TransportService) -> None:
    info = service.create_session(provider="telnyx", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    emulator_of(service).media.hang_up(info.call_id)  # the far end hangs up
    rest = read_until(service, info.session_id, Close)
    assert any(isinstance(m, Stopped) for m in rest)
    media = media_of(service, info.call_id)
    assert media is not None and media.ended.wait(5)
    service.end_session(info.session_id)  # 422 / 90018 from the API: no error
    api = emulator_of(service).api
    assert [r.status for r in api.requests if r.operation == "hangup"] == [422]


def test_provider_error_bodies_become_provider_errors(service: TransportService) -> None:
    emulator_of_service = service.infrastructure.telnyx_emulator()
    client = TelnyxRestClient(
        api_key=emulator_of_service.auth_token,
        api_base_url=emulator_of_service.base_url,
        retries=0,
    )
    with client, pytest.raises(ProviderError) as error:
        client.create_call(
            connection_id="app", to=TO, from_=FROM, stream_url="http://not-a-websocket"
        )
    assert (error.value.status, error.value.code) == (422, "10015")
    with client:
        assert client.hang_up("v3:no-such-call") is False  # 404: Telnyx knows no such call
    bad = TelnyxRestClient(
        api_key="k3y-n0t-v4lid", api_base_url=emulator_of_service.base_url, retries=0
    )
    with bad, pytest.raises(ProviderError) as unauthorised:
        bad.create_call(connection_id="app", to=TO, from_=FROM, stream_url="wss://x/telnyx")
    assert unauthorised.value.status == 401
    assert unauthorised.value.code == "10009"
    assert "k3y-n0t-v4lid" not in str(unauthorised.value)


def test_a_client_state_that_is_not_base64_is_refused_by_dial_and_streaming_start(
    service: TransportService,
) -> None:
    """As Telnyx does: ``client_state`` must be base64, on the dial and on ``streaming_start``
    alike (422, code 10015, naming the field); the call it was refused for goes on."""
    endpoint = service.infrastructure.telnyx_emulator()
    client = TelnyxRestClient(
        api_key=endpoint.auth_token, api_base_url=endpoint.base_url, retries=0
    )
    with client, pytest.raises(ProviderError) as dial:
        client.create_call(
            connection_id="app", to=TO, from_=FROM, stream_url="wss://x/telnyx", client_state="!"
        )
    assert (dial.value.status, dial.value.code) == (422, "10015")
    assert "client_state" in str(dial.value)
    del dial  # its traceback keeps the refused request alive (a socket with it) until a GC
    info = service.create_session(provider="telnyx", to=TO, from_=FROM)
    url = f"{endpoint.base_url}/calls/{info.call_id}/actions/streaming_start"
    body = {"stream_url": "wss://x/telnyx", "client_state": "not base64!"}
    with requests.Session() as http:
        reply = http.post(
            url, json=body, headers={"Authorization": f"Bearer {endpoint.auth_token}"}, timeout=5
        )
    assert reply.status_code == 422, reply.text
    assert reply.json()["errors"][0]["detail"] == "'client_state' not base64."
    assert service.is_websocket_connected(info.session_id)


def test_a_dropped_session_hop_resumes_with_nothing_lost_or_doubled() -> None:
    resume_after_a_dropped_hop("telnyx", media_of)


# -- call control (Call Control commands) -----------------------------------------------------


def _commands(service: TransportService, operation: str) -> list[int]:
    return [r.status for r in emulator_of(service).api.requests if r.operation == operation]


def test_transfer_leaves_the_stream_and_ending_the_session_does_not_hang_up(
    service: TransportService,
) -> None:
    info = service.create_session(provider="telnyx", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    with pytest.raises(ValueError, match=r"E\.164"):
        service.transfer(info.session_id, "+1 555 not a number")
    service.transfer(info.session_id, "sip:desk@example.com", caller_id=FROM)
    assert read_until(service, info.session_id, Close)[-1] == Close(1000, "transferred")
    call = emulator_of(service).wait_ended(info.call_id, 5)
    (transfer,) = call.transfers
    assert (transfer["to"], transfer["from"]) == ("sip:desk@example.com", FROM)
    assert call.outcome == "transferred" and call.alive  # bridged on, not hung up
    with pytest.raises(SessionClosed):
        service.transfer(info.session_id, "+15550111")
    service.end_session(info.session_id)
    assert _commands(service, "transfer") == [200]
    assert _commands(service, "hangup") == []  # the call is the transfer's now
    assert emulator_of(service).call(info.call_id).alive


def test_send_dtmf_plays_the_digits_and_the_stream_goes_on(service: TransportService) -> None:
    info = service.create_session(provider="telnyx", to=TO, from_=FROM)
    sid = info.session_id
    read_until(service, sid, Started)
    assert info.call_id is not None
    with pytest.raises(ValueError):
        service.send_dtmf(sid, "12x")
    service.send_dtmf(sid, "12w#")
    service.send_dtmf(sid, "*")
    assert emulator_of(service).call(info.call_id).dtmf_sent == ["12w#", "*"]
    # Still streaming both ways: the echo brings a mark back after the digits.
    service.write_websocket_message(sid, Binary(b"\x07" * 160))
    service.write_websocket_message(sid, Mark("after-dtmf"))
    assert read_until(service, sid, Mark)[-1] == Mark("after-dtmf")
    assert service.status(sid).state is SessionState.OPEN
    service.end_session(sid)
    assert _commands(service, "hangup") in ([200], [422])
    with pytest.raises(SessionClosed):
        service.send_dtmf(sid, "1")


def test_redirect_is_unsupported_on_a_call_control_call_and_the_call_goes_on(
    service: TransportService,
) -> None:
    info = service.create_session(provider="telnyx", to=TO, from_=FROM)
    sid = info.session_id
    read_until(service, sid, Started)
    with pytest.raises(UnsupportedMessage, match="takes commands, not a document"):
        service.redirect(sid, "<Response><Hangup/></Response>")
    service.write_websocket_message(sid, Mark("still-here"))
    assert read_until(service, sid, Mark)[-1] == Mark("still-here")
    service.end_session(sid)


def _texml_call(service: TransportService) -> tuple[str, str]:
    """An inbound call answered with TeXML (the default ``inbound: texml``), streaming."""
    call_id = service.infrastructure.place_inbound("telnyx", TO, "+15550177")
    info = service.accept_session(timeout=5, provider="telnyx")
    read_until(service, info.session_id, Started)
    return info.session_id, call_id


def test_a_texml_call_is_transferred_with_new_texml_and_takes_no_dtmf(
    service: TransportService,
) -> None:
    sid, call_id = _texml_call(service)
    with pytest.raises(UnsupportedMessage, match="inbound: call_control"):
        service.send_dtmf(sid, "1")
    service.transfer(sid, "+15550111", caller_id=FROM)
    assert read_until(service, sid, Close)[-1] == Close(1000, "transferred")
    call = emulator_of(service).wait_ended(call_id, 5)
    assert call.transfers == [{"to": "+15550111", "noun": "Number", "callerId": FROM}]
    assert call.outcome == "transferred" and call.alive
    service.end_session(sid)
    assert _commands(service, "update_texml") == [200]
    assert _commands(service, "hangup") == []


def test_a_texml_call_is_redirected_to_the_given_texml(service: TransportService) -> None:
    sid, call_id = _texml_call(service)
    texml = "<Response><Say>goodbye</Say><Hangup/></Response>"
    service.redirect(sid, texml)
    assert read_until(service, sid, Close)[-1] == Close(1000, "redirected")
    call = emulator_of(service).wait_ended(call_id, 5)
    assert call.documents == [texml] and call.outcome == "completed"
    service.end_session(sid)
    assert _commands(service, "hangup") == []


def test_a_command_on_a_call_that_has_ended_is_session_closed(service: TransportService) -> None:
    info = service.create_session(provider="telnyx", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    # Telnyx ends the call between our check and the command: 422 / 90018 from the API.
    emulator_of(service).api.ended(info.call_id)
    with pytest.raises(SessionClosed, match="has ended"):
        service.send_dtmf(info.session_id, "1")
    assert _commands(service, "send_dtmf") == [422]
    service.end_session(info.session_id)


# -- machine detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "asked", "mode", "verdicts"),
    [
        (MACHINE, "Enable", "detect", ["machine_start"]),
        (PERSON, "Enable", "detect", ["human"]),
        (MACHINE, "DetectMessageEnd", "greeting_end", ["machine_start", "machine_end_beep"]),
    ],
)
def test_machine_detection_results_arrive_in_twilios_words(
    amd_service: TransportService, to: str, asked: str, mode: str, verdicts: list[str]
) -> None:
    info = amd_service.create_session(provider="telnyx", to=to, from_=FROM, machine_detection=asked)
    assert info.call_id is not None
    dial = emulator_of(amd_service).call(info.call_id).request
    assert dial["answering_machine_detection"] == mode
    told = [read_until(amd_service, info.session_id, MachineDetected)[-1] for _ in verdicts]
    assert [m.answered_by for m in told] == verdicts
    assert all(isinstance(m, MachineDetected) for m in told)
    assert told[0].machine is (to == MACHINE)
    assert told[0].fields["event_type"].startswith("call.machine.")
    amd_service.end_session(info.session_id)


def test_machine_detection_takes_the_timeout_and_refuses_what_telnyx_lacks(
    amd_service: TransportService,
) -> None:
    asked = {"MachineDetection": "Enable", "MachineDetectionTimeout": "7", "AsyncAmd": "true"}
    info = amd_service.create_session(
        provider="telnyx", to=PERSON, from_=FROM, machine_detection=asked
    )
    assert info.call_id is not None
    dial = emulator_of(amd_service).call(info.call_id).request
    assert dial["answering_machine_detection_config"] == {"total_analysis_time_millis": 7000}
    amd_service.end_session(info.session_id)
    with pytest.raises(ValueError, match="MachineDetectionSpeechThreshold"):
        amd_service.create_session(
            provider="telnyx",
            to=PERSON,
            from_=FROM,
            machine_detection={"MachineDetectionSpeechThreshold": "2400"},
        )
