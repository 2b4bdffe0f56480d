"""Error paths the OpenAI-compatible speech providers share with the LLM through OpenAiHttpClient:
an API key echoed back by the server is redacted, and a stalled speech stream times out."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from hubbub.conversation.voice.providers.base import ProviderError, VoiceSettings
from hubbub.conversation.voice.providers.openai_asr import OpenAiCompatibleAsr
from hubbub.conversation.voice.providers.openai_tts import OpenAiCompatibleTts

pytestmark = pytest.mark.integration

API_KEY = "sk-echoed-secret-123"


async def reject_the_key(request: web.Request) -> web.Response:
    await request.read()
    key = request.headers["Authorization"].removeprefix("Bearer ")
    return web.json_response(
        {"error": {"message": f"Incorrect API key provided: {key}"}}, status=401
    )


async def reject_the_key_as_text(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text=f"denied for {request.headers['Authorization']}", status=403)


async def stall_after_the_header(request: web.Request) -> web.StreamResponse:
    reply = web.StreamResponse()
    await reply.prepare(request)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
    await reply.write(buffer.getvalue() + bytes(3200))
    await asyncio.Event().wait()  # never sends more; the client must give up on its own
    return reply


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/json/audio/transcriptions", reject_the_key)
    app.router.add_post("/json/audio/speech", reject_the_key)
    app.router.add_post("/text/audio/transcriptions", reject_the_key_as_text)
    app.router.add_post("/text/audio/speech", reject_the_key_as_text)
    app.router.add_post("/stall/audio/speech", stall_after_the_header)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(("body", "status"), [("json", "HTTP 401"), ("text", "HTTP 403")])
async def test_asr_redacts_an_api_key_echoed_in_an_error_body(
    base_url: str, body: str, status: str
) -> None:
    asr = OpenAiCompatibleAsr(base_url=f"{base_url}/{body}", api_key=API_KEY)
    try:
        stream = await asr.open_stream(language="en")
        await stream.push(bytes(3200))
        with pytest.raises(ProviderError, match=status) as caught:
            await stream.finish()
    finally:
        await asr.close()
    assert "speech recognition server" in str(caught.value)
    assert "[redacted]" in str(caught.value)
    assert API_KEY not in str(caught.value)


@pytest.mark.parametrize(("body", "status"), [("json", "HTTP 401"), ("text", "HTTP 403")])
async def test_tts_redacts_an_api_key_echoed_in_an_error_body(
    base_url: str, body: str, status: str
) -> None:
    tts = OpenAiCompatibleTts(base_url=f"{base_url}/{body}", api_key=API_KEY)
    try:
        with pytest.raises(ProviderError, match=status) as caught:
            _ = [c async for c in tts.synthesize("Hi", VoiceSettings())]
    finally:
        await tts.close()
    assert "speech server" in str(caught.value)
    assert "[redacted]" in str(caught.value)
    assert API_KEY not in str(caught.value)


async def test_tts_stream_that_stalls_fails_after_the_idle_timeout(base_url: str) -> None:
    tts = OpenAiCompatibleTts(base_url=f"{base_url}/stall", timeout_s=0.3)
    stream = tts.synthesize("A long answer.", VoiceSettings())
    try:
        assert await asyncio.wait_for(anext(stream), 10)  # the first chunk arrives
        with pytest.raises(ProviderError, match=r"no data from the speech server for 0\.3 s"):
            await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await tts.close()
