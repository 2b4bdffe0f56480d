"""The OpenAI-compatible ASR and TTS providers against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import io
import socket
import wave
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from hubbub.conversation.voice.providers.base import ProviderError, VoiceSettings
from hubbub.conversation.voice.providers.openai_asr import OpenAiCompatibleAsr
from hubbub.conversation.voice.providers.openai_tts import OpenAiCompatibleTts

pytestmark = pytest.mark.integration

SPEECH_RATE = 24_000


def wav_header(rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
    return buffer.getvalue()


class FakeSpeechServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stream_closed = asyncio.Event()
        self.mode = "ok"

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "error":
            return web.json_response({"error": "overloaded"}, status=503)
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        with wave.open(io.BytesIO(upload.file.read())) as reader:
            fields = {k: v for k, v in form.items() if k != "file"}
            fields.update(rate=reader.getframerate(), frames=reader.getnframes())
        fields["authorization"] = request.headers.get("Authorization")
        self.requests.append(fields)
        if self.mode == "no-text":
            return web.json_response({"result": "?"})
        if self.mode == "not-json":
            return web.Response(text="<html>oops</html>")
        return web.json_response({"text": f"  heard {fields['frames']} samples  "})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.mode == "error":
            return web.json_response({"error": "bad voice"}, status=400)
        reply = web.StreamResponse()
        await reply.prepare(request)
        if self.mode == "not-wav":
            await reply.write(b"ID3 this is an mp3 file, not a wav one")
            return reply
        await reply.write(wav_header(SPEECH_RATE))
        chunk = bytes(2 * SPEECH_RATE // 10)  # 100 ms
        try:
            for _ in range(10 if self.mode == "ok" else 10_000):
                await reply.write(chunk)
                await asyncio.sleep(0)  # let the client's reads interleave
        except (ConnectionResetError, asyncio.CancelledError):
            self.stream_closed.set()
            raise
        return reply


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeSpeechServer, str]]:
    fake = FakeSpeechServer()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", fake.transcriptions)
    app.router.add_post("/v1/audio/speech", fake.speech)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}/v1/"
    await runner.cleanup()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def test_asr_uploads_the_utterance_as_16k_wav_with_hints_as_prompt(
    server: tuple[FakeSpeechServer, str],
) -> None:
    fake, url = server
    asr = OpenAiCompatibleAsr(base_url=url, api_key="sk-test", model="whisper-large")
    try:
        stream = await asr.open_stream(language="en-US", hints=["order", "refund"])
        assert await stream.push(bytes(16000)) == []  # no interim results from this API
        assert await stream.push(bytes(16001)) == []
        final = await stream.finish()
    finally:
        await asr.close()
    assert final.is_final and final.text == "heard 16000 samples"
    (request,) = fake.requests
    assert request["model"] == "whisper-large"
    assert request["language"] == "en"
    assert request["prompt"] == "order, refund"
    assert request["rate"] == 16000
    assert request["authorization"] == "Bearer sk-test"


async def test_asr_without_audio_does_not_call_the_service(
    server: tuple[FakeSpeechServer, str],
) -> None:
    fake, url = server
    asr = OpenAiCompatibleAsr(base_url=url)
    stream = await asr.open_stream(language="en")
    assert (await stream.finish()).text == ""
    cancelled = await asr.open_stream(language="en")
    await cancelled.push(bytes(3200))
    await cancelled.cancel()
    assert (await cancelled.finish()).text == ""
    assert fake.requests == []
    await asr.close()


async def test_asr_bounds_the_buffered_utterance(server: tuple[FakeSpeechServer, str]) -> None:
    _, url = server
    asr = OpenAiCompatibleAsr(base_url=url, max_utterance_s=1)
    stream = await asr.open_stream(language="en")
    for _ in range(30):
        await stream.push(bytes(3200))
    assert (await stream.finish()).text == "heard 16000 samples"
    await asr.close()


@pytest.mark.parametrize(
    ("mode", "message"),
    [("error", "HTTP 503"), ("no-text", "without a text"), ("not-json", "invalid")],
)
async def test_asr_service_failures_are_provider_errors(
    server: tuple[FakeSpeechServer, str], mode: str, message: str
) -> None:
    fake, url = server
    fake.mode = mode
    asr = OpenAiCompatibleAsr(base_url=url)
    stream = await asr.open_stream(language="en")
    await stream.push(bytes(3200))
    with pytest.raises(ProviderError, match=message):
        await stream.finish()
    await asr.close()


async def test_asr_unreachable_service_is_a_provider_error() -> None:
    asr = OpenAiCompatibleAsr(base_url=closed_port_url(), timeout_s=5)
    stream = await asr.open_stream(language="en")
    await stream.push(bytes(3200))
    with pytest.raises(ProviderError, match="unreachable"):
        await stream.finish()
    await asr.close()


async def test_tts_streams_wav_resampled_to_16k(server: tuple[FakeSpeechServer, str]) -> None:
    fake, url = server
    tts = OpenAiCompatibleTts(base_url=url, model="tts-hd", default_voice="nova")
    try:
        chunks = [c async for c in tts.synthesize("Hello there.", VoiceSettings(speed=1.25))]
    finally:
        await tts.close()
    assert len(chunks) > 1
    assert len(b"".join(chunks)) == 2 * 16000  # 1 s at 24 kHz → 1 s at 16 kHz
    assert fake.requests == [
        {
            "model": "tts-hd",
            "input": "Hello there.",
            "voice": "nova",
            "response_format": "wav",
            "speed": 1.25,
        }
    ]


async def test_tts_closing_the_stream_closes_the_http_response(
    server: tuple[FakeSpeechServer, str],
) -> None:
    fake, url = server
    fake.mode = "endless"
    tts = OpenAiCompatibleTts(base_url=url)
    stream = tts.synthesize("A very long answer.", VoiceSettings(voice="echo"))
    assert await asyncio.wait_for(anext(stream), 10)
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(fake.stream_closed.wait(), 10)
    assert fake.requests[0]["voice"] == "echo"
    await tts.close()


@pytest.mark.parametrize(("mode", "message"), [("error", "HTTP 400"), ("not-wav", "invalid WAV")])
async def test_tts_service_failures_are_provider_errors(
    server: tuple[FakeSpeechServer, str], mode: str, message: str
) -> None:
    fake, url = server
    fake.mode = mode
    tts = OpenAiCompatibleTts(base_url=url)
    with pytest.raises(ProviderError, match=message):
        _ = [c async for c in tts.synthesize("Hi", VoiceSettings())]
    await tts.close()


async def test_tts_unreachable_service_is_a_provider_error() -> None:
    tts = OpenAiCompatibleTts(base_url=closed_port_url(), timeout_s=5)
    with pytest.raises(ProviderError, match="unreachable"):
        _ = [c async for c in tts.synthesize("Hi", VoiceSettings())]
    await tts.close()
