"""Backend proxies on a real server, with a real backend and the official JS SDK as the client."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import run_node_scenario
from tests.support.backend import HANG, Backend, Received, running_backend
from tests.support.redis import free_port
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.integration

PROXY_TIMEOUT_MS = 300


def connect_answer(request: Received) -> Any:
    cookie = request.json["headers"].get("cookie", "")
    session = cookie.removeprefix("session=")
    if session.endswith("-session"):
        name = session.removesuffix("-session")
        return (200, {"peerId": name, "peerMetadata": {"name": name.title()}})
    return {
        "banned": (403, {"reason": "banned"}),
        "garbage": (200, b"<html>oops</html>"),
        "hang": HANG,
        "": (401, None),
    }.get(session, (500, None))


def subscribe_answer(request: Received) -> Any:
    channel = request.json["channel"]
    if channel.startswith("private/"):
        return (403, {"code": "members_only"})
    if channel.startswith("slow/"):
        return HANG
    return (200, {})


async def publish_answer(request: Received) -> Any:
    data = request.json["data"]
    if isinstance(data, dict) and "n" in data:
        await asyncio.sleep(random.uniform(0, 0.02))  # a backend of uneven speed
        return (200, {})
    return {
        "shout": (200, {"data": {"text": "SHOUT"}}),
        "forbidden": (403, {"code": "no_swearing"}),
        "broken": (200, b"not json"),
        "slow": HANG,
    }.get(data, (200, {}))


def proxied_config(backend: Backend, dead_port: int) -> str:
    return f"""
[[apps]]
id = "site"

[[apps.keys]]
id = "pk_site"
kind = "publishable"
actions = ["publish", "subscribe", "presence"]
connect_proxy = "{backend.url("/connect")}"
subscribe_proxy = "{backend.url("/subscribe")}"
publish_proxy = "{backend.url("/publish")}"
proxy_timeout_ms = {PROXY_TIMEOUT_MS}

[[apps.keys]]
id = "pk_down"
kind = "publishable"
connect_proxy = "http://127.0.0.1:{dead_port}/connect"
subscribe_proxy = "http://127.0.0.1:{dead_port}/subscribe"

[[apps.keys]]
id = "pk_publish_down"
kind = "publishable"
connect_proxy = "{backend.url("/connect")}"
publish_proxy = "http://127.0.0.1:{dead_port}/publish"
"""


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Backend, ServerProcess]]:
    async with running_backend() as backend:
        backend.answer("/connect", connect_answer)
        backend.answer("/subscribe", subscribe_answer)
        backend.answer("/publish", publish_answer)
        async with running_server(proxied_config(backend, free_port())) as server:
            yield backend, server


async def upgrade_status(server: ServerProcess, key: str, cookie: str | None) -> int:
    """The HTTP status of a /v1 upgrade (101 when it was accepted)."""
    headers = {"Cookie": cookie} if cookie is not None else {}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"{server.http_url}/v1?key={key}", headers=headers) as ws:
                await ws.receive(timeout=5)  # the welcome
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status


async def test_connect_subscribe_and_publish_proxies_with_the_js_sdk(
    proxied: tuple[Backend, ServerProcess],
) -> None:
    backend, server = proxied
    channel = f"room-{uuid.uuid4().hex[:6]}"
    summary = await run_node_scenario(
        "proxies.mjs", {"url": server.ws_url, "channel": channel, "count": 20}
    )
    assert summary["peerId"] == "alice"
    # The replaced and refused publishes never reached subscribers as sent.
    assert summary["bobSaw"] == ["plain", "carol meanwhile", "after slow"]
    connects = backend.received("/connect")
    assert connects, "the connect proxy was asked"
    for request in connects:
        body = request.json
        assert set(body) == {"app", "key", "remoteAddr", "headers", "query"}
        assert (body["app"], body["remoteAddr"]) == ("site", "127.0.0.1")
        assert "x-not-forwarded" not in body["headers"]  # the allow-list, never everything
        assert body["query"] == {"key": body["key"]}
    publishes = [r.json for r in backend.received("/publish")]
    assert {"app": "site", "peerId": "alice", "channel": channel, "data": "plain"} in publishes
    subscribes = [r.json for r in backend.received("/subscribe")]
    assert {
        "app": "site",
        "peerId": "bob",
        "channel": channel,
        "peerMetadata": {"name": "Bob"},
    } in subscribes


@pytest.mark.parametrize(
    ("key", "cookie", "status"),
    [
        ("pk_site", "session=alice-session", 101),
        ("pk_site", None, 401),  # the backend answered 401
        ("pk_site", "session=banned", 401),  # 403
        ("pk_site", "session=garbage", 503),  # a 200 that is not JSON
        ("pk_site", "session=teapot", 503),  # 500
        ("pk_site", "session=hang", 503),  # no answer within proxy_timeout_ms
        ("pk_down", "session=alice-session", 503),  # nothing listens there
    ],
)
async def test_connect_proxy_outcomes_at_the_upgrade(
    proxied: tuple[Backend, ServerProcess], key: str, cookie: str | None, status: int
) -> None:
    _, server = proxied
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await upgrade_status(server, key, cookie) == status
    if cookie == "session=hang":
        assert PROXY_TIMEOUT_MS / 1000 <= loop.time() - began < PROXY_TIMEOUT_MS / 1000 + 2


async def test_subscribe_proxy_timeout_and_backend_down(
    proxied: tuple[Backend, ServerProcess],
) -> None:
    """Raw frames: the documented error for each failure, and the connection survives."""
    _, server = proxied
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{server.http_url}/v1?key=pk_site", headers={"Cookie": "session=dan-session"}
        ) as ws,
    ):
        assert json.loads((await ws.receive(timeout=5)).data)["peerId"] == "dan"
        await ws.send_json({"type": "subscribe", "channel": "slow/1", "requestId": "s1"})
        await ws.send_json({"type": "ping"})
        # The pong comes first: the connection is read while the backend is deciding.
        assert json.loads((await ws.receive(timeout=5)).data) == {"type": "pong"}
        error = json.loads((await ws.receive(timeout=5)).data)
        assert (error["code"], error["requestId"]) == ("backend_error", "s1")
        await ws.send_json({"type": "subscribe", "channel": "room", "requestId": "s2"})
        assert json.loads((await ws.receive(timeout=5)).data) == {"type": "ack", "requestId": "s2"}
