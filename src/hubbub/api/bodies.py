"""Request bodies of the REST API: decoding and the bounds of spec 10.1 and 10.3.

Every problem is an :class:`ApiError` naming the field, with the status the spec gives it:
400 for a malformed value, 403 when a well-formed value asks for more than the key holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec

from hubbub.api.errors import ApiError, invalid_request
from hubbub.auth.keys import ApiKey
from hubbub.protocol.frames import MAX_MESSAGE_ID_LENGTH, MAX_OFFSET, is_valid_message_id
from hubbub.protocol.json_depth import TOO_DEEP_MESSAGE, exceeds_json_depth
from hubbub.protocol.patterns import PatternError, compile_pattern, covers
from hubbub.protocol.validation import (
    ACTIONS,
    MAX_METADATA_BYTES,
    MAX_PEER_METADATA_BYTES,
    is_reserved_channel,
    is_valid_channel,
    is_valid_peer_id,
)

MAX_BODY_BYTES: Final = 32 * 1024
MAX_TOKEN_CHANNELS: Final = 100
MAX_TOKEN_PERMISSIONS: Final = 16
DEFAULT_TOKEN_TTL_S: Final = 3600
MAX_TOKEN_TTL_S: Final = 86400
DEFAULT_SENDER: Final = "server"
MAX_HISTORY_LIMIT: Final = 100  # spec 16.1: the default and the cap

_encode = msgspec.json.Encoder().encode
_UNSET: Final = msgspec.UNSET


class _TokenBody(msgspec.Struct):
    peerId: object = _UNSET
    channels: object = _UNSET
    permissions: object = _UNSET
    expiresInSec: object = _UNSET
    metadata: object = _UNSET
    peerMetadata: object = _UNSET


class _PublishBody(msgspec.Struct):
    data: msgspec.Raw | msgspec.UnsetType = _UNSET
    sender: object = msgspec.field(name="from", default=_UNSET)
    peerMetadata: object = _UNSET
    messageId: object = _UNSET


_token_decoder: Final = msgspec.json.Decoder(_TokenBody)
_publish_decoder: Final = msgspec.json.Decoder(_PublishBody)


@dataclass(frozen=True, slots=True)
class TokenRequest:
    peer_id: str
    channels: list[str] | None
    permissions: list[str] | None
    expires_in_s: int
    metadata: dict[str, Any] | None
    peer_metadata: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PublishRequest:
    data: bytes
    sender: str
    sender_metadata: bytes | None
    message_id: str | None = None


_T = TypeVar("_T")


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    if not body.strip():
        raise invalid_request("the body must be a JSON object")
    if exceeds_json_depth(body):
        raise invalid_request(f"the body is not valid JSON: {TOO_DEEP_MESSAGE}")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError:
        raise invalid_request("the body must be a JSON object") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise invalid_request("the body is not valid JSON") from None


def _object(value: object, name: str, max_bytes: int) -> dict[str, Any] | None:
    if value is _UNSET or value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_request(f"{name} must be an object")
    if len(_encode(value)) > max_bytes:
        raise invalid_request(f"{name} is larger than {max_bytes} bytes")
    return value


def _string_list(value: object, name: str, max_items: int) -> list[str] | None:
    if value is _UNSET or value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_request(f"{name} must be an array of strings")
    if len(value) > max_items:
        raise invalid_request(f"{name} has more than {max_items} entries")
    return value


def parse_token_request(body: bytes, key: ApiKey) -> TokenRequest:
    fields = _decode(_token_decoder, body)
    if not is_valid_peer_id(fields.peerId):
        raise invalid_request("peerId must be 1-128 printable ASCII characters")
    assert isinstance(fields.peerId, str)

    channels = _string_list(fields.channels, "channels", MAX_TOKEN_CHANNELS)
    for channel in channels or ():
        if not is_valid_channel(channel):
            raise invalid_request(f"invalid channel {channel[:64]!r} in channels")
        if is_reserved_channel(channel):
            raise ApiError(400, "channel_reserved", f"channel {channel!r} uses a reserved prefix")
        try:
            pattern = compile_pattern(channel)
        except PatternError as exc:
            raise invalid_request(str(exc)) from None
        if not covers(key.patterns, pattern):
            raise ApiError(
                403, "channel_not_authorized", f"not authorized: {channel} is outside the key"
            )

    permissions = _string_list(fields.permissions, "permissions", MAX_TOKEN_PERMISSIONS)
    for permission in permissions or ():
        if permission not in ACTIONS:
            raise invalid_request(
                f"unknown permission {permission[:32]!r} (expected publish, subscribe, "
                "presence or send)"
            )
        if permission not in key.actions:
            raise ApiError(
                403, "action_not_permitted", f"the key does not hold the {permission!r} action"
            )

    expires_in = fields.expiresInSec
    if expires_in is _UNSET or expires_in is None:
        expires_in = DEFAULT_TOKEN_TTL_S
    # JSON has one number type: 3600.0 is the integer 3600 (as JSON Schema says too).
    if isinstance(expires_in, float) and expires_in.is_integer():
        expires_in = int(expires_in)
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 1 <= expires_in <= MAX_TOKEN_TTL_S
    ):
        raise invalid_request(f"expiresInSec must be an integer from 1 to {MAX_TOKEN_TTL_S}")

    return TokenRequest(
        peer_id=fields.peerId,
        channels=channels,
        permissions=permissions,
        expires_in_s=expires_in,
        metadata=_object(fields.metadata, "metadata", MAX_METADATA_BYTES),
        peer_metadata=_object(fields.peerMetadata, "peerMetadata", MAX_PEER_METADATA_BYTES),
    )


def parse_publish_request(body: bytes) -> PublishRequest:
    fields = _decode(_publish_decoder, body)
    if isinstance(fields.data, msgspec.UnsetType):
        raise invalid_request("data is required (null is allowed)")
    sender = fields.sender
    if sender is _UNSET or sender is None:
        sender = DEFAULT_SENDER
    if not is_valid_peer_id(sender):
        raise invalid_request("from must be 1-128 printable ASCII characters")
    assert isinstance(sender, str)
    metadata = _object(fields.peerMetadata, "peerMetadata", MAX_PEER_METADATA_BYTES)
    message_id = fields.messageId
    if message_id is _UNSET or message_id is None:
        message_id = None
    elif not is_valid_message_id(message_id):
        raise invalid_request(
            f"messageId must be a non-empty string of at most {MAX_MESSAGE_ID_LENGTH} characters"
        )
    assert message_id is None or isinstance(message_id, str)
    return PublishRequest(
        data=bytes(fields.data),
        sender=sender,
        sender_metadata=_encode(metadata) if metadata is not None else None,
        message_id=message_id,
    )


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    since: int | None
    limit: int


def parse_history_query(query: Mapping[str, str]) -> HistoryQuery:
    """``?limit=K&since=N`` of ``GET /v1/channels/{channel}/history`` (spec 16.1)."""

    def integer(name: str, low: int, high: int) -> int | None:
        raw = query.get(name)
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise invalid_request(f"{name} must be an integer from {low} to {high}")
        return int(raw)

    limit = integer("limit", 1, MAX_HISTORY_LIMIT)
    return HistoryQuery(
        integer("since", 0, MAX_OFFSET), MAX_HISTORY_LIMIT if limit is None else limit
    )
