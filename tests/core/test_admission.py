"""The one admission rule of channels (WebSocket subscribe/publish and the REST API)."""

from __future__ import annotations

import pytest

from hubbub.core.principal import ChannelScope, channel_refusal
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.patterns import compile_pattern

ROOMS = ChannelScope(((compile_pattern("room-*"),),))
ALL = frozenset({"publish", "subscribe", "presence"})


@pytest.mark.parametrize(
    ("channel", "action", "actions", "expected"),
    [
        ("room-1", "publish", ALL, None),
        ("lobby", "publish", ALL, ErrorCode.CHANNEL_NOT_AUTHORIZED),
        ("room-1", "publish", frozenset({"subscribe"}), ErrorCode.ACTION_NOT_PERMITTED),
        # The spec's order: a reserved name first, then the action, then the scope.
        ("_system/x", "publish", frozenset(), ErrorCode.CHANNEL_RESERVED),
        ("lobby", "publish", frozenset(), ErrorCode.ACTION_NOT_PERMITTED),
    ],
)
def test_refusals_come_in_the_specs_order(
    channel: str, action: str, actions: frozenset[str], expected: ErrorCode | None
) -> None:
    assert channel_refusal(channel, action, actions, ROOMS) is expected


def test_a_pattern_must_lie_inside_the_scope() -> None:
    inside, wider = compile_pattern("room-*"), compile_pattern("*")
    assert channel_refusal("room-*", "subscribe", ALL, ROOMS, pattern=inside) is None
    refused = channel_refusal("*", "subscribe", ALL, ROOMS, pattern=wider)
    assert refused is ErrorCode.CHANNEL_NOT_AUTHORIZED
