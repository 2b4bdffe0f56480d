"""A real Hubbub app (``server.build_app``) on a loopback port, and small clients for it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from hubbub.config import parse_config
from hubbub.server import build_app
from tests.support.server import with_history_everywhere
from tests.support.ws_client import frame_matching, open_client, receive_frame

SK = "Bearer sk_id_acme:sk_secret_acme_0123456789abcdefghijkl"
TURN_SECRET = "turn-shared-secret"

API_TOML = f"""
[api]
requests_per_second_per_key = 1000
request_burst_per_key = 1000
requests_per_second_per_ip = 1000
request_burst_per_ip = 1000

[[apps]]
id = "acme"
plan_name = "ACME_TEST"
max_messages_per_period = 100000

[[apps.keys]]
id = "pk_live_acme"
kind = "publishable"
actions = ["publish", "subscribe", "presence", "send"]
ice_servers = [{{ urls = ["stun:stun.example.org:3478"] }}]
turn = {{ urls = ["turn:127.0.0.1:3478?transport=udp"], shared_secret = "{TURN_SECRET}", \
ttl_s = 600 }}

[[apps.keys]]
id = "sk_id_acme"
kind = "secret"
secret = "sk_secret_acme_0123456789abcdefghijkl"
turn = {{ urls = ["turn:127.0.0.1:3478?transport=udp"], shared_secret = "{TURN_SECRET}" }}

[[apps.keys]]
id = "sk_id_plain"
kind = "secret"
secret = "sk_secret_plain_0123456789abcdefghijkl"

[[apps.keys]]
id = "sk_id_scoped"
kind = "secret"
secret = "sk_secret_scoped_0123456789abcdefghijkl"
channel_patterns = ["room/*"]
actions = ["publish", "subscribe", "presence"]

[[apps.keys]]
id = "sk_id_publisher"
kind = "secret"
secret = "sk_secret_publisher_0123456789abcdefghijkl"
actions = ["publish"]

[[apps.keys]]
id = "sk_id_legacy"
kind = "secret"
secret = "sk_live_0123456789abcdef"

[[apps]]
id = "other"

[[apps.keys]]
id = "sk_id_other"
kind = "secret"
secret = "sk_secret_other_0123456789abcdefghijkl"
"""


@dataclass
class Served:
    server: TestServer

    @property
    def http_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://", 1)


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[Served]:
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield Served(server)
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def serve(config_toml: str = API_TOML) -> AsyncIterator[Served]:
    async with serve_app(build_app(parse_config(with_history_everywhere(config_toml)))) as served:
        yield served


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Api:
    """A REST caller with a default credential; every reply's body is parsed as JSON."""

    def __init__(self, session: aiohttp.ClientSession, base: str, auth: str | None = SK) -> None:
        self.session = session
        self.base = base
        self.auth = auth

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        auth: str | None = "default",
    ) -> Reply:
        headers = {}
        credential = self.auth if auth == "default" else auth
        if credential is not None:
            headers["Authorization"] = credential
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        async with self.session.request(
            method, self.base + path, data=data, headers=headers, timeout=aiohttp.ClientTimeout(10)
        ) as response:
            assert response.content_type == "application/json", await response.text()
            return Reply(response.status, await response.json(), dict(response.headers))


@contextlib.asynccontextmanager
async def api_client(served: Served) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, served.http_url)


async def ws_connect(
    session: aiohttp.ClientSession, served: Served, query: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    client = await open_client(session, served.http_url, query, timeout_s=5.0)
    return client.ws, client.welcome


async def next_frame(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> Any:
    return await receive_frame(ws, timeout_s)


async def frame_of_type(
    ws: aiohttp.ClientWebSocketResponse, frame_type: str, timeout_s: float = 5.0
) -> Any:
    """The next frame of ``frame_type``, skipping others (bounded by the timeout)."""
    return await frame_matching(ws, lambda frame: frame["type"] == frame_type, timeout_s)


async def subscribe(
    ws: aiohttp.ClientWebSocketResponse, channel: str, include_sender_metadata: bool = False
) -> None:
    await ws.send_json(
        {
            "type": "subscribe",
            "channel": channel,
            "requestId": f"sub-{channel}",
            "includeSenderMetadata": include_sender_metadata,
        }
    )
    ack = await frame_of_type(ws, "ack")
    assert ack["requestId"] == f"sub-{channel}"
