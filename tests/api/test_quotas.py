"""Per-app quotas from the configuration: 4010 over the connection cap, over_message_quota
over the message quota (the connection stays open)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.api.conftest import Served, frame_of_type, next_frame, serve, subscribe, ws_connect

pytestmark = pytest.mark.integration

QUOTA_TOML = """
[[apps]]
id = "small"
plan_name = "SMALL"
max_concurrent_connections = 2
max_messages_per_period = 3
message_period_s = 3600

[[apps.keys]]
id = "pk_live_small"
kind = "publishable"
actions = ["publish", "subscribe", "presence", "send"]

[[apps.keys]]
id = "sk_id_small"
kind = "secret"
secret = "sk_secret_small_0123456789abcdefghijklmnop"

[[apps]]
id = "roomy"

[[apps.keys]]
id = "pk_live_roomy"
kind = "publishable"
"""
SMALL_SK = {"Authorization": "Bearer sk_id_small:sk_secret_small_0123456789abcdefghijklmnop"}


async def _connect(
    session: aiohttp.ClientSession, served: Served, key: str
) -> aiohttp.ClientWebSocketResponse:
    return (await ws_connect(session, served, f"key={key}"))[0]


async def test_the_connection_over_the_cap_is_closed_with_4010() -> None:
    async with serve(QUOTA_TOML) as served, aiohttp.ClientSession() as session:
        first = await _connect(session, served, "pk_live_small")
        second = await _connect(session, served, "pk_live_small")
        third = await session.ws_connect(f"{served.http_url}/v1?key=pk_live_small")
        refused = await third.receive(timeout=5)
        assert (refused.type, refused.data) == (aiohttp.WSMsgType.CLOSE, 4010)
        # Other apps have their own caps; the admitted connections are untouched.
        other = await _connect(session, served, "pk_live_roomy")
        for ws in (first, second):
            await ws.send_json({"type": "ping"})
            assert (await next_frame(ws))["type"] == "pong"
        # A slot frees up when a connection leaves.
        await second.close()
        async with session.get(
            f"{served.http_url}/v1/usage",
            headers={
                "Authorization": "Bearer sk_id_small:sk_secret_small_0123456789abcdefghijklmnop"
            },
        ) as response:
            usage = await response.json()
        assert (usage["concurrentNow"], usage["peakConcurrent"]) == (1, 2)
        assert usage["plan"]["maxConcurrentConnections"] == 2
        again = await _connect(session, served, "pk_live_small")
        for ws in (first, again, other):
            await ws.close()


async def test_the_message_over_the_quota_is_refused_and_the_socket_stays_open() -> None:
    async with serve(QUOTA_TOML) as served, aiohttp.ClientSession() as session:
        sender = await _connect(session, served, "pk_live_small")
        receiver = await _connect(session, served, "pk_live_small")
        await subscribe(receiver, "c")
        for i in range(3):
            await sender.send_json(
                {"type": "publish", "channel": "c", "data": i, "requestId": f"p{i}"}
            )
            assert (await frame_of_type(sender, "ack"))["requestId"] == f"p{i}"
            assert (await frame_of_type(receiver, "message"))["data"] == i
        await sender.send_json({"type": "publish", "channel": "c", "data": 3, "requestId": "p3"})
        error = await frame_of_type(sender, "error")
        assert (error["code"], error["requestId"]) == ("over_message_quota", "p3")
        await sender.send_json({"type": "send", "to": "anyone", "data": 1, "requestId": "s1"})
        error = await frame_of_type(sender, "error")
        assert (error["code"], error["requestId"]) == ("over_message_quota", "s1")
        # Still open: pings work, and inbound delivery goes on (a server publish arrives).
        await sender.send_json({"type": "ping"})
        assert (await next_frame(sender))["type"] == "pong"
        await subscribe(sender, "c")
        async with session.post(
            f"{served.http_url}/v1/channels/c/publish",
            json={"data": "from server"},
            headers={
                "Authorization": "Bearer sk_id_small:sk_secret_small_0123456789abcdefghijklmnop"
            },
        ) as response:
            assert response.status == 200
            assert (await response.json())["delivered"] == 2
        assert (await frame_of_type(sender, "message"))["data"] == "from server"
        async with session.get(
            f"{served.http_url}/v1/usage",
            headers={
                "Authorization": "Bearer sk_id_small:sk_secret_small_0123456789abcdefghijklmnop"
            },
        ) as response:
            usage_after = await response.json()
        # Refused attempts count too (spec 10.5), and so does the server publish.
        assert usage_after["messagesUsed"] == 6
        assert usage_after["plan"]["maxMessagesPerPeriod"] == 3
        assert usage_after["periodEndUnix"] - usage_after["periodStartUnix"] == 3600
        await sender.close()
        await receiver.close()
