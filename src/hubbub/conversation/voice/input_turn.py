"""What voice input works with: the conversation it feeds (:class:`VoiceTurns`), the state
of one open input turn (:class:`InputTurn`), and the audio kept from before speech started
(:class:`PreRoll`)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from hubbub.conversation.protocol.pushes import Push
from hubbub.conversation.voice.audio import ClientToEngine
from hubbub.conversation.voice.providers.base import AsrStream

# The final transcript and the ASR time (ms) of a voice turn.
Transcriber = Callable[[], Awaitable[tuple[str, float]]]


class VoiceTurns(Protocol):
    """What voice input needs from the conversation it feeds (the runtime's Conversation),
    which owns the conversation's state: voice input asks it to open and close turns."""

    @property
    def id(self) -> str: ...

    @property
    def stage_id(self) -> str: ...

    @property
    def speaking(self) -> bool:
        """An AI turn is open (the agent is answering, its voice may still be playing)."""
        ...

    @property
    def can_start_voice(self) -> bool:
        """Its state accepts a new voice input turn."""
        ...

    @property
    def receiving_voice(self) -> bool:
        """A voice input turn is open."""
        ...

    def start_voice(self) -> str:
        """Open a voice input turn (a barge-in if the agent speaks); returns its id."""
        ...

    def end_voice(self, turn_id: str, transcribe: Transcriber, received: float) -> None:
        """The turn's audio is complete: transcribe it, then handle it like text input."""

    def cancel_voice(self) -> None:
        """The open voice turn is abandoned."""

    def push(self, push: Push) -> None: ...


@dataclass(slots=True)
class InputTurn:
    id: str
    conversation: VoiceTurns
    asr: AsrStream | None
    converter: ClientToEngine
    by_vad: bool
    ordinal: int = 0
    last_text: str = ""
    failed: bool = False
    pcm_bytes: int = 0
    # Server VAD only: the utterance's last seconds, for the end-of-turn model.
    recent: bytearray = field(default_factory=bytearray)
    # Speech over the agent that has not interrupted it (yet): no turn id, no pushes.
    candidate: bool = False
    speech_ms: float = 0.0
    held_ms: float | None = None  # since the agent's voice was paused for it
    final_text: str | None = None
    # The VAD heard silence but the turn is not over (the model heard an unfinished
    # utterance, or the stage wants a longer silence): the silence so far and the bound.
    silence_ms: float | None = None
    silence_needed_ms: float = 0.0
    # The end-of-turn model's verdict on the utterance so far, while the silence grows, and
    # the silence at which to ask it again (after an "unfinished" verdict).
    verdict: asyncio.Future[float | None] | None = None
    verdict_at_ms: float | None = None


@dataclass(slots=True)
class PreRoll:
    limit_bytes: int
    chunks: collections.deque[bytes] = field(default_factory=collections.deque)
    size: int = 0

    def add(self, pcm: bytes) -> None:
        self.chunks.append(pcm)
        self.size += len(pcm)
        while self.size - len(self.chunks[0]) >= self.limit_bytes:
            self.size -= len(self.chunks.popleft())

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data
