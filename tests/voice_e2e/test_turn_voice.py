"""TurnVoice (speech out for one AI turn) and the server-VAD pre-roll, with a fake TTS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from hubbub.conversation.protocol.pushes import VoiceChunk
from hubbub.conversation.voice.input_turn import PreRoll
from hubbub.conversation.voice.output import TurnVoice
from hubbub.conversation.voice.providers.base import ProviderError, TtsProvider, VoiceSettings


class FakeTts(TtsProvider):
    """100 ms of engine PCM per sentence, in two chunks; ``hold`` blocks the second chunk."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.sentences: list[str] = []
        self.closed: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail_on = fail_on

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[bytes]:
        self.sentences.append(text)
        try:
            if text == self.fail_on:
                raise ProviderError("model broke")
            yield b"\x01\x00" * 800
            await self.hold.wait()
            yield b"\x01\x00" * 800
        finally:
            self.closed.append(text)


def voice_for(tts: FakeTts, sent: list[VoiceChunk], audio_format: str = "pcm_16000") -> TurnVoice:
    return TurnVoice(
        tts,
        VoiceSettings(),
        audio_format=audio_format,
        send=sent.append,
        conversation_id="conv_1",
        output_turn_id="tout_1",
        monotonic=time.monotonic,
    )


async def test_sentences_are_synthesized_as_they_complete() -> None:
    tts, sent = FakeTts(), []
    voice = voice_for(tts, sent)
    for delta in ["Your order ", "costs 1.5 dollars. It ships", " today! Anything", " else"]:
        voice.feed(delta)
    await voice.finish()
    assert tts.sentences == ["Your order costs 1.5 dollars.", "It ships today!", "Anything else"]
    assert [c.ordinal for c in sent] == list(range(len(sent)))
    assert [c.is_final for c in sent] == [False] * (len(sent) - 1) + [True]
    assert sent[-1].audio == b""
    assert sum(len(c.audio) for c in sent) == 3 * 3200
    assert {(c.conversation_id, c.output_turn_id, c.audio_format) for c in sent} == {
        ("conv_1", "tout_1", "pcm_16000")
    }
    assert voice.first_audio_at is not None and voice.tts_seconds > 0


async def test_the_first_piece_ends_at_its_first_clause_mark_as_soon_as_it_arrives() -> None:
    tts, sent = FakeTts(), []
    tts.hold.clear()  # each piece stays in synthesis until released
    voice = voice_for(tts, sent)
    voice.feed("\n Sure")
    await asyncio.sleep(0)
    assert tts.sentences == []  # "Sure" may go on ("Sure thing, ...")
    voice.feed(", I can check that. It costs 1,000 dollars, or")
    await asyncio.sleep(0)
    assert tts.sentences == ["Sure,"]  # before the sentence is complete
    voice.feed(" less; maybe.")
    tts.hold.set()
    await voice.finish()
    # Only the first piece is cut at a clause mark; "1,000" is no clause mark.
    assert tts.sentences == [
        "Sure,",
        "I can check that.",
        "It costs 1,000 dollars, or less; maybe.",
    ]


async def test_an_answer_without_a_clause_mark_is_one_piece() -> None:
    tts, sent = FakeTts(), []
    voice = voice_for(tts, sent)
    voice.feed("Thanks for calling")
    await voice.finish()
    assert tts.sentences == ["Thanks for calling"]


async def test_audio_is_converted_to_the_client_format() -> None:
    tts, sent = FakeTts(), []
    voice = voice_for(tts, sent, "pcm_8000")
    voice.feed("One sentence.")
    await voice.finish()
    total = sum(len(c.audio) for c in sent)
    assert abs(total - 1600) <= 64  # 100 ms at 8 kHz, give or take the resampler's edges
    assert {c.audio_format for c in sent} == {"pcm_8000"}


async def test_cancel_stops_the_provider_mid_sentence() -> None:
    tts, sent = FakeTts(), []
    tts.hold.clear()
    first_audio = asyncio.Event()

    def send(chunk: VoiceChunk) -> None:
        sent.append(chunk)
        first_audio.set()

    voice = TurnVoice(
        tts,
        VoiceSettings(),
        audio_format="pcm_16000",
        send=send,
        conversation_id="conv_1",
        output_turn_id="tout_1",
        monotonic=time.monotonic,
    )
    voice.feed("A long sentence that is interrupted. ")
    await asyncio.wait_for(first_audio.wait(), 5)
    voice.cancel()
    with pytest.raises(asyncio.CancelledError):
        await voice.finish()
    assert tts.closed == ["A long sentence that is interrupted."]
    assert len(sent) == 1 and not sent[0].is_final


async def test_a_failing_provider_still_ends_the_turn() -> None:
    tts, sent = FakeTts(fail_on="Broken."), []
    voice = voice_for(tts, sent)
    voice.feed("Broken. Never spoken.")
    await voice.finish()
    assert tts.sentences == ["Broken."]
    assert [c.is_final for c in sent] == [True]


def test_pre_roll_keeps_only_the_latest_audio() -> None:
    roll = PreRoll(limit_bytes=1000)
    for index in range(10):
        roll.add(bytes([index]) * 300)
    kept = roll.take()
    assert 1000 <= len(kept) < 1300
    assert kept.endswith(bytes([9]) * 300)
    assert roll.take() == b""
