"""The conversation lifecycle of spec section 5 as data: states, what moves between them, and
which client commands each state accepts. Sans-I/O; the engine asks, the table answers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from hubbub.errors import ConversationLayerError


class State(StrEnum):
    INITIALIZED = "initialized"
    AWAITING_USER_INPUT = "awaiting_user_input"
    RECEIVING_USER_VOICE = "receiving_user_voice"
    PROCESSING_USER_INPUT = "processing_user_input"
    GENERATING_RESPONSE = "generating_response"
    FINISHED = "finished"
    ABORTED = "aborted"
    FAILED = "failed"


TERMINAL: Final = frozenset({State.FINISHED, State.ABORTED, State.FAILED})


class Event(StrEnum):
    """Why the state changes (engine-internal; not wire names)."""

    AWAIT_INPUT = "await_input"  # enter behaviour await_user_input, or a resume
    START_RESPONSE = "start_response"  # the agent starts an AI turn
    RESPONSE_DONE = "response_done"  # the AI turn ended (completed or interrupted)
    USER_TEXT = "user_text"  # text input accepted (barge-in when generating)
    VOICE_START = "voice_start"
    VOICE_END = "voice_end"
    VOICE_CANCEL = "voice_cancel"  # the voice turn's session went away before it ended
    INPUT_HANDLED = "input_handled"  # processing ended without an AI turn
    FINISH = "finish"
    ABORT = "abort"
    FAIL = "fail"


_LIVE = (
    State.INITIALIZED,
    State.AWAITING_USER_INPUT,
    State.RECEIVING_USER_VOICE,
    State.PROCESSING_USER_INPUT,
    State.GENERATING_RESPONSE,
)

TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (State.INITIALIZED, Event.AWAIT_INPUT): State.AWAITING_USER_INPUT,
    (State.INITIALIZED, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    (State.AWAITING_USER_INPUT, Event.AWAIT_INPUT): State.AWAITING_USER_INPUT,
    (State.AWAITING_USER_INPUT, Event.USER_TEXT): State.PROCESSING_USER_INPUT,
    (State.AWAITING_USER_INPUT, Event.VOICE_START): State.RECEIVING_USER_VOICE,
    # Client-driven flow (go_to_stage, run_action) may make the agent speak unprompted.
    (State.AWAITING_USER_INPUT, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    (State.RECEIVING_USER_VOICE, Event.VOICE_END): State.PROCESSING_USER_INPUT,
    (State.RECEIVING_USER_VOICE, Event.VOICE_CANCEL): State.AWAITING_USER_INPUT,
    (State.PROCESSING_USER_INPUT, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    (State.PROCESSING_USER_INPUT, Event.INPUT_HANDLED): State.AWAITING_USER_INPUT,
    (State.GENERATING_RESPONSE, Event.RESPONSE_DONE): State.AWAITING_USER_INPUT,
    # A stage's actions may answer twice in a row (a response, then the next stage's greeting).
    (State.GENERATING_RESPONSE, Event.START_RESPONSE): State.GENERATING_RESPONSE,
    # Barge-in: new input while the agent speaks interrupts it.
    (State.GENERATING_RESPONSE, Event.USER_TEXT): State.PROCESSING_USER_INPUT,
    (State.GENERATING_RESPONSE, Event.VOICE_START): State.RECEIVING_USER_VOICE,
    **{(state, Event.FINISH): State.FINISHED for state in _LIVE},
    **{(state, Event.ABORT): State.ABORTED for state in _LIVE},
    **{(state, Event.FAIL): State.FAILED for state in _LIVE},
}


class Command(StrEnum):
    """Client commands that act on an existing conversation."""

    RESUME = "resume_conversation"
    END = "end_conversation"
    TEXT_INPUT = "send_user_text_input"
    VOICE_START = "start_user_voice_input"
    VOICE_CHUNK = "send_user_voice_chunk"
    VOICE_END = "end_user_voice_input"
    GO_TO_STAGE = "go_to_stage"
    SET_VAR = "set_var"
    GET_VAR = "get_var"
    GET_ALL_VARS = "get_all_vars"
    RUN_ACTION = "run_action"
    CALL_TOOL = "call_tool"
    ABORT_GENERATION = "abort_ai_generation"


_ALWAYS_LIVE: Final = frozenset(
    {
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
)

ACCEPTS: Final[dict[State, frozenset[Command]]] = {
    State.INITIALIZED: _ALWAYS_LIVE,
    State.AWAITING_USER_INPUT: _ALWAYS_LIVE | {Command.TEXT_INPUT, Command.VOICE_START},
    State.RECEIVING_USER_VOICE: _ALWAYS_LIVE | {Command.VOICE_CHUNK, Command.VOICE_END},
    State.PROCESSING_USER_INPUT: _ALWAYS_LIVE,
    State.GENERATING_RESPONSE: _ALWAYS_LIVE | {Command.TEXT_INPUT, Command.VOICE_START},
    State.FINISHED: frozenset(),
    State.ABORTED: frozenset(),
    State.FAILED: frozenset(),
}

# Commands refused with "Cannot receive user input in current state: <state>".
INPUT_COMMANDS: Final = frozenset(
    {Command.TEXT_INPUT, Command.VOICE_START, Command.VOICE_CHUNK, Command.VOICE_END}
)


class TransitionError(ConversationLayerError):
    """The engine tried a move the table does not allow: a bug, never client-visible."""


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TransitionError(f"no transition from {state} on {event}") from None


def accepts(state: State, command: Command) -> bool:
    return command in ACCEPTS[state]
