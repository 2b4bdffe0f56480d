"""Server-VAD mode: the client streams audio continuously with no start/end commands; the
server finds the speech, transcribes it, answers, and a user speaking over the answer
interrupts it (barge-in)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from hubbub.protocol.audio_frame import encode_audio_frame
from tests.support.server import ServerProcess
from tests.voice.speech import silence
from tests.webrtc.conftest import Client

from .voice_clients import (
    WsClient,
    ai_turn,
    final_transcript,
    next_message,
    paced,
    project_server,
    server_vad_project,
    utterance_pcm,
    voice_chunk,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEY = "demo-conversation-key"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("server-vad")
    # The answers stream slowly (like speech), so there is time to talk over them.
    async with project_server(tmp, server_vad_project(tmp, chunk_delay_ms=120)) as process:
        yield process


async def stream_webrtc(client: Client, pcm: bytes) -> None:
    assert client.audio is not None
    async for piece in paced(pcm):
        client.audio.send(encode_audio_frame("", piece))


async def test_server_vad_turn_over_webrtc(server: ServerProcess) -> None:
    client = Client()
    try:
        await client.connect(server.http_url + "/api/webrtc/offer")
        client.send({"type": "auth", "requestId": "a", "apiKey": KEY})
        auth = await next_message(client, "auth")
        assert auth["projectSettings"]["asrConfig"]["serverVad"] is True
        client.send({"type": "start_conversation", "requestId": "s", "userId": "vad-user"})
        await next_message(client, "start_conversation")
        greeting = await ai_turn(client)
        assert not greeting.aborted
        speaking = asyncio.create_task(next_message(client, "user_speaking_started"))
        await stream_webrtc(client, await utterance_pcm() + silence(1200))
        turn_id = (await speaking)["inputTurnId"]
        final = await final_transcript(client)
        assert final["inputTurnId"] == turn_id
        assert "order" in final["chunkText"].lower(), final
        answer = await ai_turn(client)
        assert "order number" in answer.text
        await client.wait_frames(
            lambda frames: any(f.frame.turn_id == answer.output_turn_id for f in frames)
        )
    finally:
        await client.close()


async def test_barge_in_by_speaking_over_the_answer(server: ServerProcess) -> None:
    client = await WsClient.connect(server)
    try:
        await client.command({"type": "auth", "apiKey": KEY})
        started = await client.command({"type": "start_conversation", "userId": "barge-in"})
        conversation_id = started["conversationId"]
        greeting_started = await next_message(client, "start_ai_generation_output")
        # Talk while the greeting is still streaming: no start/end commands, just audio.
        ordinal = 0
        async for piece in paced(await utterance_pcm() + silence(1200)):
            client.send(voice_chunk(conversation_id, "", piece, ordinal))
            ordinal += 1
        aborted = next(m for m in client.log if m.get("type") == "abort_ai_generation_output")
        assert aborted["outputTurnId"] == greeting_started["outputTurnId"]
        ended = [m for m in client.log if m.get("type") == "end_ai_generation_output"]
        assert greeting_started["outputTurnId"] not in {m["outputTurnId"] for m in ended}
        greeting_text = "Hi, welcome to Acme Gadgets support!"
        assert greeting_text.startswith(aborted["accumulatedText"][: len(greeting_text)])
        final = await final_transcript(client)
        assert "order" in final["chunkText"].lower(), final
        answer = await ai_turn(client)
        assert "order number" in answer.text and not answer.aborted
    finally:
        await client.close()
