"""The OpenAPI 3.1 description of the REST control plane, served at ``GET /v1/openapi.json``.

It describes exactly what :mod:`hubbub.api.rest` implements; the test suite runs Schemathesis
against a live server with it, so a drift between the two fails the build.
"""

from __future__ import annotations

from typing import Any, Final

from hubbub.api import openapi_commands, openapi_listing
from hubbub.api.bodies import (
    DEFAULT_SENDER,
    DEFAULT_TOKEN_TTL_S,
    MAX_BODY_BYTES,
    MAX_HISTORY_LIMIT,
    MAX_TOKEN_CHANNELS,
    MAX_TOKEN_PERMISSIONS,
    MAX_TOKEN_TTL_S,
)
from hubbub.api.openapi_parts import error_response as _error
from hubbub.api.openapi_parts import ok_response as _ok
from hubbub.protocol.frames import MAX_MESSAGE_ID_LENGTH, MAX_OFFSET
from hubbub.protocol.validation import (
    MAX_CHANNEL_BYTES,
    MAX_METADATA_BYTES,
    MAX_PEER_ID_LENGTH,
    MAX_PEER_METADATA_BYTES,
)

_PEER_ID: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PEER_ID_LENGTH,
    "pattern": "^[\\x20-\\x7e]+$",
    "description": "Printable ASCII, 1-128 characters.",
}
_CHANNEL: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_CHANNEL_BYTES,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$",
    "description": (
        "At most 256 bytes of UTF-8, no control characters. Names starting with _metered/, "
        "_internal/ or _system/ (any case) are reserved."
    ),
}
_COUNT: Final = {"type": "integer", "minimum": 0}
_LIMIT: Final = {"type": ["integer", "null"], "minimum": 0}


_COMMON_ERRORS: Final = {
    "401": _error("Missing, malformed, unknown or wrong credentials (always the same answer)."),
    "404": _error("No such endpoint (for example a path that does not name a channel)."),
    "429": _error("Too many requests from this address or with this key; retry after 1 s."),
}
_BODY_ERRORS: Final = {
    "413": _error(f"The body is larger than {MAX_BODY_BYTES} bytes."),
}
_BACKEND_ERROR: Final = {"503": _error("The message backend is unavailable; retry shortly.")}


def _json_body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_CHANNEL_PARAMETER: Final = {
    "name": "channel",
    "in": "path",
    "required": True,
    "description": "The channel, URL-encoded (app%2Froom-1); a raw slash is accepted too.",
    "schema": _CHANNEL,
}

OPENAPI_DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Hubbub REST control plane",
        "version": "1",
        "description": (
            "Mint tokens, publish from the server, list channel members, read channel "
            "history, disconnect peers, read usage, and list connections, channels, nodes and "
            "conversations. Authenticate with a secret key: "
            "`Authorization: Bearer <key id>:<secret>` (or a bare `sk_live_…` secret). "
            'Every error body is `{"error": <code>, "message": <text>}`.'
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"secretKey": []}],
    "paths": {
        "/v1/tokens": {
            "post": {
                "operationId": "createToken",
                "summary": "Mint a JWT for a peer, signed with the calling key.",
                "requestBody": _json_body("TokenRequest"),
                "responses": {
                    "200": _ok("TokenResponse"),
                    "400": _error("invalid_request, or channel_reserved for a channels entry."),
                    "403": _error(
                        "channel_not_authorized (a channels entry outside the key's patterns) "
                        "or action_not_permitted (a permission the key lacks)."
                    ),
                    **_COMMON_ERRORS,
                    **_BODY_ERRORS,
                },
            }
        },
        "/v1/channels/{channel}/peers": {
            "get": {
                "operationId": "listChannelPeers",
                "summary": "The peers present in a channel (needs the presence action).",
                "parameters": [_CHANNEL_PARAMETER],
                "responses": {
                    "200": _ok("ChannelPeers"),
                    "400": _error("invalid_request or channel_reserved."),
                    "403": _error("action_not_permitted or channel_not_authorized."),
                    **_COMMON_ERRORS,
                    **_BACKEND_ERROR,
                },
            }
        },
        "/v1/channels/{channel}/publish": {
            "post": {
                "operationId": "publishToChannel",
                "summary": "Publish a message to every subscriber (needs the publish action).",
                "description": "Counts toward the app's message usage like a client publish.",
                "parameters": [_CHANNEL_PARAMETER],
                "requestBody": _json_body("PublishRequest"),
                "responses": {
                    "200": _ok("PublishResponse"),
                    "400": _error("invalid_request or channel_reserved."),
                    "403": _error("action_not_permitted or channel_not_authorized."),
                    **_COMMON_ERRORS,
                    **_BODY_ERRORS,
                    **_BACKEND_ERROR,
                },
            }
        },
        "/v1/channels/{channel}/history": {
            "get": {
                "operationId": "getChannelHistory",
                "summary": "Retained publications of a channel (needs the subscribe action).",
                "description": (
                    "Oldest first. With since=N: the publications after offset N (at most "
                    "limit); without: the newest limit publications. A channel that keeps no "
                    "history answers an empty list with a null epoch."
                ),
                "parameters": [
                    _CHANNEL_PARAMETER,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_HISTORY_LIMIT,
                            "default": MAX_HISTORY_LIMIT,
                        },
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                    },
                ],
                "responses": {
                    "200": _ok("ChannelHistory"),
                    "400": _error("invalid_request (channel, limit or since) or channel_reserved."),
                    "403": _error("action_not_permitted or channel_not_authorized."),
                    **_COMMON_ERRORS,
                    **_BACKEND_ERROR,
                },
            }
        },
        "/v1/peers/{peerId}": {
            "delete": {
                "operationId": "disconnectPeer",
                "summary": "Close every connection of a peer in the key's app with code 4020.",
                "parameters": [
                    {"name": "peerId", "in": "path", "required": True, "schema": _PEER_ID}
                ],
                "responses": {
                    "200": _ok("DisconnectResponse"),
                    "400": _error("invalid_request: the peerId is not printable ASCII 1-128."),
                    **_COMMON_ERRORS,
                    **_BACKEND_ERROR,
                },
            }
        },
        "/v1/usage": {
            "get": {
                "operationId": "getUsage",
                "summary": "Connections and messages of the key's app in the current period.",
                "responses": {"200": _ok("Usage"), **_COMMON_ERRORS, **_BACKEND_ERROR},
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "429": _COMMON_ERRORS["429"],
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "secretKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "`<secret key id>:<secret>`, or a bare `sk_live_…` secret.",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            },
            "TokenRequest": {
                "type": "object",
                "required": ["peerId"],
                "properties": {
                    "peerId": {**_PEER_ID, "description": "Becomes the token's sub."},
                    "channels": {
                        "type": ["array", "null"],
                        "maxItems": MAX_TOKEN_CHANNELS,
                        "items": _CHANNEL,
                        "description": (
                            "Channels or patterns (* and **) the token may use; each must lie "
                            "inside the key's channel_patterns. Default: the key's patterns."
                        ),
                    },
                    "permissions": {
                        "type": ["array", "null"],
                        "maxItems": MAX_TOKEN_PERMISSIONS,
                        "items": {"enum": ["publish", "subscribe", "presence", "send"]},
                        "description": "A subset of the key's actions. Default: all of them.",
                    },
                    "expiresInSec": {
                        "type": ["integer", "null"],
                        "minimum": 1,
                        "maximum": MAX_TOKEN_TTL_S,
                        "default": DEFAULT_TOKEN_TTL_S,
                    },
                    "metadata": {
                        "type": ["object", "null"],
                        "description": (
                            f"At most {MAX_METADATA_BYTES} bytes as JSON; shown to the peer in "
                            "welcome.metadata. The key's iceServers are added unless it has its "
                            "own."
                        ),
                    },
                    "peerMetadata": {
                        "type": ["object", "null"],
                        "description": (
                            f"At most {MAX_PEER_METADATA_BYTES} bytes as JSON; shown to others in "
                            "presence and as fromMetadata."
                        ),
                    },
                },
            },
            "TokenResponse": {
                "type": "object",
                "required": ["token", "expiresAt"],
                "properties": {
                    "token": {"type": "string"},
                    "expiresAt": {"type": "integer", "description": "Unix seconds."},
                },
            },
            "PublishRequest": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {"description": "Any JSON value, null included."},
                    "from": {
                        "oneOf": [_PEER_ID, {"type": "null"}],
                        "description": f'message.from (default "{DEFAULT_SENDER}").',
                    },
                    "peerMetadata": {
                        "type": ["object", "null"],
                        "description": (
                            f"At most {MAX_PEER_METADATA_BYTES} bytes as JSON; sent as "
                            "fromMetadata to subscribers that asked for sender metadata."
                        ),
                    },
                    "messageId": {
                        "type": ["string", "null"],
                        "minLength": 1,
                        "maxLength": MAX_MESSAGE_ID_LENGTH,
                        "description": (
                            "Idempotency key: a repeat within the server's dedup_window_s is "
                            "not delivered again and is answered with duplicate: true."
                        ),
                    },
                },
            },
            "PublishResponse": {
                "type": "object",
                "required": ["channel", "delivered"],
                "properties": {
                    "channel": {"type": "string"},
                    "delivered": {
                        **_COUNT,
                        "description": "Connections the message reached, on every node.",
                    },
                    "offset": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "On a channel with history: the publication's offset.",
                    },
                    "epoch": {"type": "string", "description": "With offset: its epoch."},
                    "duplicate": {
                        "type": "boolean",
                        "const": True,
                        "description": "The messageId was seen already: nothing was delivered.",
                    },
                },
            },
            "ChannelHistory": {
                "type": "object",
                "required": ["channel", "epoch", "offset", "publications"],
                "properties": {
                    "channel": {"type": "string"},
                    "epoch": {
                        "type": ["string", "null"],
                        "description": "null when the channel keeps no history.",
                    },
                    "offset": {**_COUNT, "description": "The channel's newest offset."},
                    "publications": {
                        "type": "array",
                        "maxItems": MAX_HISTORY_LIMIT,
                        "items": {
                            "type": "object",
                            "required": ["offset", "data", "from", "timestamp"],
                            "properties": {
                                "offset": {"type": "integer", "minimum": 1},
                                "data": {"description": "The published JSON value."},
                                "from": {"type": "string"},
                                "fromMetadata": {"type": "object"},
                                "timestamp": {
                                    "type": "integer",
                                    "description": "When it was published, Unix milliseconds.",
                                },
                            },
                        },
                    },
                },
            },
            "ChannelPeers": {
                "type": "object",
                "required": ["channel", "peers"],
                "properties": {
                    "channel": {"type": "string"},
                    "peers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["peerId"],
                            "properties": {
                                "peerId": {"type": "string"},
                                "metadata": {"type": "object"},
                            },
                        },
                    },
                },
            },
            "DisconnectResponse": {
                "type": "object",
                "required": ["peerId", "closed"],
                "properties": {
                    "peerId": {"type": "string"},
                    "closed": {
                        **_COUNT,
                        "description": "Connections closed on every node (0 is normal).",
                    },
                },
            },
            "Usage": {
                "type": "object",
                "required": [
                    "appId",
                    "periodStartUnix",
                    "periodEndUnix",
                    "concurrentNow",
                    "peakConcurrent",
                    "messagesUsed",
                    "overageMessages",
                    "overageConnections",
                    "plan",
                ],
                "properties": {
                    "appId": {"type": "string"},
                    "periodStartUnix": {"type": ["integer", "null"]},
                    "periodEndUnix": {"type": ["integer", "null"]},
                    "concurrentNow": _COUNT,
                    "peakConcurrent": _COUNT,
                    "messagesUsed": {
                        **_COUNT,
                        "description": "Includes publishes and sends refused over the quota.",
                    },
                    "overageMessages": _COUNT,
                    "overageConnections": _COUNT,
                    "plan": {
                        "type": "object",
                        "required": [
                            "name",
                            "maxConcurrentConnections",
                            "maxMessagesPerPeriod",
                            "overagesAllowed",
                            "overagesEnabled",
                        ],
                        "properties": {
                            "name": {"type": ["string", "null"]},
                            "maxConcurrentConnections": _LIMIT,
                            "maxMessagesPerPeriod": _LIMIT,
                            "overagesAllowed": {"type": "boolean"},
                            "overagesEnabled": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}

# The listing endpoints are described in their own module.
OPENAPI_DOCUMENT["paths"].update(openapi_listing.PATHS)
OPENAPI_DOCUMENT["components"]["schemas"].update(openapi_listing.SCHEMAS)
# And the conversation bus's commands in theirs.
OPENAPI_DOCUMENT["paths"].update(openapi_commands.PATHS)
OPENAPI_DOCUMENT["components"]["schemas"].update(openapi_commands.SCHEMAS)
