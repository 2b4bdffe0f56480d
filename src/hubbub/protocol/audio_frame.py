"""The binary audio frame of the WebRTC ``audio`` DataChannel (conversation spec section 6).

Wire layout, both directions::

    [2 bytes: uint16 little-endian, byte length N of the turn id]
    [N bytes: turn id, UTF-8 (inputTurnId from the client, outputTurnId from the server)]
    [rest:    raw audio in the session's audio format]

Decoding never raises: a frame that cannot be read becomes a :class:`DroppedFrame` whose
:class:`DropReason` says why (the transport counts and discards it). The reasons are:

* ``too_short``: fewer than 2 bytes, so there is no length prefix;
* ``turn_id_overrun``: the prefix announces more turn-id bytes than the frame holds;
* ``turn_id_not_utf8``: the turn-id bytes are not valid UTF-8.

An empty turn id (N = 0) decodes; it names no turn, so the engine drops its audio as it drops
audio for any unknown turn.

:class:`AudioFrameSplitter` cuts outbound audio into frames of 20 ms, or of 10 ms for the
formats whose 20 ms would exceed :data:`MAX_AUDIO_BYTES_PER_FRAME` (``pcm_44100``,
``pcm_48000``), so that no frame is fragmented by SCTP.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

MAX_AUDIO_BYTES_PER_FRAME: Final = 1150
MAX_TURN_ID_BYTES: Final = 0xFFFF
_PREFIX_BYTES: Final = 2


class DropReason(enum.StrEnum):
    TOO_SHORT = "too_short"
    TURN_ID_OVERRUN = "turn_id_overrun"
    TURN_ID_NOT_UTF8 = "turn_id_not_utf8"


@dataclass(frozen=True, slots=True)
class AudioFrame:
    turn_id: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class DroppedFrame:
    reason: DropReason


def decode_audio_frame(data: bytes | bytearray | memoryview) -> AudioFrame | DroppedFrame:
    """The frame's turn id and audio, or why the frame is dropped. Never raises."""
    if len(data) < _PREFIX_BYTES:
        return DroppedFrame(DropReason.TOO_SHORT)
    turn_id_bytes = int.from_bytes(data[:_PREFIX_BYTES], "little")
    audio_start = _PREFIX_BYTES + turn_id_bytes
    if audio_start > len(data):
        return DroppedFrame(DropReason.TURN_ID_OVERRUN)
    try:
        turn_id = bytes(data[_PREFIX_BYTES:audio_start]).decode("utf-8")
    except UnicodeDecodeError:
        return DroppedFrame(DropReason.TURN_ID_NOT_UTF8)
    return AudioFrame(turn_id, bytes(data[audio_start:]))


def encode_turn_id_prefix(turn_id: str) -> bytes:
    """The frame header for ``turn_id``; computed once per turn and reused for every frame.

    Raises :class:`ValueError` for a turn id longer than 65,535 UTF-8 bytes: turn ids are
    minted by the server, so that is a programming error, not bad client input.
    """
    encoded = turn_id.encode("utf-8")
    if len(encoded) > MAX_TURN_ID_BYTES:
        raise ValueError(f"turn id is {len(encoded)} bytes; at most {MAX_TURN_ID_BYTES}")
    return len(encoded).to_bytes(_PREFIX_BYTES, "little") + encoded


def encode_audio_frame(turn_id: str, audio: bytes) -> bytes:
    return encode_turn_id_prefix(turn_id) + audio


# Bytes per second of each fixed-rate format (16-bit mono PCM; G.711 is 1 byte per sample).
BYTES_PER_SECOND: Final[dict[str, int]] = {
    "pcm_8000": 16_000,
    "pcm_16000": 32_000,
    "pcm_22050": 44_100,
    "pcm_24000": 48_000,
    "pcm_44100": 88_200,
    "pcm_48000": 96_000,
    "mulaw": 8_000,
    "alaw": 8_000,
}

_PREFERRED_FRAME_MS: Final = 20
_FALLBACK_FRAME_MS: Final = 10


@dataclass(frozen=True, slots=True)
class FrameLayout:
    """How one format is cut into frames."""

    frame_bytes: int
    sample_bytes: int
    bytes_per_second: int

    @property
    def frame_duration_s(self) -> float:
        return self.frame_bytes / self.bytes_per_second

    def duration_s(self, audio_bytes: int) -> float:
        return audio_bytes / self.bytes_per_second


def frame_layout(audio_format: str) -> FrameLayout | None:
    """The framing of a fixed-rate format; None for a format without one (``opus``), whose
    chunks are already packets and travel one per frame."""
    rate = BYTES_PER_SECOND.get(audio_format)
    if rate is None:
        return None
    sample_bytes = 2 if audio_format.startswith("pcm_") else 1
    for frame_ms in (_PREFERRED_FRAME_MS, _FALLBACK_FRAME_MS):
        frame_bytes = rate * frame_ms // 1000
        if frame_bytes <= MAX_AUDIO_BYTES_PER_FRAME:
            return FrameLayout(frame_bytes, sample_bytes, rate)
    raise AssertionError(f"no frame size fits {audio_format}")  # pragma: no cover


class AudioFrameSplitter:
    """Cuts a stream of audio chunks into whole frames, carrying the remainder over.

    ``push`` returns the complete frames so far; ``flush`` (at the end of a turn) returns the
    last, shorter frame, trimmed to whole samples, or ``b""``.
    """

    def __init__(self, layout: FrameLayout) -> None:
        self._layout = layout
        self._pending = bytearray()

    def push(self, audio: bytes) -> list[bytes]:
        self._pending += audio
        size = self._layout.frame_bytes
        whole = len(self._pending) // size * size
        frames = [bytes(self._pending[i : i + size]) for i in range(0, whole, size)]
        del self._pending[:whole]
        return frames

    def flush(self) -> bytes:
        sample = self._layout.sample_bytes
        tail = bytes(self._pending[: len(self._pending) // sample * sample])
        self._pending.clear()
        return tail
