"""The webhook server over real HTTP on loopback, signed the way Twilio signs: calls handed to
accepting threads, refusals with the right status or TwiML, idempotency, capacity, a flood."""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from actors.errors import AcceptTimeout
from actors.signing import twilio_signature
from actors.webhooks.inbound import InboundQueue, InboundSettings, PendingCall
from actors.webhooks.server import (
    STATUS_PATH,
    STREAM_PATH,
    VOICE_PATH,
    WebhookConfig,
    WebhookServer,
)
from actors.webhooks.twilio import StatusEvent, StreamEvent, connect_twiml

pytestmark = pytest.mark.timeout(60)

ACCOUNT = "AC" + "a" * 32
TOKEN = "test-auth-token"
BUSY = '<Response><Reject reason="busy" /></Response>'


def call_sid(n: int) -> str:
    return f"CA{n:032x}"


def voice_fields(n: int, **over: str) -> dict[str, str]:
    fields = {
        "CallSid": call_sid(n),
        "AccountSid": ACCOUNT,
        "From": "+15550100",
        "To": "+15550199",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "CallerName": "",
        "ApiVersion": "2010-04-01",
    }
    fields.update(over)
    return fields


@contextmanager
def serving(
    on_status: Callable[[StatusEvent], bool] | None = None,
    on_reattach: Callable[[Any], str | None] | None = None,
    max_connections: int = 64,
    **settings: Any,
) -> Iterator[WebhookServer]:
    queue = InboundQueue(InboundSettings(**settings))
    config = WebhookConfig(
        accounts={ACCOUNT: TOKEN}, max_connections=max_connections, request_timeout_s=2.0
    )
    server = WebhookServer(config, queue, on_status=on_status, on_reattach=on_reattach)
    with server:
        yield server


def post(
    server: WebhookServer,
    fields: dict[str, str],
    *,
    path: str = VOICE_PATH,
    token: str = TOKEN,
    signature: str | None = None,
) -> requests.Response:
    """POST as Twilio does: form fields, signed over the public URL it requested."""
    url = server.public_url + path
    headers = {}
    if signature != "":
        headers["X-Twilio-Signature"] = signature or twilio_signature(token, url, fields)
    return requests.post(url, data=fields, headers=headers, timeout=20)


def answer(pending: PendingCall, server: WebhookServer) -> str:
    session_id = f"S-{pending.call.call_id[-4:]}"
    twiml = connect_twiml(
        "wss://gw.example/twilio",
        {"session": session_id},
        redirect_url=f"{server.voice_url}?reattach={session_id}",
    )
    assert pending.answer(twiml, session_id)
    return session_id


def streamed_session(response: requests.Response) -> str | None:
    root = ET.fromstring(response.text)
    param = root.find("Connect/Stream/Parameter[@name='session']")
    return None if param is None else param.get("value")


def test_a_signed_call_waits_for_an_accepting_thread_and_streams_to_its_session() -> None:
    with serving() as server, ThreadPoolExecutor(2) as pool:
        reply = pool.submit(post, server, voice_fields(1, CallerName="Ada"))
        pending = server.queue.accept(timeout=5)
        assert not reply.done()  # the webhook is held until the call is answered
        assert pending.call.from_ == "+15550100" and pending.call.fields["CallerName"] == "Ada"
        session_id = answer(pending, server)
        response = reply.result(timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/xml")
        assert streamed_session(response) == session_id
        assert f"reattach={session_id}" in response.text
        assert server.queue.session_of(call_sid(1)) == session_id
        assert server.counters.snapshot()["accepted"] == 1


@pytest.mark.parametrize(
    ("kind", "status", "counter"),
    [
        ("missing signature", 403, "bad_signature"),
        ("wrong signature", 403, "bad_signature"),
        ("unknown account", 403, "unknown_account"),
        ("missing field", 400, "bad_request"),
        ("wrong path", 404, "not_found"),
    ],
)
def test_bad_webhooks_are_refused_logged_once_and_counted(
    kind: str, status: int, counter: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = voice_fields(2)
    with serving() as server:
        caplog.set_level(logging.WARNING, logger="actors.webhooks")
        if kind == "missing signature":
            response = post(server, fields, signature="")
        elif kind == "wrong signature":
            response = post(server, fields, token="not-the-token")
        elif kind == "unknown account":
            response = post(server, {**fields, "AccountSid": "AC" + "b" * 32}, token="theirs")
        elif kind == "missing field":
            response = post(server, {k: v for k, v in fields.items() if k != "To"})
        else:
            response = post(server, fields, path="/twilio/other")
        assert response.status_code == status
        assert server.counters.snapshot()[counter] == 1
        assert server.queue.load() == 0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].exc_info is None
        assert TOKEN not in warnings[0].getMessage()


def test_an_oversized_body_is_refused_before_it_is_read() -> None:
    with serving() as server, socket.create_connection(("127.0.0.1", server.port), 5) as sock:
        sock.sendall(
            b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: s\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )  # and not one byte of the 10 MB body: the answer must not wait for it
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 413 ")
        assert server.counters.snapshot()["too_large"] == 1


def test_a_repeated_webhook_gets_the_same_answer_and_one_session() -> None:
    with serving() as server, ThreadPoolExecutor(4) as pool:
        fields = voice_fields(3)
        first, second = pool.submit(post, server, fields), pool.submit(post, server, fields)
        session_id = answer(server.queue.accept(timeout=5), server)
        third = post(server, fields)  # after the answer: a retry
        bodies = {r.text for r in (first.result(10), second.result(10), third)}
        assert len(bodies) == 1 and streamed_session(third) == session_id
        with pytest.raises(AcceptTimeout):
            server.queue.accept(timeout=0.2)  # no second offer was ever made
        counts = server.counters.snapshot()
        assert counts["accepted"] == 1 and counts["duplicate"] == 2
        # Once the call has ended, a replay of its webhook is refused.
        assert server.queue.ended(call_sid(3))
        replay = post(server, fields)
        assert replay.text == BUSY and server.counters.snapshot()["replayed"] == 1


def test_past_capacity_a_call_is_rejected_busy_at_once() -> None:
    with serving(max_sessions=2) as server, ThreadPoolExecutor(4) as pool:
        held = [pool.submit(post, server, voice_fields(n)) for n in (10, 11)]
        _wait_for(lambda: server.queue.load() == 2)
        started = time.monotonic()
        response = post(server, voice_fields(12))
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and response.text == BUSY
        assert elapsed < 0.5, elapsed
        assert server.counters.snapshot()["refused_busy"] == 1
        for _ in held:
            answer(server.queue.accept(timeout=5), server)
        assert all(streamed_session(f.result(10)) for f in held)


def test_a_call_nobody_accepts_is_rejected_busy_after_the_queue_timeout() -> None:
    with serving(queue_timeout_s=0.3) as server:
        started = time.monotonic()
        response = post(server, voice_fields(20))
        elapsed = time.monotonic() - started
        assert response.text == BUSY and 0.3 <= elapsed < 2.0, elapsed
        assert server.counters.snapshot()["refused_timeout"] == 1
        assert server.queue.load() == 0
        with pytest.raises(AcceptTimeout):
            server.queue.accept(timeout=0.05)  # the refused call is not left in the queue


def test_an_acceptor_too_slow_to_answer_learns_it_and_the_caller_gets_busy() -> None:
    with (
        serving(queue_timeout_s=0.2, answer_timeout_s=0.2) as server,
        ThreadPoolExecutor(1) as pool,
    ):
        reply = pool.submit(post, server, voice_fields(21))
        pending = server.queue.accept(timeout=5)
        assert reply.result(10).text == BUSY
        assert not pending.answer("<Response/>", "S-late")  # too late: end that session


def test_status_callbacks_reach_the_hook_and_free_capacity() -> None:
    events: list[StatusEvent] = []

    def on_status(event: StatusEvent) -> bool:
        events.append(event)
        return False  # the hook does not know these calls: only the queue may

    with serving(on_status=on_status) as server, ThreadPoolExecutor(1) as pool:
        reply = pool.submit(post, server, voice_fields(30))
        answer(server.queue.accept(timeout=5), server)
        reply.result(10)
        assert server.queue.load() == 1
        for sequence, status in enumerate(("in-progress", "completed")):
            fields = {**voice_fields(30, CallStatus=status), "SequenceNumber": str(sequence)}
            assert post(server, fields, path=STATUS_PATH).status_code == 200
        assert [(e.status, e.sequence) for e in events] == [("in-progress", 0), ("completed", 1)]
        assert server.queue.load() == 0  # completed: its capacity is free again
        assert server.counters.snapshot()["status_unknown"] == 0


def test_a_status_callback_for_an_unknown_call_is_answered_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serving() as server:
        caplog.set_level(logging.DEBUG, logger="actors.webhooks")
        for status in ("ringing", "completed"):
            response = post(server, voice_fields(31, CallStatus=status), path=STATUS_PATH)
            assert response.status_code == 200 and response.text == "<Response />"
        assert server.counters.snapshot()["status_unknown"] == 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and call_sid(31) in warnings[0].getMessage()


def test_our_redirect_after_a_stream_goes_to_the_reattach_hook() -> None:
    seen: list[str | None] = []

    def on_reattach(call: Any) -> str | None:
        seen.append(call.reattach)
        return "<Response><Say>again</Say></Response>" if call.reattach == "S-keep" else None

    with serving(on_reattach=on_reattach) as server:
        fields = voice_fields(40, CallStatus="in-progress")
        kept = post(server, fields, path=VOICE_PATH + "?reattach=S-keep")
        dropped = post(server, fields, path=VOICE_PATH + "?reattach=S-gone")
        assert kept.text == "<Response><Say>again</Say></Response>"
        assert dropped.text == "<Response><Hangup /></Response>"
        assert seen == ["S-keep", "S-gone"] and server.queue.load() == 0


def test_a_flood_past_capacity_is_answered_promptly_and_other_calls_go_on() -> None:
    with serving(max_sessions=2) as server, ThreadPoolExecutor(17) as pool:
        live = pool.submit(post, server, voice_fields(50))
        live_session = answer(server.queue.accept(timeout=5), server)
        assert streamed_session(live.result(10)) == live_session
        waiting = pool.submit(post, server, voice_fields(51))
        _wait_for(lambda: server.queue.load() == 2)

        def flood_one(n: int) -> tuple[float, str]:
            started = time.monotonic()
            text = post(server, voice_fields(n)).text
            return time.monotonic() - started, text

        results = list(pool.map(flood_one, range(1000, 1200)))
        assert all(text == BUSY for _, text in results)
        worst = max(elapsed for elapsed, _ in results)
        assert worst < 2.0, worst
        assert server.counters.snapshot()["refused_busy"] == 200
        # The call that was waiting all along is still served, and the live one is untouched.
        assert not waiting.done()
        waiting_session = answer(server.queue.accept(timeout=5), server)
        assert streamed_session(waiting.result(10)) == waiting_session
        assert server.queue.session_of(call_sid(50)) == live_session


def test_past_the_connection_cap_a_request_gets_503_without_a_thread() -> None:
    with serving(max_connections=2) as server:
        hogs = [socket.create_connection(("127.0.0.1", server.port), 5) for _ in range(2)]
        try:
            for hog in hogs:
                hog.sendall(b"POST /twilio/voice HTTP/1.1\r\n")  # and nothing more
            _wait_for(lambda: len(server._httpd._requests) == 2)  # type: ignore[union-attr]
            response = post(server, voice_fields(60))
            assert response.status_code == 503
            assert server.counters.snapshot()["overloaded"] == 1
        finally:
            for hog in hogs:
                hog.close()
        # Once the hogs are gone, requests are served again.
        _wait_for(lambda: not server._httpd._requests)  # type: ignore[union-attr]
        assert post(server, voice_fields(61), path=STATUS_PATH).status_code == 200


def test_webhook_to_accept_latency_over_100_calls(capsys: pytest.CaptureFixture[str]) -> None:
    latencies: list[float] = []
    with serving() as server, ThreadPoolExecutor(4) as pool:

        def acceptor() -> None:
            for _ in range(100):
                pending = server.queue.accept(timeout=10)
                latencies.append(time.monotonic() - pending.arrived_at)
                answer(pending, server)
                server.queue.ended(pending.call.call_id)  # its session ends: capacity frees

        done: Future[None] = pool.submit(acceptor)
        replies = list(pool.map(lambda n: post(server, voice_fields(n)), range(2000, 2100)))
        done.result(timeout=30)
        assert all(streamed_session(r) for r in replies)
    ordered = sorted(latencies)
    p50, p99 = statistics.median(ordered), ordered[98]
    with capsys.disabled():
        print(f"\nwebhook arrival -> accept(): p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
    assert p99 < 0.5


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        event.wait(0.01)


def test_stream_status_callbacks_are_verified_and_reach_the_hook() -> None:
    events: list[StreamEvent] = []

    def on_stream(event: StreamEvent) -> bool:
        events.append(event)
        return True

    config = WebhookConfig(accounts={ACCOUNT: TOKEN}, request_timeout_s=2.0)
    with WebhookServer(config, InboundQueue(InboundSettings()), on_stream=on_stream) as server:
        fields = {
            "AccountSid": ACCOUNT,
            "CallSid": call_sid(40),
            "StreamSid": "MZ" + "1" * 32,
            "StreamName": "MZ" + "1" * 32,
            "StreamEvent": "stream-error",
            "StreamError": "Stream - WebSocket - Connection Refused",
            "Timestamp": "Tue, 01 Dec 2026 23:00:00 +0000",
        }
        assert post(server, fields, path=STREAM_PATH).status_code == 200
        (event,) = events
        assert (event.event, event.stream_sid, event.call_id) == (
            "stream-error",
            "MZ" + "1" * 32,
            call_sid(40),
        )
        assert event.error == "Stream - WebSocket - Connection Refused"
        forged = post(server, fields, path=STREAM_PATH, token="not-the-token")
        unsigned = post(server, fields, path=STREAM_PATH, signature="")
        odd = post(server, {**fields, "StreamEvent": "stream-exploded"}, path=STREAM_PATH)
        assert (forged.status_code, unsigned.status_code, odd.status_code) == (403, 403, 400)
        assert len(events) == 1
        assert server.counters.snapshot()["bad_signature"] == 2
