"""The agent's AI turns: one answer streamed to the client as ``start_ai_generation_output``,
``ai_transcribed_chunk``\\ s and ``end_ai_generation_output`` (or ``abort_…`` on barge-in),
spoken by the turn's voice when the session hears speech, and recorded as a ``message`` event
with its timing figures (spec section 10).

State moves are not made here: the engine's :class:`Conversation` wraps every turn in them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from hubbub.conversation.protocol import ids
from hubbub.conversation.protocol.pushes import (
    AbortAiGenerationOutput,
    AiTranscribedChunk,
    EndAiGenerationOutput,
    Push,
    StartAiGenerationOutput,
)
from hubbub.conversation.runtime.data import ConversationData
from hubbub.conversation.runtime.journal import Journal
from hubbub.conversation.voice.providers.base import ChatMessage, ProviderError

log = logging.getLogger(__name__)


class TurnSpeech(Protocol):
    """The voice of one AI turn (:class:`~hubbub.conversation.voice.output.TurnVoice`)."""

    @property
    def first_audio_at(self) -> float | None: ...

    @property
    def tts_seconds(self) -> float: ...

    def feed(self, delta: str) -> None:
        """More answer text."""

    async def finish(self) -> None:
        """The text is complete: return once all of it has been spoken (sent)."""

    def cancel(self) -> None:
        """Stop speaking now (a no-op once finished)."""


# Opens the voice of an output turn, or None when nobody hears speech.
VoiceOpener = Callable[[str], TurnSpeech | None]


@dataclass(slots=True)
class _Turn:
    output_turn_id: str
    origin: float  # monotonic: when the input that caused it arrived, or when it started
    started: float
    parts: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    llm: bool = False
    voice: TurnSpeech | None = None
    ordinal: int = 0


class AiTurns:
    """The AI turns of one conversation, at most one open at a time."""

    def __init__(
        self,
        data: ConversationData,
        journal: Journal,
        *,
        publish: Callable[[Push], None],
        open_voice: VoiceOpener,
        monotonic: Callable[[], float],
    ) -> None:
        self._data = data
        self._journal = journal
        self._publish = publish
        self._open_voice = open_voice
        self._monotonic = monotonic
        self._turn: _Turn | None = None

    @property
    def open(self) -> bool:
        return self._turn is not None

    async def speak(
        self, stream: AsyncIterator[str], *, origin: float | None = None, llm: bool = False
    ) -> str:
        """Stream one AI turn to the client; returns its full text. Cancelling the task that
        runs it (barge-in, after :meth:`abort`) stops the text and the voice at once."""
        now = self._monotonic()
        turn = _Turn(ids.new_id("tout_"), origin if origin is not None else now, now, llm=llm)
        self._turn = turn
        turn.voice = self._open_voice(turn.output_turn_id)
        self._publish(
            StartAiGenerationOutput(
                conversation_id=self._data.id,
                output_turn_id=turn.output_turn_id,
                expect_voice=turn.voice is not None,
            )
        )
        try:
            try:
                async for delta in stream:
                    if not delta:
                        continue
                    if turn.first_token_at is None:
                        turn.first_token_at = self._monotonic()
                    self._emit(turn, delta)
            except ProviderError as exc:
                log.warning("conversation %s: LLM failed mid-answer: %s", self._data.id, exc)
                if not turn.parts:
                    self._emit(turn, self._data.project.project.rule_responder.fallback_text)
            if turn.voice is not None:
                await turn.voice.finish()
        finally:
            if turn.voice is not None:
                turn.voice.cancel()  # a no-op once finished; barge-in stops speech here
            if hasattr(stream, "aclose"):
                await stream.aclose()
        full_text = "".join(turn.parts)
        self._chunk(turn, "", is_final=True)
        self._publish(
            EndAiGenerationOutput(
                conversation_id=self._data.id,
                output_turn_id=turn.output_turn_id,
                full_text=full_text,
            )
        )
        self._close(turn, full_text)
        return full_text

    def abort(self) -> bool:
        """Barge-in: close the open turn with the text produced so far (all the history keeps).
        The caller cancels the task that was speaking it."""
        turn = self._turn
        if turn is None:
            return False
        text = "".join(turn.parts)
        self._publish(
            AbortAiGenerationOutput(
                conversation_id=self._data.id,
                output_turn_id=turn.output_turn_id,
                accumulated_text=text,
            )
        )
        self._close(turn, text)
        return True

    def _emit(self, turn: _Turn, text: str) -> None:
        turn.parts.append(text)
        if turn.voice is not None:
            turn.voice.feed(text)
        self._chunk(turn, text, is_final=False)

    def _chunk(self, turn: _Turn, text: str, *, is_final: bool) -> None:
        self._publish(
            AiTranscribedChunk(
                conversation_id=self._data.id,
                output_turn_id=turn.output_turn_id,
                chunk_id=ids.new_id("chnk_"),
                chunk_text=text,
                ordinal=turn.ordinal,
                is_final=is_final,
            )
        )
        turn.ordinal += 1

    def _close(self, turn: _Turn, text: str) -> None:
        self._turn = None
        voice = turn.voice
        if voice is not None:
            voice.cancel()
        if text:
            self._data.history.append(ChatMessage("assistant", text))
        end = self._monotonic()

        def ms(start: float, stop: float | None) -> float | None:
            return None if stop is None else round((stop - start) * 1000, 3)

        self._journal.event(
            "message",
            {
                "role": "assistant",
                "text": text,
                "timeToFirstTokenMs": ms(turn.origin, turn.first_token_at),
                "timeToFirstAudioMs": ms(turn.origin, voice.first_audio_at) if voice else None,
                "llmDurationMs": ms(turn.started, end) if turn.llm else None,
                "ttsDurationMs": round(voice.tts_seconds * 1000, 3) if voice else None,
                "totalTurnDurationMs": ms(turn.origin, end),
            },
            output_turn_id=turn.output_turn_id,
        )
