"""Speech made inside the tests (no data set): espeak-ng and Piper, as engine-format PCM."""

from __future__ import annotations

import asyncio
import functools
import io
import subprocess
import wave

import numpy as np

from hubbub.conversation.voice.audio import Resampler, pcm16_to_samples, samples_to_pcm16
from hubbub.conversation.voice.providers.base import ENGINE_SAMPLE_RATE, VoiceSettings
from hubbub.conversation.voice.providers.piper_tts import PiperTts


@functools.cache
def espeak_pcm16k(text: str) -> bytes:
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en-us", text], capture_output=True, check=True, timeout=30
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    resampler = Resampler(rate, ENGINE_SAMPLE_RATE)
    return samples_to_pcm16(resampler.process(pcm16_to_samples(frames))) + samples_to_pcm16(
        resampler.flush()
    )


_piper = PiperTts()
_piper_cache: dict[str, bytes] = {}


async def piper_pcm16k_async(text: str) -> bytes:
    if text not in _piper_cache:
        chunks = [chunk async for chunk in _piper.synthesize(text, VoiceSettings())]
        _piper_cache[text] = b"".join(chunks)
    return _piper_cache[text]


def piper_pcm16k(text: str) -> bytes:
    """Synchronous: call from sync fixtures only (it runs its own event loop)."""
    if text not in _piper_cache:
        return asyncio.run(piper_pcm16k_async(text))
    return _piper_cache[text]


def without_trailing_silence(pcm: bytes, level: int = 300) -> bytes:
    samples = pcm16_to_samples(pcm)
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > level)[0]
    return samples_to_pcm16(samples[: loud[-1] + 1]) if len(loud) else b""


def silence(ms: int) -> bytes:
    return bytes(ENGINE_SAMPLE_RATE * 2 * ms // 1000)


def white_noise(ms: int, rms: float, seed: int = 1) -> bytes:
    """Steady hiss at ``rms`` (PCM16 units): a noisy room, not speech."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(0.0, rms, ENGINE_SAMPLE_RATE * ms // 1000)
    return samples_to_pcm16(np.clip(samples, -32768, 32767).astype(np.int16))


def words(text: str) -> list[str]:
    kept = "".join(ch if ch.isalnum() or ch in " '" else " " for ch in text.lower())
    return kept.split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length): the parts of a word error rate."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        previous, row = row, [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
    return row[len(hyp)], len(ref)
