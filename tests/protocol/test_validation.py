"""Field validation helpers and the code tables."""

from __future__ import annotations

import pytest

from hubbub.protocol.codes import CLOSE_REASONS, SLOW_CONSUMER_REASON, CloseCode, ErrorCode
from hubbub.protocol.validation import (
    has_control_chars,
    is_reserved_channel,
    is_valid_channel,
    is_valid_peer_id,
    is_valid_request_id,
    is_valid_target_peer_id,
)


@pytest.mark.parametrize("ch", [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]])
def test_control_characters_c0_del_and_c1(ch: str) -> None:
    assert has_control_chars(f"a{ch}b")


@pytest.mark.parametrize("ch", [" ", "~", "\xa0", "é", "\u2028", "😀"])
def test_printable_and_other_characters_are_not_control(ch: str) -> None:
    assert not has_control_chars(ch)


def test_channel_length_counts_utf8_bytes() -> None:
    assert is_valid_channel("a" * 256)
    assert not is_valid_channel("a" * 257)
    assert is_valid_channel("😀" * 64)  # 256 bytes
    assert not is_valid_channel("😀" * 64 + "a")
    assert not is_valid_channel("")
    assert not is_valid_channel(b"bytes")
    assert is_valid_channel("\ud800")  # a lone surrogate is measured, not a crash


@pytest.mark.parametrize(
    "name",
    ["_metered/x", "_METERED/x", "_Internal/a/b", "_system/", "_SyStEm/z"],
)
def test_reserved_prefixes_are_case_insensitive(name: str) -> None:
    assert is_reserved_channel(name)


@pytest.mark.parametrize("name", ["_metered", "metered/x", "x/_system/", "_systems/x", "_internal"])
def test_not_reserved(name: str) -> None:
    assert not is_reserved_channel(name)


def test_target_peer_id_is_what_the_sdk_checks() -> None:
    assert is_valid_target_peer_id("é" * 128)  # not ASCII, but the SDK would send it
    assert not is_valid_target_peer_id("é" * 129)
    assert not is_valid_target_peer_id("")
    assert not is_valid_target_peer_id("a\x85")
    assert not is_valid_target_peer_id(1)


def test_issued_peer_ids_are_printable_ascii() -> None:
    assert is_valid_peer_id("u_alice-123 ~!")
    assert is_valid_peer_id("x" * 128)
    assert not is_valid_peer_id("x" * 129)
    assert not is_valid_peer_id("")
    assert not is_valid_peer_id("é")
    assert not is_valid_peer_id("a\tb")
    assert not is_valid_peer_id(None)


def test_request_id() -> None:
    assert is_valid_request_id("r")
    assert is_valid_request_id("r" * 128)
    assert not is_valid_request_id("r" * 129)
    assert not is_valid_request_id("")
    assert not is_valid_request_id(1)


def test_code_values_are_the_wire_contract() -> None:
    assert {c.value for c in ErrorCode} == {
        "malformed_message",
        "unknown_type",
        "invalid_channel",
        "invalid_peer_id",
        "channel_not_authorized",
        "channel_reserved",
        "channel_limit_exceeded",
        "peer_not_found",
        "missing_data",
        "action_not_permitted",
        "over_message_quota",
        "backend_error",
        "internal_error",
    }
    assert {int(c) for c in CloseCode} == {
        1000,
        1001,
        1008,
        1009,
        4001,
        4002,
        4003,
        4010,
        4011,
        4012,
        4020,
    }
    assert SLOW_CONSUMER_REASON == "slow consumer"
    # Every close code the server sends has a reason that fits a close frame (123 bytes).
    assert all(0 < len(reason.encode()) <= 123 for reason in CLOSE_REASONS.values())
