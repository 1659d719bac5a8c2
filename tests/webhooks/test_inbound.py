"""The inbound hand-off queue with real threads: one session per call id however many
deliveries race, the end of a call, closing, and the limits its settings keep."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType

import pytest

from actors.errors import AcceptTimeout, ServiceClosed
from actors.webhooks.inbound import Answer, InboundQueue, InboundSettings
from actors.webhooks.twilio import InboundCall

pytestmark = pytest.mark.timeout(30)

BUSY = "<busy/>"


def call(n: int) -> InboundCall:
    return InboundCall(
        direction="inbound",
        from_="+15550100",
        to="+15550199",
        call_id=f"CA{n:032x}",
        account_sid="AC" + "a" * 32,
        fields=MappingProxyType({}),
    )


@pytest.fixture
def queue() -> Iterator[InboundQueue]:
    q = InboundQueue(InboundSettings(queue_timeout_s=2.0, answer_timeout_s=2.0))
    yield q
    q.close()


def test_deliveries_racing_for_one_call_make_one_offer(queue: InboundQueue) -> None:
    for round_ in range(20):
        racers = 8
        barrier = threading.Barrier(racers)

        def deliver(n: int = round_, barrier: threading.Barrier = barrier) -> Answer:
            barrier.wait()
            return queue.offer(call(n), BUSY)

        with ThreadPoolExecutor(racers) as pool:
            answers = [pool.submit(deliver) for _ in range(racers)]
            pending = queue.accept(timeout=5)
            assert pending.answer(f"<stream {round_}/>", f"S-{round_}")
            with pytest.raises(AcceptTimeout):
                queue.accept(timeout=0.05)  # never a second offer for the same call
            assert {a.result(5).body for a in answers} == {f"<stream {round_}/>"}
        assert queue.ended(call(round_).call_id)
    assert queue.counters.snapshot()["accepted"] == 20


def test_a_call_that_ends_while_waiting_is_refused_and_never_accepted(queue: InboundQueue) -> None:
    with ThreadPoolExecutor(1) as pool:
        offered = pool.submit(queue.offer, call(1), BUSY)
        while queue.load() == 0:
            threading.Event().wait(0.005)
        assert queue.ended(call(1).call_id)  # the caller hung up before anyone took it
        assert offered.result(5).outcome == "abandoned"
    with pytest.raises(AcceptTimeout):
        queue.accept(timeout=0.05)
    assert queue.load() == 0 and not queue.ended(call(2).call_id)


def test_closing_wakes_acceptors_and_refuses_waiting_calls() -> None:
    queue = InboundQueue()
    with ThreadPoolExecutor(2) as pool:
        acceptor = pool.submit(queue.accept, None, "twilio")
        offered = pool.submit(queue.offer, call(3), BUSY, provider="daily")
        while queue.load() == 0:
            threading.Event().wait(0.005)
        queue.close()
        with pytest.raises(ServiceClosed):
            acceptor.result(5)  # it waited for twilio calls only: the daily one stayed
        assert offered.result(5).body == BUSY
    assert queue.offer(call(4), BUSY).outcome == "refused_busy"


def test_accept_filters_by_provider(queue: InboundQueue) -> None:
    with ThreadPoolExecutor(2) as pool:
        daily = pool.submit(queue.offer, call(5), BUSY, provider="daily")
        twilio = pool.submit(queue.offer, call(6), BUSY, provider="twilio")
        pending = queue.accept(timeout=5, provider="twilio")
        assert pending.call.call_id == call(6).call_id
        pending.refuse()
        assert twilio.result(5).outcome == "refused_failed"
        assert queue.accept(timeout=5, provider="daily").answer("<d/>", "S-d")
        assert daily.result(5).body == "<d/>"


def test_recent_call_ids_are_bounded() -> None:
    queue = InboundQueue(InboundSettings(max_sessions=1, recent_max=3, queue_timeout_s=0.01))
    for n in range(10):
        assert queue.offer(call(n), BUSY).outcome == "refused_timeout"
    assert len(queue._recent) == 3  # the oldest refused ids are forgotten first
    assert queue.offer(call(9), BUSY).outcome == "refused_timeout"  # remembered: the same
    assert queue.counters.snapshot()["duplicate"] == 1


def test_the_waits_must_fit_in_twilios_15_seconds() -> None:
    InboundSettings(queue_timeout_s=7.0, answer_timeout_s=7.0)
    with pytest.raises(ValueError, match="15"):
        InboundSettings(queue_timeout_s=10.0, answer_timeout_s=5.0)
    with pytest.raises(ValueError):
        InboundSettings(max_sessions=0)
