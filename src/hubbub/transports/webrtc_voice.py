"""Outbound AI voice for one WebRTC session: which audio may go out, in which frames, and when
it is dropped. No aiortc here and no clock: the pacer (DataChannel) or the outbound audio track
pops frames from :class:`OutboundVoice` at real-time speed.

Ordering guarantee: a turn's frames become poppable only after :meth:`OutboundVoice.turn_started`,
which the peer calls right after it has queued that turn's ``start_ai_generation_output`` on
the ``control`` DataChannel (the session hands it over with the turn's id). aiortc's SCTP
association sends queued DataChannel messages in the order they were queued, whatever the
channel, so no audio frame of a turn reaches the wire before its ``start_ai_generation_output``.
Chunks that arrive before the start (the engine never does that, but the transport does not
rely on it) wait, bounded, in the turn's pending list.

Dropping: ``abort_ai_generation_output`` drops the turn's queued and future audio; a newer turn
starting supersedes every older one the same way.

End means done: the session waits until a turn's audio has been written before it queues the
turn's ``end_ai_generation_output`` (spec section 4, "the turn's text and audio are complete").
:meth:`OutboundVoice.unsent` counts a turn's frames that are queued or popped but not yet
reported :meth:`OutboundVoice.sent`, so the peer knows when that moment has come.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from hubbub.conversation.protocol.pushes import VoiceChunk
from hubbub.protocol.audio_frame import (
    MAX_AUDIO_BYTES_PER_FRAME,
    AudioFrameSplitter,
    FrameLayout,
    encode_turn_id_prefix,
    frame_layout,
)

log = logging.getLogger(__name__)

# Opus chunks are already packets; each is paced as one 20 ms frame.
_PACKET_DURATION_S = 0.020
_FORGOTTEN_TURNS_KEPT = 64


@dataclass(frozen=True, slots=True)
class QueuedFrame:
    turn_id: str
    prefix: bytes  # the encoded turn-id header of the binary frame
    audio: bytes
    audio_format: str
    duration_s: float

    def encode(self) -> bytes:
        return self.prefix + self.audio


@dataclass(slots=True)
class _Turn:
    prefix: bytes
    layout: FrameLayout | None = None
    splitter: AudioFrameSplitter | None = None
    started: bool = False
    pending: list[VoiceChunk] = field(default_factory=list)


class OutboundVoice:
    """The frames of one session's AI voice, gated and bounded.

    ``max_queued_s`` bounds the audio waiting to be paced out (the TTS runs faster than real
    time); audio beyond it is dropped and counted rather than held in memory.
    """

    def __init__(self, max_queued_s: float = 120.0) -> None:
        self._max_queued_s = max_queued_s
        self._turns: dict[str, _Turn] = {}
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self._frames: deque[QueuedFrame] = deque()
        self._queued_s = 0.0
        self._unsent: dict[str, int] = {}
        self.held = False  # paused mid-sentence: frames wait, nothing is popped
        self.dropped_frames = 0

    @property
    def queued_s(self) -> float:
        return self._queued_s

    def __bool__(self) -> bool:
        return bool(self._frames) and not self.held

    def turn_started(self, turn_id: str) -> None:
        """``start_ai_generation_output`` for ``turn_id`` has been queued on ``control``."""
        for other in [t for t in self._turns if t != turn_id]:
            self._forget(other)
        turn = self._turn(turn_id)
        if turn is None or turn.started:
            return
        turn.started = True
        pending, turn.pending = turn.pending, []
        for chunk in pending:
            self._split(turn, turn_id, chunk)

    def turn_aborted(self, turn_id: str) -> None:
        self._forget(turn_id)

    def add(self, chunk: VoiceChunk) -> None:
        turn = self._turn(chunk.output_turn_id)
        if turn is None:
            return
        if not turn.started:
            if len(turn.pending) >= 1000:
                self.dropped_frames += 1
                return
            turn.pending.append(chunk)
            return
        self._split(turn, chunk.output_turn_id, chunk)

    def pop(self) -> QueuedFrame | None:
        """The next frame to send; report it :meth:`sent` once written (or dropped)."""
        if not self._frames or self.held:
            return None
        frame = self._frames.popleft()
        self._queued_s = max(0.0, self._queued_s - frame.duration_s)
        return frame

    def sent(self, frame: QueuedFrame) -> None:
        """A popped frame has been handed to the network (or dropped on congestion)."""
        left = self._unsent.get(frame.turn_id, 0) - 1
        if left > 0:
            self._unsent[frame.turn_id] = left
        else:
            self._unsent.pop(frame.turn_id, None)

    def unsent(self, turn_id: str) -> int:
        """Frames of the turn not yet written: 0 once all its audio so far is out (or void)."""
        return self._unsent.get(turn_id, 0)

    def live(self, turn_id: str) -> bool:
        """The turn's audio may still go out (it was not aborted or superseded)."""
        return turn_id in self._turns

    def clear(self) -> None:
        self._frames.clear()
        self._turns.clear()
        self._unsent.clear()
        self._queued_s = 0.0

    # --- internals -------------------------------------------------------------------------

    def _turn(self, turn_id: str) -> _Turn | None:
        if turn_id in self._forgotten:
            return None
        turn = self._turns.get(turn_id)
        if turn is None:
            try:
                prefix = encode_turn_id_prefix(turn_id)
            except ValueError:
                log.warning("dropping voice for a turn id too long to frame")
                return None
            turn = _Turn(prefix)
            self._turns[turn_id] = turn
        return turn

    def _forget(self, turn_id: str) -> None:
        turn = self._turns.pop(turn_id, None)
        self._forgotten[turn_id] = None
        while len(self._forgotten) > _FORGOTTEN_TURNS_KEPT:
            self._forgotten.popitem(last=False)
        self._unsent.pop(turn_id, None)
        if turn is None:
            return
        kept = deque(f for f in self._frames if f.turn_id != turn_id)
        self.dropped_frames += len(self._frames) - len(kept)
        self._frames = kept
        self._queued_s = sum(f.duration_s for f in kept)

    def _split(self, turn: _Turn, turn_id: str, chunk: VoiceChunk) -> None:
        if turn.splitter is None:
            turn.layout = frame_layout(chunk.audio_format)
            if turn.layout is not None:
                turn.splitter = AudioFrameSplitter(turn.layout)
        layout, splitter = turn.layout, turn.splitter
        if layout is None or splitter is None:
            # A packetized format (opus): one chunk, one frame.
            if 0 < len(chunk.audio) <= MAX_AUDIO_BYTES_PER_FRAME:
                self._append(turn, turn_id, chunk.audio, chunk.audio_format, _PACKET_DURATION_S)
            elif chunk.audio:
                self.dropped_frames += 1
            return
        pieces = splitter.push(chunk.audio)
        if chunk.is_final:
            tail = splitter.flush()
            if tail:
                pieces.append(tail)
        for piece in pieces:
            self._append(turn, turn_id, piece, chunk.audio_format, layout.duration_s(len(piece)))

    def _append(
        self, turn: _Turn, turn_id: str, audio: bytes, audio_format: str, duration_s: float
    ) -> None:
        if self._queued_s + duration_s > self._max_queued_s:
            self.dropped_frames += 1
            return
        self._frames.append(QueuedFrame(turn_id, turn.prefix, audio, audio_format, duration_s))
        self._queued_s += duration_s
        self._unsent[turn_id] = self._unsent.get(turn_id, 0) + 1
