"""Unit tests for actors/lifecycle.py: the session state table and its thread-safe holder."""

from __future__ import annotations

import itertools
import logging
import threading

import pytest

from actors.errors import IllegalTransition
from actors.lifecycle import TRANSITIONS, SessionLifecycle, SessionState

S = SessionState
JOIN_S = 5.0

LEGAL = sorted(
    ((old, new) for old, targets in TRANSITIONS.items() for new in targets),
    key=lambda p: (p[0].value, p[1].value),
)
ILLEGAL = [
    (old, new)
    for old, new in itertools.product(SessionState, SessionState)
    if new not in TRANSITIONS[old]
]

# How to reach each state from CONNECTING along legal moves.
PATH_TO = {
    S.CONNECTING: [],
    S.OPEN: [S.OPEN],
    S.RECONNECTING: [S.OPEN, S.RECONNECTING],
    S.CLOSING: [S.CLOSING],
    S.CLOSED: [S.CLOSING, S.CLOSED],
    S.FAILED: [S.FAILED],
}


def _pair_id(pair: tuple[SessionState, SessionState]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def lifecycle_in(state: SessionState, session_id: str = "sess-1") -> SessionLifecycle:
    life = SessionLifecycle(session_id)
    for step in PATH_TO[state]:
        life.move(step)
    assert life.state is state
    return life


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(SessionState)


def test_table_matches_the_documented_diagram() -> None:
    assert {(old, new) for old, targets in TRANSITIONS.items() for new in targets} == {
        (S.CONNECTING, S.OPEN),
        (S.CONNECTING, S.CLOSING),
        (S.CONNECTING, S.FAILED),
        (S.OPEN, S.RECONNECTING),
        (S.OPEN, S.CLOSING),
        (S.OPEN, S.FAILED),
        (S.RECONNECTING, S.OPEN),
        (S.RECONNECTING, S.CLOSING),
        (S.RECONNECTING, S.FAILED),
        (S.CLOSING, S.CLOSED),
    }


def test_initial_state_is_connecting() -> None:
    life = SessionLifecycle("abc")
    assert life.state is S.CONNECTING
    assert life.session_id == "abc"


def test_enumeration_sizes() -> None:
    assert len(LEGAL) == 10
    assert len(LEGAL) + len(ILLEGAL) == len(SessionState) ** 2


@pytest.mark.parametrize("pair", LEGAL, ids=_pair_id)
def test_legal_transition_moves_and_logs(
    pair: tuple[SessionState, SessionState], caplog: pytest.LogCaptureFixture
) -> None:
    old, new = pair
    life = lifecycle_in(old, session_id="sess-legal-42")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="actors.lifecycle"):
        left = life.move(new, why="because")
    assert left is old
    assert life.state is new
    records = [r for r in caplog.records if r.name == "actors.lifecycle"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert "sess-legal-42" in text
    assert f"{old} -> {new}" in text
    assert "(because)" in text


def test_move_without_why_logs_no_parentheses(caplog: pytest.LogCaptureFixture) -> None:
    life = SessionLifecycle("sid-7")
    with caplog.at_level(logging.INFO, logger="actors.lifecycle"):
        life.move(S.OPEN)
    (record,) = [r for r in caplog.records if r.name == "actors.lifecycle"]
    assert record.getMessage() == "session sid-7: CONNECTING -> OPEN"


@pytest.mark.parametrize("pair", LEGAL, ids=_pair_id)
def test_try_move_legal_returns_true(pair: tuple[SessionState, SessionState]) -> None:
    old, new = pair
    life = lifecycle_in(old)
    assert life.try_move(new) is True
    assert life.state is new


@pytest.mark.parametrize("pair", ILLEGAL, ids=_pair_id)
def test_illegal_transition_raises_and_keeps_state(
    pair: tuple[SessionState, SessionState], caplog: pytest.LogCaptureFixture
) -> None:
    old, new = pair
    life = lifecycle_in(old, session_id="sess-illegal-9")
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="actors.lifecycle"),
        pytest.raises(IllegalTransition) as info,
    ):
        life.move(new)
    err = info.value
    assert life.state is old
    assert err.session_id == "sess-illegal-9"
    assert err.current == old.value
    assert err.requested == new.value
    text = str(err)
    assert "sess-illegal-9" in text
    assert f"{old.value} -> {new.value}" in text
    # Nothing is logged for a move that did not happen.
    assert not [r for r in caplog.records if r.name == "actors.lifecycle"]


@pytest.mark.parametrize("pair", ILLEGAL, ids=_pair_id)
def test_try_move_illegal_returns_false(pair: tuple[SessionState, SessionState]) -> None:
    old, new = pair
    life = lifecycle_in(old)
    assert life.try_move(new) is False
    assert life.state is old


def test_illegal_transition_is_a_runtime_error() -> None:
    life = SessionLifecycle("x")
    with pytest.raises(RuntimeError):
        life.move(S.CLOSED)


@pytest.mark.parametrize("state", list(SessionState), ids=str)
def test_final_states_have_no_exits(state: SessionState) -> None:
    assert state.is_final is (state in {S.CLOSED, S.FAILED})
    if state.is_final:
        assert TRANSITIONS[state] == frozenset()
        life = lifecycle_in(state)
        for target in SessionState:
            assert life.try_move(target) is False
            assert life.state is state
    else:
        assert TRANSITIONS[state]


def test_every_state_reaches_a_final_state() -> None:
    for start in SessionState:
        seen = {start}
        frontier = [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert any(s.is_final for s in seen), start


def test_str_of_state_is_its_value() -> None:
    for state in SessionState:
        assert str(state) == state.value


def test_racing_try_move_only_one_wins() -> None:
    life = lifecycle_in(S.OPEN)
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def racer() -> None:
        barrier.wait(JOIN_S)
        won = life.try_move(S.CLOSING, "race")
        with lock:
            results.append(won)

    threads = [threading.Thread(target=racer, name=f"racer-{i}") for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
        assert not t.is_alive()
    assert sorted(results) == [False] * 7 + [True]
    assert life.state is S.CLOSING


def test_wait_for_returns_at_once_if_already_there() -> None:
    life = lifecycle_in(S.OPEN)
    assert life.wait_for(frozenset({S.OPEN}), timeout=0.0) is S.OPEN


def test_wait_for_times_out_and_returns_current_state() -> None:
    life = SessionLifecycle("t")
    got = life.wait_for(frozenset({S.CLOSED, S.FAILED}), timeout=0.05)
    assert got is S.CONNECTING


def test_wait_for_wakes_when_another_thread_moves() -> None:
    life = SessionLifecycle("w")
    waiting = threading.Event()
    result: list[SessionState] = []

    def waiter() -> None:
        waiting.set()
        result.append(life.wait_for(frozenset({S.CLOSED, S.FAILED}), timeout=JOIN_S))

    thread = threading.Thread(target=waiter, name="lifecycle-waiter")
    thread.start()
    assert waiting.wait(JOIN_S)
    life.move(S.OPEN)  # not a target state: the waiter keeps waiting
    life.move(S.CLOSING)
    life.move(S.CLOSED)
    thread.join(JOIN_S)
    assert not thread.is_alive()
    assert result == [S.CLOSED]


def test_wait_for_intermediate_state_seen_if_waited_for() -> None:
    life = SessionLifecycle("w2")
    started = threading.Event()
    result: list[SessionState] = []

    def waiter() -> None:
        started.set()
        result.append(life.wait_for(frozenset({S.OPEN}), timeout=JOIN_S))

    thread = threading.Thread(target=waiter, name="lifecycle-waiter-2")
    thread.start()
    assert started.wait(JOIN_S)
    life.move(S.OPEN)
    thread.join(JOIN_S)
    assert not thread.is_alive()
    assert result == [S.OPEN]


def test_abandon_forces_failed_from_any_live_state_and_wakes_waiters() -> None:
    for state in (S.CONNECTING, S.OPEN, S.RECONNECTING, S.CLOSING):
        life = SessionLifecycle("abandoned")
        life._state = state  # reach each live state without walking the table
        assert life.wait_until(lambda life=life: life.state is S.FAILED, 0) is False
        life.abandon("bug")
        assert life.state is S.FAILED
    done = SessionLifecycle("done")
    done.move(S.CLOSING)
    done.move(S.CLOSED)
    done.abandon("late")  # a final state stays as it is
    assert done.state is S.CLOSED
