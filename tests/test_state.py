"""The connection state machine and the Status derived from it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_clientsocket import State, Status
from trio_clientsocket._state import ConnectionState, Trigger

S, T = State, Trigger

# The transitions the module documents, written out independently of its table.
EXPECTED: dict[tuple[State, Trigger], State] = {
    (S.IDLE, T.OPEN): S.CONNECTING,
    (S.CONNECTING, T.CONNECTED): S.CONNECTED,
    (S.CONNECTING, T.FAILED): S.WAITING,
    (S.CONNECTING, T.GIVE_UP): S.IDLE,
    (S.CONNECTING, T.CLOSE): S.IDLE,
    (S.WAITING, T.RETRY): S.CONNECTING,
    (S.WAITING, T.CLOSE): S.IDLE,
    (S.CONNECTED, T.LOST): S.WAITING,
    (S.CONNECTED, T.GIVE_UP): S.IDLE,
    (S.CONNECTED, T.CLOSE): S.CLOSING,
    (S.CLOSING, T.CLOSED): S.IDLE,
}

ALL_PAIRS = list(itertools.product(State, Trigger))
INVALID = [pair for pair in ALL_PAIRS if pair not in EXPECTED]


def machine_in(state: State) -> ConnectionState:
    m = ConnectionState()
    m.state = state
    return m


def test_starts_idle_and_disconnected() -> None:
    m = ConnectionState()
    assert m.state is State.IDLE
    assert m.status is Status.DISCONNECTED


def test_happy_path_with_one_reconnect() -> None:
    m = ConnectionState()
    path = [
        (T.OPEN, S.CONNECTING),
        (T.CONNECTED, S.CONNECTED),
        (T.LOST, S.WAITING),
        (T.RETRY, S.CONNECTING),
        (T.CONNECTED, S.CONNECTED),
        (T.CLOSE, S.CLOSING),
        (T.CLOSED, S.IDLE),
    ]
    for trigger, state in path:
        assert m.fire(trigger) is state
        assert m.state is state
        expected = Status.CONNECTED if state is S.CONNECTED else Status.DISCONNECTED
        assert m.status is expected


def test_failed_attempts_then_give_up() -> None:
    m = ConnectionState()
    for trigger in (T.OPEN, T.FAILED, T.RETRY, T.FAILED, T.RETRY):
        m.fire(trigger)
        assert m.status is Status.DISCONNECTED
    assert m.fire(T.GIVE_UP) is S.IDLE
    assert m.fire(T.OPEN) is S.CONNECTING


@pytest.mark.parametrize(("state", "trigger"), list(EXPECTED))
def test_valid_transitions(state: State, trigger: Trigger) -> None:
    m = machine_in(state)
    assert m.fire(trigger) is EXPECTED[state, trigger]
    assert m.state is EXPECTED[state, trigger]


@pytest.mark.parametrize(("state", "trigger"), INVALID)
def test_invalid_transitions_raise_and_leave_state(state: State, trigger: Trigger) -> None:
    m = machine_in(state)
    with pytest.raises(RuntimeError, match=f"invalid transition: {trigger.value} in state"):
        m.fire(trigger)
    assert m.state is state


def test_some_transitions_are_invalid() -> None:
    assert (S.IDLE, T.CONNECTED) in INVALID
    assert (S.CONNECTED, T.OPEN) in INVALID
    assert (S.WAITING, T.CONNECTED) in INVALID
    assert len(INVALID) == len(ALL_PAIRS) - len(EXPECTED)


def test_invalid_transition_message() -> None:
    with pytest.raises(RuntimeError, match="invalid transition: connected in state idle"):
        ConnectionState().fire(T.CONNECTED)


@pytest.mark.parametrize("state", list(State))
def test_status_derived_from_state(state: State) -> None:
    expected = Status.CONNECTED if state is State.CONNECTED else Status.DISCONNECTED
    assert machine_in(state).status is expected


def test_status_values() -> None:
    assert Status.CONNECTED.value == "Connected"
    assert Status.DISCONNECTED.value == "Disconnected"
    assert Status.CONNECTED == "Connected"
    assert str(Status.DISCONNECTED) == "Disconnected"
    assert f"{Status.CONNECTED}" == "Connected"
    assert {s.value for s in Status} == {"Connected", "Disconnected"}


@pytest.mark.parametrize("status", list(Status))
def test_status_round_trip(status: Status) -> None:
    assert Status(status.value) is status
    assert Status(str(status)) is status


def test_status_from_string() -> None:
    assert Status("Connected") is Status.CONNECTED
    assert Status("Disconnected") is Status.DISCONNECTED
    with pytest.raises(ValueError, match="connected"):
        Status("connected")


@settings(max_examples=200)
@given(triggers=st.lists(st.sampled_from(Trigger), max_size=60))
def test_random_trigger_sequences_keep_status_consistent(triggers: list[Trigger]) -> None:
    m = ConnectionState()
    model = State.IDLE
    for trigger in triggers:
        before = m.state
        if (before, trigger) in EXPECTED:
            assert m.fire(trigger) is EXPECTED[before, trigger]
            model = EXPECTED[before, trigger]
        else:
            with pytest.raises(RuntimeError):
                m.fire(trigger)
            assert m.state is before
        assert m.state is model
        assert (m.status is Status.CONNECTED) == (m.state is State.CONNECTED)
        assert m.status in (Status.CONNECTED, Status.DISCONNECTED)
