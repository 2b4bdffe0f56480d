"""The conversation bus's REST commands in the OpenAPI document (the POST routes of
:mod:`hubbub.api.conversation_commands`); :mod:`hubbub.api.openapi` merges it in."""

from __future__ import annotations

from typing import Any, Final

from hubbub.api.conversation_commands import MAX_BODY_BYTES, MAX_TEXT_CHARS
from hubbub.api.openapi_parts import error_response as _error
from hubbub.api.openapi_parts import json_response

_CONVERSATION_ID: Final = {
    "name": "conversationId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_ERRORS: Final = {
    "400": _error("invalid_request: the body is not what the command takes."),
    "401": _error("Missing, malformed, unknown or wrong credentials (always the same answer)."),
    "403": _error(
        "app_not_permitted: the key is not of the bus's app (`[conversations] events_app`); "
        "action_not_permitted: it lacks `publish`; channel_not_authorized: its channel "
        "patterns do not cover `conversations/{projectId}/{conversationId}`."
    ),
    "404": _error(
        "conversation_not_found: no such conversation, one of a project the bus does not "
        "carry, or the bus is off. (not_found: no such endpoint.)"
    ),
    "409": _error("conversation_ended: the conversation has finished, been aborted or failed."),
    "413": _error(f"The body is larger than {MAX_BODY_BYTES} bytes."),
    "429": _error("Too many requests from this address or with this key; retry after 1 s."),
    "503": _error("The message backend is unavailable; retry shortly."),
}
_BUSY: Final = {
    "409": _error(
        "conversation_ended: the conversation has ended; conversation_busy: the user's voice "
        "turn is open, so the agent may not speak and text may not come in."
    )
}
_TEXT_BODY: Final = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SteerText"}}},
}


def _ok(description: str) -> dict[str, Any]:
    return json_response(description, "SteerResponse")


def _command(operation_id: str, summary: str, description: str, **extra: Any) -> dict[str, Any]:
    responses = {
        "200": _ok("Taken: it happens now, in turn with the conversation's work."),
        **_ERRORS,
    }
    responses.update(extra.pop("responses", {}))
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "description": description,
            "parameters": [_CONVERSATION_ID],
            "responses": responses,
            **extra,
        }
    }


PATHS: Final[dict[str, Any]] = {
    "/v1/conversations/{conversationId}/say": _command(
        "sayInConversation",
        "The agent says this now (voiced when the client hears speech).",
        "Interrupts the answer being spoken, like new input. A secret key of the conversation "
        "bus's app; answered by any node (relayed to the one the conversation runs on).",
        requestBody=_TEXT_BODY,
        responses=_BUSY,
    ),
    "/v1/conversations/{conversationId}/input": _command(
        "inputToConversation",
        "Text input, as if the user had typed it.",
        "Interrupts the answer being spoken; the answer to it streams to the client.",
        requestBody=_TEXT_BODY,
        responses=_BUSY,
    ),
    "/v1/conversations/{conversationId}/stage": _command(
        "moveConversationToStage",
        "Jump to a stage, like go_to_stage.",
        "The stage's leave and enter behaviours run; the answer being spoken is interrupted.",
        requestBody={
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SteerStage"}}
            },
        },
        responses={
            "400": _error(
                'invalid_request: the body is not {"stageId"}; stage_not_found: the '
                "project has no such stage."
            )
        },
    ),
    "/v1/conversations/{conversationId}/end": _command(
        "endConversation",
        "End the conversation, like end_conversation (its __conversation_end runs first).",
        "The body may be empty or {}.",
        requestBody={
            "required": False,
            "content": {
                "application/json": {"schema": {"type": "object", "additionalProperties": False}}
            },
        },
    ),
}

SCHEMAS: Final[dict[str, Any]] = {
    "SteerText": {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_TEXT_CHARS,
                "description": "Not only whitespace.",
            }
        },
    },
    "SteerStage": {
        "type": "object",
        "required": ["stageId"],
        "additionalProperties": False,
        "properties": {"stageId": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "SteerResponse": {
        "type": "object",
        "required": ["conversationId", "projectId", "stageId", "state"],
        "properties": {
            "conversationId": {"type": "string"},
            "projectId": {"type": "string"},
            "stageId": {
                "type": "string",
                "description": "The stage when the command was taken (stage: the one it goes to).",
            },
            "state": {"type": "string", "description": "The conversation's state then."},
            "inputTurnId": {"type": "string", "description": "input: the input turn it opened."},
        },
    },
}
