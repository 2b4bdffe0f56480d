"""Client frame decoding and server frame encoding for the realtime protocol.

Decoding follows the spec's check order (section 4.6): not JSON / not an object / no string
``type`` -> ``malformed_message``; unknown ``type`` -> ``unknown_type``; then per-type field
validation. Authorization, limits and routing are the hub's business, not this module's.

Hubbub's extensions (spec 16.1, 16.2) add optional fields: ``subscribe.since`` /
``subscribe.rewind`` and ``publish.messageId``; a bad value is ``malformed_message`` naming the
field (the connection stays open). Server frames gain ``offset``/``epoch`` (and ack fields) only
for channels with history, so every other frame is byte-identical to the hosted service's.

The ``data`` of ``publish``/``send`` is kept as the raw JSON bytes the client sent
(:class:`msgspec.Raw`) and spliced into outgoing frames unchanged, so a payload is parsed once
and never re-encoded on the fan-out path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from hubbub.protocol.codes import ERROR_MESSAGES, ErrorCode
from hubbub.protocol.json_depth import TOO_DEEP_MESSAGE, exceeds_json_depth
from hubbub.protocol.validation import (
    is_valid_channel,
    is_valid_request_id,
    is_valid_target_peer_id,
)


class _WireFrame(msgspec.Struct):
    """Every field a client frame may carry; unknown fields are ignored, as the server must."""

    type: object = msgspec.UNSET
    requestId: object = msgspec.UNSET
    channel: object = msgspec.UNSET
    to: object = msgspec.UNSET
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    includeSenderMetadata: object = msgspec.UNSET
    since: object = msgspec.UNSET
    rewind: object = msgspec.UNSET
    messageId: object = msgspec.UNSET


_decoder: Final = msgspec.json.Decoder(_WireFrame)


# Spec 16.1/16.2 bounds.
MAX_MESSAGE_ID_LENGTH: Final = 128
MAX_REWIND: Final = 100
MAX_EPOCH_LENGTH: Final = 64
# The largest offset a client may name: JSON integers beyond 2**53 lose precision in JS.
MAX_OFFSET: Final = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Since:
    """``subscribe.since``: the last publication the client has (its offset and epoch)."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    request_id: str | None
    include_sender_metadata: bool
    since: Since | None = None
    rewind: int | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    data: bytes
    request_id: str | None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    data: bytes
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientFrame = Subscribe | Unsubscribe | Publish | Send | Ping


@dataclass(frozen=True, slots=True)
class FrameError:
    """A client frame that must be answered with an ``error`` frame."""

    code: ErrorCode
    request_id: str | None
    message: str
    # Whether the frame was recognisable enough to charge the sender's rate bucket with the
    # normal rules; malformed and unknown frames are charged too, so junk cannot flood.
    frame_type: str | None = None


def _error(code: ErrorCode, request_id: str | None, detail: str | None = None) -> FrameError:
    return FrameError(code, request_id, detail or ERROR_MESSAGES[code])


KNOWN_TYPES: Final = frozenset({"subscribe", "unsubscribe", "publish", "send", "ping"})


def decode_client_frame(payload: str | bytes) -> ClientFrame | FrameError:
    if exceeds_json_depth(payload):
        return _error(ErrorCode.MALFORMED_MESSAGE, None, TOO_DEEP_MESSAGE)
    try:
        wire = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return _error(ErrorCode.MALFORMED_MESSAGE, None)
    frame_type = wire.type
    request_id = (
        wire.requestId
        if isinstance(wire.requestId, str) and is_valid_request_id(wire.requestId)
        else None
    )
    if not isinstance(frame_type, str):
        return _error(ErrorCode.MALFORMED_MESSAGE, request_id)
    if frame_type not in KNOWN_TYPES:
        return FrameError(
            ErrorCode.UNKNOWN_TYPE, request_id, f"unknown message type: {frame_type[:64]}"
        )
    if frame_type == "ping":
        return Ping()
    if wire.requestId is not msgspec.UNSET and request_id is None:
        return _error(
            ErrorCode.MALFORMED_MESSAGE,
            None,
            "requestId must be a non-empty string of at most 128 characters",
        )

    if frame_type == "send":
        if not is_valid_target_peer_id(wire.to):
            return _error(ErrorCode.INVALID_PEER_ID, request_id)
        if wire.data is msgspec.UNSET:
            return _error(ErrorCode.MISSING_DATA, request_id)
        assert isinstance(wire.to, str)
        return Send(wire.to, bytes(wire.data), request_id)

    channel = wire.channel
    if not is_valid_channel(channel):
        return _error(ErrorCode.INVALID_CHANNEL, request_id)
    assert isinstance(channel, str)
    if frame_type == "subscribe":
        include = wire.includeSenderMetadata
        if include is msgspec.UNSET or include is None:
            include = False
        if not isinstance(include, bool):
            return _error(
                ErrorCode.MALFORMED_MESSAGE, request_id, "includeSenderMetadata must be a boolean"
            )
        return _subscribe(channel, request_id, include, wire)
    if frame_type == "unsubscribe":
        return Unsubscribe(channel, request_id)
    # publish
    if wire.data is msgspec.UNSET:
        return _error(ErrorCode.MISSING_DATA, request_id)
    message_id: str | None = None
    if wire.messageId is not msgspec.UNSET and wire.messageId is not None:
        if not is_valid_message_id(wire.messageId):
            return _error(ErrorCode.MALFORMED_MESSAGE, request_id, BAD_MESSAGE_ID)
        assert isinstance(wire.messageId, str)
        message_id = wire.messageId
    return Publish(channel, bytes(wire.data), request_id, message_id)


BAD_MESSAGE_ID: Final = (
    f"messageId must be a non-empty string of at most {MAX_MESSAGE_ID_LENGTH} characters"
)
BAD_SINCE: Final = (
    "since must be an object with an integer offset >= 0 and a non-empty string epoch"
)
BAD_REWIND: Final = f"rewind must be an integer from 0 to {MAX_REWIND}"
SINCE_AND_REWIND: Final = "since and rewind cannot be used together"


def is_valid_message_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID_LENGTH


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _subscribe(
    channel: str, request_id: str | None, include: bool, wire: _WireFrame
) -> Subscribe | FrameError:
    since: Since | None = None
    rewind: int | None = None
    if wire.since is not msgspec.UNSET and wire.since is not None:
        raw = wire.since
        offset = raw.get("offset") if isinstance(raw, dict) else None
        epoch = raw.get("epoch") if isinstance(raw, dict) else None
        if (
            not _is_int(offset)
            or not 0 <= offset <= MAX_OFFSET  # type: ignore[operator]
            or not isinstance(epoch, str)
            or not 0 < len(epoch) <= MAX_EPOCH_LENGTH
        ):
            return _error(ErrorCode.MALFORMED_MESSAGE, request_id, BAD_SINCE)
        assert isinstance(offset, int)
        since = Since(offset, epoch)
    if wire.rewind is not msgspec.UNSET and wire.rewind is not None:
        if not _is_int(wire.rewind) or not 0 <= wire.rewind <= MAX_REWIND:  # type: ignore[operator]
            return _error(ErrorCode.MALFORMED_MESSAGE, request_id, BAD_REWIND)
        assert isinstance(wire.rewind, int)
        rewind = wire.rewind
    if since is not None and rewind is not None:
        return _error(ErrorCode.MALFORMED_MESSAGE, request_id, SINCE_AND_REWIND)
    return Subscribe(channel, request_id, include, since, rewind)


# --- server frames --------------------------------------------------------------------------

_json: Final = msgspec.json.Encoder()


def encode_json(value: object) -> bytes:
    return _json.encode(value)


def welcome(
    peer_id: str,
    expires_at: int | None,
    server_time: int,
    max_message_size: int,
    metadata: bytes | None,
) -> bytes:
    parts = [
        b'{"type":"welcome","peerId":',
        _json.encode(peer_id),
        b',"expiresAt":',
        _json.encode(expires_at),
        b',"serverTime":',
        _json.encode(server_time),
        b',"maxMessageSize":',
        _json.encode(max_message_size),
    ]
    if metadata is not None:
        parts += [b',"metadata":', metadata]
    parts.append(b"}")
    return b"".join(parts)


def ack(request_id: str) -> bytes:
    return b'{"type":"ack","requestId":' + _json.encode(request_id) + b"}"


def ack_with(request_id: str, fields: dict[str, object]) -> bytes:
    """An ack carrying extension fields (spec 16.1, 16.2), in the order given."""
    parts = [b'{"type":"ack","requestId":', _json.encode(request_id)]
    for name, value in fields.items():
        parts += [b',"', name.encode(), b'":', _json.encode(value)]
    parts.append(b"}")
    return b"".join(parts)


def error(code: ErrorCode | str, message: str, request_id: str | None) -> bytes:
    """``code`` is an :class:`ErrorCode`, or a code a backend proxy chose (spec 16.4)."""
    body = b'{"type":"error","code":' + _json.encode(str(code))
    body += b',"message":' + _json.encode(message)
    if request_id is not None:
        body += b',"requestId":' + _json.encode(request_id)
    return body + b"}"


def message(
    channel: str,
    sender: str,
    data: bytes,
    sender_metadata: bytes | None,
    offset: int | None = None,
    epoch: str | None = None,
) -> bytes:
    """A channel message; ``offset``/``epoch`` only on channels with history (spec 16.1)."""
    parts = [
        b'{"type":"message","channel":',
        _json.encode(channel),
        b',"from":',
        _json.encode(sender),
        b',"data":',
        data,
    ]
    if sender_metadata is not None:
        parts += [b',"fromMetadata":', sender_metadata]
    if offset is not None:
        parts += [b',"offset":', _json.encode(offset), b',"epoch":', _json.encode(epoch)]
    parts.append(b"}")
    return b"".join(parts)


def direct(sender: str, data: bytes, sender_metadata: bytes | None) -> bytes:
    parts = [b'{"type":"direct","from":', _json.encode(sender), b',"data":', data]
    if sender_metadata is not None:
        parts += [b',"fromMetadata":', sender_metadata]
    parts.append(b"}")
    return b"".join(parts)


def presence_entry(peer_id: str, metadata: bytes | None) -> bytes:
    """One ``{peerId, metadata?}`` entry, pre-encoded so snapshots are cheap joins."""
    entry = b'{"peerId":' + _json.encode(peer_id)
    if metadata is not None:
        entry += b',"metadata":' + metadata
    return entry + b"}"


def presence(channel: str, joined: list[bytes], left: list[bytes]) -> bytes:
    return b"".join(
        [
            b'{"type":"presence","channel":',
            _json.encode(channel),
            b',"joined":[',
            b",".join(joined),
            b'],"left":[',
            b",".join(left),
            b"]}",
        ]
    )


def going_away(retry_after_ms: int) -> bytes:
    return b'{"type":"going_away","retryAfterMs":' + _json.encode(retry_after_ms) + b"}"


PONG: Final = b'{"type":"pong"}'
