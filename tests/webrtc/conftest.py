"""A real aiohttp server on 127.0.0.1:0 with only the WebRTC endpoint, over a small recording
and echoing SessionHandler, and an aiortc client that follows the spec's flow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from hubbub.auth.client_ip import TrustedProxies
from hubbub.conversation.protocol.pushes import VoiceChunk
from hubbub.conversation.session.channel import ClientChannel, SessionHandler
from hubbub.protocol.audio_frame import AudioFrame, decode_audio_frame
from hubbub.transports.webrtc_settings import PeerLimits, WebRtcSettings
from hubbub.transports.webrtc_signalling import WebRtcEndpoint, add_webrtc_routes

TIMEOUT_S = 10.0
PCM_16000_BYTES_PER_S = 32_000


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


class RecordingHandler(SessionHandler):
    """Records what the transport delivers; answers a few test commands, handing the channel
    turn boundaries as a real session does (an AI turn's messages with its turn id, input turn
    notices after the messages that open and close input turns).

    ``echo`` -> ``{"type": "echo", "payload": <the message>}``; ``speak`` -> the turn's
    ``start_ai_generation_output`` then ``ms`` of pcm_16000 voice in ``chunk_ms`` chunks
    (``early: true`` sends the voice first); ``abort`` -> ``abort_ai_generation_output``;
    ``start_voice`` -> a successful ``start_user_voice_input`` reply for ``tinp_1``;
    ``final_transcript`` -> the final ``user_transcribed_chunk`` of ``tinp_1``.
    """

    def __init__(self, channel: ClientChannel) -> None:
        self.channel = channel
        self.messages: list[str | bytes] = []
        self.audio: list[tuple[str, bytes]] = []
        self.audio_bytes = 0
        self.audio_changed = asyncio.Event()
        self.closed_event = asyncio.Event()
        self.closed_calls = 0

    async def handle_message(self, payload: str | bytes) -> None:
        self.messages.append(payload)
        message = json.loads(payload)
        kind = message.get("type")
        if kind == "echo":
            self.channel.send_message(encode({"type": "echo", "payload": message}))
        elif kind == "speak":
            await self.speak(message["turn"], message["ms"], message.get("chunk_ms", 100), message)
        elif kind == "abort":
            self.channel.end_output_turn(
                message["turn"],
                encode({"type": "abort_ai_generation_output", "outputTurnId": message["turn"]}),
                aborted=True,
            )
        elif kind == "final_transcript":
            self.channel.send_message(
                encode(
                    {
                        "type": "user_transcribed_chunk",
                        "inputTurnId": "tinp_1",
                        "chunkText": "hello",
                        "isFinal": True,
                    }
                )
            )
            self.channel.input_turn_closed("tinp_1")
        elif kind == "start_voice":
            self.channel.send_message(
                encode({"type": "start_user_voice_input", "success": True, "inputTurnId": "tinp_1"})
            )
            self.channel.input_turn_opened("tinp_1")

    async def speak(self, turn: str, ms: int, chunk_ms: int, message: dict[str, Any]) -> None:
        start = encode({"type": "start_ai_generation_output", "outputTurnId": turn})
        if not message.get("early"):
            self.channel.start_output_turn(turn, start)
        chunk_bytes = PCM_16000_BYTES_PER_S * chunk_ms // 1000
        total = PCM_16000_BYTES_PER_S * ms // 1000
        offsets = range(0, total, chunk_bytes)
        for ordinal, offset in enumerate(offsets):
            audio = bytes([ordinal % 256]) * min(chunk_bytes, total - offset)
            is_final = offset + chunk_bytes >= total
            chunk = VoiceChunk(
                "conv_1", turn, f"chnk_{ordinal}", audio, "pcm_16000", ordinal, is_final
            )
            self.channel.send_voice(chunk)
        if message.get("early"):
            # An engine that is slow to announce the turn: every task that is ready (the
            # pacer, had the queued voice woken it) runs before the start goes out. Loop turns,
            # not a timed sleep: what the pacer would do with the voice it does in one turn.
            for _ in range(20):
                await asyncio.sleep(0)
            self.channel.start_output_turn(turn, start)

    async def handle_audio(self, input_turn_id: str, audio: bytes) -> None:
        self.audio.append((input_turn_id, audio))
        self.audio_bytes += len(audio)
        self.audio_changed.set()

    async def closed(self) -> None:
        self.closed_calls += 1
        self.closed_event.set()


@dataclass
class RecordingFactory:
    handlers: list[RecordingHandler] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def open_session(self, channel: ClientChannel) -> SessionHandler:
        handler = RecordingHandler(channel)
        self.handlers.append(handler)
        self.opened.set()
        return handler

    async def first(self) -> RecordingHandler:
        await asyncio.wait_for(self.opened.wait(), TIMEOUT_S)
        return self.handlers[0]


@dataclass
class WebRtcServer:
    url: str
    endpoint: WebRtcEndpoint
    sessions: RecordingFactory

    @property
    def offer_url(self) -> str:
        return f"{self.url}/api/webrtc/offer"


ServerFactory = Callable[..., Awaitable[WebRtcServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> WebRtcServer:
        peer = PeerLimits(**overrides.pop("peer", {}))
        connect_limiter = overrides.pop("connect_limiter", None)
        settings = WebRtcSettings(**{"stun_url": "", "peer": peer, **overrides})
        sessions = RecordingFactory()
        endpoint = WebRtcEndpoint(sessions, TrustedProxies([]), settings, connect_limiter)
        app = web.Application()
        add_webrtc_routes(app, endpoint)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        return WebRtcServer(f"http://127.0.0.1:{port}", endpoint, sessions)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def server(start_server: ServerFactory) -> WebRtcServer:
    return await start_server()


@dataclass
class ReceivedFrame:
    at_s: float
    frame: AudioFrame


class Client:
    """An aiortc peer doing exactly the spec's flow."""

    def __init__(self, *, audio_channel: bool = True, track: MediaStreamTrack | None = None):
        self.pc = RTCPeerConnection()
        self.control: RTCDataChannel = self.pc.createDataChannel("control", ordered=True)
        self.audio: RTCDataChannel | None = None
        if audio_channel:
            self.audio = self.pc.createDataChannel("audio", ordered=False, maxRetransmits=0)
            self.audio.on("message", self._on_audio)
        if track is not None:
            self.pc.addTrack(track)
        self.remote_tracks: list[MediaStreamTrack] = []
        self.pc.on("track", self.remote_tracks.append)
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: list[tuple[str, Any]] = []  # control messages and audio frames, in order
        self.frames: list[ReceivedFrame] = []
        self.frames_changed = asyncio.Event()
        self.control_open = asyncio.Event()
        self.control_closed = asyncio.Event()
        self.control.on("open", self.control_open.set)
        self.control.on("close", self.control_closed.set)
        self.control.on("message", self._on_control)

    def _on_control(self, payload: str | bytes) -> None:
        message = json.loads(payload)
        self.events.append(("control", message))
        self.inbox.put_nowait(message)

    def _on_audio(self, payload: str | bytes) -> None:
        assert isinstance(payload, bytes)
        frame = decode_audio_frame(payload)
        assert isinstance(frame, AudioFrame)
        self.events.append(("audio", frame))
        self.frames.append(ReceivedFrame(asyncio.get_running_loop().time(), frame))
        self.frames_changed.set()

    async def connect(self, offer_url: str) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(offer_url, json={"sdpOffer": self.pc.localDescription.sdp}) as response,
        ):
            assert response.status == 200, await response.text()
            body = await response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdpAnswer"], "answer"))
        await asyncio.wait_for(self.control_open.wait(), TIMEOUT_S)

    def send(self, message: dict[str, Any]) -> None:
        self.control.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT_S)

    async def wait_frames(self, predicate: Callable[[list[ReceivedFrame]], bool]) -> None:
        async def wait() -> None:
            while not predicate(self.frames):
                self.frames_changed.clear()
                await self.frames_changed.wait()

        await asyncio.wait_for(wait(), TIMEOUT_S)

    async def close(self) -> None:
        await self.pc.close()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**kwargs: Any) -> Client:
        client = Client(**kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def wait_until(predicate: Callable[[], bool], event: asyncio.Event) -> None:
    """Await ``event`` (set whenever the watched state changes) until ``predicate`` holds."""

    async def wait() -> None:
        while not predicate():
            event.clear()
            await event.wait()

    await asyncio.wait_for(wait(), TIMEOUT_S)
