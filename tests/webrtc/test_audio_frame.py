"""The binary audio frame codec and the outbound frame splitter (spec section 6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol.audio_frame import (
    BYTES_PER_SECOND,
    MAX_AUDIO_BYTES_PER_FRAME,
    AudioFrame,
    AudioFrameSplitter,
    DroppedFrame,
    DropReason,
    decode_audio_frame,
    encode_audio_frame,
    encode_turn_id_prefix,
    frame_layout,
)


def test_layout_on_the_wire() -> None:
    assert encode_audio_frame("turn_1", b"\x01\x02") == b"\x06\x00turn_1\x01\x02"


def test_decode_reads_turn_id_and_audio() -> None:
    assert decode_audio_frame(b"\x03\x00abc\xff\x00") == AudioFrame("abc", b"\xff\x00")


def test_non_ascii_turn_id_counts_bytes_not_characters() -> None:
    frame = encode_audio_frame("tür", b"x")
    assert frame[:2] == (4).to_bytes(2, "little")
    assert decode_audio_frame(frame) == AudioFrame("tür", b"x")


def test_frame_with_turn_id_and_no_audio_decodes_to_empty_audio() -> None:
    assert decode_audio_frame(b"\x01\x00a") == AudioFrame("a", b"")


def test_empty_turn_id_decodes_and_is_left_to_the_engine() -> None:
    assert decode_audio_frame(b"\x00\x00pcm") == AudioFrame("", b"pcm")
    assert decode_audio_frame(b"\x00\x00") == AudioFrame("", b"")


@pytest.mark.parametrize("data", [b"", b"\x05"])
def test_shorter_than_the_prefix_is_dropped(data: bytes) -> None:
    assert decode_audio_frame(data) == DroppedFrame(DropReason.TOO_SHORT)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00",  # announces 1 byte, holds none
        b"\x04\x00abc",  # one short
        b"\xff\xffabc",  # the largest announcement
        b"\x00\x01" + b"a" * 255,  # 256 announced (little-endian high byte), 255 present
    ],
)
def test_turn_id_overrunning_the_frame_is_dropped(data: bytes) -> None:
    assert decode_audio_frame(data) == DroppedFrame(DropReason.TURN_ID_OVERRUN)


@pytest.mark.parametrize(
    "turn_id_bytes",
    [b"\xff", b"\xc3", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"ok\x80"],
)
def test_turn_id_not_utf8_is_dropped(turn_id_bytes: bytes) -> None:
    data = len(turn_id_bytes).to_bytes(2, "little") + turn_id_bytes + b"audio"
    assert decode_audio_frame(data) == DroppedFrame(DropReason.TURN_ID_NOT_UTF8)


def test_decode_accepts_memoryview_and_bytearray() -> None:
    frame = encode_audio_frame("t", b"abc")
    assert decode_audio_frame(bytearray(frame)) == AudioFrame("t", b"abc")
    assert decode_audio_frame(memoryview(frame)) == AudioFrame("t", b"abc")


def test_turn_id_too_long_to_encode_is_a_programming_error() -> None:
    encode_turn_id_prefix("a" * 0xFFFF)
    with pytest.raises(ValueError, match="at most 65535"):
        encode_turn_id_prefix("a" * 0x10000)


@given(turn_id=st.text(max_size=200), audio=st.binary(max_size=2000))
def test_round_trip(turn_id: str, audio: bytes) -> None:
    assert decode_audio_frame(encode_audio_frame(turn_id, audio)) == AudioFrame(turn_id, audio)


@given(data=st.binary(max_size=300))
def test_decode_never_raises(data: bytes) -> None:
    result = decode_audio_frame(data)
    if isinstance(result, AudioFrame):
        assert encode_audio_frame(result.turn_id, result.audio) == data


@pytest.mark.parametrize(
    ("audio_format", "frame_bytes", "frame_ms"),
    [
        ("pcm_8000", 320, 20),
        ("pcm_16000", 640, 20),
        ("pcm_22050", 882, 20),
        ("pcm_24000", 960, 20),
        ("pcm_44100", 882, 10),  # 20 ms would be 1,764 bytes: over the SCTP-safe size
        ("pcm_48000", 960, 10),
        ("mulaw", 160, 20),
        ("alaw", 160, 20),
    ],
)
def test_frame_layout(audio_format: str, frame_bytes: int, frame_ms: int) -> None:
    layout = frame_layout(audio_format)
    assert layout is not None
    assert layout.frame_bytes == frame_bytes
    assert layout.frame_bytes <= MAX_AUDIO_BYTES_PER_FRAME
    assert layout.frame_duration_s == pytest.approx(frame_ms / 1000)


def test_formats_without_a_fixed_rate_have_no_layout() -> None:
    assert frame_layout("opus") is None
    assert frame_layout("pcm_11025") is None


def test_splitter_carries_the_remainder_across_chunks() -> None:
    layout = frame_layout("pcm_16000")
    assert layout is not None
    splitter = AudioFrameSplitter(layout)
    assert splitter.push(b"a" * 600) == []
    frames = splitter.push(b"b" * 700)
    assert frames == [b"a" * 600 + b"b" * 40, b"b" * 640]
    assert splitter.flush() == b"b" * 20
    assert splitter.flush() == b""


def test_flush_trims_to_whole_samples() -> None:
    layout = frame_layout("pcm_16000")
    assert layout is not None
    splitter = AudioFrameSplitter(layout)
    splitter.push(b"\x01\x02\x03")
    assert splitter.flush() == b"\x01\x02"


@given(
    audio_format=st.sampled_from(sorted(BYTES_PER_SECOND)),
    chunks=st.lists(st.binary(max_size=5000), max_size=8),
)
def test_splitter_loses_nothing_but_a_partial_sample(
    audio_format: str, chunks: list[bytes]
) -> None:
    layout = frame_layout(audio_format)
    assert layout is not None
    splitter = AudioFrameSplitter(layout)
    frames = [frame for chunk in chunks for frame in splitter.push(chunk)]
    assert all(len(frame) == layout.frame_bytes for frame in frames)
    tail = splitter.flush()
    assert len(tail) < layout.frame_bytes
    joined = b"".join(chunks)
    kept = len(joined) // layout.sample_bytes * layout.sample_bytes
    assert b"".join([*frames, tail]) == joined[:kept]
