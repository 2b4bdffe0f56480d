"""End to end over WebRTC against the real engine: ``hubbub serve`` in demo mode (the
support-desk agent), an aiortc client doing the spec's flow, text in and the AI's turn out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.server import ServerProcess, running_server

from .conftest import TIMEOUT_S, Client

pytestmark = pytest.mark.integration


@pytest.fixture
async def demo_server() -> AsyncIterator[ServerProcess]:
    async with running_server(None, env={"WEBRTC_STUN_URL": ""}) as process:
        yield process


async def command(client: Client, message: dict[str, Any]) -> dict[str, Any]:
    """Send a command; its reply (matched by requestId), skipping pushes."""
    request_id = f"req-{message['type']}"
    client.send({**message, "requestId": request_id})
    while True:
        reply = await client.receive()
        if reply.get("requestId") == request_id:
            return reply


async def ai_turn(client: Client) -> str:
    """The next AI turn's full text (start_ai_generation_output ... end_ai_generation_output)."""
    started = None
    while True:
        message = await client.receive()
        if message["type"] == "start_ai_generation_output":
            started = message["outputTurnId"]
        elif message["type"] == "end_ai_generation_output":
            assert message["outputTurnId"] == started
            return str(message["fullText"])


async def test_support_desk_conversation_over_webrtc(
    demo_server: ServerProcess, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(demo_server.http_url + "/api/webrtc/offer")
    auth = await command(client, {"type": "auth", "apiKey": "demo-conversation-key"})
    assert auth["success"] is True, auth
    assert auth["sessionId"].startswith("sess_")
    started = await command(client, {"type": "start_conversation", "userId": "webrtc-user"})
    assert started["success"] is True, started
    conversation_id = started["conversationId"]
    greeting = await ai_turn(client)
    assert greeting.startswith("Hi, welcome to Acme Gadgets support!")
    reply = await command(
        client,
        {
            "type": "send_user_text_input",
            "conversationId": conversation_id,
            "text": "where is my package?",
        },
    )
    assert reply["success"] is True, reply
    assert "order number" in await ai_turn(client)


async def test_demo_server_signalling_errors(demo_server: ServerProcess) -> None:
    import aiohttp

    url = demo_server.http_url + "/api/webrtc/offer"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"sdpOffer": 1}) as response:
            assert response.status == 400
            assert await response.json() == {"error": "sdpOffer is required and must be a string"}
        async with http.post(url, json={"sdpOffer": "garbage"}) as response:
            assert response.status == 500
            assert await response.json() == {"error": "WebRTC signaling failed"}


async def test_server_stop_closes_webrtc_clients(
    demo_server: ServerProcess, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(demo_server.http_url + "/api/webrtc/offer")
    assert (await command(client, {"type": "auth", "apiKey": "demo-conversation-key"}))["success"]
    assert await demo_server.stop() == 0
    await asyncio.wait_for(client.control_closed.wait(), TIMEOUT_S)


async def test_auth_rate_limit_closes_the_peer_connection(
    demo_server: ServerProcess, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.connect(demo_server.http_url + "/api/webrtc/offer")
    for attempt in range(10):
        reply = await command(client, {"type": "auth", "apiKey": f"wrong-{attempt}"})
        assert (reply["success"], reply["error"]) == (False, "Invalid or inactive API key")
    client.send({"type": "auth", "apiKey": "demo-conversation-key", "requestId": "req-11"})
    assert await client.receive() == {
        "type": "error",
        "requestId": "req-11",
        "error": "Too many authentication attempts, please try again later",
    }
    await asyncio.wait_for(client.control_closed.wait(), TIMEOUT_S)
    # The same limit holds for a new peer connection from the same address.
    again = clients()
    await again.connect(demo_server.http_url + "/api/webrtc/offer")
    again.send({"type": "auth", "apiKey": "demo-conversation-key", "requestId": "req-12"})
    assert (await again.receive())["error"] == (
        "Too many authentication attempts, please try again later"
    )
