"""The listings on three nodes sharing one Redis: any node answers for the whole cluster."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from metered_realtime import Message, Presence

from hubbub.client import ConversationClient
from hubbub.console import demo_projects_dir
from tests.cluster.conftest import cluster_toml, demo_token, sdk_client
from tests.cluster.test_rest import rest
from tests.support.postgres import postgres_url
from tests.support.redis import SHARED_URL, delete_prefix, unique_prefix
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.integration


async def test_connections_channels_and_nodes_span_every_node(
    cluster: list[ServerProcess],
) -> None:
    a, b, c = cluster
    async with (
        sdk_client(a, token=demo_token("alice", peer_metadata={"name": "Alice"})) as alice,
        sdk_client(b, token=demo_token("bob")) as bob,
        sdk_client(c, token=demo_token("bob")) as bob_tab,
        sdk_client(c, token=demo_token("watcher")) as watcher,
    ):
        for client in (alice, bob, bob_tab):
            await client.client.subscribe("chat/lobby")
        await watcher.client.subscribe("devices/*/events")
        await alice.next(Presence, lambda p: [e.peer_id for e in p.joined] == ["bob"])

        # Each node names itself in /v1/nodes, and every one lists the same three nodes.
        own_ids, seen = [], []
        for node in cluster:
            status, body = await rest("GET", node, "/v1/nodes")
            assert status == 200
            own_ids.append(body["node"])
            seen.append(sorted(n["node"] for n in body["nodes"]))
        assert len(set(own_ids)) == 3
        assert seen == [sorted(own_ids)] * 3
        status, body = await rest("GET", a, "/v1/nodes")
        counts = {n["node"]: (n["connections"], n["channels"]) for n in body["nodes"]}
        assert counts == {own_ids[0]: (1, 1), own_ids[1]: (1, 1), own_ids[2]: (2, 1)}

        # Asked on b, the connections of all three nodes, by peer then age.
        status, body = await rest("GET", b, "/v1/connections")
        assert status == 200
        listed = [(x["peerId"], x["node"]) for x in body["connections"]]
        assert listed[0] == ("alice", own_ids[0])
        assert sorted(listed[1:3]) == sorted([("bob", own_ids[1]), ("bob", own_ids[2])])
        assert listed[3] == ("watcher", own_ids[2])
        assert all(x["remoteAddr"] == "127.0.0.1" for x in body["connections"])
        status, body = await rest("GET", a, "/v1/connections?channel=devices/*/events")
        assert [x["peerId"] for x in body["connections"]] == ["watcher"]
        status, body = await rest("GET", c, "/v1/connections?peerId=bob&limit=1")
        assert len(body["connections"]) == 1

        # Publications from two nodes: the rate is the cluster's, counted once each.
        for n in range(5):
            await alice.client.publish("chat/lobby", n)
            await bob.client.publish("devices/7/events", {"t": n})
        await watcher.next(Message, lambda m: m.data == {"t": 4})
        status, body = await rest("GET", c, "/v1/channels")
        assert status == 200
        channels = {x["channel"]: x for x in body["channels"]}
        assert list(channels) == ["chat/lobby", "devices/7/events"]
        assert (channels["chat/lobby"]["subscribers"], channels["chat/lobby"]["peers"]) == (3, 2)
        assert channels["chat/lobby"]["messagesPerSecond"] > 0
        assert channels["devices/7/events"]["subscribers"] == 0
        assert channels["devices/7/events"]["messagesPerSecond"] > 0
        status, body = await rest("GET", a, "/v1/channels?prefix=dev")
        assert [x["channel"] for x in body["channels"]] == ["devices/7/events"]

        # A kick on one node: the peer's connections on the others leave every listing.
        status, kicked = await rest("DELETE", a, "/v1/peers/bob")
        assert kicked["closed"] == 2
        async with asyncio.timeout(5):
            while True:
                status, body = await rest("GET", a, "/v1/connections?peerId=bob")
                if body["connections"] == []:
                    break
                await asyncio.sleep(0.05)
        status, body = await rest("GET", b, "/v1/channels?prefix=chat/")
        assert [(x["subscribers"], x["peers"]) for x in body["channels"]] == [(1, 1)]


async def test_conversations_are_listed_from_any_node_of_a_shared_store() -> None:
    async for database_url in postgres_url():
        prefix = unique_prefix()
        toml = (
            cluster_toml(SHARED_URL, prefix).replace(
                'id = "demo"\n', 'id = "demo"\nconversation_projects = ["*"]\n', 1
            )
            + f'\n[conversations]\nprojects_dir = "{demo_projects_dir()}"\n'
            + f'database_url = "{database_url}"\n'
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                a, b, c = await asyncio.gather(
                    *(stack.enter_async_context(running_server(toml)) for _ in range(3))
                )
                async with await ConversationClient.connect(a.ws_url + "/ws") as client:
                    await client.auth("demo-conversation-key")
                    conversation_id = await client.start("cluster-user")
                    await client.next_turn()
                    here = await rest("GET", a, f"/v1/conversations/{conversation_id}")
                    assert (here[0], here[1]["runningHere"]) == (200, True)
                    # Another node reads it from the shared store.
                    status, there = await rest("GET", c, f"/v1/conversations/{conversation_id}")
                    assert (status, there["runningHere"], there["userId"]) == (
                        200,
                        False,
                        "cluster-user",
                    )
                    status, live = await rest("GET", b, "/v1/conversations?state=live")
                    assert [x["conversationId"] for x in live["conversations"]] == [conversation_id]
                    await client.send_text("bye")
                    await client.next_turn()
                async with asyncio.timeout(10):
                    while True:
                        status, ended = await rest("GET", b, "/v1/conversations?state=ended")
                        if ended["conversations"]:
                            break
                        await asyncio.sleep(0.1)
                assert ended["conversations"][0]["state"] == "finished"
                status, events = await rest("GET", c, f"/v1/conversations/{conversation_id}/events")
                assert "conversation_end" in [e["eventType"] for e in events["events"]]
        finally:
            await delete_prefix(6379, prefix)
