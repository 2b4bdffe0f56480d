"""The nesting bound every client-reachable JSON decoder checks first (issue 11, deep JSON).

~1,000 levels used to raise RecursionError out of the decoder: the socket dropped with a
traceback, REST answered 500. The bound turns it into the decoder's ordinary "malformed" error.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import FrameError, Publish, decode_client_frame
from hubbub.protocol.json_depth import MAX_JSON_DEPTH, TOO_DEEP_MESSAGE, exceeds_json_depth


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


@pytest.mark.parametrize("kind", [str, bytes])
def test_depth_at_the_bound_passes_and_one_more_is_refused(kind: type) -> None:
    def doc(text: str) -> str | bytes:
        return text if kind is str else text.encode()

    assert not exceeds_json_depth(doc(nested(MAX_JSON_DEPTH)))
    assert exceeds_json_depth(doc(nested(MAX_JSON_DEPTH + 1)))
    objects = '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)
    assert exceeds_json_depth(doc(objects))


def test_many_brackets_side_by_side_are_not_deep() -> None:
    wide = "[" + ",".join(["[]"] * 5000) + "]"
    assert not exceeds_json_depth(wide)
    assert not exceeds_json_depth(wide.encode())


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"s": "[" * 5000, "t": 'x\\"[[[' * 300})
    assert not exceeds_json_depth(text)
    assert not exceeds_json_depth(text.encode())


@given(st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c, max_size=3)))
@settings(max_examples=200, deadline=None)
def test_agrees_with_the_real_depth_of_generated_json(value: object) -> None:
    def depth(v: object) -> int:
        return 1 + max(map(depth, v), default=0) if isinstance(v, list) else 0

    text = json.dumps(value)
    for bound in (0, 1, 2, 3):
        assert exceeds_json_depth(text, bound) == (depth(value) > bound)


@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize("field", ["data", "since", "channel"])
def test_a_deep_realtime_frame_is_malformed_not_a_recursion_error(depth: int, field: str) -> None:
    frame = f'{{"type":"publish","channel":"a","requestId":"r1","{field}":{nested(depth)}}}'
    for payload in (frame, frame.encode()):
        result = decode_client_frame(payload)
        assert isinstance(result, FrameError)
        assert (result.code, result.message) == (ErrorCode.MALFORMED_MESSAGE, TOO_DEEP_MESSAGE)


def test_a_frame_just_inside_the_bound_still_decodes() -> None:
    data = nested(MAX_JSON_DEPTH - 1)
    result = decode_client_frame(f'{{"type":"publish","channel":"a","data":{data}}}')
    assert isinstance(result, Publish)
    assert result.data == data.encode()
