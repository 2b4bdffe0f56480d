"""decode_client_frame for every frame type and error, and the exact server frame shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hubbub.protocol import frames
from hubbub.protocol.codes import ERROR_MESSAGES, ErrorCode
from hubbub.protocol.frames import (
    FrameError,
    Ping,
    Publish,
    Send,
    Subscribe,
    Unsubscribe,
    decode_client_frame,
)

MALFORMED = ErrorCode.MALFORMED_MESSAGE


def decode(value: Any) -> object:
    return decode_client_frame(json.dumps(value))


def err(code: ErrorCode, request_id: str | None = None) -> FrameError:
    return FrameError(code, request_id, ERROR_MESSAGES[code])


# --- valid frames ---------------------------------------------------------------------------


def test_subscribe() -> None:
    assert decode({"type": "subscribe", "channel": "room-42", "requestId": "r"}) == Subscribe(
        "room-42", "r", False
    )
    assert decode(
        {"type": "subscribe", "channel": "c", "requestId": "r", "includeSenderMetadata": True}
    ) == Subscribe("c", "r", True)
    assert decode({"type": "subscribe", "channel": "c", "includeSenderMetadata": None}) == (
        Subscribe("c", None, False)
    )


def test_unsubscribe() -> None:
    assert decode({"type": "unsubscribe", "channel": "c", "requestId": "r"}) == Unsubscribe(
        "c", "r"
    )
    assert decode({"type": "unsubscribe", "channel": "c"}) == Unsubscribe("c", None)


def test_publish_keeps_the_raw_data_bytes() -> None:
    frame = decode_client_frame(
        b'{"type":"publish","channel":"c","data": {"z":1, "a":[1.50, "\\u00e9"]},"requestId":"r"}'
    )
    assert frame == Publish("c", b'{"z":1, "a":[1.50, "\\u00e9"]}', "r")


@pytest.mark.parametrize("data", [None, 0, "", [], {}, False, "x" * 1000])
def test_publish_any_json_data_including_null(data: Any) -> None:
    frame = decode({"type": "publish", "channel": "c", "data": data})
    assert isinstance(frame, Publish)
    assert json.loads(frame.data) == data
    assert frame.request_id is None


def test_send() -> None:
    assert decode({"type": "send", "to": "bob", "data": None, "requestId": "r"}) == Send(
        "bob", b"null", "r"
    )


def test_ping_ignores_everything_else() -> None:
    assert decode({"type": "ping"}) == Ping()
    assert decode({"type": "ping", "requestId": 5, "channel": ""}) == Ping()


def test_unknown_fields_are_ignored() -> None:
    assert decode(
        {"type": "subscribe", "channel": "c", "requestId": "r", "extra": {"deep": [1]}, "v": 2}
    ) == Subscribe("c", "r", False)


def test_str_and_bytes_payloads_agree() -> None:
    text = '{"type":"publish","channel":"é","data":"ü"}'
    assert decode_client_frame(text) == decode_client_frame(text.encode())


# --- malformed_message ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    ["", "not json", "{", '{"type": "ping"} trailing', "null", "1", '"ping"', "[]", b"\xff\xfe"],
)
def test_not_json_or_not_an_object_is_malformed(payload: str | bytes) -> None:
    assert decode_client_frame(payload) == err(MALFORMED)


@pytest.mark.parametrize("type_value", [None, 1, True, [], {}])
def test_missing_or_non_string_type_is_malformed_and_echoes_a_valid_request_id(
    type_value: Any,
) -> None:
    assert decode({"type": type_value, "requestId": "r1"}) == err(MALFORMED, "r1")
    assert decode({"requestId": "r1"}) == err(MALFORMED, "r1")
    assert decode({"type": type_value, "requestId": 7}) == err(MALFORMED)


@pytest.mark.parametrize("request_id", ["", "x" * 129, 5, None, [], True])
def test_bad_request_id_is_malformed_without_echo(request_id: Any) -> None:
    frame = decode({"type": "subscribe", "channel": "c", "requestId": request_id})
    assert frame == FrameError(
        MALFORMED, None, "requestId must be a non-empty string of at most 128 characters"
    )


def test_request_id_of_128_characters_is_fine() -> None:
    frame = decode({"type": "unsubscribe", "channel": "c", "requestId": "r" * 128})
    assert frame == Unsubscribe("c", "r" * 128)


@pytest.mark.parametrize("value", [1, 0, "true", [], {}])
def test_non_bool_include_sender_metadata_is_malformed(value: Any) -> None:
    frame = decode(
        {"type": "subscribe", "channel": "c", "requestId": "r", "includeSenderMetadata": value}
    )
    assert frame == FrameError(MALFORMED, "r", "includeSenderMetadata must be a boolean")


# --- unknown_type ---------------------------------------------------------------------------


def test_unknown_type_names_it_and_echoes_request_id() -> None:
    assert decode({"type": "shout", "requestId": "r"}) == FrameError(
        ErrorCode.UNKNOWN_TYPE, "r", "unknown message type: shout"
    )
    assert decode({"type": "Subscribe"}) == FrameError(
        ErrorCode.UNKNOWN_TYPE, None, "unknown message type: Subscribe"
    )


def test_unknown_type_message_is_truncated() -> None:
    frame = decode({"type": "x" * 500})
    assert isinstance(frame, FrameError)
    assert frame.message == "unknown message type: " + "x" * 64


def test_unknown_type_with_a_bad_request_id_does_not_echo_it() -> None:
    assert decode({"type": "nope", "requestId": ""}) == FrameError(
        ErrorCode.UNKNOWN_TYPE, None, "unknown message type: nope"
    )


# --- invalid_channel ------------------------------------------------------------------------

BAD_CHANNELS: list[Any] = [
    "",
    "a" * 257,
    "é" * 129,  # 258 UTF-8 bytes, 129 characters
    "tab\there",
    "nul\x00",
    "del\x7f",
    "c1\x80",
    "c1\x9f",
    "line\nbreak",
    None,
    5,
    ["c"],
]


@pytest.mark.parametrize("channel", BAD_CHANNELS)
@pytest.mark.parametrize("frame_type", ["subscribe", "unsubscribe", "publish"])
def test_invalid_channel(frame_type: str, channel: Any) -> None:
    frame = decode({"type": frame_type, "channel": channel, "data": 1, "requestId": "r"})
    assert frame == err(ErrorCode.INVALID_CHANNEL, "r")


@pytest.mark.parametrize("frame_type", ["subscribe", "unsubscribe", "publish"])
def test_missing_channel_is_invalid_channel(frame_type: str) -> None:
    assert decode({"type": frame_type, "data": 1}) == err(ErrorCode.INVALID_CHANNEL)


@pytest.mark.parametrize("channel", ["a" * 256, "é" * 128, "€" * 85, "room/é/ü", "\xa0nbsp", "*"])
def test_channel_at_the_limits_is_valid(channel: str) -> None:
    assert decode({"type": "subscribe", "channel": channel}) == Subscribe(channel, None, False)


# --- invalid_peer_id and missing_data -------------------------------------------------------


@pytest.mark.parametrize("to", ["", "x" * 129, "a\x00", "a\x9b", None, 3, {}])
def test_invalid_peer_id(to: Any) -> None:
    assert decode({"type": "send", "to": to, "data": 1, "requestId": "r"}) == err(
        ErrorCode.INVALID_PEER_ID, "r"
    )
    assert decode({"type": "send", "data": 1}) == err(ErrorCode.INVALID_PEER_ID)


def test_peer_id_of_128_characters_is_fine() -> None:
    assert decode({"type": "send", "to": "p" * 128, "data": 1}) == Send("p" * 128, b"1", None)


def test_missing_data() -> None:
    assert decode({"type": "publish", "channel": "c", "requestId": "r"}) == err(
        ErrorCode.MISSING_DATA, "r"
    )
    assert decode({"type": "send", "to": "bob"}) == err(ErrorCode.MISSING_DATA)


def test_field_checks_come_in_the_documented_order() -> None:
    # invalid channel before missing data; invalid peer id before missing data
    assert decode({"type": "publish", "channel": ""}) == err(ErrorCode.INVALID_CHANNEL)
    assert decode({"type": "send", "to": ""}) == err(ErrorCode.INVALID_PEER_ID)
    # a bad requestId wins over field problems (it is part of "malformed")
    assert decode({"type": "publish", "requestId": ""}) == FrameError(
        MALFORMED, None, "requestId must be a non-empty string of at most 128 characters"
    )


# --- server frames (spec section 3) ---------------------------------------------------------


def parsed(raw: bytes) -> Any:
    return json.loads(raw)


def test_welcome_shapes() -> None:
    assert parsed(frames.welcome("alice", None, 1715535600, 65536, None)) == {
        "type": "welcome",
        "peerId": "alice",
        "expiresAt": None,
        "serverTime": 1715535600,
        "maxMessageSize": 65536,
    }
    raw = frames.welcome("a", 1715539200, 1, 2, b'{"iceServers":[{"urls":"stun:x"}]}')
    assert parsed(raw) == {
        "type": "welcome",
        "peerId": "a",
        "expiresAt": 1715539200,
        "serverTime": 1,
        "maxMessageSize": 2,
        "metadata": {"iceServers": [{"urls": "stun:x"}]},
    }
    assert b'"expiresAt":null' in frames.welcome("a", None, 1, 2, None)


def test_ack_shape() -> None:
    assert frames.ack('r"1') == b'{"type":"ack","requestId":"r\\"1"}'


def test_error_shapes() -> None:
    assert parsed(frames.error(ErrorCode.PEER_NOT_FOUND, "peer not found", "r")) == {
        "type": "error",
        "code": "peer_not_found",
        "message": "peer not found",
        "requestId": "r",
    }
    assert parsed(frames.error(ErrorCode.MALFORMED_MESSAGE, "m", None)) == {
        "type": "error",
        "code": "malformed_message",
        "message": "m",
    }


def test_message_shapes() -> None:
    assert parsed(frames.message("room/é", "bob", b"[1,null]", None)) == {
        "type": "message",
        "channel": "room/é",
        "from": "bob",
        "data": [1, None],
    }
    assert parsed(frames.message("c", "bob", b"null", b'{"n":1}')) == {
        "type": "message",
        "channel": "c",
        "from": "bob",
        "data": None,
        "fromMetadata": {"n": 1},
    }


def test_direct_shapes_have_no_channel() -> None:
    assert parsed(frames.direct("bob", b'"x"', None)) == {
        "type": "direct",
        "from": "bob",
        "data": "x",
    }
    assert parsed(frames.direct("bob", b"1", b"{}")) == {
        "type": "direct",
        "from": "bob",
        "data": 1,
        "fromMetadata": {},
    }


def test_presence_always_has_joined_and_left() -> None:
    assert parsed(frames.presence("c", [], [])) == {
        "type": "presence",
        "channel": "c",
        "joined": [],
        "left": [],
    }
    alice = frames.presence_entry("alice", b'{"name":"A"}')
    bob = frames.presence_entry("bob", None)
    assert parsed(frames.presence("c", [alice, bob], [bob])) == {
        "type": "presence",
        "channel": "c",
        "joined": [{"peerId": "alice", "metadata": {"name": "A"}}, {"peerId": "bob"}],
        "left": [{"peerId": "bob"}],
    }


def test_going_away_and_pong() -> None:
    assert parsed(frames.going_away(1234)) == {"type": "going_away", "retryAfterMs": 1234}
    assert parsed(frames.PONG) == {"type": "pong"}


def test_encode_json_escapes_control_characters() -> None:
    assert json.loads(frames.encode_json({"a": "\x00\n"})) == {"a": "\x00\n"}


def test_every_error_code_has_a_message() -> None:
    assert set(ERROR_MESSAGES) == set(ErrorCode)


# --- history and idempotent publish (spec 16.1, 16.2) ---------------------------------------


def test_subscribe_with_since_or_rewind() -> None:
    since = {"type": "subscribe", "channel": "c", "since": {"offset": 7, "epoch": "e1"}}
    assert decode(since) == Subscribe("c", None, False, frames.Since(7, "e1"))
    assert decode({"type": "subscribe", "channel": "c", "rewind": 0}) == Subscribe(
        "c", None, False, None, 0
    )
    assert decode({"type": "subscribe", "channel": "c", "since": None, "rewind": None}) == (
        Subscribe("c", None, False)
    )


@pytest.mark.parametrize(
    "since",
    [
        {"offset": "1", "epoch": "e"},
        {"offset": 1.0, "epoch": "e"},
        {"offset": True, "epoch": "e"},
        {"offset": -1, "epoch": "e"},
        {"offset": 2**53, "epoch": "e"},
        {"offset": 1},
        {"epoch": "e"},
        {"offset": 1, "epoch": ""},
        {"offset": 1, "epoch": "e" * 65},
        {"offset": 1, "epoch": 5},
        [1, "e"],
        "1:e",
    ],
)
def test_bad_since_is_malformed(since: Any) -> None:
    frame = decode({"type": "subscribe", "channel": "c", "requestId": "r", "since": since})
    assert frame == FrameError(MALFORMED, "r", frames.BAD_SINCE)


@pytest.mark.parametrize("rewind", [-1, 101, 2.5, "3", True, {}])
def test_bad_rewind_is_malformed(rewind: Any) -> None:
    frame = decode({"type": "subscribe", "channel": "c", "requestId": "r", "rewind": rewind})
    assert frame == FrameError(MALFORMED, "r", frames.BAD_REWIND)


def test_since_and_rewind_together_are_malformed() -> None:
    frame = decode(
        {"type": "subscribe", "channel": "c", "since": {"offset": 1, "epoch": "e"}, "rewind": 1}
    )
    assert frame == FrameError(MALFORMED, None, frames.SINCE_AND_REWIND)


def test_publish_message_id() -> None:
    frame = decode({"type": "publish", "channel": "c", "data": 1, "messageId": "m" * 128})
    assert frame == Publish("c", b"1", None, "m" * 128)


@pytest.mark.parametrize("message_id", ["", "m" * 129, 1, ["m"], {"id": "m"}])
def test_bad_message_id_is_malformed(message_id: Any) -> None:
    frame = decode(
        {"type": "publish", "channel": "c", "data": 1, "requestId": "r", "messageId": message_id}
    )
    assert frame == FrameError(MALFORMED, "r", frames.BAD_MESSAGE_ID)


def test_history_fields_on_server_frames() -> None:
    assert frames.message("c", "a", b"1", None, 5, "e") == (
        b'{"type":"message","channel":"c","from":"a","data":1,"offset":5,"epoch":"e"}'
    )
    assert frames.message("c", "a", b"1", b"{}", 5, "e") == (
        b'{"type":"message","channel":"c","from":"a","data":1,"fromMetadata":{},'
        b'"offset":5,"epoch":"e"}'
    )
    assert frames.ack_with("r", {"recovered": True, "offset": 3, "epoch": "e"}) == (
        b'{"type":"ack","requestId":"r","recovered":true,"offset":3,"epoch":"e"}'
    )
