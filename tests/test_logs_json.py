"""``hubbub --log-format json serve``: every output line is one JSON object, and the
connection, auth-failure, kick, rate-limit and close events carry their fields."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.support.server import DEMO_APP_TOML, ServerProcess, running_server

pytestmark = pytest.mark.integration

CONFIG = (
    """
[limits]
rate_per_second = 1
rate_burst = 3
"""
    + DEMO_APP_TOML
)
SECRET = "sk_secret_demo"


def entries(server: ServerProcess) -> list[dict[str, Any]]:
    lines = [line for line in server.log_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


async def event(server: ServerProcess, name: str, **fields: Any) -> dict[str, Any]:
    """The first entry of ``event`` whose fields include ``fields`` (awaited, bounded)."""
    async with asyncio.timeout(10):
        while True:
            for entry in entries(server):
                if entry.get("event") == name and fields.items() <= entry.items():
                    return entry
            server.new_output.clear()
            await server.new_output.wait()


async def test_json_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    async with (
        running_server(CONFIG, global_args=("--log-format", "json")) as server,
        aiohttp.ClientSession() as http,
    ):
        headers = {"X-Forwarded-For": "203.0.113.7"}
        async with http.ws_connect(f"{server.http_url}/v1?key=pk_live_demo") as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
            opened = await event(server, "connection_opened")
            assert opened["app"] == "demo"
            assert opened["remote"] == "127.0.0.1"  # X-Forwarded-For is not trusted here
            assert opened["level"] == "INFO"
            assert opened["logger"] == "hubbub.transports.websocket"
            assert opened["message"].startswith("connection opened app=demo peer=")
            peer = opened["peer"]
            await ws.close()
        closed = await event(server, "connection_closed", peer=peer)
        assert (closed["app"], closed["code"], closed["remote"]) == ("demo", 1000, "127.0.0.1")

        async with http.ws_connect(f"{server.http_url}/v1?key=pk_wrong", headers=headers) as ws:
            await ws.receive(timeout=5)
            assert ws.close_code == 4001
        failed = await event(server, "auth_failed")
        assert failed["level"] == "WARNING"
        assert (failed["code"], failed["reason"], failed["remote"]) == (
            4001,
            "unknown key",
            "127.0.0.1",
        )

        # a kick: one line from the REST call, and the close line with 4020
        async with http.ws_connect(f"{server.http_url}/v1?key=pk_live_demo") as ws:
            welcome = json.loads((await ws.receive(timeout=5)).data)
            auth = {"Authorization": f"Bearer sk_id_demo:{SECRET}"}
            kicked_peer = welcome["peerId"]
            async with http.delete(f"{server.http_url}/v1/peers/{kicked_peer}", headers=auth) as r:
                assert r.status == 200
            await ws.receive(timeout=5)
        kick = await event(server, "kick", peer=kicked_peer)
        assert (kick["app"], kick["closed"]) == ("demo", 1)
        assert (await event(server, "connection_closed", peer=kicked_peer))["code"] == 4020

        # over the message rate: a warning, then the close line with 4011
        async with http.ws_connect(f"{server.http_url}/v1?key=pk_live_demo") as ws:
            flooder = json.loads((await ws.receive(timeout=5)).data)["peerId"]
            for i in range(10):
                await ws.send_str(json.dumps({"type": "publish", "channel": "c", "data": i}))
            while not ws.closed:
                await ws.receive(timeout=5)
        limited = await event(server, "rate_limited", peer=flooder)
        assert limited["level"] == "WARNING"
        assert (await event(server, "connection_closed", peer=flooder))["code"] == 4011

        listening = await event(server, "listening")
        assert listening["port"] == server.port
    assert SECRET not in server.log_text()
    entries(server)  # the shutdown lines are JSON too
