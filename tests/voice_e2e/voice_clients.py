"""Shared pieces of the voice end-to-end tests: the speech, servers, and both protocol clients."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from hubbub.console import demo_projects_dir
from tests.support.server import ServerProcess, running_server
from tests.voice.speech import piper_pcm16k_async, silence
from tests.webrtc.conftest import Client

TIMEOUT_S = 20.0
# A whole AI turn: over WebRTC it ends only once its voice has been paced out (the greeting is
# ~8 s of speech), after synthesis on a machine that may be busy.
TURN_TIMEOUT_S = 45.0
FRAME_BYTES = 640  # 20 ms of pcm_16000
UTTERANCE = "Hello, I need help with my order"
REPO = Path(__file__).resolve().parents[2]
DEMO_PROJECT = demo_projects_dir() / "support-desk.yaml"


async def utterance_pcm(text: str = UTTERANCE) -> bytes:
    """The user's speech (Piper, synthesized here) with a little silence around it."""
    return silence(200) + await piper_pcm16k_async(text) + silence(300)


def frames(pcm: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


async def paced(pcm: bytes, speed: float = 2.0) -> AsyncIterator[bytes]:
    """20 ms pieces at ``speed`` times real time (a microphone, a little hurried)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, piece in enumerate(frames(pcm)):
        yield piece
        due = start + (index + 1) * 0.02 / speed
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the sender, not waiting for an event


def server_vad_project(tmp: Path, *, chunk_delay_ms: int = 0) -> Path:
    """The support desk with server VAD on (and, for barge-in, a slowly streamed answer)."""
    directory = tmp / "projects"
    directory.mkdir(parents=True, exist_ok=True)
    text = DEMO_PROJECT.read_text(encoding="utf-8")
    text = text.replace("acceptVoice: true\n", "acceptVoice: true\nasrConfig:\n  serverVad: true\n")
    text = text.replace(
        "ruleResponder:\n", f"ruleResponder:\n  chunkDelayMs: {chunk_delay_ms}\n", 1
    )
    (directory / "support-desk.yaml").write_text(text, encoding="utf-8")
    return directory


def config_for(projects: Path, database: Path) -> str:
    return f"""
[conversations]
projects_dir = "{projects}"
database_url = "sqlite+aiosqlite:///{database}"
auth_attempts_per_ip = 0
"""


def demo_server() -> Any:
    return running_server(None, env={"WEBRTC_STUN_URL": ""})


def project_server(tmp: Path, projects: Path) -> Any:
    return running_server(config_for(projects, tmp / "store.db"), env={"WEBRTC_STUN_URL": ""})


# --- a raw WebSocket client (spec sections 1-5, base64 voice) ----------------------------------


@dataclass
class WsClient:
    ws: aiohttp.ClientWebSocketResponse
    http: aiohttp.ClientSession
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    log: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _counter: int = 0

    @classmethod
    async def connect(cls, server: ServerProcess) -> WsClient:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(server.ws_url + "/ws")
        client = cls(ws, http)
        client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                self.log.append(data)
                self.inbox.put_nowait(data)

    def send(self, message: dict[str, Any]) -> str:
        self._counter += 1
        request_id = f"req-{self._counter}"
        asyncio.get_running_loop().create_task(
            self.ws.send_str(json.dumps({**message, "requestId": request_id}))
        )
        return request_id

    async def receive(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT_S)

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id = self.send(message)
        while True:
            reply = await self.receive()
            if reply.get("requestId") == request_id:
                return reply

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def voice_chunk(conversation_id: str, turn_id: str, pcm: bytes, ordinal: int) -> dict[str, Any]:
    return {
        "type": "send_user_voice_chunk",
        "conversationId": conversation_id,
        "inputTurnId": turn_id,
        "audioData": base64.b64encode(pcm).decode(),
        "ordinal": ordinal,
    }


# --- a WebRTC client that times its control messages -----------------------------------------


class TimedClient(Client):
    """Records when each control message arrives (the loop's clock, as audio frames are)."""

    def __init__(self) -> None:
        super().__init__()
        self.control_at: list[tuple[float, dict[str, Any]]] = []

    def _on_control(self, payload: str | bytes) -> None:
        super()._on_control(payload)
        self.control_at.append((asyncio.get_running_loop().time(), self.events[-1][1]))

    def arrival(self, kind: str) -> tuple[float, dict[str, Any]]:
        return next((at, m) for at, m in self.control_at if m.get("type") == kind)

    def types(self) -> list[str]:
        """The control messages so far, timed from the first (for assertion messages)."""
        t0 = self.control_at[0][0] if self.control_at else 0.0
        return [
            f"{at - t0:.2f} {m.get('type', '')} {m.get('chunkText', m.get('outputTurnId', ''))}"
            for at, m in self.control_at
            if m.get("type") != "ai_transcribed_chunk"
        ]

    def kinds(self) -> list[str]:
        return [m.get("type", "") for _, m in self.control_at]


# --- reading turns, either transport -----------------------------------------------------------


@dataclass
class AiTurn:
    output_turn_id: str
    expect_voice: bool
    text: str
    aborted: bool
    voice_bytes: int = 0  # WebSocket only: base64 voice received within the turn


async def next_message(client: WsClient | Client, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            message = await client.receive()
            if message.get("type") == kind:
                return message


async def ai_turn(client: WsClient | Client) -> AiTurn:
    started = await next_message(client, "start_ai_generation_output")
    turn_id = started["outputTurnId"]
    voice = 0
    async with asyncio.timeout(TURN_TIMEOUT_S):
        while True:
            message = await client.receive()
            kind = message.get("type")
            if kind == "send_ai_voice_chunk" and message["outputTurnId"] == turn_id:
                voice += len(base64.b64decode(message["audioData"]))
            elif kind == "end_ai_generation_output" and message["outputTurnId"] == turn_id:
                return AiTurn(turn_id, started["expectVoice"], message["fullText"], False, voice)
            elif kind == "abort_ai_generation_output" and message["outputTurnId"] == turn_id:
                return AiTurn(
                    turn_id, started["expectVoice"], message["accumulatedText"], True, voice
                )


async def final_transcript(client: WsClient | Client) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            message = await next_message(client, "user_transcribed_chunk")
            if message["isFinal"]:
                return message
