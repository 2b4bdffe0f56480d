"""Natural turn-taking in server-VAD mode, end to end with speech synthesized by Piper: a
backchannel over the agent does not interrupt it, "wait, stop" does; a false interruption
(speech that yields no words) pauses the paced voice and lets it resume mid-sentence; the
semantic end-of-turn model keeps a turn open through a pause in the middle of a sentence and
ends a finished one without waiting for the full silence."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from hubbub.conversation.voice.providers.registry import smart_turn_available
from hubbub.protocol.audio_frame import encode_audio_frame
from tests.support.server import ServerProcess
from tests.voice.speech import piper_pcm16k_async, silence, without_trailing_silence
from tests.webrtc.conftest import Client

from .voice_clients import (
    DEMO_PROJECT,
    TimedClient,
    WsClient,
    final_transcript,
    next_message,
    paced,
    project_server,
    voice_chunk,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEY = "demo-conversation-key"
BYTES_PER_S = 32_000


def support_desk(tmp: Path, turn_taking: str, asr: str = "") -> Path:
    """The support desk in server-VAD mode with the given ``turnTaking`` block."""
    directory = tmp / "projects"
    directory.mkdir(parents=True, exist_ok=True)
    text = DEMO_PROJECT.read_text(encoding="utf-8")
    text = text.replace(
        "acceptVoice: true\n",
        f"acceptVoice: true\nasrConfig:\n  serverVad: true\nturnTaking: {turn_taking}\n",
    )
    if asr:
        assert "\nproviders:" not in text
        text += f"\nproviders:\n  asr: {asr}\n"
    (directory / "support-desk.yaml").write_text(text, encoding="utf-8")
    return directory


async def greeting_playing(server: ServerProcess, client: TimedClient) -> str:
    """Connect, start, and return once the greeting's paced voice has been heard a while."""
    await client.connect(server.http_url + "/api/webrtc/offer")
    client.send({"type": "auth", "requestId": "a", "apiKey": KEY})
    assert (await next_message(client, "auth"))["success"] is True
    client.send({"type": "start_conversation", "requestId": "s", "userId": "turns"})
    turn_id = str((await next_message(client, "start_ai_generation_output"))["outputTurnId"])
    await client.wait_frames(lambda frames: sum(f.frame.turn_id == turn_id for f in frames) > 40)
    return turn_id


async def speak_webrtc(client: Client, pcm: bytes) -> None:
    assert client.audio is not None
    async for piece in paced(pcm, speed=1.5):
        client.audio.send(encode_audio_frame("", piece))


async def turn_outcome(client: TimedClient, turn_id: str) -> dict[str, Any]:
    """The greeting's end or abort (the voice is several seconds long)."""
    async with asyncio.timeout(60):
        while True:
            for _, message in client.control_at:
                if message.get("outputTurnId") == turn_id and message.get("type") in (
                    "end_ai_generation_output",
                    "abort_ai_generation_output",
                ):
                    return message
            await client.receive()


def heard_s(client: Client, turn_id: str) -> float:
    return sum(len(f.frame.audio) for f in client.frames if f.frame.turn_id == turn_id) / 32_000


# --- backchannels and interruptions (pocketsphinx, the default recogniser) ---------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("turn-taking")
    projects = support_desk(tmp, "{minInterruptionMs: 400, minInterruptionWords: 1}")
    async with project_server(tmp, projects) as process:
        yield process


async def test_a_backchannel_does_not_interrupt_the_agent(server: ServerProcess) -> None:
    client = TimedClient()
    try:
        turn_id = await greeting_playing(server, client)
        for text in ("Mm hmm.", "Yeah."):  # Piper hums the first; the second is a word
            await speak_webrtc(client, await piper_pcm16k_async(text) + silence(1200))
        outcome = await turn_outcome(client, turn_id)
        assert outcome["type"] == "end_ai_generation_output", client.types()
        assert "user_speaking_started" not in client.kinds(), client.types()
        assert heard_s(client, turn_id) > 5.0  # the whole greeting was heard
    finally:
        await client.close()


async def test_wait_stop_interrupts_the_agent(server: ServerProcess) -> None:
    client = TimedClient()
    try:
        turn_id = await greeting_playing(server, client)
        speaking = asyncio.create_task(next_message(client, "user_speaking_started"))
        await speak_webrtc(client, await piper_pcm16k_async("Wait, stop.") + silence(900))
        outcome = await turn_outcome(client, turn_id)
        assert outcome["type"] == "abort_ai_generation_output", client.types()
        await speaking
        final = await final_transcript(client)
        assert "stop" in final["chunkText"].lower() or "wait" in final["chunkText"].lower()
        assert heard_s(client, turn_id) < 5.0  # the rest of the greeting was dropped
    finally:
        await client.close()


# --- a false interruption: speech with no words (an OpenAI-compatible recogniser on loopback
# that hears nothing, like a cough) --------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def silent_asr() -> AsyncIterator[str]:
    async def transcriptions(request: web.Request) -> web.StreamResponse:
        await request.post()
        return web.json_response({"text": ""})

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1/"
    await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def false_server(
    tmp_path_factory: pytest.TempPathFactory, silent_asr: str
) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("false-interruption")
    asr = json.dumps({"provider": "openai", "settings": {"base_url": silent_asr}})
    projects = support_desk(
        tmp, "{minInterruptionMs: 300, falseInterruptionTimeoutMs: 700}", asr=asr
    )
    async with project_server(tmp, projects) as process:
        yield process


async def test_a_false_interruption_lets_the_agent_resume(false_server: ServerProcess) -> None:
    client = TimedClient()
    try:
        turn_id = await greeting_playing(false_server, client)
        before = heard_s(client, turn_id)
        # 1.5 s of voice-like sound that the recogniser hears no words in.
        hum = without_trailing_silence(await piper_pcm16k_async("Hmmmmmmmmmm."))
        assert len(hum) / BYTES_PER_S > 1.2
        await speak_webrtc(client, hum + silence(600))
        outcome = await turn_outcome(client, turn_id)
        assert outcome["type"] == "end_ai_generation_output", client.types()
        assert "user_speaking_started" not in client.kinds(), client.types()
        frames = [f for f in client.frames if f.frame.turn_id == turn_id]
        gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(frames)]
        # The voice paused for the possible interruption, then went on where it stopped.
        assert max(gaps) > 0.4, max(gaps)
        assert heard_s(client, turn_id) > before + 2.0
    finally:
        await client.close()


# --- semantic end of turn (Smart Turn v3) ------------------------------------------------------

needs_smart_turn = pytest.mark.skipif(
    not smart_turn_available(), reason="needs the pipecat-ai wheel of constraints/voice-model.txt"
)

SEMANTIC = "{endOfTurn: semantic, semanticSilenceMs: 250, maxSilenceMs: 2000}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def semantic_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("semantic")
    async with project_server(tmp, support_desk(tmp, SEMANTIC)) as process:
        yield process


async def after_greeting(server: ServerProcess) -> tuple[WsClient, str]:
    client = await WsClient.connect(server)
    assert (await client.command({"type": "auth", "apiKey": KEY}))["success"] is True
    started = await client.command({"type": "start_conversation", "userId": "semantic"})
    await next_message(client, "end_ai_generation_output")
    return client, str(started["conversationId"])


async def stream_ws(client: WsClient, conversation_id: str, pcm: bytes) -> None:
    ordinal = 0
    async for piece in paced(pcm, speed=4.0):
        client.send(voice_chunk(conversation_id, "", piece, ordinal))
        ordinal += 1


@needs_smart_turn
async def test_a_finished_utterance_ends_the_turn_before_the_full_silence(
    semantic_server: ServerProcess,
) -> None:
    client, conversation_id = await after_greeting(semantic_server)
    try:
        speech = without_trailing_silence(
            await piper_pcm16k_async("Can you check the status of my order?")
        )
        # Only 700 ms of silence follow, then no audio at all: silence alone (2 s) would
        # never end this turn; the model must.
        await stream_ws(client, conversation_id, silence(300) + speech + silence(700))
        final = await final_transcript(client)
        assert "order" in final["chunkText"].lower(), final
    finally:
        await client.close()


@needs_smart_turn
async def test_a_pause_in_the_middle_does_not_cut_the_turn(
    semantic_server: ServerProcess,
) -> None:
    client, conversation_id = await after_greeting(semantic_server)
    try:
        first = without_trailing_silence(await piper_pcm16k_async("I need help with my order and"))
        second = without_trailing_silence(await piper_pcm16k_async("it has not arrived yet."))
        await stream_ws(
            client, conversation_id, silence(300) + first + silence(900) + second + silence(2200)
        )
        final = await final_transcript(client)
        await client.command(
            {"type": "get_all_vars", "conversationId": conversation_id, "stageId": "greeting"}
        )
        started = [m for m in client.log if m.get("type") == "user_speaking_started"]
        finals = [
            m for m in client.log if m.get("type") == "user_transcribed_chunk" and m["isFinal"]
        ]
        assert len(started) == 1 and len(finals) == 1, finals  # one turn, not two
        text = final["chunkText"].lower()
        assert "help" in text or "order" in text, text
        assert len(text.split()) >= 8, text  # both halves are in it
    finally:
        await client.close()
