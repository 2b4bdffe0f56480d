"""/demo/voice in headless Chromium, spoken to: the fake microphone plays speech synthesized
here, the page streams it as its audio track, and the transcript and the agent's spoken
reply appear on the page."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from hubbub.conversation.voice.audio import Resampler, pcm16_to_samples, samples_to_pcm16
from tests.support.node import run_node_script
from tests.support.server import ServerProcess
from tests.voice.speech import silence

from .voice_clients import REPO, demo_server, utterance_pcm

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists()
        or not (REPO / "node_modules" / "playwright-core").exists(),
        reason="needs Debian chromium and `npm ci` (playwright-core)",
    ),
]

SCRIPT = Path(__file__).with_name("voice_page_speech.mjs")
WAV_RATE = 48_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[ServerProcess]:
    async with demo_server() as process:
        yield process


async def write_speech_wav(path: Path) -> None:
    """The utterance then a pause; Chromium loops the file for as long as the mic is open."""
    pcm = await utterance_pcm() + silence(1500)
    resampler = Resampler(16_000, WAV_RATE)
    samples = pcm16_to_samples(pcm)
    audio = samples_to_pcm16(resampler.process(samples)) + samples_to_pcm16(resampler.flush())
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(WAV_RATE)
        wav.writeframes(audio)


async def test_talking_to_the_voice_page(server: ServerProcess, tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    await write_speech_wav(wav)
    result = await run_node_script(SCRIPT, server.http_url, str(wav), timeout_s=120)
    assert "error" not in result, result
    assert result["voiceIn"] == "on" and result["voiceOut"] == "on"
    assert result["pageErrors"] == []
    transcript: list[str] = result["transcript"]
    spoken = [line for line in transcript if line.startswith("You: ")]
    assert spoken and "order" in spoken[-1].lower(), transcript
    assert any("order number" in line for line in transcript if line.startswith("Agent: "))
