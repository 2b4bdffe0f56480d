"""A burst of connects on the Redis broker: every one welcomed, no false outage (issue 11).

Each connect runs Redis commands outside the ordered path (usage, presence); redis-py's
default pool refuses a command once 100 connections are in use (``MaxConnectionsError``),
which the node took for Redis being unreachable. The pool is bounded and blocking now.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.support.redis import private_redis, redis_cli
from tests.support.server import DEMO_APP_TOML, running_server

pytestmark = pytest.mark.integration

CLIENTS = 400


def broker_toml(url: str, max_connections: int | None = None) -> str:
    pool = "" if max_connections is None else f"max_connections = {max_connections}\n"
    return (
        "[server]\nconnect_attempts_per_ip = 0\n"
        f'[broker]\nkind = "redis"\nurl = "{url}"\nkey_prefix = "burst"\n{pool}' + DEMO_APP_TOML
    )


async def welcomed_and_subscribed(session: aiohttp.ClientSession, url: str, n: int) -> str:
    async with session.ws_connect(f"{url}/v1?key=pk_live_demo") as ws:
        welcome = json.loads((await ws.receive(timeout=20)).data)
        if welcome["type"] != "welcome":
            return f"no welcome: {welcome}"
        await ws.send_json({"type": "subscribe", "channel": f"burst/{n % 7}", "requestId": "s"})
        reply = json.loads((await ws.receive(timeout=20)).data)
        return str(reply.get("type") if reply.get("type") == "ack" else reply)


async def test_a_connect_burst_is_welcomed_within_a_bounded_redis_pool() -> None:
    async with private_redis() as redis, running_server(broker_toml(redis.url, 16)) as server:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            outcomes = await asyncio.gather(
                *(welcomed_and_subscribed(session, server.ws_url, n) for n in range(CLIENTS))
            )
            info = await redis_cli(redis.port, "INFO", "clients")
        assert outcomes == ["ack"] * CLIENTS, [o for o in outcomes if o != "ack"][:3]
        clients = int(info.split("connected_clients:")[1].split()[0])
        # 16 pooled + the ordered sender, the subscriber and redis-cli itself.
        assert clients <= 16 + 3, info
        log = server.log_text()
        assert "unreachable" not in log, log
        assert "Traceback" not in log, log
