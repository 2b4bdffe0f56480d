"""The one raw WebSocket test client: the realtime wire protocol spoken by hand over aiohttp.

Every read is bounded by a timeout; nothing sleeps. The free functions work on a bare
``aiohttp`` WebSocket (the REST tests keep theirs); :class:`RawClient` wraps one with the
protocol's usual exchanges; :class:`Connector` opens clients against one server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

WAIT_S = 15.0
DEMO_PUBLISHABLE_KEY = "pk_live_demo"

_END_OF_STREAM = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)


async def receive_frame(
    ws: aiohttp.ClientWebSocketResponse, timeout_s: float = WAIT_S
) -> dict[str, Any]:
    """The next text frame, decoded; fails on anything else (a close, binary data)."""
    msg = await ws.receive(timeout=timeout_s)
    # With autoping off, the server's keepalive pings surface here. Answer them while the
    # test reads, so such a client falls silent exactly when the test stops reading it.
    while msg.type is aiohttp.WSMsgType.PING:
        await ws.pong(msg.data)
        msg = await ws.receive(timeout=timeout_s)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg}"
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def frame_matching(
    ws: aiohttp.ClientWebSocketResponse,
    predicate: Callable[[dict[str, Any]], bool],
    timeout_s: float = WAIT_S,
) -> dict[str, Any]:
    """The next frame ``predicate`` accepts, skipping others (all within ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = await receive_frame(ws, timeout_s)
            if predicate(frame):
                return frame


class RawClient:
    """A plain aiohttp WebSocket client that speaks the wire protocol by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def recv(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        return await receive_frame(self.ws, timeout_s)

    async def next_matching(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        return await frame_matching(self.ws, predicate, timeout_s)

    async def next_of_type(self, frame_type: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        return await self.next_matching(lambda f: f["type"] == frame_type, timeout_s)

    async def until_closed(
        self, timeout_s: float = WAIT_S
    ) -> tuple[int | None, list[dict[str, Any]]]:
        """Read until the server closes; return the close code and the frames before it."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await self.ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    frames.append(json.loads(msg.data))
                    continue
                assert msg.type in _END_OF_STREAM, f"unexpected {msg}"
                return self.ws.close_code, frames

    async def publish(self, channel: str, data: Any, request_id: str) -> dict[str, Any]:
        """Publish and return the reply (``ack`` or ``error``) to this request."""
        await self.send(
            {"type": "publish", "channel": channel, "data": data, "requestId": request_id}
        )
        return await self.next_matching(lambda f: f.get("requestId") == request_id)

    async def subscribe(self, channel: str, request_id: str = "sub") -> dict[str, Any]:
        """Subscribe and return the snapshot (after checking the ack came first)."""
        await self.send({"type": "subscribe", "channel": channel, "requestId": request_id})
        ack = await self.next_matching(lambda f: f.get("requestId") == request_id)
        assert ack == {"type": "ack", "requestId": request_id}
        return await self.next_matching(
            lambda f: f["type"] == "presence" and f["channel"] == channel
        )


async def open_client(
    session: aiohttp.ClientSession,
    http_url: str,
    query: str,
    *,
    headers: dict[str, str] | None = None,
    welcome: bool = True,
    timeout_s: float = WAIT_S,
    **options: Any,
) -> RawClient:
    """Connect to ``<http_url>/v1?<query>``; with ``welcome``, read and check the welcome."""
    ws = await session.ws_connect(f"{http_url}/v1?{query}", headers=headers, **options)
    client = RawClient(ws)
    if welcome:
        first = await client.recv(timeout_s)
        assert first["type"] == "welcome", first
        client.welcome = first
    return client


class HasHttpUrl(Protocol):
    @property
    def http_url(self) -> str: ...


class Connector:
    """Opens raw clients against one server; they close with the session that opened them."""

    def __init__(self, session: aiohttp.ClientSession, server: HasHttpUrl) -> None:
        self.session = session
        self.server = server

    async def open(
        self,
        query: str = f"key={DEMO_PUBLISHABLE_KEY}",
        *,
        headers: dict[str, str] | None = None,
        welcome: bool = True,
        **options: Any,
    ) -> RawClient:
        return await open_client(
            self.session, self.server.http_url, query, headers=headers, welcome=welcome, **options
        )
