"""Smoke test of an installed Hubbub, run by .ci/frontdoor with the fresh venv's Python.

    python smoke.py /path/to/venv/bin/hubbub

Starts ``hubbub serve`` in demo mode (port 0) in the current directory and checks what a new
user tries first: the realtime welcome with the demo key, a REST call, a demo conversation
text turn over ``/ws`` and over WebRTC, ``/demo/voice``, the landing page, console, demos and
browser client, ``/healthz``; then SIGTERM and a clean
exit. It needs only the base dependencies (aiohttp and aiortc) and never imports Hubbub, so
the server is exactly what the wheel installed. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

TIMEOUT_S = 20.0
LISTENING = re.compile(rb"Hubbub listening on (?P<url>http://[^\s\"]+)")
VOICE_EXTRA_LINE = "the 'voice' extra is not installed"
CONVERSATION_KEY = "demo-conversation-key"


def check(condition: bool, what: str, detail: Any = "") -> None:
    if not condition:
        raise AssertionError(f"{what} {detail}".strip())
    print(f"smoke: ok: {what}", flush=True)


class Server:
    def __init__(self, process: asyncio.subprocess.Process, url: str, output: list[bytes]):
        self.process, self.url, self.output = process, url, output

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")


async def start(hubbub: str) -> tuple[Server, asyncio.Task[None]]:
    env = {**os.environ, "HUBBUB_WEBRTC_STUN_URL": ""}  # no internet: host candidates only
    process = await asyncio.create_subprocess_exec(
        hubbub,
        "serve",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    output: list[bytes] = []
    async with asyncio.timeout(60):  # first start compiles bytecode and loads aiortc
        while True:
            line = await process.stdout.readline()
            if not line:
                text = output_text(output)
                raise AssertionError("hubbub serve exited before listening:\n" + text)
            output.append(line)
            found = LISTENING.search(line)
            if found:
                break

    async def pump() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            output.append(line)

    return Server(process, found.group("url").decode(), output), asyncio.create_task(pump())


def output_text(output: list[bytes]) -> str:
    return b"".join(output).decode(errors="replace")


async def realtime_welcome(server: Server, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{server.ws_url}/v1?key=pk_live_demo") as ws:
        welcome = json.loads((await ws.receive(timeout=TIMEOUT_S)).data)
        check(welcome.get("type") == "welcome", "realtime welcome with pk_live_demo", welcome)
    headers = {"Authorization": "Bearer sk_id_demo:sk_secret_demo"}
    async with http.post(
        f"{server.url}/v1/tokens", json={"peerId": "smoke"}, headers=headers
    ) as response:
        body = await response.json()
        check(response.status == 200 and "token" in body, "REST token mint", body)


class Conversation:
    """The conversation protocol over any transport that sends and receives JSON text."""

    def __init__(self, send: Any, receive: Any) -> None:
        self.send, self.receive = send, receive

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id = f"smoke-{message['type']}"
        await self.send({**message, "requestId": request_id})
        while True:
            reply = await self.receive()
            if reply.get("requestId") == request_id:
                return reply

    async def ai_turn(self) -> str:
        while True:
            message = await self.receive()
            if message.get("type") == "end_ai_generation_output":
                return str(message["fullText"])

    async def text_turn(self, transport: str) -> None:
        auth = await self.command({"type": "auth", "apiKey": CONVERSATION_KEY})
        check(auth.get("success") is True, f"{transport}: auth with {CONVERSATION_KEY}", auth)
        started = await self.command({"type": "start_conversation", "userId": "smoke"})
        check(started.get("success") is True, f"{transport}: start_conversation", started)
        greeting = await self.ai_turn()
        check("welcome" in greeting.lower(), f"{transport}: greeting", greeting)
        reply = await self.command(
            {
                "type": "send_user_text_input",
                "conversationId": started["conversationId"],
                "text": "where is my package?",
            }
        )
        check(reply.get("success") is True, f"{transport}: send_user_text_input", reply)
        answer = await self.ai_turn()
        check("order number" in answer, f"{transport}: a text turn answered", answer)


async def conversation_over_websocket(server: Server, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{server.ws_url}/ws") as ws:

        async def send(message: dict[str, Any]) -> None:
            await ws.send_str(json.dumps(message))

        async def receive() -> dict[str, Any]:
            return dict(json.loads((await ws.receive(timeout=TIMEOUT_S)).data))

        await Conversation(send, receive).text_turn("/ws")


async def conversation_over_webrtc(server: Server, http: aiohttp.ClientSession) -> None:
    pc = RTCPeerConnection()
    try:
        control = pc.createDataChannel("control", ordered=True)
        pc.createDataChannel("audio", ordered=False, maxRetransmits=0)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        opened = asyncio.Event()
        control.on("open", opened.set)
        control.on("message", lambda payload: inbox.put_nowait(json.loads(payload)))
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(
            f"{server.url}/api/webrtc/offer", json={"sdpOffer": pc.localDescription.sdp}
        ) as response:
            body = await response.json()
            check(response.status == 200, "WebRTC offer answered", body)
        await pc.setRemoteDescription(RTCSessionDescription(body["sdpAnswer"], "answer"))
        await asyncio.wait_for(opened.wait(), TIMEOUT_S)

        async def send(message: dict[str, Any]) -> None:
            control.send(json.dumps(message))

        async def receive() -> dict[str, Any]:
            return await asyncio.wait_for(inbox.get(), TIMEOUT_S)

        await Conversation(send, receive).text_turn("WebRTC")
    finally:
        await pc.close()


async def pages(server: Server, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/demo/voice") as response:
        page = await response.text()
        check(
            response.status == 200 and 'createDataChannel("control"' in page,
            "/demo/voice served",
            response.status,
        )
    async with http.get(f"{server.url}/healthz") as response:
        body = await response.json()
        check(response.status == 200 and body.get("status") == "ok", "/healthz", body)
    # The landing page, the console, the demos and the browser client are package data too
    # (in subdirectories of console/static): an installed wheel must serve every one.
    for path, marker in (
        ("/", "Hubbub is running"),
        ("/console", "console.js"),
        ("/static/console/console.js", "RateChart"),
        ("/client/hubbub.js", "export async function connect"),
        ("/demo/chat", "chat.js"),
        ("/static/demo/chat.js", "demoConnect"),
        ("/openapi", "openapi.js"),
    ):
        async with http.get(f"{server.url}{path}") as response:
            text = await response.text()
            check(response.status == 200 and marker in text, f"{path} served", response.status)
    async with http.get(f"{server.url}/info") as response:
        info = await response.json()
        no_docs = info.get("mode") == "demo" and info.get("docs") == []
        check(no_docs, "/info (no docs in a wheel)", info)


async def main(hubbub: str) -> int:
    began = time.monotonic()
    server, pump = await start(hubbub)
    try:
        log = server.log()
        check(log.count(VOICE_EXTRA_LINE) == 1, "one log line names the missing voice extra", log)
        async with aiohttp.ClientSession() as http:
            await realtime_welcome(server, http)
            await conversation_over_websocket(server, http)
            await conversation_over_webrtc(server, http)
            await pages(server, http)
    except BaseException:
        print("smoke: FAILED; the server's output:\n" + server.log(), file=sys.stderr)
        server.process.kill()
        raise
    server.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(server.process.wait(), TIMEOUT_S)
    await pump
    log = server.log()
    check(code == 0, "SIGTERM: clean exit", code)
    check("Traceback" not in log and " ERROR " not in log, "no traceback or error in the log", log)
    print(f"smoke: passed in {time.monotonic() - began:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
