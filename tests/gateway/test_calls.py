"""The gateway's call bookkeeping, sans-I/O: event by event, frame by frame, no socket.

Connections are plain strings here (the bookkeeping only holds and compares them); time is a
number passed in.
"""

from __future__ import annotations

import pytest

from actors.errors import IllegalTransition
from actors.gateway.calls import (
    GOING_AWAY,
    NORMAL,
    POLICY,
    TRANSITIONS,
    Call,
    CallState,
    Event,
    Hop,
    Ring,
    Role,
    Side,
    Timeouts,
)
from actors.gateway.pairing import Calls, ClaimKind, Refusal

PAIR, WAIT, RESUME = 75.0, 90.0, 10.0


def calls(buffer_frames: int = 4, ended_kept: int = 100) -> Calls[str]:
    return Calls(
        buffer_frames=buffer_frames,
        pair_timeout_s=PAIR,
        provider_wait_s=WAIT,
        resume_window_s=RESUME,
        ended_kept=ended_kept,
    )


def paired(registry: Calls[str], sid: str = "s1", now: float = 0.0) -> Call[str]:
    """A call with its provider stream "p" and its hop "h" attached."""
    claim = registry.claim(sid, "h", 0)
    assert claim.kind is ClaimKind.ATTACH and claim.call is not None
    claim.call.attach(claim.hop, now)
    call = registry.pair(sid, "p", now)
    assert isinstance(call, Call)
    return call


# -- the state table --------------------------------------------------------------------------


def test_the_table_names_every_side_state_of_each_role_and_closed_is_final() -> None:
    assert set(TRANSITIONS[Role.PROVIDER]) == {Side.NOT_YET, Side.OPEN, Side.GONE, Side.CLOSED}
    assert set(TRANSITIONS[Role.HOP]) == {Side.NOT_YET, Side.OPEN, Side.ABSENT, Side.CLOSED}
    for role in Role:
        assert TRANSITIONS[role][Side.CLOSED] == {Event.DETACH: Side.CLOSED}


def test_a_call_moves_through_its_states() -> None:
    registry = calls()
    claim = registry.claim("s1", "h", 0)
    call = claim.call
    assert call is not None and call.state is CallState.NEW
    call.attach(claim.hop, 0.0)
    assert call.state is CallState.AWAITING_PROVIDER
    registry.pair("s1", "p", 1.0)
    assert call.state is CallState.PAIRED
    assert call.hop_lost(claim.hop, 2.0, closed_normally=False) is None
    assert call.state is CallState.HOP_ABSENT
    call.provider_ended(3.0)
    assert call.state is CallState.HOP_ABSENT
    again = registry.claim("s1", "h2", 0)
    call.attach(again.hop, 4.0)
    assert call.state is CallState.DRAINING
    registry.end(call, "done")
    assert call.state is CallState.ENDED and call.ended


def test_a_provider_stream_first_awaits_its_hop() -> None:
    registry = calls()
    call = registry.pair("s1", "p", 0.0)
    assert isinstance(call, Call) and call.state is CallState.AWAITING_HOP


@pytest.mark.parametrize(
    ("role", "event", "prepare"),
    [
        (Role.PROVIDER, Event.ATTACH, "paired"),  # a second stream
        (Role.PROVIDER, Event.DETACH, "new"),  # a stream that never came cannot end
        (Role.HOP, Event.DETACH, "new"),  # nor a hop
        (Role.HOP, Event.ATTACH, "ended"),  # nothing attaches to an ended call
        (Role.PROVIDER, Event.ATTACH, "ended"),
    ],
)
def test_illegal_moves_raise(role: Role, event: Event, prepare: str) -> None:
    call: Call[str] = Call("s1", 4, Timeouts(PAIR, WAIT, RESUME))
    if prepare == "paired":
        call.pair("p", 0.0)
    if prepare == "ended":
        call.end()
    with pytest.raises(IllegalTransition, match="s1"):
        call._move(role, event)


def test_connections_winding_down_after_the_end_are_legal() -> None:
    registry = calls()
    call = paired(registry)
    hop = call.hop
    assert hop is not None
    registry.end(call, "ended by the session")
    assert call.hop_lost(hop, 1.0, closed_normally=True) is not None  # no raise
    assert call.provider_ended(1.0) == 0
    assert call.state is CallState.ENDED and call.deadline is None


# -- deadlines --------------------------------------------------------------------------------


def test_a_provider_stream_alone_waits_pair_timeout_for_a_hop_then_ends_going_away() -> None:
    registry = calls()
    call = registry.pair("s1", "p", 100.0)
    assert isinstance(call, Call)
    deadline = call.deadline
    assert deadline is not None and (deadline.at, deadline.why) == (
        100.0 + PAIR,
        "no session connected",
    )
    ending = call.expire(deadline)
    assert ending is not None and (ending.code, ending.expired) == (GOING_AWAY, True)
    assert ending.reason == "no session connected within 75 s"


def test_a_hop_alone_waits_provider_wait_then_ends_with_policy() -> None:
    registry = calls()
    claim = registry.claim("s1", "h", 0)
    assert claim.call is not None
    claim.call.attach(claim.hop, 5.0)
    deadline = claim.call.deadline
    assert deadline is not None and deadline.at == 5.0 + WAIT
    ending = claim.call.expire(deadline)
    assert ending is not None and (ending.code, ending.why, ending.expired) == (
        POLICY,
        "pair timeout",
        False,
    )


def test_pairing_clears_the_wait_and_a_replaced_deadline_is_ignored() -> None:
    registry = calls()
    claim = registry.claim("s1", "h", 0)
    assert claim.call is not None
    claim.call.attach(claim.hop, 0.0)
    stale = claim.call.deadline
    assert stale is not None
    registry.pair("s1", "p", 1.0)
    assert claim.call.deadline is None
    assert claim.call.expire(stale) is None
    assert not claim.call.ended


def test_a_lost_hop_opens_the_resume_window_and_a_return_closes_it() -> None:
    registry = calls()
    call = paired(registry)
    hop = call.hop
    assert hop is not None
    assert call.hop_lost(hop, 20.0, closed_normally=False) is None
    window = call.deadline
    assert window is not None and (window.at, window.why) == (30.0, "session did not return")
    back = registry.claim("s1", "h2", 0)
    assert back.resumed
    call.attach(back.hop, 25.0)
    assert call.deadline is None and call.expire(window) is None


def test_a_hop_that_stays_away_past_the_window_ends_the_call() -> None:
    registry = calls()
    call = paired(registry)
    assert call.hop is not None
    call.hop_lost(call.hop, 20.0, closed_normally=False)
    assert call.deadline is not None
    ending = call.expire(call.deadline)
    assert ending is not None and (ending.code, ending.expired) == (GOING_AWAY, True)


def test_a_provider_stream_that_ends_with_no_hop_restarts_the_window() -> None:
    registry = calls()
    call = paired(registry)
    assert call.hop is not None
    call.hop_lost(call.hop, 0.0, closed_normally=False)
    call.provider_ended(7.0)
    assert call.deadline is not None and call.deadline.at == 7.0 + RESUME


def test_a_session_that_closes_normally_ends_the_call() -> None:
    registry = calls()
    call = paired(registry)
    assert call.hop is not None
    ending = call.hop_lost(call.hop, 1.0, closed_normally=True)
    assert ending is not None and (ending.code, ending.why) == (NORMAL, "ended by the session")


def test_a_hop_that_had_every_frame_of_an_ended_stream_ends_the_call() -> None:
    registry = calls()
    call = paired(registry)
    hop = call.hop
    assert hop is not None
    assert call.provider_frame("f0") is hop
    hop.cursor += 1
    call.provider_ended(1.0)
    ending = call.hop_lost(hop, 2.0, closed_normally=False)
    assert ending is not None and ending.why == "call ended"


# -- buffers ----------------------------------------------------------------------------------


def test_the_ring_keeps_the_last_frames_numbered_from_first() -> None:
    ring = Ring(3)
    for i in range(5):
        ring.append(f"f{i}")
    assert (ring.received, ring.first, len(ring)) == (5, 2, 3)
    assert list(ring.since(3)) == ["f3", "f4"]
    ring.clear()
    assert (ring.received, ring.first) == (5, 5)


def test_a_provider_frame_is_sent_straight_only_to_a_hop_that_is_caught_up() -> None:
    registry = calls()
    call = paired(registry)
    hop = call.hop
    assert hop is not None
    assert call.provider_frame("f0") is hop  # hop.cursor == 0: f0 is its next frame
    assert call.provider_frame("f1") is None  # f0 was not sent: the hop is behind
    assert call.ring.received == 2


def test_a_hop_behind_the_ring_catches_up_and_counts_what_it_lost() -> None:
    registry = calls(buffer_frames=3)
    call = paired(registry)
    hop = call.hop
    assert hop is not None
    for i in range(5):
        call.provider_frame(f"f{i}")
    assert Call.catch_up(hop, call.ring.first) == 2
    assert hop.cursor == 2 and list(call.ring.since(hop.cursor)) == ["f2", "f3", "f4"]
    assert Call.catch_up(hop, call.ring.first) == 0


def test_session_frames_queue_bounded_drop_oldest_and_count() -> None:
    registry = calls(buffer_frames=2)
    claim = registry.claim("s1", "h", 0)
    call = claim.call
    assert call is not None
    call.attach(claim.hop, 0.0)
    dropped = 0
    for i in range(5):
        assert call.session_frame() is None  # no provider stream yet
        dropped += call.queue(f"s{i}")
    assert (call.from_session, dropped, list(call.outgoing)) == (5, 3, ["s3", "s4"])
    registry.pair("s1", "p", 1.0)
    assert call.session_frame() is None  # frames wait before it: keep the order
    call.outgoing.clear()
    assert call.session_frame() == "p"


def test_frames_for_a_stream_that_ended_are_dropped_and_what_waited_is_counted() -> None:
    registry = calls()
    call = paired(registry)
    call.queue("s0")
    call.queue("s1")
    assert call.provider_ended(1.0) == 2 and not call.outgoing
    assert call.session_frame() is None
    assert call.queue("s2") == 1 and not call.outgoing


def test_the_end_drops_both_buffers_and_counts_what_waited() -> None:
    registry = calls()
    call = paired(registry)
    call.provider_frame("f0")
    call.queue("s0")
    assert registry.end(call, "x") == 1
    assert (len(call.ring), len(call.outgoing), len(registry)) == (0, 0, 0)
    assert registry.end(call, "again") == 0


# -- resume arithmetic ------------------------------------------------------------------------


def test_a_resuming_hop_starts_where_it_says_and_hears_what_the_gateway_received() -> None:
    registry = calls(buffer_frames=10)
    call = paired(registry)
    for i in range(6):
        call.provider_frame(f"f{i}")
    for _ in range(4):
        call.session_frame()
    claim = registry.claim("s1", "h2", 3)
    assert (claim.hop.cursor, claim.received, claim.asked) == (3, 4, 3)
    assert claim.resumed and claim.replaced is call.hop and call.hop is not None
    assert call.hop.superseded  # the older hop stops from now on


def test_a_hop_that_claims_more_than_was_sent_gets_all_that_is_kept() -> None:
    registry = calls(buffer_frames=3)
    call = paired(registry)
    for i in range(5):
        call.provider_frame(f"f{i}")
    claim = registry.claim("s1", "h2", 9)
    assert (claim.hop.cursor, claim.asked) == (call.ring.first, 9) == (2, 9)


def test_a_hop_that_resumes_a_call_never_seen_is_unknown_and_leaves_nothing() -> None:
    registry = calls()
    claim = registry.claim("s1", "h", 5)
    assert (claim.kind, claim.call, claim.received) == (ClaimKind.UNKNOWN, None, 0)
    assert len(registry) == 0


# -- single use, and the ended calls ----------------------------------------------------------


def test_a_call_takes_one_provider_stream_once() -> None:
    registry = calls()
    call = paired(registry)
    second = registry.pair("s1", "p2", 1.0)
    assert isinstance(second, Refusal) and second.reason == "duplicate_stream"
    call.provider_ended(2.0)
    again = registry.pair("s1", "p", 3.0)  # the same stream replayed while the call lives
    assert isinstance(again, Refusal) and again.reason == "duplicate_stream"
    registry.end(call, "call ended")
    after = registry.pair("s1", "p", 4.0)  # ... and after it ended
    assert isinstance(after, Refusal) and after.reason == "ended"
    assert "s1" in after.why and registry.how_ended("s1") == "call ended"


def test_a_hop_for_an_ended_call_is_told_so() -> None:
    registry = calls()
    registry.end(paired(registry), "x")
    assert registry.claim("s1", "h", 0).kind is ClaimKind.ENDED


def test_the_ended_calls_are_remembered_up_to_a_bound() -> None:
    registry = calls(ended_kept=2)
    for sid in ("a", "b", "c"):
        registry.end(paired(registry, sid), f"why {sid}")
    assert [registry.how_ended(s) for s in ("a", "b", "c")] == [None, "why b", "why c"]


# -- undoing a claim --------------------------------------------------------------------------


def test_an_undone_claim_that_created_the_call_leaves_nothing() -> None:
    registry = calls()
    claim = registry.claim("s1", "h", 0)
    registry.undo(claim, 0.0)
    assert len(registry) == 0 and registry.how_ended("s1") is None


def test_an_undone_claim_lets_the_hop_it_would_replace_go_on() -> None:
    registry = calls()
    call = paired(registry)
    old = call.hop
    assert old is not None
    claim = registry.claim("s1", "h2", 0)
    assert old.superseded
    registry.undo(claim, 1.0)
    assert not old.superseded and call.hop is old and call.deadline is None


def test_an_undone_claim_on_a_call_with_a_stream_opens_the_resume_window() -> None:
    registry = calls()
    call = registry.pair("s1", "p", 0.0)
    assert isinstance(call, Call)
    claim = registry.claim("s1", "h", 0)
    call.deadline = None  # as if the pairing wait had passed: only the window applies
    registry.undo(claim, 2.0)
    assert call.deadline is not None and call.deadline.at == 2.0 + RESUME


def test_hops_are_plain_records() -> None:
    hop = Hop("h", 3)
    assert (hop.connection, hop.cursor, hop.superseded) == ("h", 3, False)


# -- re-streams (a call update streams the call again: DTMF) ---------------------------------


def _stream_ended_call(registry: Calls[str], frames: int = 3) -> Call[str]:
    """A call (stream nonce "n1") whose stream ended after ``frames`` frames, all of them
    sent to its hop, which the gateway then closed: ended "call ended"."""
    claim = registry.claim("s1", "h", 0)
    assert claim.call is not None
    call = claim.call
    call.attach(claim.hop, 0.0)
    assert registry.pair("s1", "p", 0.0, "n1") is call
    hop = claim.hop
    for n in range(frames):
        assert call.provider_frame(f"f{n}") is hop
        hop.cursor += 1
    call.session_frame()
    call.provider_ended(1.0)
    hop.stream_closed = True  # the relay closed it "call ended"; its 1000 came back
    ending = call.hop_lost(hop, 1.0, closed_normally=True)
    assert ending is not None and ending.why == "call ended"
    registry.end(call, ending.why)
    return call


def test_a_fresh_credential_reopens_a_call_whose_stream_ended_numbered_on() -> None:
    registry = calls()
    _stream_ended_call(registry)
    replayed = registry.pair("s1", "p", 2.0, "n1")  # the old credential: refused
    assert isinstance(replayed, Refusal) and replayed.reason == "ended"
    call = registry.pair("s1", "p2", 2.0, "n2")
    assert isinstance(call, Call) and call.state is CallState.AWAITING_HOP
    claim = registry.claim("s1", "h2", 3)  # the session's redial: it had 3 frames
    assert claim.kind is ClaimKind.ATTACH and claim.call is call and claim.resumed
    assert (claim.hop.cursor, claim.received) == (0, 1)  # exact, both ways
    call.attach(claim.hop, 3.0)
    assert call.provider_frame("g0") is claim.hop and call.sent_to_session == 4
    again = registry.pair("s1", "p3", 4.0, "n1")  # an old credential, while it lives
    assert isinstance(again, Refusal) and again.reason == "duplicate_stream"
    registry.end(call, "ended by the session")
    for nonce in ("n1", "n2", "n3"):  # a call the session ended never streams again
        after = registry.pair("s1", "p4", 5.0, nonce)
        assert isinstance(after, Refusal) and after.reason == "ended"


def test_a_hop_that_expects_a_restream_reopens_the_call_and_waits_what_it_asked() -> None:
    registry = calls()
    _stream_ended_call(registry)
    assert registry.claim("s1", "h2", 3).kind is ClaimKind.ENDED  # not asked: ended
    claim = registry.claim("s1", "h2", 3, sent=1, restream_s=2.5)
    assert claim.kind is ClaimKind.ATTACH and claim.call is not None and claim.received == 1
    call = claim.call
    call.attach(claim.hop, 3.0)
    assert call.deadline is not None and call.deadline.delay == 2.5
    assert isinstance(registry.pair("s1", "p", 4.0, "n1"), Refusal)  # replay: still refused
    ending = call.expire(call.deadline)
    assert ending is not None and ending.code == POLICY
    assert ending.reason == "no provider stream again (re-stream) within 2.5 s"


def test_a_call_ended_while_it_streamed_is_never_reopened() -> None:
    registry = calls()
    call = registry.claim("s1", "h", 0).call
    assert call is not None
    assert registry.pair("s1", "p", 0.0, "n1") is call
    registry.end(call, "ended by the session")
    refused = registry.pair("s1", "p2", 1.0, "n2")
    assert isinstance(refused, Refusal) and refused.reason == "ended"
    assert registry.claim("s1", "h2", 0, restream_s=5.0).kind is ClaimKind.ENDED


def test_a_restream_that_pairs_while_the_hop_drains_keeps_the_hop() -> None:
    registry = calls()
    call = paired(registry)
    hop = call.hop
    assert hop is not None
    call.provider_ended(1.0)
    assert call.state is CallState.DRAINING
    assert registry.pair("s1", "p2", 1.5, "n2") is call  # fresh credential: the same call
    assert call.state is CallState.PAIRED and not call.stream_ended
    # Had the relay closed the hop meanwhile, its echoed 1000 would not end the call:
    hop.stream_closed = True
    assert call.hop_lost(hop, 2.0, closed_normally=True) is None
    assert call.deadline is not None and call.deadline.why == "session did not return"


def test_an_undone_reopening_claim_leaves_the_call_ended() -> None:
    registry = calls()
    _stream_ended_call(registry)
    claim = registry.claim("s1", "h2", 3, restream_s=2.0)
    registry.undo(claim, 3.0)
    assert len(registry) == 0 and registry.how_ended("s1") is not None
    assert isinstance(registry.pair("s1", "p", 4.0, "n1"), Refusal)
