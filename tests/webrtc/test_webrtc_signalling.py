"""POST /api/webrtc/offer: the documented errors, the bounds, and the gathering timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from hubbub.core.ratelimit import KeyedRateLimiter

from .conftest import TIMEOUT_S, Client, ServerFactory, WebRtcServer

pytestmark = pytest.mark.integration

BAD_OFFER = {"error": "sdpOffer is required and must be a string"}
FAILED = {"error": "WebRTC signaling failed"}


async def post(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, **kwargs) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    "body",
    [
        {"json": {}},
        {"json": {"sdpOffer": ""}},
        {"json": {"sdpOffer": None}},
        {"json": {"sdpOffer": 42}},
        {"json": {"sdpOffer": ["v=0"]}},
        {"json": {"sdpOffer": {"sdp": "v=0"}}},
        {"json": {"offer": "v=0"}},
        {"json": ["v=0"]},
        {"json": "v=0"},
        {"data": b"not json"},
        {"data": b"\xff\xfe"},
        {"data": b""},
        # Deep JSON (issue 11: an HTML 500 page) is a bad body like any other.
        {"data": b'{"sdpOffer": ' + b"[" * 1_000 + b"]" * 1_000 + b"}"},
        {"data": b"[" * 100_000 + b"]" * 100_000},
        # ~1,000 levels used to raise RecursionError: an HTML 500 page (issue 11).
        {"data": b'{"sdpOffer": "v=0", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"},
        {"data": b"[" * 100_000},
    ],
)
async def test_missing_or_non_string_offer_is_400(
    server: WebRtcServer, clients: Callable[..., Client], body: dict[str, Any]
) -> None:
    assert await post(server.offer_url, **body) == (400, BAD_OFFER)
    assert server.endpoint.peers == frozenset()
    # The endpoint still works.
    client = clients()
    await client.connect(server.offer_url)


@pytest.mark.parametrize("offer", ["garbage", "v=0\r\nnot an sdp\r\n", "v=0\r\n" * 3])
async def test_unusable_offer_is_500_and_leaves_nothing_open(
    server: WebRtcServer, offer: str
) -> None:
    assert await post(server.offer_url, json={"sdpOffer": offer}) == (500, FAILED)
    assert server.endpoint.peers == frozenset()


async def test_offer_without_media_or_channels_is_500(server: WebRtcServer) -> None:

    pc = RTCPeerConnection()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        status, body = await post(server.offer_url, json={"sdpOffer": pc.localDescription.sdp})
    finally:
        await pc.close()
    assert (status, body) == (500, FAILED)
    assert server.endpoint.peers == frozenset()


async def test_answer_carries_candidates_and_no_trickle(
    server: WebRtcServer, clients: Callable[..., Client]
) -> None:
    client = clients()
    await client.pc.setLocalDescription(await client.pc.createOffer())
    status, body = await post(server.offer_url, json={"sdpOffer": client.pc.localDescription.sdp})
    assert status == 200
    assert "a=candidate:" in body["sdpAnswer"]
    assert "a=end-of-candidates" in body["sdpAnswer"]
    assert "typ srflx" not in body["sdpAnswer"]  # STUN disabled: host candidates only


async def test_peer_connection_limit(
    start_server: ServerFactory, clients: Callable[..., Client]
) -> None:
    server = await start_server(max_peer_connections=1)
    await clients().connect(server.offer_url)
    second = clients()
    await second.pc.setLocalDescription(await second.pc.createOffer())
    status, body = await post(server.offer_url, json={"sdpOffer": second.pc.localDescription.sdp})
    assert (status, body) == (503, {"error": "Too many WebRTC connections"})
    assert len(server.endpoint.peers) == 1


async def test_peer_connection_limit_per_address(
    start_server: ServerFactory, clients: Callable[..., Client]
) -> None:
    server = await start_server(max_peer_connections_per_ip=1)
    await clients().connect(server.offer_url)
    second = clients()
    await second.pc.setLocalDescription(await second.pc.createOffer())
    offer = {"sdpOffer": second.pc.localDescription.sdp}
    status, body = await post(server.offer_url, json=offer)
    assert (status, body) == (429, {"error": "Too many WebRTC connections from this address"})
    assert len(server.endpoint.peers) == 1


async def test_offers_over_the_per_ip_attempt_rate_are_429(
    start_server: ServerFactory, clients: Callable[..., Client]
) -> None:
    """Offers count against the per-IP connection attempt rate (shared with ``/ws`` upgrades),
    whatever becomes of them."""
    limiter = KeyedRateLimiter(3, 3 / 60)
    server = await start_server(connect_limiter=limiter)
    assert (await post(server.offer_url, json={}))[0] == 400
    await clients().connect(server.offer_url)
    await clients().connect(server.offer_url)
    assert await post(server.offer_url, json={}) == (
        429,
        {"error": "Too many WebRTC connections from this address"},
    )
    assert len(server.endpoint.peers) == 2
    assert limiter.would_allow("127.0.0.2", time.monotonic())


async def test_client_that_never_opens_control_is_closed(
    start_server: ServerFactory, clients: Callable[..., Client]
) -> None:
    server = await start_server(peer={"control_open_timeout_s": 0.3})
    client = clients()
    await client.pc.setLocalDescription(await client.pc.createOffer())
    status, _ = await post(server.offer_url, json={"sdpOffer": client.pc.localDescription.sdp})
    assert status == 200
    (peer,) = server.endpoint.peers
    # The answer is never applied, so control cannot open.
    await asyncio.wait_for(peer.until_closed(), TIMEOUT_S)
    assert server.endpoint.peers == frozenset()
    assert server.sessions.handlers == []


@pytest.fixture
async def silent_stun_server() -> AsyncIterator[str]:
    """A UDP port that reads STUN requests and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"stun:127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


async def test_ice_gathering_timeout_is_honoured(
    start_server: ServerFactory, clients: Callable[..., Client], silent_stun_server: str
) -> None:
    server = await start_server(stun_url=silent_stun_server, ice_gathering_timeout_s=0.4)
    client = clients()
    await client.pc.setLocalDescription(await client.pc.createOffer())
    started = time.monotonic()
    status, body = await post(server.offer_url, json={"sdpOffer": client.pc.localDescription.sdp})
    elapsed_s = time.monotonic() - started
    # aioice waits 5 s for the STUN server; the answer leaves at the deadline, with the host
    # candidates and without end-of-candidates (gathering is still going on).
    assert status == 200, body
    assert 0.35 <= elapsed_s < 2.0, elapsed_s
    answer = body["sdpAnswer"]
    assert "typ host" in answer
    assert "a=end-of-candidates" not in answer
    # The connection completes once the server's gathering ends (aioice gives STUN 5 s).
    await client.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.wait_for(client.control_open.wait(), 15)
    handler = await server.sessions.first()
    client.send({"type": "echo"})
    assert (await client.receive())["type"] == "echo"
    assert handler.closed_calls == 0


async def test_gathering_within_the_timeout_includes_every_candidate(
    start_server: ServerFactory, clients: Callable[..., Client]
) -> None:
    server = await start_server(ice_gathering_timeout_s=5.0)
    client = clients()
    await client.pc.setLocalDescription(await client.pc.createOffer())
    status, body = await post(server.offer_url, json={"sdpOffer": client.pc.localDescription.sdp})
    assert status == 200
    assert "a=end-of-candidates" in body["sdpAnswer"]
