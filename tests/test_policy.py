"""Unit tests for actors/policy.py: which exits end a session, and the intensity policy."""

from __future__ import annotations

import random
from collections import deque

import pytest

from actors.exits import Exit, ExitKind
from actors.policy import IntensityPolicy, RestartDecision, Supervision, ends_session

CODES = [None, 1000, 1001, 1006, 1007, 1009, 1011, 1012, 1013, 1014, 4000, 4999]
RETRYABLE = {1001, 1006, 1011, 1012, 1013, 1014}
ALWAYS_ENDS = {ExitKind.NORMAL, ExitKind.PROTOCOL_ERROR}
NEVER_ENDS = {
    ExitKind.CONNECTION_LOST,
    ExitKind.PING_TIMEOUT,
    ExitKind.HANDSHAKE_FAILED,
    ExitKind.CRASH,
    ExitKind.START_CRASH,
}


def test_kind_sets_cover_every_exit_kind() -> None:
    assert ALWAYS_ENDS | NEVER_ENDS | {ExitKind.PEER_CLOSED} == set(ExitKind)


@pytest.mark.parametrize("code", CODES, ids=str)
@pytest.mark.parametrize("kind", list(ExitKind), ids=lambda k: k.name)
def test_ends_session_truth_table(kind: ExitKind, code: int | None) -> None:
    exit = Exit(kind, code, "why")
    if kind in ALWAYS_ENDS:
        expected = True
    elif kind is ExitKind.PEER_CLOSED:
        expected = code not in RETRYABLE
    else:
        expected = False
    assert ends_session(exit) is expected


@pytest.mark.parametrize(
    ("code", "ends"),
    [
        (1000, True),  # normal closure: the peer ended the conversation
        (1001, False),  # going away (a server shutting down): redial
        (1006, False),  # abnormal closure: redial
        (1011, False),  # server error: redial
        (1012, False),  # service restart: redial
        (4000, True),  # application-defined: on purpose
        (None, True),  # a close frame without a code
    ],
)
def test_peer_close_codes(code: int | None, ends: bool) -> None:
    assert ends_session(Exit(ExitKind.PEER_CLOSED, code)) is ends


def test_connection_lost_never_ends_even_with_normal_code() -> None:
    assert ends_session(Exit(ExitKind.CONNECTION_LOST, 1000)) is False


def _restart_times_after(policy: IntensityPolicy, exit: Exit, nows: list[float]) -> list:
    """Drive the policy like the supervisor: ask, and record a restart when it says so."""
    times: deque[float] = deque()
    decisions = []
    for now in nows:
        decision = policy.decide(times, exit, now)
        decisions.append(decision)
        if decision.restart:
            times.append(now)
    return decisions


def test_backoff_grows_by_multiplier_and_is_capped() -> None:
    policy = IntensityPolicy(
        max_restarts=10,
        within_s=1000.0,
        backoff_initial_s=0.1,
        backoff_max_s=1.0,
        backoff_multiplier=3.0,
    )
    exit = Exit(ExitKind.CONNECTION_LOST, reason="reset")
    decisions = _restart_times_after(policy, exit, [float(i) for i in range(6)])
    assert all(d.restart for d in decisions)
    delays = [d.delay_s for d in decisions]
    assert delays == pytest.approx([0.1, 0.3, 0.9, 1.0, 1.0, 1.0])


def test_default_backoff_doubles() -> None:
    policy = IntensityPolicy()
    exit = Exit(ExitKind.CRASH, reason="boom")
    decisions = _restart_times_after(policy, exit, [0.0, 1.0, 2.0])
    assert [d.delay_s for d in decisions] == pytest.approx([0.05, 0.1, 0.2])
    assert [d.restart for d in decisions] == [True, True, True]


def test_restart_why_counts_and_names_exit() -> None:
    policy = IntensityPolicy(max_restarts=3)
    exit = Exit(ExitKind.PING_TIMEOUT)
    first = policy.decide(deque(), exit, 0.0)
    assert first.restart is True
    assert "restart 1 of 3" in first.why
    assert "ping timeout" in first.why


def test_gives_up_after_max_restarts_within_window() -> None:
    policy = IntensityPolicy(max_restarts=3, within_s=30.0)
    exit = Exit(ExitKind.PEER_CLOSED, 1011, "server error")
    decisions = _restart_times_after(policy, exit, [0.0, 1.0, 2.0, 3.0])
    assert [d.restart for d in decisions] == [True, True, True, False]
    final = decisions[-1]
    assert final.delay_s == 0.0
    assert "3 restarts" in final.why
    assert "max_restarts=3" in final.why
    assert "within 30 s" in final.why
    assert str(exit) in final.why
    assert "1011" in final.why
    assert "server error" in final.why


def test_give_up_why_names_the_last_exit_not_an_earlier_one() -> None:
    policy = IntensityPolicy(max_restarts=1, within_s=10.0)
    times: deque[float] = deque()
    assert policy.decide(times, Exit(ExitKind.CRASH, reason="first"), 0.0).restart
    times.append(0.0)
    last = Exit(ExitKind.HANDSHAKE_FAILED, reason="refused")
    decision = policy.decide(times, last, 1.0)
    assert decision.restart is False
    assert "handshake failed: refused" in decision.why
    assert "first" not in decision.why


def test_old_restarts_slide_out_of_the_window() -> None:
    policy = IntensityPolicy(max_restarts=2, within_s=10.0)
    exit = Exit(ExitKind.CONNECTION_LOST)
    times: deque[float] = deque([0.0, 5.0])
    assert policy.decide(times, exit, 9.0).restart is False  # both within 10 s
    assert list(times) == [0.0, 5.0]
    decision = policy.decide(times, exit, 10.5)  # 0.0 is now older than 10 s
    assert decision.restart is True
    assert list(times) == [5.0]
    # One recent restart left in the window: the backoff is the second step's.
    assert decision.delay_s == pytest.approx(policy.backoff_initial_s * 2)
    assert "restart 2 of 2" in decision.why


def test_window_edge_is_inclusive() -> None:
    policy = IntensityPolicy(max_restarts=1, within_s=10.0)
    exit = Exit(ExitKind.CONNECTION_LOST)
    times: deque[float] = deque([0.0])
    assert policy.decide(times, exit, 10.0).restart is False  # exactly within_s: still counted
    assert policy.decide(times, exit, 10.001).restart is True
    assert not times


def test_backoff_resets_after_window_empties() -> None:
    policy = IntensityPolicy(max_restarts=5, within_s=1.0, backoff_initial_s=0.2)
    exit = Exit(ExitKind.CONNECTION_LOST)
    decisions = _restart_times_after(policy, exit, [0.0, 0.1, 0.2, 100.0])
    assert [d.delay_s for d in decisions] == pytest.approx([0.2, 0.4, 0.8, 0.2])


@pytest.mark.parametrize("now", [0.0, 1e9])
def test_max_restarts_zero_never_restarts(now: float) -> None:
    policy = IntensityPolicy(max_restarts=0)
    decision = policy.decide(deque(), Exit(ExitKind.CRASH, reason="x"), now)
    assert decision.restart is False
    assert "0 restarts" in decision.why
    assert "max_restarts=0" in decision.why


def test_decisions_and_policy_are_frozen() -> None:
    decision = RestartDecision(True, 1.0, "w")
    with pytest.raises(AttributeError):
        decision.restart = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        IntensityPolicy().max_restarts = 9  # type: ignore[misc]


# -- restart types, jitter, reset ------------------------------------------------------------

LOST = Exit(ExitKind.CONNECTION_LOST, 1006, "reset")
PEER_BYE = Exit(ExitKind.PEER_CLOSED, 1000, "bye")
OURS = Exit(ExitKind.NORMAL, 1000, "end_session")
BROKEN = Exit(ExitKind.PROTOCOL_ERROR, 1009, "too big")


@pytest.mark.parametrize(
    ("restart", "ends"),
    [
        ("transient", {LOST: False, PEER_BYE: True, OURS: True, BROKEN: True}),
        ("permanent", {LOST: False, PEER_BYE: False, OURS: True, BROKEN: False}),
        ("temporary", {LOST: True, PEER_BYE: True, OURS: True, BROKEN: True}),
    ],
)
def test_restart_types_decide_which_exits_end_a_session(
    restart: str, ends: dict[Exit, bool]
) -> None:
    policy = IntensityPolicy(restart=restart)
    assert {exit: policy.ends_session(exit) for exit in ends} == ends


def test_an_unknown_restart_type_is_refused() -> None:
    with pytest.raises(ValueError, match="transient, permanent, temporary"):
        IntensityPolicy(restart="sometimes")


def test_jitter_shortens_each_delay_by_at_most_its_share() -> None:
    policy = IntensityPolicy(
        max_restarts=100,
        backoff_initial_s=1.0,
        backoff_max_s=1.0,
        backoff_jitter=0.5,
        rng=random.Random(7),
    )
    delays = [policy.decide(deque(), LOST, 0.0).delay_s for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert max(delays) - min(delays) > 0.3  # spread out, not in lockstep


def test_a_connection_up_for_reset_after_s_forgives_earlier_restarts() -> None:
    policy = IntensityPolicy(max_restarts=2, within_s=100.0, reset_after_s=5.0)
    times: deque[float] = deque([1.0, 2.0])
    assert not policy.decide(times.copy(), LOST, 3.0, up_for_s=1.0).restart  # budget spent
    decision = policy.decide(times, LOST, 9.0, up_for_s=6.0)  # it had been up 6 s: stable
    assert decision.restart
    assert decision.delay_s == policy.backoff_initial_s  # the backoff starts afresh too
    assert not times  # (the supervisor records this restart's time after deciding)


# -- Supervision: one session's history, written by the supervisor only ----------------------


def test_supervision_measures_how_long_the_connection_was_up() -> None:
    history = Supervision()
    assert history.exited(Exit(ExitKind.CONNECTION_LOST), 5.0) == 0.0  # never opened
    history.opened(10.0)
    assert history.connected
    assert history.exited(Exit(ExitKind.CONNECTION_LOST), 12.5) == 2.5
    assert not history.connected
    assert history.exited(Exit(ExitKind.CONNECTION_LOST), 20.0) == 0.0  # not reopened since


def test_supervision_forgives_the_outage_after_a_stable_connection() -> None:
    policy = IntensityPolicy(reconnect_window_s=2.0, reset_after_s=5.0)
    history = Supervision(policy)
    lost = Exit(ExitKind.CONNECTION_LOST)
    history.exited(lost, 0.0)
    assert history.decide(policy, lost, 0.0, 0.0).restart
    history.opened(1.5)  # down 1.5 s of the 2 s window
    up_for = history.exited(lost, 7.0)  # then up 5.5 s: stable
    decision = history.decide(policy, lost, 7.0, up_for)
    assert decision.restart and decision.deadline == 9.0  # the whole window again
    assert history.restarts == 2 and history.last_error == str(lost)


def test_supervision_counts_crash_restarts_against_the_intensity() -> None:
    policy = IntensityPolicy(max_restarts=2, within_s=10.0)
    history = Supervision(policy)
    crash = Exit(ExitKind.CRASH, reason="boom")
    assert [history.decide(policy, crash, float(t), 0.0).restart for t in range(3)] == [
        True,
        True,
        False,
    ]
    assert history.restarts == 2


def test_supervision_keeps_the_last_16_exits_oldest_first() -> None:
    history = Supervision()
    for i in range(20):
        history.exited(Exit(ExitKind.CONNECTION_LOST, reason=str(i)), float(i))
    assert [e.reason for e in history.exits] == [str(i) for i in range(4, 20)]
