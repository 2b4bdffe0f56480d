"""The server starts from the CLI, answers a WebSocket client, and stops on SIGTERM."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.support.server import running_server

pytestmark = pytest.mark.integration


async def test_demo_server_welcomes_a_publishable_key_client() -> None:
    async with running_server(None) as server, aiohttp.ClientSession() as session:
        assert "pk_live_demo" in server.log_text()
        async with session.ws_connect(f"{server.http_url}/v1?key=pk_live_demo") as ws:
            welcome = json.loads((await ws.receive(timeout=5)).data)
            assert welcome["type"] == "welcome"
            assert welcome["expiresAt"] is None
            assert welcome["maxMessageSize"] == 65536
