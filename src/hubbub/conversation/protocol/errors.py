"""Every error text a conversation client can see (spec sections 1-5), in one place.

Two kinds, split by how they travel:

* transport errors are ``{"type": "error", "error": ...}`` (the message itself was unusable
  or not allowed);
* command errors are the command's own reply with ``success: false`` (:class:`CommandError`).
"""

from __future__ import annotations

from typing import Final

from hubbub.errors import ConversationLayerError

INVALID_JSON: Final = "Invalid JSON"
UNKNOWN_MESSAGE_TYPE: Final = "Unknown message type"
AUTHENTICATION_REQUIRED: Final = "Authentication required"
TOO_MANY_AUTH_ATTEMPTS: Final = "Too many authentication attempts, please try again later"
# Abuse bounds (spec section 11): each is followed by the close of the connection.
AUTHENTICATION_TIMEOUT: Final = "Authentication timed out"
MESSAGE_RATE_EXCEEDED: Final = "Message rate exceeded"

ALREADY_AUTHENTICATED: Final = "Already authenticated"
INVALID_API_KEY: Final = "Invalid or inactive API key"
NO_VOICE_OUTPUT: Final = "API key does not permit voice output"
NO_TEXT_OUTPUT: Final = "API key does not permit text output"
NO_EVENTS: Final = "API key does not permit conversation events"

NO_ACTIVE_CONVERSATION: Final = "No active conversation in this session"
CONVERSATION_NOT_FOUND: Final = "Conversation not found"
CONVERSATION_ID_MISMATCH: Final = "Conversation ID mismatch"
CONVERSATION_ALREADY_ACTIVE: Final = "A conversation is already active in this session"
STAGE_NOT_FOUND: Final = "Stage not found"
TEXT_INPUT_DISABLED: Final = "Text input is disabled for this session"
VOICE_INPUT_DISABLED: Final = "Voice input is disabled for this session"
# Not in the spec's list, but worded in its style: what the client asked for does not exist.
ACTION_NOT_FOUND: Final = "Action not found"
TOOL_NOT_FOUND: Final = "Tool not found"
AGENT_NOT_FOUND: Final = "Agent not found"
INVALID_TIMEZONE: Final = "Invalid message: timezone: unknown IANA time zone"
SESSION_ID_MISMATCH: Final = "Invalid message: sessionId: does not match this session"
CONVERSATION_NOT_RESUMABLE: Final = "Conversation cannot be resumed: {status}"
TOOL_FAILED: Final = "Tool failed: {reason}"
INTERNAL_ERROR: Final = "Internal error"


def invalid_message(field: str, reason: str) -> str:
    return f"Invalid message: {field}: {reason}"


def text_too_long(max_chars: int) -> str:
    return invalid_message("text", f"longer than {max_chars} characters")


def variables_too_big(max_bytes: int) -> str:
    return invalid_message("variableValue", f"the stage's variables would exceed {max_bytes} bytes")


def stage_variables_too_big(max_bytes: int) -> str:
    return invalid_message("stageVariables", f"more than {max_bytes} bytes")


def feature_not_permitted(feature: str) -> str:
    return f"Feature '{feature}' is not permitted by this API key"


def transport_not_permitted(kind: str) -> str:
    return f"Connection type '{kind}' is not permitted by this API key"


def cannot_receive_input(state: str) -> str:
    return f"Cannot receive user input in current state: {state}"


def input_turn_mismatch(expected: str, got: str) -> str:
    return f"Input turn ID mismatch: expected {expected}, got {got}"


def stage_mismatch(expected: str, got: str) -> str:
    return f"Stage ID mismatch: expected {expected}, got {got}"


class CommandError(ConversationLayerError):
    """A command was understood but refused: its reply carries ``success: false`` and this text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
