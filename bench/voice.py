"""Voice latency: end of the user's speech -> first AI audio, over WebRTC and the WebSocket.

    .venv/bin/python bench/voice.py [--turns 50] [--levels 1,2,4,8] [--level-turns 5]

Runs a real ``hubbub serve`` in demo mode (the support-desk agent with the offline providers:
PocketSphinx ASR, Piper TTS) and speaks to it: "Hello, I need help with my order", synthesized
once with Piper, streamed in 20 ms pieces at real-time pace, then ``end_user_voice_input``. The
latency is measured at the client from sending ``end_user_voice_input`` to the first audio of
the answer (a binary frame tagged with its outputTurnId on WebRTC, a ``send_ai_voice_chunk`` on
the WebSocket). It spans the final ASR decode, the rule-based answer and the synthesis of its
first sentence. Between turns the client waits for the answer (and, on WebRTC, for its paced
audio to finish playing), like a user listening.

Scenarios: ``--turns`` sequential turns on one conversation per transport (p50/p95), then
``--levels`` simultaneous WebSocket conversations, each speaking ``--level-turns`` turns in
real time, to find how many one node sustains (goal: p50 <= 500 ms). Clients and server share
the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubbub.protocol.audio_frame import encode_audio_frame  # noqa: E402
from tests.support.server import ServerProcess, running_server  # noqa: E402
from tests.voice_e2e.voice_clients import (  # noqa: E402
    DEMO_PROJECT,
    WsClient,
    config_for,
    next_message,
    paced,
    utterance_pcm,
    voice_chunk,
)
from tests.webrtc.conftest import Client  # noqa: E402

KEY = "demo-conversation-key"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(name: str, latencies: list[float], wall_s: float) -> dict[str, Any]:
    return {
        "scenario": name,
        "turns": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
        "wall_s": round(wall_s, 1),
    }


async def turn_end(client: WsClient | Client) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            message = await client.receive()
            if message.get("type") in ("end_ai_generation_output", "abort_ai_generation_output"):
                return message


# --- WebSocket --------------------------------------------------------------------------------


async def ws_conversation(server: ServerProcess) -> tuple[WsClient, str]:
    client = await WsClient.connect(server)
    await client.command(
        {"type": "auth", "apiKey": KEY, "sessionSettings": {"receiveEvents": False}}
    )
    started = await client.command({"type": "start_conversation", "userId": "bench"})
    await turn_end(client)  # the greeting
    return client, str(started["conversationId"])


async def ws_turn(client: WsClient, conversation_id: str, pcm: bytes) -> float:
    opened = await client.command(
        {"type": "start_user_voice_input", "conversationId": conversation_id}
    )
    turn_id = opened["inputTurnId"]
    ordinal = 0
    async for piece in paced(pcm, speed=1.0):
        client.send(voice_chunk(conversation_id, turn_id, piece, ordinal))
        ordinal += 1
    client.send(
        {"type": "end_user_voice_input", "conversationId": conversation_id, "inputTurnId": turn_id}
    )
    ended = time.perf_counter()
    started = await next_message(client, "start_ai_generation_output")
    async with asyncio.timeout(60):
        while True:
            message = await client.receive()
            if message.get("type") == "send_ai_voice_chunk" and message["audioData"]:
                assert message["outputTurnId"] == started["outputTurnId"]
                latency = (time.perf_counter() - ended) * 1000
                break
    await turn_end(client)
    return latency


async def websocket_sequential(server: ServerProcess, pcm: bytes, turns: int) -> dict[str, Any]:
    client, conversation_id = await ws_conversation(server)
    began = time.perf_counter()
    try:
        latencies = [await ws_turn(client, conversation_id, pcm) for _ in range(turns)]
    finally:
        await client.close()
    return summary("WebSocket, 1 conversation", latencies, time.perf_counter() - began)


async def websocket_concurrent(
    server: ServerProcess, pcm: bytes, conversations: int, turns: int
) -> dict[str, Any]:
    pairs = [await ws_conversation(server) for _ in range(conversations)]
    began = time.perf_counter()

    async def speak(index: int, client: WsClient, conversation_id: str) -> list[float]:
        await asyncio.sleep(index * 0.25)  # stagger the speakers, as real callers would be
        return [await ws_turn(client, conversation_id, pcm) for _ in range(turns)]

    try:
        results = await asyncio.gather(*(speak(i, c, cid) for i, (c, cid) in enumerate(pairs)))
    finally:
        for client, _ in pairs:
            await client.close()
    latencies = [value for result in results for value in result]
    return summary(f"WebSocket, {conversations} at once", latencies, time.perf_counter() - began)


# --- WebRTC -----------------------------------------------------------------------------------


async def frames_quiet(client: Client, quiet_s: float = 0.3) -> None:
    """The answer's paced audio has finished arriving (nothing new for ``quiet_s``)."""
    async with asyncio.timeout(60):
        while True:
            client.frames_changed.clear()
            try:
                await asyncio.wait_for(client.frames_changed.wait(), quiet_s)
            except TimeoutError:
                return


async def webrtc_sequential(server: ServerProcess, pcm: bytes, turns: int) -> dict[str, Any]:
    client = Client()
    await client.connect(server.http_url + "/api/webrtc/offer")
    client.send(
        {
            "type": "auth",
            "requestId": "a",
            "apiKey": KEY,
            "sessionSettings": {"receiveEvents": False},
        }
    )
    await next_message(client, "auth")
    client.send({"type": "start_conversation", "requestId": "s", "userId": "bench"})
    conversation_id = (await next_message(client, "start_conversation"))["conversationId"]
    await turn_end(client)
    await frames_quiet(client)
    latencies: list[float] = []
    began = time.perf_counter()
    try:
        for index in range(turns):
            request = f"v{index}"
            client.send(
                {
                    "type": "start_user_voice_input",
                    "requestId": request,
                    "conversationId": conversation_id,
                }
            )
            turn_id = (await next_message(client, "start_user_voice_input"))["inputTurnId"]
            assert client.audio is not None
            async for piece in paced(pcm, speed=1.0):
                client.audio.send(encode_audio_frame(turn_id, piece))
            client.send(
                {
                    "type": "end_user_voice_input",
                    "requestId": f"e{index}",
                    "conversationId": conversation_id,
                    "inputTurnId": turn_id,
                }
            )
            ended = time.perf_counter()
            output = (await next_message(client, "start_ai_generation_output"))["outputTurnId"]
            await client.wait_frames(
                lambda frames, turn=output: any(f.frame.turn_id == turn for f in frames)
            )
            latencies.append((time.perf_counter() - ended) * 1000)
            await turn_end(client)
            await frames_quiet(client)
    finally:
        await client.close()
    return summary("WebRTC, 1 conversation", latencies, time.perf_counter() - began)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | turns | p50 ms | p95 ms | max ms | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['turns']} | {row['p50_ms']} | {row['p95_ms']} "
            f"| {row['max_ms']} | {row['wall_s']} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--level-turns", type=int, default=5)
    args = parser.parse_args()
    pcm = await utterance_pcm()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
        config = config_for(DEMO_PROJECT.parent, Path(tmp) / "store.db")
        async with running_server(config, env={"WEBRTC_STUN_URL": ""}) as server:
            await run(server, pcm, args, rows)
    print()
    print(table(rows))


async def run(
    server: ServerProcess, pcm: bytes, args: argparse.Namespace, rows: list[dict[str, Any]]
) -> None:
    if args.turns:
        rows.append(await webrtc_sequential(server, pcm, args.turns))
        print(table(rows[-1:]), flush=True)
        rows.append(await websocket_sequential(server, pcm, args.turns))
        print(table(rows[-1:]), flush=True)
    for level in (int(n) for n in args.levels.split(",") if n):
        rows.append(await websocket_concurrent(server, pcm, level, args.level_turns))
        print(table(rows[-1:]), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
