"""Error codes (``error.code``) and WebSocket close codes of the realtime protocol.

Both are part of the wire contract with the official Metered SDKs: the SDK treats some close
codes as terminal (4001, 4003, 4012, 4020) and others as "reconnect" (1001, 1008, 1009, 4002,
4010, 4011), so each code carries its reconnect policy by construction.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    MALFORMED_MESSAGE = "malformed_message"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_CHANNEL = "invalid_channel"
    INVALID_PEER_ID = "invalid_peer_id"
    CHANNEL_NOT_AUTHORIZED = "channel_not_authorized"
    CHANNEL_RESERVED = "channel_reserved"
    CHANNEL_LIMIT_EXCEEDED = "channel_limit_exceeded"
    PEER_NOT_FOUND = "peer_not_found"
    MISSING_DATA = "missing_data"
    ACTION_NOT_PERMITTED = "action_not_permitted"
    OVER_MESSAGE_QUOTA = "over_message_quota"
    BACKEND_ERROR = "backend_error"
    INTERNAL_ERROR = "internal_error"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INVALID_TOKEN = 4001
    TOKEN_EXPIRED = 4002
    CHANNEL_NOT_AUTHORIZED = 4003
    OVER_CONCURRENT_LIMIT = 4010
    OVER_MESSAGE_RATE = 4011
    ACCOUNT_SUSPENDED = 4012
    ADMIN_DISCONNECT = 4020


# Close reasons are free-form for the SDK; these are the texts Hubbub sends.
CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.GOING_AWAY: "server going away",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.INVALID_TOKEN: "invalid token",
    CloseCode.TOKEN_EXPIRED: "token expired",
    CloseCode.OVER_CONCURRENT_LIMIT: "over concurrent connection limit",
    CloseCode.OVER_MESSAGE_RATE: "over message rate",
    CloseCode.ADMIN_DISCONNECT: "disconnected by admin",
}

SLOW_CONSUMER_REASON = "slow consumer"

# Human-readable default texts for error frames (informational; clients key on the code).
ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED_MESSAGE: "frame must be a JSON object with a string 'type'",
    ErrorCode.UNKNOWN_TYPE: "unknown message type",
    ErrorCode.INVALID_CHANNEL: "invalid channel name",
    ErrorCode.INVALID_PEER_ID: "invalid peer id",
    ErrorCode.CHANNEL_NOT_AUTHORIZED: "not authorized",
    ErrorCode.CHANNEL_RESERVED: "channel name uses a reserved prefix",
    ErrorCode.CHANNEL_LIMIT_EXCEEDED: "too many subscriptions on this connection",
    ErrorCode.PEER_NOT_FOUND: "peer not found",
    ErrorCode.MISSING_DATA: "missing 'data' field",
    ErrorCode.ACTION_NOT_PERMITTED: "action not permitted",
    ErrorCode.OVER_MESSAGE_QUOTA: "message quota exhausted",
    ErrorCode.BACKEND_ERROR: "transient backend error, retry shortly",
    ErrorCode.INTERNAL_ERROR: "internal error",
}
