"""In-process speech providers for socket-free session tests: every call answers at once.

The ASR hears "hel" while audio arrives and "hello there" at the end; the TTS says 20 ms per
sentence; the VAD hears speech in any non-zero audio (:data:`LOUD`) and its end in silence
(:data:`QUIET`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Literal

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.voice.providers.base import (
    AsrProvider,
    AsrStream,
    Transcript,
    TtsProvider,
    VadProvider,
    VadStream,
    VoiceSettings,
)

LOUD = b"\x00\x10" * 320
QUIET = b"\x00\x00" * 320


class FakeAsrStream(AsrStream):
    async def push(self, pcm16k: bytes) -> list[Transcript]:
        return [Transcript("hel", is_final=False)]

    async def finish(self) -> Transcript:
        return Transcript("hello there", is_final=True)

    async def cancel(self) -> None:
        pass


class FakeAsr(AsrProvider):
    async def open_stream(self, *, language: str, hints: Sequence[str] = ()) -> AsrStream:
        return FakeAsrStream()


class FakeTts(TtsProvider):
    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[bytes]:
        yield b"\x01\x00" * 320


class FakeVadStream(VadStream):
    def __init__(self) -> None:
        self.speaking = False

    def process(self, pcm16k: bytes) -> list[Literal["speech_start", "speech_end"]]:
        loud = any(pcm16k)
        if loud and not self.speaking:
            self.speaking = True
            return ["speech_start"]
        if not loud and self.speaking:
            self.speaking = False
            return ["speech_end"]
        return []

    def reset(self) -> None:
        self.speaking = False


class FakeVad(VadProvider):
    def open_stream(self, *, silence_ms: int = 800) -> VadStream:
        return FakeVadStream()


class FakeSpeech:
    """The SpeechStack's surface, over the fakes above."""

    def asr_for(self, project: LoadedProject) -> AsrProvider:
        return FakeAsr()

    def tts_for(
        self, project: LoadedProject, agent_id: str | None
    ) -> tuple[TtsProvider, VoiceSettings]:
        return FakeTts(), VoiceSettings()

    def vad(self) -> VadProvider:
        return FakeVad()

    def end_of_turn(self) -> None:
        return None  # silence-only end of turn

    async def warm_up(self, projects: Sequence[LoadedProject]) -> None:
        pass
