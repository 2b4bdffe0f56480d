"""Helpers for the integration tests: a real ``hubbub serve``, the official SDKs, raw sockets.

Every wait is bounded and generous (the suite must pass on a loaded 2-core machine); nothing
sleeps to wait for an event.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from tests.support.node import finish_node_script
from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = Path(__file__).parent / "js"
DEMO_SECRET_KEY_ID = "sk_id_demo"
DEMO_SECRET = "sk_secret_demo"
DEMO_PUBLISHABLE_KEY = "pk_live_demo"
WAIT_S = 15.0
NODE_SCENARIO_TIMEOUT_S = 60.0


def mint_token(
    sub: str,
    *,
    expires_in_s: float = 3600,
    kid: str = DEMO_SECRET_KEY_ID,
    secret: str = DEMO_SECRET,
    **claims: Any,
) -> tuple[str, int]:
    """An HS256 token as a customer backend would mint it; returns (token, exp)."""
    exp = int(time.time() + expires_in_s)
    payload = {"sub": sub, "iat": int(time.time()), "exp": exp, **claims}
    with warnings.catch_warnings():
        # The demo secret is short on purpose (it is the documented example value).
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid})
    return token, exp


async def start_node_scenario(
    script: str, params: dict[str, Any], timeout_s: float = NODE_SCENARIO_TIMEOUT_S
) -> asyncio.subprocess.Process:
    """Start ``js/<script>`` with ``params`` as its JSON argument (see ``finish_node_scenario``)."""
    node = shutil.which("node")
    assert node is not None, "Node.js is required for the JS SDK interop tests"
    assert (REPO_ROOT / "node_modules" / "@metered-ca" / "realtime").is_dir(), "run `npm ci`"
    return await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / script),
        json.dumps({"watchdogMs": (timeout_s - 5) * 1000, **params}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )


async def run_node_scenario(
    script: str, params: dict[str, Any], timeout_s: float = NODE_SCENARIO_TIMEOUT_S
) -> dict[str, Any]:
    """Run ``js/<script>`` with ``params`` as its JSON argument; return its JSON summary."""
    process = await start_node_scenario(script, params, timeout_s)
    return await finish_node_scenario(script, process, timeout_s)


async def finish_node_scenario(
    script: str, process: asyncio.subprocess.Process, timeout_s: float = NODE_SCENARIO_TIMEOUT_S
) -> dict[str, Any]:
    """Wait for a scenario to exit; check it succeeded and return its last (summary) line."""
    return await finish_node_script(process, script, timeout_s)


_END_OF_STREAM = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)


def app_config(
    *,
    server: str = "",
    limits: str = "",
    channel_patterns: str = '["**"]',
    allowed_origins: str = "[]",
) -> str:
    """The demo app's keys with the given [server] / [limits] lines and pk key scope."""
    return f"""
[server]
{server}

[limits]
{limits}

[[apps]]
id = "demo"

[[apps.keys]]
id = "{DEMO_PUBLISHABLE_KEY}"
kind = "publishable"
channel_patterns = {channel_patterns}
actions = ["publish", "subscribe", "presence", "send"]
allowed_origins = {allowed_origins}

[[apps.keys]]
id = "{DEMO_SECRET_KEY_ID}"
kind = "secret"
secret = "{DEMO_SECRET}"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence", "send"]
"""


class RawClient:
    """A plain aiohttp WebSocket client that speaks the wire protocol by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def recv(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout_s)
        # With autoping off, the server's keepalive pings surface here. Answer them while the
        # test reads, so such a client falls silent exactly when the test stops reading it.
        while msg.type is aiohttp.WSMsgType.PING:
            await self.ws.pong(msg.data)
            msg = await self.ws.receive(timeout=timeout_s)
        assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg}"
        frame: dict[str, Any] = json.loads(msg.data)
        return frame

    async def next_matching(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                frame = await self.recv(timeout_s)
                if predicate(frame):
                    return frame

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


class Connector:
    """Opens raw clients against one server; they close with the session that opened them."""

    def __init__(self, session: aiohttp.ClientSession, server: ServerProcess) -> None:
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
        ws = await self.session.ws_connect(
            f"{self.server.http_url}/v1?{query}", headers=headers, **options
        )
        client = RawClient(ws)
        if welcome:
            first = await client.recv()
            assert first["type"] == "welcome", first
            client.welcome = first
        return client


@pytest.fixture
async def demo_server() -> AsyncIterator[ServerProcess]:
    async with running_server(DEMO_APP_TOML) as server:
        yield server
