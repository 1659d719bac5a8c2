"""The gateway's bookkeeping in a cluster, sans-I/O: lease epochs fence older connectors, a call
redirected from a dead gateway is adopted by its first hop (its numbering kept), draining
refuses new calls, and stream credentials cover a nonce that may name their gateway."""

from __future__ import annotations

from actors.gateway.calls import Call
from actors.gateway.pairing import Calls, ClaimKind, Refusal
from actors.signing import nonce_gateway, stream_nonce, stream_token, verify_stream_token

from .test_calls import calls


def attached(registry: Calls[str], sid: str, hop: str, resume_from: int = 0, **kw: int) -> None:
    claim = registry.claim(sid, hop, resume_from, **kw)
    assert claim.kind is ClaimKind.ATTACH and claim.call is not None
    claim.call.attach(claim.hop, 0.0)


# -- fencing ---------------------------------------------------------------------------------


def test_a_hop_of_an_older_epoch_is_stale_and_changes_nothing() -> None:
    registry = calls()
    attached(registry, "s1", "h-epoch2", epoch=2)
    call = registry.get("s1")
    assert call is not None and call.hop is not None
    waiting = call.deadline  # for its provider stream
    for older in (1, None):  # naming an older epoch, or none once one was named
        claim = registry.claim("s1", "h-old", 0, epoch=older)
        assert (claim.kind, claim.call) == (ClaimKind.STALE, None)
        assert not call.hop.superseded and call.hop.connection == "h-epoch2"
        registry.undo(claim, 1.0)  # its connection ending undoes nothing
        assert call.deadline is waiting
    assert call.epoch == 2


def test_a_newer_epoch_supersedes_the_current_hop_as_fenced() -> None:
    registry = calls()
    attached(registry, "s1", "h1", epoch=1)
    call = registry.get("s1")
    assert call is not None and call.hop is not None
    old = call.hop
    same = registry.claim("s1", "h1-redial", 0, epoch=1)  # its own redial: replaced, not fenced
    assert same.kind is ClaimKind.ATTACH and old.superseded and not old.fenced
    registry.undo(same, 0.0)
    assert not old.superseded
    newer = registry.claim("s1", "h2", 0, epoch=2)
    assert newer.kind is ClaimKind.ATTACH and newer.replaced is old
    assert old.superseded and old.fenced and call.epoch == 2
    registry.undo(newer, 0.0)  # the newer one's handshake failed: the old one goes on...
    assert not old.superseded and not old.fenced
    assert registry.claim("s1", "h1-again", 0, epoch=1).kind is ClaimKind.STALE  # ...fenced


def test_hops_without_epochs_behave_as_before() -> None:
    registry = calls()
    attached(registry, "s1", "h1")
    claim = registry.claim("s1", "h2", 0)
    assert claim.kind is ClaimKind.ATTACH and claim.replaced is not None
    assert not claim.replaced.fenced
    assert registry.claim("s9", "h", 3).kind is ClaimKind.UNKNOWN  # a gateway restart: 4404


# -- failover: a call redirected from a gateway that died ------------------------------------


def test_a_stream_first_then_a_resuming_hop_adopts_the_call_and_keeps_its_numbering() -> None:
    registry = calls(buffer_frames=10)
    call = registry.pair("s1", "p-new", 0.0)  # the redirected stream, with a fresh credential
    assert isinstance(call, Call)
    for i in range(7):
        call.provider_frame(f"f{i}")
    # The session had received 120 frames and sent 300 through the dead gateway.
    claim = registry.claim("s1", "h", 120, epoch=1, sent=300)
    assert claim.kind is ClaimKind.ATTACH and claim.call is call
    assert claim.hop.cursor == 0  # it gets everything this gateway has, not "from 120"
    assert claim.received == 300  # nothing is asked again (what the dead one had is gone)
    assert call.sent_to_session == 127
    call.attach(claim.hop, 0.0)
    claim.hop.cursor = 7
    call.session_frame()
    # The hop drops after 5 more frames; it comes back saying 127 + 5 received.
    for i in range(7, 12):
        call.provider_frame(f"f{i}")
    claim.hop.cursor = 12
    again = registry.claim("s1", "h2", 132, epoch=1, sent=301)
    assert (again.hop.cursor, again.received) == (12, 301)  # exact: nothing doubled
    assert registry.claim("s1", "h3", 130, epoch=1).hop.cursor == 10


def test_adopting_without_a_sent_count_asks_for_everything_from_zero() -> None:
    registry = calls(buffer_frames=4)
    call = registry.pair("s1", "p", 0.0)
    assert isinstance(call, Call)
    for i in range(6):  # more than the ring keeps: the hop starts at the oldest kept
        call.provider_frame(f"f{i}")
    claim = registry.claim("s1", "h", 50)
    assert (claim.kind, claim.hop.cursor, claim.received) == (ClaimKind.ATTACH, 2, 0)
    assert call.resume_point(52) == 4


def test_a_resuming_hop_with_an_epoch_waits_for_a_redirected_stream() -> None:
    registry = calls()
    claim = registry.claim("s1", "h", 40, epoch=3, sent=10)  # the hop came before the stream
    assert claim.kind is ClaimKind.ATTACH and claim.created and claim.call is not None
    call = claim.call
    call.attach(claim.hop, 0.0)
    assert registry.pair("s1", "p", 1.0) is call
    call.provider_frame("f0")
    assert call.sent_to_session == 41 and call.resume_point(41) == 1


def test_a_first_hop_that_resumes_nothing_is_no_adoption() -> None:
    registry = calls()
    call = registry.pair("s1", "p", 0.0)
    assert isinstance(call, Call)
    claim = registry.claim("s1", "h", 0, epoch=1, sent=0)
    assert (call.base, claim.hop.cursor, claim.received) == (0, 0, 0)


# -- draining ----------------------------------------------------------------------------------


def test_a_draining_gateway_refuses_new_calls_and_keeps_those_it_holds() -> None:
    registry = calls()
    attached(registry, "waiting", "h")  # an outbound call's hop, its stream still to come
    registry.draining = True
    refused = registry.pair("new", "p", 0.0)
    assert isinstance(refused, Refusal) and refused.reason == "draining"
    assert isinstance(registry.pair("waiting", "p", 0.0), Call)
    assert len(registry) == 1


# -- stream credentials with a nonce ----------------------------------------------------------


def test_a_stream_token_covers_its_nonce() -> None:
    secret = "s" * 32
    nonce = stream_nonce()
    token = stream_token(secret, "sid", nonce)
    assert verify_stream_token(secret, "sid", token, nonce)
    assert not verify_stream_token(secret, "sid", token)  # the nonce cannot be dropped
    assert not verify_stream_token(secret, "sid", token, stream_nonce())
    assert not verify_stream_token(secret, "sid", stream_token(secret, "sid"), nonce)
    assert verify_stream_token(secret, "sid", stream_token(secret, "sid"))  # as before
    assert stream_token(secret, "sid") != token != stream_token(secret, "sid", stream_nonce())
    assert not verify_stream_token(secret, "", stream_token(secret, "", nonce), nonce)


def test_a_nonce_may_name_its_gateway() -> None:
    assert nonce_gateway(stream_nonce()) is None
    named = stream_nonce("gw-a")
    assert named.startswith("gw-a/") and nonce_gateway(named) == "gw-a"
    assert nonce_gateway(stream_nonce("zone/gw-b")) == "zone/gw-b"
    assert stream_nonce("gw-a") != named
