"""OpenAI-compatible speech recognition and synthesis against the loopback fake, and resampling."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import time
import wave
from array import array
from collections.abc import AsyncIterator

import pytest

from hubbub.conversation.providers.base import ProviderError, Transcript, VoiceSettings
from hubbub.conversation.providers.openai_speech import (
    LinearResampler,
    OpenAiCompatibleAsr,
    OpenAiCompatibleTts,
)
from tests.support.fake_openai import FakeOpenAi, Reply

API_KEY = "sk-speech-91c3"


def tone(rate: int, seconds: float, hz: float = 440.0, amplitude: int = 10_000) -> bytes:
    count = int(rate * seconds)
    return array(
        "h", (round(amplitude * math.sin(2 * math.pi * hz * i / rate)) for i in range(count))
    ).tobytes()


def samples_of(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm)
    return samples


@contextlib.asynccontextmanager
async def asr_for(
    server: FakeOpenAi, max_utterance_s: float = 120.0
) -> AsyncIterator[OpenAiCompatibleAsr]:
    asr = OpenAiCompatibleAsr(
        base_url=server.base_url,
        api_key=API_KEY,
        model="whisper-x",
        max_utterance_s=max_utterance_s,
    )
    try:
        yield asr
    finally:
        await asr.close()


@contextlib.asynccontextmanager
async def tts_for(
    server: FakeOpenAi, idle_timeout_s: float | None = None
) -> AsyncIterator[OpenAiCompatibleTts]:
    tts = OpenAiCompatibleTts(
        base_url=server.base_url, api_key=API_KEY, model="tts-x", idle_timeout_s=idle_timeout_s
    )
    try:
        yield tts
    finally:
        await tts.close()


# --- speech recognition ---------------------------------------------------------------------


async def test_transcription_sends_a_16k_wav_with_language_and_hints() -> None:
    audio = tone(16_000, 0.5)
    transcripts = [Reply(chunks=(" My order is A-17. ",))]
    async with FakeOpenAi(transcription_replies=transcripts) as server, asr_for(server) as asr:
        stream = await asr.open_stream(language="en-US", hints=["A-17", "refund"])
        assert await stream.push(audio[:8_000]) == []
        assert await stream.push(audio[8_000:]) == []
        assert await stream.finish() == Transcript("My order is A-17.", is_final=True)
    [request] = server.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    fields = request.body
    assert fields["model"] == "whisper-x"
    assert fields["language"] == "en"
    assert fields["prompt"] == "A-17, refund"
    assert fields["response_format"] == "json"
    with wave.open(io.BytesIO(fields["file"])) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16_000)
        assert wav.readframes(wav.getnframes()) == audio


async def test_auto_language_and_no_hints_send_neither_field() -> None:
    async with FakeOpenAi() as server, asr_for(server) as asr:
        stream = await asr.open_stream(language="auto")
        await stream.push(tone(16_000, 0.1))
        assert (await stream.finish()).text == "hello world"
    assert "language" not in server.requests[0].body
    assert "prompt" not in server.requests[0].body


async def test_empty_utterance_needs_no_request() -> None:
    async with FakeOpenAi() as server, asr_for(server) as asr:
        stream = await asr.open_stream(language="en")
        assert await stream.finish() == Transcript("", is_final=True)
    assert server.requests == []


async def test_cancelled_utterance_is_dropped() -> None:
    async with FakeOpenAi() as server, asr_for(server) as asr:
        stream = await asr.open_stream(language="en")
        await stream.push(tone(16_000, 0.1))
        await stream.cancel()
        with pytest.raises(ProviderError, match="cancelled"):
            await stream.push(b"\x00\x00")
        with pytest.raises(ProviderError, match="cancelled"):
            await stream.finish()
        # Other utterances are unaffected.
        other = await asr.open_stream(language="en")
        await other.push(tone(16_000, 0.1))
        assert (await other.finish()).text == "hello world"
    assert len(server.requests) == 1


async def test_too_long_utterance_is_refused() -> None:
    async with FakeOpenAi() as server, asr_for(server, max_utterance_s=1.0) as asr:
        stream = await asr.open_stream(language="en")
        await stream.push(tone(16_000, 0.9))
        with pytest.raises(ProviderError, match="longer than 1 s"):
            await stream.push(tone(16_000, 0.2))


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply.error(401, f"Incorrect API key provided: {API_KEY}"), "HTTP 401: Incorrect API key"),
        (Reply.error(413, "Maximum content size limit exceeded"), "HTTP 413: Maximum content"),
        (Reply.raw(["{not json"]), "invalid JSON"),
        (Reply.raw(['{"segments": []}']), "has no text"),
    ],
)
async def test_transcription_errors(reply: Reply, message: str) -> None:
    async with FakeOpenAi(transcription_replies=[reply]) as server, asr_for(server) as asr:
        stream = await asr.open_stream(language="en")
        await stream.push(tone(16_000, 0.1))
        with pytest.raises(ProviderError, match=message) as caught:
            await stream.finish()
    assert API_KEY not in str(caught.value)


# --- speech synthesis -----------------------------------------------------------------------


async def test_synthesis_streams_resampled_16k_pcm() -> None:
    audio_24k = tone(24_000, 1.0, hz=300)
    reply = Reply.speech(audio_24k, chunk_bytes=4_801)  # odd sizes split samples
    async with FakeOpenAi(speech_replies=[reply]) as server, tts_for(server) as tts:
        settings = VoiceSettings(voice="nova", speed=1.25, options={"instructions": "warm"})
        chunks = [chunk async for chunk in tts.synthesize("Your order ships today.", settings)]
    pcm = b"".join(chunks)
    assert all(len(chunk) % 2 == 0 for chunk in chunks)
    assert abs(len(pcm) // 2 - 16_000) <= 1
    # The resampled tone matches the same tone generated at 16 kHz.
    expected = samples_of(tone(16_000, 1.0, hz=300))
    produced = samples_of(pcm)
    worst = max(abs(a - b) for a, b in zip(produced, expected, strict=False))
    assert worst < 150  # linear interpolation error for a 300 Hz tone at amplitude 10k
    [request] = server.requests
    assert request.path == "/v1/audio/speech"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.body == {
        "instructions": "warm",
        "model": "tts-x",
        "input": "Your order ships today.",
        "voice": "nova",
        "response_format": "pcm",
        "speed": 1.25,
    }


async def test_default_voice_and_blank_text() -> None:
    async with FakeOpenAi() as server, tts_for(server) as tts:
        assert [c async for c in tts.synthesize("   ", VoiceSettings())] == []
        assert server.requests == []
        pcm = b"".join([c async for c in tts.synthesize("Hi", VoiceSettings())])
    assert server.requests[0].body["voice"] == "alloy"
    assert len(pcm) == 2 * 1_600  # 2,400 samples at 24 kHz → 1,600 at 16 kHz


async def test_synthesis_error_is_a_provider_error() -> None:
    reply = Reply.error(400, f"Invalid voice for key {API_KEY}")
    async with FakeOpenAi(speech_replies=[reply]) as server, tts_for(server) as tts:
        with pytest.raises(ProviderError, match="HTTP 400: Invalid voice") as caught:
            async for _ in tts.synthesize("Hi", VoiceSettings()):
                pass
    assert API_KEY not in str(caught.value)


async def test_synthesis_hang_times_out() -> None:
    reply = Reply(audio=tone(24_000, 1.0), hang_after_chunks=2)
    async with (
        FakeOpenAi(speech_replies=[reply]) as server,
        tts_for(server, idle_timeout_s=0.3) as tts,
    ):
        received = 0
        started = time.monotonic()
        with pytest.raises(ProviderError, match="no data from the speech synthesis server"):
            async for chunk in tts.synthesize("Hi", VoiceSettings()):
                received += len(chunk)
        assert received > 0  # audio is streamed as it arrives, not buffered
        assert time.monotonic() - started < 3.0


async def test_closing_synthesis_stops_the_http_stream() -> None:
    reply = Reply.speech(tone(24_000, 30.0), chunk_bytes=4_800, chunk_delay_s=0.01)
    async with FakeOpenAi(speech_replies=[reply]) as server, tts_for(server) as tts:
        async with contextlib.aclosing(tts.synthesize("A long answer", VoiceSettings())) as audio:
            assert len(await anext(audio)) > 0
        await asyncio.wait_for(server.disconnected.wait(), 5)
        assert server.streams_completed == 0


async def test_cancelling_synthesis_stops_the_http_stream() -> None:
    reply = Reply.speech(tone(24_000, 30.0), chunk_bytes=4_800, chunk_delay_s=0.01)
    async with FakeOpenAi(speech_replies=[reply]) as server, tts_for(server) as tts:
        first = asyncio.Event()

        async def play() -> None:
            async for _ in tts.synthesize("A long answer", VoiceSettings()):
                first.set()

        task = asyncio.create_task(play())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.disconnected.wait(), 5)


# --- resampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [1, 3, 7, 480, 4_801, 100_000])
def test_resampling_is_independent_of_chunking(chunk_bytes: int) -> None:
    audio = tone(24_000, 0.25, hz=500)
    whole = LinearResampler(24_000, 16_000)
    reference = whole.process(audio) + whole.flush()
    chunked = LinearResampler(24_000, 16_000)
    pieces = [
        chunked.process(audio[i : i + chunk_bytes]) for i in range(0, len(audio), chunk_bytes)
    ]
    assert b"".join(pieces) + chunked.flush() == reference
    assert len(reference) // 2 == 4_000


def test_resampling_exact_values() -> None:
    resampler = LinearResampler(24_000, 16_000)
    source = array("h", [0, 300, 600, 900, 1200, 1500, 1800]).tobytes()
    out = samples_of(resampler.process(source) + resampler.flush())
    # Output sample k sits at input position 1.5 k: 0, 1.5, 3, 4.5, 6.
    assert list(out) == [0, 450, 900, 1350, 1800]


@pytest.mark.parametrize(
    ("from_rate", "to_rate"), [(22_050, 16_000), (48_000, 16_000), (8_000, 16_000)]
)
def test_resampling_other_rates_keeps_duration(from_rate: int, to_rate: int) -> None:
    resampler = LinearResampler(from_rate, to_rate)
    audio = tone(from_rate, 2.0, hz=200)
    out = b"".join(resampler.process(audio[i : i + 999]) for i in range(0, len(audio), 999))
    out += resampler.flush()
    assert abs(len(out) // 2 - 2 * to_rate) <= 2


def test_same_rate_passes_through() -> None:
    resampler = LinearResampler(16_000, 16_000)
    audio = tone(16_000, 0.1)
    assert resampler.process(audio[:101]) + resampler.process(audio[101:]) == audio


def test_resampler_refuses_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        LinearResampler(0, 16_000)
