"""The conversation state machine (spec section 5): every transition, every refusal."""

from __future__ import annotations

import itertools

import pytest

from hubbub.conversation.runtime.states import (
    ACCEPTS,
    INPUT_COMMANDS,
    TERMINAL,
    TRANSITIONS,
    Command,
    Event,
    State,
    TransitionError,
    accepts,
    next_state,
)

LIVE = [s for s in State if s not in TERMINAL]

EXPECTED_TRANSITIONS = {
    (State.INITIALIZED, Event.AWAIT_INPUT): State.AWAITING_USER_INPUT,
    (State.INITIALIZED, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    (State.AWAITING_USER_INPUT, Event.AWAIT_INPUT): State.AWAITING_USER_INPUT,
    (State.AWAITING_USER_INPUT, Event.USER_TEXT): State.PROCESSING_USER_INPUT,
    (State.AWAITING_USER_INPUT, Event.VOICE_START): State.RECEIVING_USER_VOICE,
    (State.AWAITING_USER_INPUT, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    (State.RECEIVING_USER_VOICE, Event.VOICE_END): State.PROCESSING_USER_INPUT,
    # The spec's "awaiting_user_input <-> receiving_user_voice": a voice turn abandoned.
    (State.RECEIVING_USER_VOICE, Event.VOICE_CANCEL): State.AWAITING_USER_INPUT,
    (State.PROCESSING_USER_INPUT, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    (State.PROCESSING_USER_INPUT, Event.INPUT_HANDLED): State.AWAITING_USER_INPUT,
    (State.GENERATING_RESPONSE, Event.RESPONSE_DONE): State.AWAITING_USER_INPUT,
    (State.GENERATING_RESPONSE, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    (State.GENERATING_RESPONSE, Event.USER_TEXT): State.PROCESSING_USER_INPUT,
    (State.GENERATING_RESPONSE, Event.VOICE_START): State.RECEIVING_USER_VOICE,
    **{(s, Event.FINISH): State.FINISHED for s in LIVE},
    **{(s, Event.ABORT): State.ABORTED for s in LIVE},
    **{(s, Event.FAIL): State.FAILED for s in LIVE},
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_state_and_event(state: State, event: Event) -> None:
    expected = EXPECTED_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(TransitionError):
            next_state(state, event)
    else:
        assert next_state(state, event) is expected


def test_the_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED_TRANSITIONS


def test_the_documented_happy_path() -> None:
    state = State.INITIALIZED
    for event, expected in [
        (Event.AWAIT_INPUT, State.AWAITING_USER_INPUT),
        (Event.VOICE_START, State.RECEIVING_USER_VOICE),
        (Event.VOICE_END, State.PROCESSING_USER_INPUT),
        (Event.START_RESPONSE, State.GENERATING_RESPONSE),
        (Event.RESPONSE_DONE, State.AWAITING_USER_INPUT),
        (Event.FINISH, State.FINISHED),
    ]:
        state = next_state(state, event)
        assert state is expected


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_are_final(terminal: State) -> None:
    for event in Event:
        with pytest.raises(TransitionError):
            next_state(terminal, event)


ALWAYS = {
    Command.RESUME,
    Command.END,
    Command.GO_TO_STAGE,
    Command.SET_VAR,
    Command.GET_VAR,
    Command.GET_ALL_VARS,
    Command.RUN_ACTION,
    Command.CALL_TOOL,
    Command.ABORT_GENERATION,
}
EXPECTED_ACCEPTS = {
    State.INITIALIZED: ALWAYS,
    State.AWAITING_USER_INPUT: ALWAYS | {Command.TEXT_INPUT, Command.VOICE_START},
    State.RECEIVING_USER_VOICE: ALWAYS | {Command.VOICE_CHUNK, Command.VOICE_END},
    State.PROCESSING_USER_INPUT: ALWAYS,
    State.GENERATING_RESPONSE: ALWAYS | {Command.TEXT_INPUT, Command.VOICE_START},
    State.FINISHED: set(),
    State.ABORTED: set(),
    State.FAILED: set(),
}


@pytest.mark.parametrize(("state", "command"), list(itertools.product(State, Command)))
def test_every_command_in_every_state(state: State, command: Command) -> None:
    assert accepts(state, command) is (command in EXPECTED_ACCEPTS[state])


def test_input_is_refused_while_processing_and_accepted_as_barge_in() -> None:
    assert not any(accepts(State.PROCESSING_USER_INPUT, c) for c in INPUT_COMMANDS)
    assert accepts(State.GENERATING_RESPONSE, Command.TEXT_INPUT)
    assert set(ACCEPTS) == set(State)
