"""Word error rate of PocketSphinx with stage biasing, on support-desk speech made by Piper.

The figures are printed (run with ``-s``); the assertion is the issue's bar: WER < 25%.
"""

from __future__ import annotations

import time

import pytest

from hubbub.conversation.voice.providers.pocketsphinx_asr import PocketsphinxAsr

from .phrases import STAGE_HINTS, UTTERANCES
from .speech import espeak_pcm16k, piper_pcm16k, silence, word_errors

CHUNK = 3200  # 100 ms pushes, as a client streams


@pytest.fixture(scope="module")
def piper_speech() -> dict[str, bytes]:
    started = time.perf_counter()
    speech = {text: piper_pcm16k(text) for text in UTTERANCES}
    elapsed = time.perf_counter() - started
    audio_s = sum(len(pcm) for pcm in speech.values()) / 32000
    print(f"\nPiper: {audio_s:.1f} s of speech in {elapsed:.1f} s (RTF {elapsed / audio_s:.2f})")
    return speech


async def word_error_rate(
    asr: PocketsphinxAsr, speech: dict[str, bytes], hints: tuple[str, ...], label: str
) -> float:
    errors = words = 0
    audio_s = 0.0
    started = time.perf_counter()
    for text, pcm in speech.items():
        pcm = silence(300) + pcm + silence(300)  # the pauses around a real utterance
        audio_s += len(pcm) / 32000
        stream = await asr.open_stream(language="en-US", hints=hints)
        for offset in range(0, len(pcm), CHUNK):
            await stream.push(pcm[offset : offset + CHUNK])
        final = await stream.finish()
        wrong, count = word_errors(text, final.text)
        errors += wrong
        words += count
        if wrong:
            print(f"  [{label}] {text!r} -> {final.text!r}")
    elapsed = time.perf_counter() - started
    wer = errors / words
    print(
        f"{label}: WER {wer:.1%} ({errors}/{words} words, {len(speech)} utterances), "
        f"ASR RTF {elapsed / audio_s:.3f}"
    )
    return wer


async def test_word_error_rate_with_stage_hints_is_under_25_percent(
    piper_speech: dict[str, bytes],
) -> None:
    assert len(UTTERANCES) >= 20
    asr = PocketsphinxAsr()
    wer = await word_error_rate(asr, piper_speech, STAGE_HINTS, "piper voice, stage hints")
    assert wer < 0.25


async def test_word_error_rate_on_espeak_speech_with_stage_hints() -> None:
    # A second, harsher voice (formant synthesis): reported, with a looser bar.
    speech = {text: espeak_pcm16k(text) for text in UTTERANCES}
    wer = await word_error_rate(PocketsphinxAsr(), speech, STAGE_HINTS, "espeak-ng, stage hints")
    assert wer < 0.30
