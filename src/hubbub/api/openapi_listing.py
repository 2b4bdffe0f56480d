"""The listing endpoints' part of the OpenAPI document (:mod:`hubbub.api.listing` and the GET
routes of :mod:`hubbub.api.conversations`); :mod:`hubbub.api.openapi` merges it in."""

from __future__ import annotations

from typing import Any, Final

from hubbub.api.conversations import MAX_EVENTS_PAGE, MAX_ID_LENGTH, MAX_PROJECT_ID_LENGTH
from hubbub.api.openapi_parts import error_response as _error
from hubbub.api.openapi_parts import ok_response as _ok
from hubbub.conversation.session.inspect import STATE_FILTERS
from hubbub.core.listing import DEFAULT_LIMIT, MAX_LIMIT
from hubbub.protocol.validation import MAX_CHANNEL_BYTES, MAX_PEER_ID_LENGTH

_ERRORS: Final = {
    "400": _error("invalid_request: a query parameter is out of range or malformed."),
    "401": _error("Missing, malformed, unknown or wrong credentials (always the same answer)."),
    "429": _error("Too many requests from this address or with this key; retry after 1 s."),
}
_BACKEND_ERROR: Final = {"503": _error("The message backend is unavailable; retry shortly.")}
_NOT_FOUND: Final = {
    "404": _error("not_found: no such conversation, or one of a project this app may not read.")
}


def _limit(maximum: int = MAX_LIMIT) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"At most this many entries (default {DEFAULT_LIMIT}).",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum},
    }


def _text(name: str, description: str, max_length: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {
            "type": "string",
            "maxLength": max_length,
            "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
        },
    }


_CONVERSATION_ID: Final = {
    "name": "conversationId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_NUMBER: Final = {"type": "number", "description": "Unix seconds."}
_COUNT: Final = {"type": "integer", "minimum": 0}

PATHS: Final[dict[str, Any]] = {
    "/v1/connections": {
        "get": {
            "operationId": "listConnections",
            "summary": "The app's open connections on every node, by peer id then age.",
            "description": (
                "Any secret key of the app may list them. `channel` keeps the connections "
                "subscribed to that channel or pattern (by its exact name), `peerId` those "
                "of one peer."
            ),
            "parameters": [
                _text("channel", "A channel or pattern name.", MAX_CHANNEL_BYTES),
                _text("peerId", "A peer id.", MAX_PEER_ID_LENGTH),
                _limit(),
            ],
            "responses": {"200": _ok("ConnectionList"), **_ERRORS, **_BACKEND_ERROR},
        }
    },
    "/v1/channels": {
        "get": {
            "operationId": "listChannels",
            "summary": "Channels with subscribers or recent publications, on every node.",
            "description": (
                "Ordered by name; only channels inside the key's channel_patterns. "
                "`subscribers` counts connections subscribed to exactly that channel "
                "(wildcard subscriptions appear under their pattern in GET /v1/connections); "
                "`peers` is the presence count; `messagesPerSecond` the recent publication "
                "rate over the whole cluster."
            ),
            "parameters": [
                _text("prefix", "Only channels whose name starts with this.", MAX_CHANNEL_BYTES),
                _limit(),
            ],
            "responses": {"200": _ok("ChannelList"), **_ERRORS, **_BACKEND_ERROR},
        }
    },
    "/v1/nodes": {
        "get": {
            "operationId": "listNodes",
            "summary": "The nodes that answered, with the app's connections and channels on each.",
            "responses": {"200": _ok("NodeList"), **_ERRORS, **_BACKEND_ERROR},
        }
    },
    "/v1/conversations": {
        "get": {
            "operationId": "listConversations",
            "summary": "Conversations of the projects this app may read, newest first.",
            "description": (
                "An app reads the projects its `conversation_projects` setting names. For the "
                "next page pass the last conversationId of this one as `before`."
            ),
            "parameters": [
                _text("projectId", "Only this project's conversations.", MAX_PROJECT_ID_LENGTH),
                {
                    "name": "state",
                    "in": "query",
                    "required": False,
                    "description": "A state, `live` (any state but the ended ones) or `ended`.",
                    "schema": {"enum": list(STATE_FILTERS)},
                },
                _limit(),
                _text(
                    "before", "The id of the last conversation of the previous page.", MAX_ID_LENGTH
                ),
            ],
            "responses": {
                "200": _ok("ConversationList"),
                **_ERRORS,
                "403": _error("project_not_authorized: projectId names a project of another app."),
            },
        }
    },
    "/v1/conversations/{conversationId}": {
        "get": {
            "operationId": "getConversation",
            "summary": "One conversation: its stage, state and variables.",
            "parameters": [_CONVERSATION_ID],
            "responses": {"200": _ok("Conversation"), **_ERRORS, **_NOT_FOUND},
        }
    },
    "/v1/conversations/{conversationId}/events": {
        "get": {
            "operationId": "listConversationEvents",
            "summary": "The conversation's stored event log, oldest first, a page at a time.",
            "parameters": [
                _CONVERSATION_ID,
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "Only events with a greater seq (the previous nextAfter).",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999},
                },
                _limit(MAX_EVENTS_PAGE),
            ],
            "responses": {"200": _ok("ConversationEvents"), **_ERRORS, **_NOT_FOUND},
        }
    },
}

_SUMMARY_FIELDS: Final = {
    "conversationId": {"type": "string"},
    "projectId": {"type": "string"},
    "userId": {"type": "string"},
    "stageId": {"type": "string"},
    "state": {"type": "string"},
    "startedAt": _NUMBER,
    "endedAt": {"type": ["number", "null"], "description": "Unix seconds; null while live."},
}

SCHEMAS: Final[dict[str, Any]] = {
    "ConnectionList": {
        "type": "object",
        "required": ["connections"],
        "properties": {
            "connections": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "peerId",
                        "channels",
                        "remoteAddr",
                        "connectedAt",
                        "node",
                        "framesIn",
                        "framesOut",
                    ],
                    "properties": {
                        "peerId": {"type": "string"},
                        "channels": {"type": "array", "items": {"type": "string"}},
                        "remoteAddr": {"type": ["string", "null"]},
                        "connectedAt": _NUMBER,
                        "node": {"type": "string"},
                        "framesIn": _COUNT,
                        "framesOut": _COUNT,
                    },
                },
            }
        },
    },
    "ChannelList": {
        "type": "object",
        "required": ["channels"],
        "properties": {
            "channels": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["channel", "subscribers", "peers", "messagesPerSecond"],
                    "properties": {
                        "channel": {"type": "string"},
                        "subscribers": _COUNT,
                        "peers": _COUNT,
                        "messagesPerSecond": {"type": "number", "minimum": 0},
                    },
                },
            }
        },
    },
    "NodeList": {
        "type": "object",
        "required": ["node", "nodes"],
        "properties": {
            "node": {"type": "string", "description": "The node that answered this request."},
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["node", "connections", "channels"],
                    "properties": {
                        "node": {"type": "string"},
                        "connections": _COUNT,
                        "channels": _COUNT,
                    },
                },
            },
        },
    },
    "ConversationList": {
        "type": "object",
        "required": ["conversations"],
        "properties": {
            "conversations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": list(_SUMMARY_FIELDS),
                    "properties": _SUMMARY_FIELDS,
                },
            }
        },
    },
    "Conversation": {
        "type": "object",
        "required": [*_SUMMARY_FIELDS, "agentId", "runningHere", "variables"],
        "properties": {
            **_SUMMARY_FIELDS,
            "agentId": {"type": ["string", "null"]},
            "runningHere": {
                "type": "boolean",
                "description": "Held by this node now (its state and variables are live).",
            },
            "variables": {
                "type": "object",
                "description": "Stage id -> variable name -> value.",
                "additionalProperties": {"type": "object"},
            },
        },
    },
    "ConversationEvents": {
        "type": "object",
        "required": ["conversationId", "events", "nextAfter"],
        "properties": {
            "conversationId": {"type": "string"},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "seq",
                        "eventType",
                        "eventData",
                        "inputTurnId",
                        "outputTurnId",
                        "createdAt",
                    ],
                    "properties": {
                        "seq": _COUNT,
                        "eventType": {"type": "string"},
                        "eventData": {"type": "object"},
                        "inputTurnId": {"type": ["string", "null"]},
                        "outputTurnId": {"type": ["string", "null"]},
                        "createdAt": _NUMBER,
                    },
                },
            },
            "nextAfter": {
                "type": ["integer", "null"],
                "description": "Pass as `after` for the next page; null on the last page.",
            },
        },
    },
}
