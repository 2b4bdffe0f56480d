"""Structural fuzzing of the realtime frame decoder (issue 11): any text or bytes a client can
send decodes to a frame or to a documented error, never an exception, and what it accepts
honours the spec's per-field rules. Short enough for CI."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    FrameError,
    Ping,
    Publish,
    Send,
    Subscribe,
    Unsubscribe,
    decode_client_frame,
)
from hubbub.protocol.validation import is_valid_channel, is_valid_request_id

FIELDS = [
    "type",
    "requestId",
    "channel",
    "to",
    "data",
    "includeSenderMetadata",
    "since",
    "rewind",
    "messageId",
]
TYPES = ["subscribe", "unsubscribe", "publish", "send", "ping", "shout", "", "PING"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(TYPES),
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.fixed_dictionaries({"offset": json_values, "epoch": json_values}),
)
frames = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=len(FIELDS))
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(result: object) -> None:
    if isinstance(result, FrameError):
        assert isinstance(result.code, ErrorCode)
        assert isinstance(result.message, str) and result.message
        assert result.request_id is None or is_valid_request_id(result.request_id)
        return
    assert isinstance(result, Subscribe | Unsubscribe | Publish | Send | Ping)
    if isinstance(result, Subscribe | Unsubscribe | Publish):
        assert is_valid_channel(result.channel)
    if isinstance(result, Publish | Send):
        json.loads(result.data)  # the raw payload is valid JSON


@given(frames)
@SETTINGS
def test_structured_frames_decode_or_get_a_documented_error(frame: dict[str, Any]) -> None:
    text = json.dumps(frame)
    _check(decode_client_frame(text))
    _check(decode_client_frame(text.encode()))


@given(frames, st.data())
@SETTINGS
def test_mutated_frames_never_raise(frame: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(json.dumps(frame).encode())
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        at = data.draw(st.integers(0, len(raw)))
        if action == "flip" and raw:
            raw[min(at, len(raw) - 1)] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at:]
        elif action == "insert":
            raw[at:at] = data.draw(st.sampled_from([b"[", b"{", b'"', b"\\", b"\x00", b"\xff"]))
        else:
            raw[at:at] = raw[: data.draw(st.integers(0, 64))]
    _check(decode_client_frame(bytes(raw)))


@given(st.binary(max_size=512) | st.text(max_size=512))
@SETTINGS
def test_arbitrary_input_never_raises(payload: bytes | str) -> None:
    _check(decode_client_frame(payload))


@given(st.integers(100, 3000), st.sampled_from(["[", '{"a":']), st.sampled_from(FIELDS))
@settings(max_examples=50, deadline=None)
def test_deep_nesting_anywhere_is_malformed(depth: int, opener: str, field: str) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    result = decode_client_frame(f'{{"type":"publish","channel":"a","{field}":{nested}}}')
    if depth > 128:
        assert isinstance(result, FrameError)
        assert result.code is ErrorCode.MALFORMED_MESSAGE
    else:
        _check(result)
