"""End means done (spec section 4): ``end_ai_generation_output`` reaches the client only after
the last audio of the turn, on both channels. Over WebRTC the voice is paced in real time, so
the end waits for the pacer; on barge-in the paced audio stops at once."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.server import ServerProcess

from .voice_clients import TimedClient, WsClient, demo_server, next_message

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEY = "demo-conversation-key"
BYTES_PER_S = 32_000  # pcm_16000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[ServerProcess]:
    async with demo_server() as process:
        yield process


async def whole_turn(client: TimedClient | WsClient) -> dict[str, Any]:
    """The greeting's end: its voice is several seconds long, paced, on a busy machine."""
    async with asyncio.timeout(60):
        while True:
            message = await client.inbox.get()
            if message.get("type") == "end_ai_generation_output":
                return message


async def greeted(server: ServerProcess, client: TimedClient) -> str:
    await client.connect(server.http_url + "/api/webrtc/offer")
    client.send({"type": "auth", "requestId": "a", "apiKey": KEY})
    assert (await next_message(client, "auth"))["success"] is True
    client.send({"type": "start_conversation", "requestId": "s", "userId": "end-user"})
    started = await next_message(client, "start_ai_generation_output")
    return str(started["outputTurnId"])


async def probe(client: TimedClient) -> None:
    """One control round trip: the frames the server sent before it have arrived by then."""
    conversation_id = client.arrival("start_conversation")[1]["conversationId"]
    client.send(
        {
            "type": "get_all_vars",
            "requestId": "probe",
            "conversationId": conversation_id,
            "stageId": "greeting",
        }
    )
    reply = await next_message(client, "get_all_vars")
    assert reply["success"] is True, reply


async def test_webrtc_end_arrives_after_the_last_audio_frame(server: ServerProcess) -> None:
    client = TimedClient()
    try:
        turn_id = await greeted(server, client)
        end = await whole_turn(client)
        assert end["outputTurnId"] == turn_id
        end_at, _ = client.arrival("end_ai_generation_output")
        turn_frames = [f for f in client.frames if f.frame.turn_id == turn_id]
        heard_s = sum(len(f.frame.audio) for f in turn_frames) / BYTES_PER_S
        assert heard_s > 3.0, heard_s  # the greeting is a few seconds of speech
        # Nothing of the turn arrives after its end: give late frames a chance to show up.
        await probe(client)
        late = [f for f in client.frames if f.frame.turn_id == turn_id and f.at_s > end_at]
        assert late == [], f"{len(late)} frames ({len(late) * 0.02:.2f} s) arrived after the end"
        assert turn_frames[-1].at_s <= end_at
        # And the end waited for the pacing: the audio took about its own length to arrive.
        started_at, _ = client.arrival("start_ai_generation_output")
        assert end_at - started_at >= heard_s * 0.9
    finally:
        await client.close()


async def test_webrtc_barge_in_stops_paced_audio_at_once(server: ServerProcess) -> None:
    client = TimedClient()
    try:
        turn_id = await greeted(server, client)
        await client.wait_frames(
            lambda frames: sum(f.frame.turn_id == turn_id for f in frames) > 25
        )
        conversation_id = client.arrival("start_conversation")[1]["conversationId"]
        client.send(
            {"type": "abort_ai_generation", "requestId": "x", "conversationId": conversation_id}
        )
        aborted = await next_message(client, "abort_ai_generation_output")
        assert aborted["outputTurnId"] == turn_id
        abort_at, _ = client.arrival("abort_ai_generation_output")
        # A later round trip on control: every frame sent before the abort has arrived by then.
        await probe(client)
        late = [f for f in client.frames if f.frame.turn_id == turn_id and f.at_s > abort_at]
        assert len(late) <= 2, f"{len(late)} frames arrived after the abort"
        heard_s = (
            sum(len(f.frame.audio) for f in client.frames if f.frame.turn_id == turn_id)
            / BYTES_PER_S
        )
        assert heard_s < 3.0, heard_s  # the rest of the greeting was never sent
    finally:
        await client.close()


async def test_websocket_end_arrives_after_the_last_voice_chunk(server: ServerProcess) -> None:
    client = await WsClient.connect(server)
    try:
        assert (await client.command({"type": "auth", "apiKey": KEY}))["success"] is True
        client.send({"type": "start_conversation", "userId": "end-ws-user"})
        started = await next_message(client, "start_ai_generation_output")
        turn_id = started["outputTurnId"]
        end = await whole_turn(client)
        assert end["outputTurnId"] == turn_id
        reply = await client.command(
            {"type": "get_all_vars", "conversationId": end["conversationId"], "stageId": "greeting"}
        )
        assert reply["success"] is True, reply
        kinds = [
            (m["type"], m.get("isFinal"))
            for m in client.log
            if m.get("outputTurnId") == turn_id
            and m["type"] in ("send_ai_voice_chunk", "end_ai_generation_output")
        ]
        assert kinds[-1] == ("end_ai_generation_output", None)
        assert kinds[-2] == ("send_ai_voice_chunk", True)  # the turn's last audio came first
        voice = sum(
            len(base64.b64decode(m["audioData"]))
            for m in client.log
            if m["type"] == "send_ai_voice_chunk" and m["outputTurnId"] == turn_id
        )
        assert voice / BYTES_PER_S > 3.0
    finally:
        await client.close()
