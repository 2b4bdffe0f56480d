"""A spoken support-desk turn end to end over WebRTC (binary frames) and over the WebSocket
(base64 chunks): final transcript, then the AI's answer with its voice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from hubbub.protocol.audio_frame import encode_audio_frame
from tests.support.server import ServerProcess
from tests.webrtc.conftest import Client

from .voice_clients import (
    WsClient,
    ai_turn,
    demo_server,
    final_transcript,
    next_message,
    paced,
    utterance_pcm,
    voice_chunk,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEY = "demo-conversation-key"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[ServerProcess]:
    async with demo_server() as process:
        yield process


@pytest_asyncio.fixture(loop_scope="module")
async def webrtc_clients() -> AsyncIterator[Callable[[], Client]]:
    made: list[Client] = []

    def make() -> Client:
        made.append(Client())
        return made[-1]

    yield make
    for client in made:
        await client.close()


async def started_webrtc(server: ServerProcess, client: Client) -> str:
    await client.connect(server.http_url + "/api/webrtc/offer")
    client.send({"type": "auth", "requestId": "a", "apiKey": KEY})
    auth = await next_message(client, "auth")
    assert auth["success"] is True, auth
    assert auth["projectSettings"]["acceptVoice"] is True
    assert auth["projectSettings"]["generateVoice"] is True
    client.send({"type": "start_conversation", "requestId": "s", "userId": "voice-user"})
    started = await next_message(client, "start_conversation")
    greeting = await ai_turn(client)
    assert greeting.expect_voice is True
    assert greeting.text.startswith("Hi, welcome to Acme Gadgets support!")
    return str(started["conversationId"])


async def test_spoken_turn_over_webrtc(server: ServerProcess, webrtc_clients: Any) -> None:
    client = webrtc_clients()
    conversation_id = await started_webrtc(server, client)
    client.send(
        {"type": "start_user_voice_input", "requestId": "v", "conversationId": conversation_id}
    )
    opened = await next_message(client, "start_user_voice_input")
    assert opened["success"] is True, opened
    turn_id = opened["inputTurnId"]
    assert client.audio is not None
    async for piece in paced(await utterance_pcm()):
        client.audio.send(encode_audio_frame(turn_id, piece))
    client.send(
        {
            "type": "end_user_voice_input",
            "requestId": "e",
            "conversationId": conversation_id,
            "inputTurnId": turn_id,
        }
    )
    final = await final_transcript(client)
    assert final["inputTurnId"] == turn_id
    assert "order" in final["chunkText"].lower(), final
    answer = await ai_turn(client)
    assert answer.expect_voice is True
    assert "order number" in answer.text
    # The answer's voice arrives as binary frames tagged with its outputTurnId.
    await client.wait_frames(
        lambda frames: (
            sum(len(f.frame.audio) for f in frames if f.frame.turn_id == answer.output_turn_id)
            >= 32_000
        )
    )
    events = [m for kind, m in client.events if kind == "control"]
    user_messages = [
        m["eventData"]
        for m in events
        if m.get("eventType") == "message" and m["eventData"]["role"] == "user"
    ]
    assert user_messages[-1]["asrDurationMs"] is not None
    assert user_messages[-1]["processingDurationMs"] is not None


async def test_spoken_turn_over_websocket(server: ServerProcess) -> None:
    client = await WsClient.connect(server)
    try:
        auth = await client.command(
            {"type": "auth", "apiKey": KEY, "sessionSettings": {"receiveAudioFormat": "pcm_24000"}}
        )
        assert auth["projectSettings"]["acceptVoice"] is True
        started = await client.command({"type": "start_conversation", "userId": "ws-voice"})
        conversation_id = started["conversationId"]
        greeting = await ai_turn(client)
        assert greeting.expect_voice and greeting.voice_bytes > 0
        opened = await client.command(
            {"type": "start_user_voice_input", "conversationId": conversation_id}
        )
        turn_id = opened["inputTurnId"]
        ordinal = 0
        async for piece in paced(await utterance_pcm(), speed=4.0):
            client.send(voice_chunk(conversation_id, turn_id, piece, ordinal))
            ordinal += 1
        ended = await client.command(
            {
                "type": "end_user_voice_input",
                "conversationId": conversation_id,
                "inputTurnId": turn_id,
            }
        )
        assert ended == {
            "type": "end_user_voice_input",
            "requestId": ended["requestId"],
            "sessionId": auth["sessionId"],
            "conversationId": conversation_id,
            "success": True,
            "inputTurnId": turn_id,
        }
        final = await final_transcript(client)
        assert "order" in final["chunkText"].lower(), final
        answer = await ai_turn(client)
        assert "order number" in answer.text
        assert answer.voice_bytes > 24_000 * 2  # over a second of pcm_24000
        chunks = [m for m in client.log if m.get("type") == "send_ai_voice_chunk"]
        mine = [m for m in chunks if m["outputTurnId"] == answer.output_turn_id]
        assert {m["audioFormat"] for m in mine} == {"pcm_24000"}
        assert [m["ordinal"] for m in mine] == list(range(len(mine)))
        assert mine[-1]["isFinal"] is True
        assistant = await next_message(client, "conversation_event")
        while assistant["eventData"].get("role") != "assistant":
            assistant = await next_message(client, "conversation_event")
        timing = assistant["eventData"]
        assert timing["timeToFirstAudioMs"] is not None and timing["ttsDurationMs"] > 0
    finally:
        await client.close()


async def test_voice_errors_over_websocket(server: ServerProcess) -> None:
    client = await WsClient.connect(server)
    try:
        await client.command({"type": "auth", "apiKey": KEY})
        started = await client.command({"type": "start_conversation", "userId": "ws-errors"})
        conversation_id = started["conversationId"]
        await ai_turn(client)
        end_without_turn = await client.command(
            {"type": "end_user_voice_input", "conversationId": conversation_id, "inputTurnId": "x"}
        )
        assert end_without_turn["success"] is False
        assert (
            end_without_turn["error"]
            == "Cannot receive user input in current state: awaiting_user_input"
        )
        opened = await client.command(
            {"type": "start_user_voice_input", "conversationId": conversation_id}
        )
        turn_id = opened["inputTurnId"]
        wrong = await client.command(voice_chunk(conversation_id, "tinp_other", b"\0" * 640, 0))
        assert wrong["success"] is False
        assert wrong["error"] == f"Input turn ID mismatch: expected {turn_id}, got tinp_other"
        bad = await client.command(
            {**voice_chunk(conversation_id, turn_id, b"", 0), "audioData": "%%%"}
        )
        assert bad["success"] is False
        # Silence only: the final transcript is empty, the turn goes on as the placeholder.
        await client.command(voice_chunk(conversation_id, turn_id, bytes(16_000), 1))
        await client.command(
            {
                "type": "end_user_voice_input",
                "conversationId": conversation_id,
                "inputTurnId": turn_id,
            }
        )
        final = await final_transcript(client)
        assert final["chunkText"] == ""
        user = await next_message(client, "conversation_event")
        assert user["eventData"]["text"] == "**inaudible**"
        await ai_turn(client)
        # Audio for the finished turn is dropped; the session carries on.
        late = await client.command(voice_chunk(conversation_id, turn_id, bytes(640), 2))
        assert late["success"] is True
        text = await client.command(
            {
                "type": "send_user_text_input",
                "conversationId": conversation_id,
                "text": "where is my order",
            }
        )
        assert text["success"] is True
        assert "order number" in (await ai_turn(client)).text
    finally:
        await client.close()


async def test_voice_disabled_without_voice_input(server: ServerProcess) -> None:
    client = await WsClient.connect(server)
    try:
        auth = await client.command(
            {
                "type": "auth",
                "apiKey": KEY,
                "sessionSettings": {"sendVoiceInput": False, "receiveVoiceOutput": False},
            }
        )
        assert auth["projectSettings"]["acceptVoice"] is False
        assert auth["projectSettings"]["asrConfig"] is None
        started = await client.command({"type": "start_conversation", "userId": "ws-text"})
        greeting = await ai_turn(client)
        assert greeting.expect_voice is False and greeting.voice_bytes == 0
        refused = await client.command(
            {"type": "start_user_voice_input", "conversationId": started["conversationId"]}
        )
        assert refused["error"] == "Voice input is disabled for this session"
    finally:
        await client.close()


async def test_voice_turn_left_open_by_a_closed_session(server: ServerProcess) -> None:
    first = await WsClient.connect(server)
    try:
        await first.command({"type": "auth", "apiKey": KEY})
        started = await first.command({"type": "start_conversation", "userId": "ws-gone"})
        conversation_id = started["conversationId"]
        await ai_turn(first)
        opened = await first.command(
            {"type": "start_user_voice_input", "conversationId": conversation_id}
        )
        await first.command(voice_chunk(conversation_id, opened["inputTurnId"], bytes(3200), 0))
    finally:
        await first.close()
    second = await WsClient.connect(server)
    try:
        await second.command({"type": "auth", "apiKey": KEY})
        resumed = await second.command(
            {"type": "resume_conversation", "conversationId": conversation_id}
        )
        assert resumed["success"] is True, resumed
        text = await second.command(
            {
                "type": "send_user_text_input",
                "conversationId": conversation_id,
                "text": "where is my order",
            }
        )
        assert text["success"] is True, text
        assert "order number" in (await ai_turn(second)).text
    finally:
        await second.close()
