"""Plivo calls end to end through the public facade, on loopback, with no account.

``create_session(provider="plivo")`` -> the Plivo provider's Call API client -> the emulator's
``POST Call/`` (the answer XML inline, the emulator's extension) -> the emulated phone obeys the
answer's ``<Stream>``: dials the gateway's ``/plivo`` speaking Plivo's frames, the routing
values in the extra headers -> the gateway pairs it with the session -> frames both ways.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    TransportService,
)
from actors.emulator.media import CallMedia
from actors.emulator.plivo import PlivoEmulator, read_answer
from actors.lifecycle import SessionState
from actors.messages import Binary
from actors.providers.plivo import PlivoRestClient
from actors.webhooks.plivo import stream_xml, verify_signature_v3
from tests._provider_calls import (
    FROM,
    MACHINE,
    PERSON,
    TO,
    read_until,
    resume_after_a_dropped_hop,
    running,
)


def emulator_of(service: TransportService) -> PlivoEmulator:
    return running(service, "plivo", PlivoEmulator)


def media_of(service: TransportService, call_id: str) -> CallMedia | None:
    return emulator_of(service).media.media(call_id)


def test_an_outbound_call_streams_both_ways_with_marks_and_clear(
    service: TransportService,
) -> None:
    info = service.create_session(provider="plivo", to=TO, from_=FROM, parameters={"who": "t1"})
    assert info.call_id is not None
    started = read_until(service, info.session_id, Started)[-1]
    assert isinstance(started, Started)
    call = emulator_of(service).call(info.call_id)
    assert started.call_id == call.call_uuid
    assert started.media_format.encoding == "audio/x-mulaw"
    assert dict(started.parameters) == {"who": "t1", "session": info.session_id}  # no token
    # The runtime's webhook answered it (/plivo/answer?session=): asked again, it answers the same.
    assert call.answer_xml is None and "/plivo/answer?session=" in call.answer_url
    url, headers, content_type = read_answer(emulator_of(service).answer(call))
    assert url.endswith("/plivo") and content_type == "audio/x-mulaw;rate=8000"
    assert all(v.isalnum() for v in headers.values())  # Plivo's rule for extraHeaders
    frames = [bytes([i]) * 160 for i in range(1, 26)]
    for frame in frames:
        service.write_websocket_message(info.session_id, Binary(frame))
    service.write_websocket_message(info.session_id, Mark("played"))
    back = read_until(service, info.session_id, Mark)
    assert back[-1] == Mark("played")  # playedStream
    assert b"".join(m.data for m in back if isinstance(m, Audio)) == b"".join(frames)
    for _ in range(100):
        service.write_websocket_message(info.session_id, Binary(b"\x05" * 160))
    service.write_websocket_message(info.session_id, Clear())  # clearAudio -> clearedAudio
    service.write_websocket_message(info.session_id, Mark("after"))
    assert read_until(service, info.session_id, Mark)[-1] == Mark("after")
    media = media_of(service, info.call_id)
    assert media is not None
    assert media.marks_echoed == ["played", "after"]
    assert media.clears == 1
    assert len(media.recording) < 160 * 125  # the cleared audio was not all played
    service.end_session(info.session_id)
    assert media.ended.wait(5)
    assert service.status(info.session_id).state is SessionState.CLOSED


def test_dtmf_both_ways(service: TransportService) -> None:
    info = service.create_session(provider="plivo", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    emulator_of(service).press(info.call_id, "7")
    assert read_until(service, info.session_id, Dtmf)[-1] == Dtmf("7")
    service.write_websocket_message(info.session_id, Dtmf("12#"))  # sendDTMF
    service.write_websocket_message(info.session_id, Mark("m"))
    read_until(service, info.session_id, Mark)
    media = media_of(service, info.call_id)
    assert media is not None and media.dtmf_received == ["12#"]
    service.end_session(info.session_id)


def test_a_hang_up_of_an_ended_call_counts_as_success(service: TransportService) -> None:
    info = service.create_session(provider="plivo", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    emulator_of(service).media.hang_up(info.call_id)  # the far end hangs up
    assert isinstance(read_until(service, info.session_id, Close)[-1], Close)
    media = media_of(service, info.call_id)
    assert media is not None and media.ended.wait(5)
    service.end_session(info.session_id)  # DELETE Call/{uuid}/ -> 404: no error
    api = emulator_of(service).api
    assert [r.status for r in api.requests if r.operation == "hangup"] == [404]


def test_provider_error_bodies_become_provider_errors(service: TransportService) -> None:
    endpoint = service.infrastructure.plivo_emulator()
    client = PlivoRestClient(
        auth_id=endpoint.account_sid,
        auth_token=endpoint.auth_token,
        api_base_url=endpoint.base_url,
        retries=0,
    )
    with client:
        with pytest.raises(ProviderError) as error:
            client.create_call(to=TO, from_=FROM, answer_url="ftp://x/answer")
        assert error.value.status == 400
        assert "answer_url" in str(error.value)
        assert client.hang_up("no-such-call") is False
        emulator_of(service).api.fail("create", 429, "too many requests", times=1)
        with pytest.raises(ProviderError):  # retries=0: the 429 is reported
            client.create_call(to=TO, from_=FROM, answer_url="http://127.0.0.1:9/a")
    bad = PlivoRestClient(
        auth_id=endpoint.account_sid,
        auth_token="t0ken-n0t-v4lid",
        api_base_url=endpoint.base_url,
        retries=0,
    )
    with bad, pytest.raises(ProviderError) as unauthorised:
        bad.create_call(to=TO, from_=FROM, answer_url="http://127.0.0.1:9/a")
    assert unauthorised.value.status == 401
    assert "t0ken-n0t-v4lid" not in str(unauthorised.value)


def test_the_emulator_fetches_a_signed_answer_url(service: TransportService) -> None:
    """Without the inline answer, the emulator asks ``answer_url`` as Plivo would: a POST
    signed with X-Plivo-Signature-V3, which the answering server verifies."""
    endpoint = service.infrastructure.plivo_emulator()
    gateway = service.infrastructure.gateway()
    verified: list[bool] = []

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            from urllib.parse import parse_qsl  # noqa: PLC0415

            url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
            verified.append(
                verify_signature_v3(
                    endpoint.auth_token, "POST", url, dict(self.headers), parse_qsl(body.decode())
                )
            )
            xml = stream_xml(gateway.public_url + "/plivo", {"who": "x"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = PlivoRestClient(
            auth_id=endpoint.account_sid,
            auth_token=endpoint.auth_token,
            api_base_url=endpoint.base_url,
            retries=0,
        )
        with client:
            answer = f"http://127.0.0.1:{server.server_address[1]}/answer?a=1"
            fired = client.create_call(to=TO, from_=FROM, answer_url=answer)
        call = emulator_of(service).call(fired["request_uuid"])
        assert call.dialled.wait(5)
        assert call.media is not None
        assert call.media.started.wait(5)
        assert verified == [True]
        emulator_of(service).media.hang_up(call.request_uuid)
        assert call.media.ended.wait(5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_dropped_session_hop_resumes_with_nothing_lost_or_doubled() -> None:
    resume_after_a_dropped_hop("plivo", media_of)


# -- call control (Plivo's Transfer and DTMF APIs) ---------------------------------------------


def _requests(service: TransportService, operation: str) -> list[int]:
    return [r.status for r in emulator_of(service).api.requests if r.operation == operation]


def _live_call(service: TransportService) -> tuple[str, str]:
    info = service.create_session(provider="plivo", to=TO, from_=FROM)
    read_until(service, info.session_id, Started)
    assert info.call_id is not None
    return info.session_id, info.call_id


def test_transfer_dials_from_xml_the_webhook_serves_and_the_call_is_not_hung_up(
    service: TransportService,
) -> None:
    sid, request_uuid = _live_call(service)
    service.transfer(sid, "+15550111", caller_id=FROM)
    assert read_until(service, sid, Close)[-1] == Close(1000, "transferred")
    call = emulator_of(service).wait_ended(request_uuid, 5)
    assert call.outcome == "transferred" and call.alive
    assert call.transfers == [[("number", "+15550111")]]
    (document,) = call.documents  # fetched, signed, from the runtime's /plivo/control
    assert 'callerId="+15550199"' in document
    with pytest.raises(SessionClosed):
        service.send_dtmf(sid, "1")
    service.end_session(sid)
    assert _requests(service, "transfer") == [202]
    assert _requests(service, "hangup") == []  # the call is the <Dial>'s now


def test_redirect_runs_the_given_xml_in_place_of_the_stream(service: TransportService) -> None:
    sid, request_uuid = _live_call(service)
    xml = "<Response><Speak>goodbye</Speak><Hangup/></Response>"
    service.redirect(sid, xml)
    assert read_until(service, sid, Close)[-1] == Close(1000, "redirected")
    call = emulator_of(service).wait_ended(request_uuid, 5)
    assert call.documents == [xml] and call.transfers == []
    assert call.outcome == "completed"  # the XML ran out: the call is over
    service.end_session(sid)
    assert _requests(service, "hangup") == []


def test_send_dtmf_plays_the_digits_and_the_stream_goes_on(service: TransportService) -> None:
    sid, request_uuid = _live_call(service)
    with pytest.raises(ValueError):
        service.send_dtmf(sid, "9x")
    service.send_dtmf(sid, "12w#")
    assert emulator_of(service).call(request_uuid).dtmf_sent == ["12w#"]
    service.write_websocket_message(sid, Binary(b"\x09" * 160))
    service.write_websocket_message(sid, Mark("after-dtmf"))
    assert read_until(service, sid, Mark)[-1] == Mark("after-dtmf")
    assert service.status(sid).state is SessionState.OPEN
    service.end_session(sid)
    assert _requests(service, "dtmf") == [202]
    assert _requests(service, "hangup") in ([204], [404])


def test_a_control_document_is_served_only_to_plivo_signed_requests(
    service: TransportService,
) -> None:
    sid, _ = _live_call(service)
    service.transfer(sid, "sip:desk@example.com")
    read_until(service, sid, Close)
    webhook = service.infrastructure.webhook()
    url = webhook.public_url + "/plivo/control?doc=anything"
    response = requests.post(url, data={"CallUUID": "x"}, timeout=5)
    assert response.status_code == 403  # no X-Plivo-Signature-V3
    service.end_session(sid)


# -- machine detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(("to", "verdict"), [(MACHINE, "machine_start"), (PERSON, "human")])
def test_machine_detection_verdict_comes_to_the_session(
    amd_service: TransportService, to: str, verdict: str
) -> None:
    info = amd_service.create_session(
        provider="plivo", to=to, from_=FROM, machine_detection="Enable"
    )
    assert info.call_id is not None
    request = emulator_of(amd_service).call(info.call_id).request
    assert request["machine_detection"] == "true"
    assert request["machine_detection_url"].endswith("/plivo/machine")
    told = read_until(amd_service, info.session_id, MachineDetected)[-1]
    assert isinstance(told, MachineDetected)
    assert told.answered_by == verdict and told.machine is (to == MACHINE)
    assert told.fields["Machine"] == ("true" if to == MACHINE else "false")
    amd_service.end_session(info.session_id)


def test_machine_detection_plivo_cannot_do_is_refused_before_dialling(
    amd_service: TransportService,
) -> None:
    with pytest.raises(ValueError, match="'Enable' only"):
        amd_service.create_session(
            provider="plivo", to=MACHINE, from_=FROM, machine_detection="DetectMessageEnd"
        )
    assert [r for r in emulator_of(amd_service).api.requests if r.operation == "create"] == []
