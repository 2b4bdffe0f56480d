"""The REST control plane on any node acts on the whole cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from metered_realtime import Disconnected, Message, Presence

from tests.cluster.conftest import demo_token, sdk_client
from tests.support.server import ServerProcess, without_history_fields

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer sk_id_demo:sk_secret_demo"}


async def rest(method: str, node: ServerProcess, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{node.http_url}{path}", headers=AUTH, **kwargs) as response,
    ):
        return response.status, await response.json()


def peers(entries: tuple[object, ...]) -> list[str]:
    return [entry.peer_id for entry in entries]  # type: ignore[attr-defined]


async def test_kick_usage_publish_and_peers_across_nodes(cluster: list[ServerProcess]) -> None:
    a, b, c = cluster
    async with (
        sdk_client(c, token=demo_token("watcher")) as watcher,
        sdk_client(b, token=demo_token("target", peer_metadata={"n": 1})) as target,
        sdk_client(c, token=demo_token("target", peer_metadata={"n": 1})) as target_tab,
    ):
        await watcher.client.subscribe("room")
        await target.client.subscribe("room")
        await watcher.next(Presence, lambda p: peers(p.joined) == ["target"])

        status, listed = await rest("GET", a, "/v1/channels/room/peers")
        assert status == 200
        assert sorted(p["peerId"] for p in listed["peers"]) == ["target", "watcher"]

        status, published = await rest(
            "POST", a, "/v1/channels/room/publish", json={"data": {"from": "rest"}}
        )
        # Counted on every node: a has no subscriber, b and c one each.
        assert (status, without_history_fields(published)) == (
            200,
            {"channel": "room", "delivered": 2},
        )
        assert (await watcher.next(Message)).data == {"from": "rest"}
        assert (await target.next(Message)).data == {"from": "rest"}

        await target.client.publish("room", "counted")
        status, usage = await rest("GET", c, "/v1/usage")
        assert status == 200
        assert usage["concurrentNow"] == 3
        assert usage["messagesUsed"] == 2  # the REST publish and the client's

        status, kicked = await rest("DELETE", a, "/v1/peers/target")
        # Both of target's connections, on b and on c, are closed and counted.
        assert (status, kicked) == (200, {"peerId": "target", "closed": 2})
        assert (await target.next(Disconnected)).code == 4020
        assert (await target_tab.next(Disconnected)).code == 4020
        left = await watcher.next(Presence, lambda p: bool(p.left))
        assert peers(left.left) == ["target"]

        status, kicked = await rest("DELETE", a, "/v1/peers/target")
        assert (status, kicked["closed"]) == (200, 0)
        # The kicked connection is released right after its left: poll the counter briefly.
        async with asyncio.timeout(5):
            while (await rest("GET", b, "/v1/usage"))[1]["concurrentNow"] != 1:
                await asyncio.sleep(0.05)
