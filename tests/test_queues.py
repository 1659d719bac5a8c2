"""Unit tests for actors/queues.py: the session's bounded Inbox and Outbox."""

from __future__ import annotations

import threading
import time

import pytest

from actors.messages import Binary, Close, Mark, Text
from actors.queues import Empty, Inbox, Keep, Outbox, WakeChain

JOIN_S = 10.0


def _start(target, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def _join(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(JOIN_S)
        assert not thread.is_alive(), f"{thread.name} did not finish"


def _wait_until_waiting(queue: Inbox | Outbox, n: int = 1) -> None:
    """Block until ``n`` threads are parked in the queue's condition (no sleeping)."""
    deadline = time.monotonic() + JOIN_S
    spin = threading.Event()
    while len(queue._cond._waiters) < n:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "reader never started waiting"
        spin.wait(0.001)


# --------------------------------------------------------------------------- Inbox


def test_inbox_preserves_order() -> None:
    inbox = Inbox(10)
    msgs = [Text(str(i)) for i in range(5)] + [Binary(b"x")]
    for m in msgs:
        inbox.put(m)
    assert len(inbox) == 6
    assert [inbox.get(0) for _ in msgs] == msgs
    assert len(inbox) == 0
    assert inbox.dropped == 0


def test_inbox_get_timeout_raises_empty() -> None:
    inbox = Inbox(3)
    started = time.monotonic()
    with pytest.raises(Empty):
        inbox.get(timeout=0.05)
    assert time.monotonic() - started >= 0.04


def test_inbox_get_zero_timeout_raises_empty_at_once() -> None:
    inbox = Inbox(3)
    with pytest.raises(Empty):
        inbox.get(timeout=0)


def test_inbox_close_drains_then_none() -> None:
    inbox = Inbox(5)
    inbox.put(Text("a"))
    inbox.put(Text("b"))
    assert inbox.closed is False
    inbox.close()
    assert inbox.closed is True
    assert inbox.get(0) == Text("a")
    assert inbox.get(0) == Text("b")
    assert inbox.get(0) is None
    assert inbox.get(None) is None  # never blocks once closed and drained


def test_inbox_close_with_final_delivers_close_last() -> None:
    inbox = Inbox(5)
    inbox.put(Text("a"))
    inbox.close(final=Close(1001, "bye"))
    assert inbox.get(0) == Text("a")
    assert inbox.get(0) == Close(1001, "bye")
    assert inbox.get(0) is None


def test_inbox_close_with_final_when_full_keeps_everything() -> None:
    inbox = Inbox(3)
    for i in range(3):
        inbox.put(Text(str(i)))
    inbox.close(final=Close(1006, "lost"))
    assert len(inbox) == 4  # documented: may exceed maxsize by one
    assert inbox.dropped == 0
    got = [inbox.get(0) for _ in range(4)]
    assert got == [Text("0"), Text("1"), Text("2"), Close(1006, "lost")]
    assert inbox.get(0) is None


def test_inbox_close_twice_is_a_noop() -> None:
    inbox = Inbox(3)
    inbox.close(final=Close(1000))
    inbox.close(final=Close(1011, "second"))
    assert inbox.get(0) == Close(1000)
    assert inbox.get(0) is None


def test_inbox_overflow_drops_oldest_and_counts() -> None:
    inbox = Inbox(3)
    for i in range(7):
        inbox.put(Binary(bytes([i])))
    assert len(inbox) == 3
    assert inbox.dropped == 4
    assert [inbox.get(0) for _ in range(3)] == [Binary(b"\x04"), Binary(b"\x05"), Binary(b"\x06")]


def test_inbox_drop_newest_keeps_what_was_queued() -> None:
    inbox = Inbox(3, "drop_newest")
    for i in range(7):
        inbox.put(Binary(bytes([i])))
    assert inbox.dropped == 4
    assert [inbox.get(0) for _ in range(3)] == [Binary(b"\x00"), Binary(b"\x01"), Binary(b"\x02")]


def test_inbox_never_drops_what_is_not_audio() -> None:
    """Text, events and marks are admitted past the bound; audio around them makes room."""
    inbox = Inbox(2)
    inbox.put(Binary(b"a"))
    inbox.put(Text("t1"))
    inbox.put(Mark("m"))  # full: no audio may be dropped for it, so it goes past the bound
    assert (len(inbox), inbox.dropped) == (3, 0)
    inbox.put(Binary(b"b"))  # full: the oldest audio (a) makes room
    assert inbox.dropped == 1
    inbox.put(Binary(b"c"))  # full and no older audio but b: b goes
    assert [inbox.get(0) for _ in range(3)] == [Text("t1"), Mark("m"), Binary(b"c")]
    assert inbox.dropped == 2


def test_inbox_received_equals_delivered_plus_dropped() -> None:
    inbox = Inbox(4)
    received = 23
    for i in range(received):
        inbox.put(Binary(bytes([i])))
    inbox.close()
    delivered = 0
    while inbox.get(0) is not None:
        delivered += 1
    assert delivered + inbox.dropped == received


def test_inbox_close_at_head_survives_overflow() -> None:
    inbox = Inbox(3)
    inbox.put(Close(1000, "peer"))
    for i in range(10):
        inbox.put(Text(str(i)))
    assert inbox.get(0) == Close(1000, "peer")
    # Behind the Close, the newest messages are kept.
    rest = []
    while len(inbox):
        rest.append(inbox.get(0))
    assert rest[-1] == Text("9")
    assert Close(1000, "peer") not in rest


def test_inbox_close_at_head_overflow_stays_bounded_and_counted() -> None:
    """Keeping the Close must drop the oldest message behind it, not grow the queue.

    Two messages fit; with [Close, a] queued, putting b must give [Close, b] with one drop,
    so that ``len <= maxsize`` and ``delivered + dropped == received`` hold.
    """
    inbox = Inbox(2)
    inbox.put(Close(1000))
    inbox.put(Binary(b"a"))
    inbox.put(Binary(b"b"))
    assert len(inbox) <= inbox.maxsize
    assert inbox.dropped == 1
    assert inbox.get(0) == Close(1000)
    assert inbox.get(0) == Binary(b"b")


def test_inbox_close_at_head_survives_overflow_with_maxsize_one() -> None:
    """``inbox_max: 1`` is a legal config; a queued Close must still reach the reader."""
    inbox = Inbox(1)
    inbox.put(Close(1011, "why it ended"))
    inbox.put(Text("late"))
    inbox.close()
    got = []
    while (message := inbox.get(0)) is not None:
        got.append(message)
    assert Close(1011, "why it ended") in got
    assert len(got) + inbox.dropped == 2


def test_inbox_close_at_head_accounting_holds() -> None:
    inbox = Inbox(2)
    inbox.put(Close(1000))
    received = 1
    for i in range(5):
        inbox.put(Text(str(i)))
        received += 1
    inbox.close()
    delivered = 0
    while inbox.get(0) is not None:
        delivered += 1
    assert delivered + inbox.dropped == received


def test_inbox_put_after_close_is_dropped_and_counted() -> None:
    inbox = Inbox(5)
    inbox.put(Text("kept"))
    inbox.close()
    inbox.put(Text("late-1"))
    inbox.put(Text("late-2"))
    assert inbox.dropped == 2
    assert len(inbox) == 1
    assert inbox.get(0) == Text("kept")
    assert inbox.get(0) is None


def test_inbox_discard_empties_closes_and_counts() -> None:
    inbox = Inbox(5)
    for i in range(4):
        inbox.put(Text(str(i)))
    assert inbox.discard() == 4
    assert len(inbox) == 0
    assert inbox.closed is True
    assert inbox.get(0) is None
    inbox.put(Text("after"))
    assert inbox.dropped == 1
    assert inbox.discard() == 0


def test_inbox_blocked_get_wakes_on_put() -> None:
    inbox = Inbox(5)
    got: list[object] = []
    reader = _start(lambda: got.append(inbox.get(timeout=JOIN_S)), "inbox-reader")
    _wait_until_waiting(inbox)
    inbox.put(Text("hello"))
    _join(reader)
    assert got == [Text("hello")]


def test_inbox_blocked_get_wakes_on_close() -> None:
    inbox = Inbox(5)
    got: list[object] = []
    reader = _start(lambda: got.append(inbox.get(timeout=JOIN_S)), "inbox-reader")
    _wait_until_waiting(inbox)
    inbox.close()
    _join(reader)
    assert got == [None]


def test_inbox_blocked_readers_all_wake_on_discard() -> None:
    inbox = Inbox(5)
    got: list[object] = []
    lock = threading.Lock()

    def read() -> None:
        item = inbox.get(timeout=JOIN_S)
        with lock:
            got.append(item)

    readers = [_start(read, f"inbox-reader-{i}") for i in range(3)]
    _wait_until_waiting(inbox, 3)
    assert inbox.discard() == 0
    _join(*readers)
    assert got == [None, None, None]


def test_inbox_blocked_get_with_none_timeout_wakes_on_close_final() -> None:
    inbox = Inbox(5)
    got: list[object] = []

    def read() -> None:
        got.append(inbox.get(timeout=None))
        got.append(inbox.get(timeout=None))

    reader = _start(read, "inbox-reader")
    _wait_until_waiting(inbox)
    inbox.close(final=Close(1000, "done"))
    _join(reader)
    assert got == [Close(1000, "done"), None]


def test_inbox_concurrent_readers_get_distinct_items_and_all_of_them() -> None:
    n_readers, per_reader = 4, 2500
    total = n_readers * per_reader
    inbox = Inbox(total)
    results: list[list[int]] = [[] for _ in range(n_readers)]
    go = threading.Barrier(n_readers + 1)

    def read(index: int) -> None:
        go.wait(JOIN_S)
        mine = results[index]
        while True:
            message = inbox.get(timeout=JOIN_S)
            if message is None:
                return
            assert isinstance(message, Text)
            mine.append(int(message.data))

    readers = [_start(lambda i=i: read(i), f"inbox-reader-{i}") for i in range(n_readers)]
    go.wait(JOIN_S)
    for i in range(total):
        inbox.put(Text(str(i)))
    inbox.close()
    _join(*readers)
    everything = [x for part in results for x in part]
    assert len(everything) == total
    assert sorted(everything) == list(range(total))
    assert inbox.dropped == 0
    # Each reader sees items in the order they were queued.
    for part in results:
        assert part == sorted(part)


# --------------------------------------------------------------------------- WakeChain


def _readers(inboxes: list[Inbox], got: list[object]) -> list[threading.Thread]:
    """One reader per inbox, blocked in ``get`` (a long timeout: a stalled chain fails the
    join, not the read)."""
    threads = [
        _start(lambda inbox=inbox: got.append(inbox.get(timeout=30)), f"reader-{i}")
        for i, inbox in enumerate(inboxes)
    ]
    for inbox in inboxes:
        _wait_until_waiting(inbox)
    return threads


def test_a_delivered_batch_wakes_its_readers_in_turn_from_one_kick() -> None:
    """Puts made while delivering join the chain instead of waking their reader; one kick
    wakes the first reader, and each reader woken wakes the next: all get their message."""
    chain = WakeChain()
    inboxes = [Inbox(10) for _ in range(5)]
    got: list[object] = []
    threads = _readers(inboxes, got)
    with chain.delivering():
        for i, inbox in enumerate(inboxes):
            inbox.put(Text(str(i)))
    assert len(chain) == 5 and got == []  # nobody notified yet: they wait in the chain
    chain.kick()
    _join(*threads)
    assert sorted(m.data for m in got) == ["0", "1", "2", "3", "4"]  # type: ignore[attr-defined]
    assert len(chain) == 0


def test_a_kick_passes_over_an_inbox_nobody_waits_on() -> None:
    """An inbox whose reader left (timed out, or was served) is skipped: the next one's reader
    is woken, and the skipped inbox keeps its message for whoever reads it next."""
    chain = WakeChain()
    left, waited = Inbox(10), Inbox(10)
    left.put(Text("kept"))
    chain.defer(left)  # as if its reader had timed out after the put joined the chain
    got: list[object] = []
    (thread,) = _readers([waited], got)
    with chain.delivering():
        waited.put(Text("woken"))
    chain.kick()
    _join(thread)
    assert got == [Text("woken")] and left.get(0) == Text("kept")


def test_puts_outside_a_delivery_wake_their_reader_at_once() -> None:
    chain = WakeChain()
    inbox = Inbox(10)
    got: list[object] = []
    (thread,) = _readers([inbox], got)
    inbox.put(Text("now"))
    _join(thread)
    assert got == [Text("now")] and len(chain) == 0


# --------------------------------------------------------------------------- Outbox


def test_outbox_put_many_take_in_order() -> None:
    outbox: Outbox[str] = Outbox(10)
    outbox.put_many(["a", "b"])
    outbox.put_many(iter(["c"]))
    assert len(outbox) == 3
    assert outbox.take() == ["a", "b", "c"]
    assert len(outbox) == 0


def test_outbox_take_never_blocks() -> None:
    outbox: Outbox[bytes] = Outbox(4)
    assert outbox.take() == []


def test_outbox_overflow_drops_oldest() -> None:
    outbox: Outbox[int] = Outbox(3)
    outbox.put_many(range(5))
    assert outbox.dropped == 2
    assert outbox.take() == [2, 3, 4]


def test_outbox_attach_calls_ready_at_once_then_after_every_put_on_the_putting_thread() -> None:
    """The one drain protocol: the attached connection hears of what is already queued, then
    of every put, on the thread that put (that is where a WebSocket connection sends)."""
    outbox: Outbox[str] = Outbox(4)
    outbox.put_many(["waiting"])
    calls: list[tuple[str, list[str]]] = []

    def ready() -> None:
        calls.append((threading.current_thread().name, outbox.take()))

    outbox.attach(ready)
    assert calls == [(threading.current_thread().name, ["waiting"])]
    writer = _start(lambda: outbox.put_many(["a", "b"]), "outbox-writer")
    _join(writer)
    assert calls[1:] == [("outbox-writer", ["a", "b"])]


def test_outbox_ready_is_called_outside_the_lock() -> None:
    """A consumer may take (and put back) from inside ``ready``: no deadlock."""
    outbox: Outbox[str] = Outbox(4)
    seen: list[str] = []

    def ready() -> None:
        batch = outbox.take()
        seen.extend(batch)
        outbox.requeue_front(batch[1:])  # could send only the first

    outbox.attach(ready)
    outbox.put_many(["a", "b"])
    assert seen == ["a", "b"]
    assert outbox.take() == ["b"]


def test_outbox_detach_stops_the_calls_and_a_newer_attach_replaces_an_older_one() -> None:
    outbox: Outbox[str] = Outbox(4)
    old: list[int] = []
    new: list[int] = []

    def first() -> None:
        old.append(len(outbox))

    def second() -> None:
        new.append(len(outbox))

    outbox.attach(first)
    outbox.put_many(["a"])
    assert old == [0, 1]
    outbox.attach(second)  # the next connection, before the old one has ended
    outbox.detach(first)  # the old one ends: no longer attached, nothing changes
    outbox.put_many(["b"])
    assert old == [0, 1] and new == [1, 2]
    outbox.detach(second)
    outbox.put_many(["c"])
    assert new == [1, 2]
    assert outbox.take() == ["a", "b", "c"]  # nothing is lost while no connection is attached


def test_outbox_a_blocking_consumer_is_woken_through_ready() -> None:
    """What a writer thread that must block elsewhere (Daily's microphone) does: ``ready``
    sets an event it waits on; a put after its take wakes it again, none is missed."""
    outbox: Outbox[str] = Outbox(4)
    wake = threading.Event()
    got: list[str] = []
    outbox.attach(wake.set)

    def writer() -> None:
        while len(got) < 3:
            assert wake.wait(JOIN_S)
            wake.clear()
            got.extend(outbox.take())

    thread = _start(writer, "outbox-writer")
    for frame in ("x", "y", "z"):
        outbox.put_many([frame])
    _join(thread)
    assert got == ["x", "y", "z"]


def test_outbox_requeue_front_goes_ahead_of_newer() -> None:
    outbox: Outbox[str] = Outbox(10)
    outbox.put_many(["a", "b", "c"])
    batch = outbox.take()
    outbox.put_many(["d", "e"])
    outbox.requeue_front(batch[1:])  # "a" was sent, "b" and "c" were not
    assert outbox.take() == ["b", "c", "d", "e"]
    assert outbox.dropped == 0


def test_outbox_requeue_front_empty_is_noop() -> None:
    outbox: Outbox[str] = Outbox(2)
    outbox.put_many(["a"])
    outbox.requeue_front([])
    assert outbox.take() == ["a"]


def test_outbox_requeue_front_respects_maxsize_dropping_oldest() -> None:
    outbox: Outbox[int] = Outbox(4)
    outbox.put_many([1, 2, 3])
    batch = outbox.take()
    outbox.put_many([4, 5, 6])
    outbox.requeue_front(batch)  # 6 frames for 4 slots: the two oldest go
    assert len(outbox) == 4
    assert outbox.dropped == 2
    assert outbox.take() == [3, 4, 5, 6]


def test_outbox_single_writer_receives_everything_from_many_producers() -> None:
    outbox: Outbox[int] = Outbox(100_000)
    n_producers, per_producer = 4, 1000
    total = n_producers * per_producer
    received: list[int] = []

    wake = threading.Event()
    outbox.attach(wake.set)

    def writer() -> None:
        deadline = time.monotonic() + JOIN_S
        while len(received) < total and time.monotonic() < deadline:
            wake.wait(0.5)
            wake.clear()
            received.extend(outbox.take())

    def produce(base: int) -> None:
        for i in range(per_producer):
            outbox.put_many([base + i])

    writer_thread = _start(writer, "outbox-writer")
    producers = [
        _start(lambda b=b: produce(b * per_producer), f"producer-{b}") for b in range(n_producers)
    ]
    _join(*producers)
    _join(writer_thread)
    assert outbox.dropped == 0
    assert sorted(received) == list(range(total))
    for b in range(n_producers):
        mine = [x for x in received if b * per_producer <= x < (b + 1) * per_producer]
        assert mine == sorted(mine)


def test_outbox_drops_only_audio_frames_and_counts() -> None:
    outbox: Outbox[str | Keep] = Outbox(3)
    outbox.put_many(["a1", "a2"])
    outbox.put_many(["mark"], droppable=False)
    outbox.put_many(["a3", "a4"])  # each drops the oldest audio
    assert outbox.dropped == 2
    outbox.put_many(["clear"], droppable=False)  # a3, the oldest audio, makes room
    assert outbox.dropped == 3
    items = outbox.take()
    frames = [item.frame if isinstance(item, Keep) else item for item in items]
    assert frames == ["mark", "a4", "clear"]
    assert len(frames) + outbox.dropped == 6  # every frame sent or counted


def test_outbox_of_frames_that_must_stay_drops_the_newcomer_audio() -> None:
    outbox: Outbox[str | Keep] = Outbox(2)
    outbox.put_many(["m1", "m2"], droppable=False)
    outbox.put_many(["audio"])
    assert outbox.dropped == 1
    outbox.put_many(["m3"], droppable=False)
    assert [item.frame for item in outbox.take() if isinstance(item, Keep)] == ["m1", "m2", "m3"]


def test_outbox_raise_policy_never_drops() -> None:
    outbox: Outbox[str | Keep] = Outbox(2, "raise")
    outbox.put_many(["a", "b", "c"])
    assert outbox.dropped == 0
    assert outbox.full
    assert outbox.take() == ["a", "b", "c"]
